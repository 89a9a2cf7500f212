//! All sessions in memory, bounded so that no agent can take another agent's phase.
//!
//! Sessions used to share one least-recently-used set: an agent creating sessions in a
//! loop pushed out another agent's idle COMMIT session, which came back in EXPLORE. Now:
//!
//! * each agent may have `limits.sessions_per_agent` sessions. Past it, its own least
//!   recently used sessions that hold nothing worth keeping go (see [`Sessions`]); if all
//!   of its sessions are worth keeping, its new session is refused ([`SessionRefused`],
//!   answered `429 too_many_sessions`);
//! * all sessions together stay under `limits.sessions`. Past it, sessions are taken only
//!   from agents holding more than a fair share (the cap divided by the agents with
//!   sessions), the heaviest first, and again only sessions worth nothing; if none can
//!   go, the new session is refused.
//!
//! A session is worth keeping when a request or hold is using it, when its phase is past
//! EXPLORE, or when the ledger has money reserved or of unknown outcome for it. Such a
//! session is forgotten only by idling past `limits.session_idle`, never because of
//! another agent's activity.

use super::session::Session;
use crate::policy::rules::Phase;
use crate::policy::MemoryLimits;
use dashmap::DashMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Whether the ledger has money at stake (reserved or unknown) for `(session, agent)`.
pub type AtStake = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Why a new session was not created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error(
        "agent `{agent}` already has {cap} sessions that are in use, past EXPLORE or with money reserved or unknown \
         (limits.sessions_per_agent); reuse a session, reset finished ones (purser sessions reset ID), or raise the limit"
    )]
    AgentFull { agent: String, cap: usize },
    #[error(
        "Purser already tracks {cap} sessions (limits.sessions) and none can be forgotten without taking another \
         agent's phase or money; retry later, or raise limits.sessions"
    )]
    Full { cap: usize },
}

/// All sessions, by `AGENT.SESSION`.
pub struct Sessions {
    map: DashMap<String, Tracked>,
    /// Session ids per agent. Taken only to create or forget sessions (a request for a
    /// known session never touches it), so every change to `map`'s keys happens under it.
    by_agent: Mutex<HashMap<String, HashSet<String>>>,
    epoch: Instant,
    at_stake: Option<AtStake>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

struct Tracked {
    state: Session,
    /// Milliseconds since `Sessions::epoch`: touched on every use without taking the lock.
    last_used: AtomicU64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            map: DashMap::new(),
            by_agent: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            at_stake: None,
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// Sessions figures, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionFigures {
    pub tracked: u64,
    pub agents: u64,
    pub evicted: u64,
    pub refused: u64,
}

impl Sessions {
    /// Sessions that ask `at_stake` before forgetting one.
    pub fn with_stakes(at_stake: AtStake) -> Self {
        Sessions {
            at_stake: Some(at_stake),
            ..Sessions::default()
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn index(&self) -> MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.by_agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's state, created in EXPLORE on first sight, within the caps.
    pub fn get_or_create(
        &self,
        session_id: &str,
        agent: &str,
        limits: &MemoryLimits,
    ) -> Result<Session, SessionRefused> {
        if let Some(existing) = self.touch(session_id) {
            return Ok(existing);
        }
        let mut index = self.index();
        if let Some(existing) = self.touch(session_id) {
            return Ok(existing);
        }
        let own = index.get(agent).map_or(0, HashSet::len);
        if own >= limits.sessions_per_agent {
            let batch = batch_of(limits.sessions_per_agent);
            if self.evict_from(&mut index, agent, batch) == 0 {
                return Err(self.refuse(SessionRefused::AgentFull {
                    agent: agent.to_string(),
                    cap: limits.sessions_per_agent,
                }));
            }
        }
        if self.map.len() >= limits.sessions && !self.make_room(&mut index, agent, limits) {
            return Err(self.refuse(SessionRefused::Full {
                cap: limits.sessions,
            }));
        }
        let state = Session::new(session_id, agent);
        self.map.insert(
            session_id.to_string(),
            Tracked {
                state: state.clone(),
                last_used: AtomicU64::new(self.now_ms()),
            },
        );
        index
            .entry(agent.to_string())
            .or_default()
            .insert(session_id.to_string());
        Ok(state)
    }

    fn touch(&self, session_id: &str) -> Option<Session> {
        let existing = self.map.get(session_id)?;
        existing.last_used.store(self.now_ms(), Ordering::Relaxed);
        Some(existing.state.clone())
    }

    fn refuse(&self, refused: SessionRefused) -> SessionRefused {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%refused, "new session refused");
        refused
    }

    pub fn get(&self, session_id: &str) -> Option<Session> {
        self.map.get(session_id).map(|entry| entry.state.clone())
    }

    /// Forgets sessions unused for `limits.session_idle`. Returns how many went.
    pub fn expire_idle(&self, limits: &MemoryLimits) -> usize {
        let mut index = self.index();
        self.expire_idle_locked(&mut index, limits)
    }

    fn expire_idle_locked(
        &self,
        index: &mut HashMap<String, HashSet<String>>,
        limits: &MemoryLimits,
    ) -> usize {
        let idle_ms = limits.session_idle.as_millis() as u64;
        let now = self.now_ms();
        let idle = |tracked: &Tracked| {
            now.saturating_sub(tracked.last_used.load(Ordering::Relaxed)) >= idle_ms
                && !in_use(tracked)
        };
        let stale: Vec<String> = self
            .map
            .iter()
            .filter(|entry| idle(entry.value()))
            .map(|entry| entry.key().clone())
            .collect();
        let mut removed = 0;
        for id in stale {
            if let Some((_, tracked)) = self.map.remove_if(&id, |_, tracked| idle(tracked)) {
                forget_in_index(index, &tracked.state.lock().agent, &id);
                removed += 1;
            }
        }
        removed
    }

    /// Forgets up to `count` of the agent's least recently used sessions that hold
    /// nothing worth keeping. Returns how many went.
    fn evict_from(
        &self,
        index: &mut HashMap<String, HashSet<String>>,
        agent: &str,
        count: usize,
    ) -> usize {
        let Some(ids) = index.get(agent) else {
            return 0;
        };
        let mut candidates: Vec<(u64, String)> = ids
            .iter()
            .filter_map(|id| {
                let tracked = self.map.get(id)?;
                worthless(&tracked).then(|| (tracked.last_used.load(Ordering::Relaxed), id.clone()))
            })
            .collect();
        candidates.sort_unstable();
        let mut evicted = 0;
        for (_, id) in candidates {
            if evicted >= count {
                break;
            }
            if self
                .at_stake
                .as_ref()
                .is_some_and(|at_stake| at_stake(&id, agent))
            {
                continue;
            }
            // Checked again under the shard lock: a request may have picked it up since.
            if self
                .map
                .remove_if(&id, |_, tracked| worthless(tracked))
                .is_some()
            {
                forget_in_index(index, agent, &id);
                evicted += 1;
            }
        }
        if evicted > 0 {
            self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
            tracing::info!(
                agent,
                evicted,
                "session cap reached; forgot the agent's least recently used idle EXPLORE sessions"
            );
        }
        evicted
    }

    /// Under the global cap again, with slack so a flood pays for a sweep only once per
    /// many insertions: idle sessions first, then sessions of agents over their fair
    /// share, the heaviest first. False if no room could be made.
    fn make_room(
        &self,
        index: &mut HashMap<String, HashSet<String>>,
        requester: &str,
        limits: &MemoryLimits,
    ) -> bool {
        self.expire_idle_locked(index, limits);
        let target = limits.sessions - batch_of(limits.sessions).min(limits.sessions);
        let agents = index.len() + usize::from(!index.contains_key(requester));
        let fair_share = (limits.sessions / agents.max(1)).max(1);
        // At or past their share: the requester itself, when it is the one filling up.
        let mut heavy: Vec<(usize, String)> = index
            .iter()
            .filter(|(_, ids)| ids.len() >= fair_share)
            .map(|(agent, ids)| (ids.len(), agent.clone()))
            .collect();
        heavy.sort_unstable_by(|a, b| b.cmp(a));
        for (count, agent) in heavy {
            let excess = self.map.len().saturating_sub(target);
            if excess == 0 {
                break;
            }
            let above_share = count + batch_of(fair_share) - fair_share;
            self.evict_from(index, &agent, excess.min(above_share));
        }
        self.map.len() < limits.sessions
    }

    /// Session ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.map.iter().map(|entry| entry.key().clone()).collect();
        ids.sort();
        ids
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sessions one agent has in memory.
    pub fn count_for(&self, agent: &str) -> usize {
        self.index().get(agent).map_or(0, HashSet::len)
    }

    pub fn figures(&self) -> SessionFigures {
        SessionFigures {
            tracked: self.map.len() as u64,
            agents: self.index().len() as u64,
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// Sessions forgotten at once when a cap is reached: a sixteenth of it.
fn batch_of(cap: usize) -> usize {
    (cap / 16).max(1)
}

fn forget_in_index(index: &mut HashMap<String, HashSet<String>>, agent: &str, id: &str) {
    if let Some(ids) = index.get_mut(agent) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(agent);
        }
    }
}

/// A request (or a hold) holds the state right now.
fn in_use(tracked: &Tracked) -> bool {
    tracked.state.in_use()
}

/// Nothing is lost by forgetting it: unused, and still in EXPLORE (a session whose lock
/// is taken is in use). Money at stake is asked of the ledger separately.
fn worthless(tracked: &Tracked) -> bool {
    !in_use(tracked)
        && tracked
            .state
            .try_lock()
            .is_some_and(|state| state.phase == Phase::Explore)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(sessions: usize, per_agent: usize, idle: Duration) -> MemoryLimits {
        MemoryLimits {
            connections_per_agent: 1,
            sessions,
            sessions_per_agent: per_agent,
            session_idle: idle,
            leaf_certificates: 1,
        }
    }

    fn set_phase(sessions: &Sessions, id: &str, agent: &str, cap: &MemoryLimits, phase: Phase) {
        let state = sessions.get_or_create(id, agent, cap).expect("created");
        state.lock().phase = phase;
    }

    #[test]
    fn tracked_sessions_never_pass_the_cap() {
        let sessions = Sessions::default();
        let cap = limits(100, 1_000, Duration::from_secs(3600));
        for index in 0..10_000 {
            sessions
                .get_or_create(&format!("a.s{index}"), "a", &cap)
                .expect("room is made");
            assert!(sessions.len() <= 100, "{} after {index}", sessions.len());
        }
        assert!(sessions.get("a.s9999").is_some(), "the newest is kept");
    }

    #[test]
    fn a_session_in_use_is_not_forgotten() {
        let sessions = Sessions::default();
        let cap = limits(4, 4, Duration::ZERO);
        let held = sessions.get_or_create("a.busy", "a", &cap).unwrap();
        for index in 0..50 {
            sessions
                .get_or_create(&format!("a.s{index}"), "a", &cap)
                .unwrap();
        }
        assert!(sessions.get("a.busy").is_some(), "still tracked");
        drop(held);
        assert!(sessions.expire_idle(&cap) > 0);
        assert!(
            sessions.get("a.busy").is_none(),
            "forgotten once idle and unused"
        );
        assert_eq!(sessions.count_for("a"), 0, "the index follows");
    }

    #[test]
    fn one_agents_flood_never_takes_another_agents_phase() {
        let sessions = Sessions::default();
        let cap = limits(64, 32, Duration::from_secs(3600));
        set_phase(&sessions, "bob.work", "bob", &cap, Phase::Commit);
        sessions.get_or_create("bob.idle", "bob", &cap).unwrap();
        set_phase(&sessions, "alice.keep", "alice", &cap, Phase::Commit);
        for index in 0..10_000 {
            sessions
                .get_or_create(&format!("alice.s{index}"), "alice", &cap)
                .expect("alice's own idle sessions make room");
            assert!(sessions.count_for("alice") <= 32);
        }
        let bob = sessions.get("bob.work").expect("bob's session stays");
        assert_eq!(bob.lock().phase, Phase::Commit);
        assert!(sessions.get("bob.idle").is_some(), "bob is under his share");
        let keep = sessions
            .get("alice.keep")
            .expect("alice's COMMIT session stays");
        assert_eq!(keep.lock().phase, Phase::Commit);
    }

    #[test]
    fn an_agent_whose_sessions_are_all_worth_keeping_is_refused_alone() {
        let sessions = Sessions::default();
        let cap = limits(100, 4, Duration::from_secs(3600));
        for index in 0..4 {
            set_phase(&sessions, &format!("a.s{index}"), "a", &cap, Phase::Commit);
        }
        let refused = sessions.get_or_create("a.more", "a", &cap).unwrap_err();
        assert!(matches!(refused, SessionRefused::AgentFull { cap: 4, .. }));
        assert!(refused.to_string().contains("limits.sessions_per_agent"));
        assert!(sessions.get_or_create("b.new", "b", &cap).is_ok());
        assert_eq!(sessions.figures().refused, 1);
    }

    #[test]
    fn money_at_stake_keeps_a_session_in_explore() {
        let sessions = Sessions::with_stakes(Box::new(|session, _| session == "a.owes"));
        let cap = limits(100, 4, Duration::from_secs(3600));
        sessions.get_or_create("a.owes", "a", &cap).unwrap();
        for index in 0..100 {
            sessions
                .get_or_create(&format!("a.s{index}"), "a", &cap)
                .unwrap();
        }
        assert!(sessions.get("a.owes").is_some());
    }

    #[test]
    fn when_every_session_is_worth_keeping_a_newcomer_is_refused_not_served_by_eviction() {
        let sessions = Sessions::default();
        let cap = limits(8, 8, Duration::from_secs(3600));
        for agent in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            set_phase(&sessions, &format!("{agent}.s"), agent, &cap, Phase::Decide);
        }
        let refused = sessions.get_or_create("z.s", "z", &cap).unwrap_err();
        assert_eq!(refused, SessionRefused::Full { cap: 8 });
        for agent in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let state = sessions.get(&format!("{agent}.s")).unwrap();
            assert_eq!(state.lock().phase, Phase::Decide);
        }
    }
}
