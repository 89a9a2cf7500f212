//! Per-session state in memory: phase, remembered 402 challenges, recent payments for
//! frequency windows, and decision counts. Budgets live in the ledger, not here, so a
//! session forgotten for idleness never forgets spend.

use super::evaluate::{phase_name, RecentPayment};
use crate::policy::rules::Phase;
use crate::policy::{MemoryLimits, PhasePolicy};
use crate::x402::Challenge;
use dashmap::DashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Recent payments kept per session for frequency windows (a window longer than what
/// this many payments span counts only these).
const RECENT_PAYMENTS_KEPT: usize = 1024;

/// A remembered challenge.
#[derive(Clone, Debug)]
pub struct SeenChallenge {
    pub challenge: Challenge,
    pub seen_at: Instant,
    pub seen_wall: SystemTime,
}

/// Decisions per outcome.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct DecisionCounts {
    pub allowed: u64,
    pub denied: u64,
    pub pending_approval: u64,
    pub challenges: u64,
}

/// One session's mutable state.
#[derive(Debug)]
pub struct SessionState {
    pub agent: String,
    pub phase: Phase,
    pub created: SystemTime,
    pub last_seen: Instant,
    challenges: HashMap<String, SeenChallenge>,
    pub recent: VecDeque<RecentPayment>,
    pub counts: DecisionCounts,
}

impl SessionState {
    fn new(agent: &str) -> Self {
        SessionState {
            agent: agent.to_string(),
            phase: Phase::Explore,
            created: SystemTime::now(),
            last_seen: Instant::now(),
            challenges: HashMap::new(),
            recent: VecDeque::new(),
            counts: DecisionCounts::default(),
        }
    }

    /// Remembers a challenge for `resource`, evicting the least recently seen past `max`.
    pub fn remember_challenge(&mut self, resource: String, challenge: Challenge, max: usize) {
        if !self.challenges.contains_key(&resource) && self.challenges.len() >= max {
            if let Some(oldest) = self
                .challenges
                .iter()
                .min_by_key(|(_, seen)| seen.seen_at)
                .map(|(key, _)| key.clone())
            {
                self.challenges.remove(&oldest);
            }
        }
        self.counts.challenges += 1;
        self.challenges.insert(
            resource,
            SeenChallenge {
                challenge,
                seen_at: Instant::now(),
                seen_wall: SystemTime::now(),
            },
        );
    }

    /// The challenge seen for `resource`, if still fresh.
    pub fn challenge_for(&self, resource: &str, ttl: Duration) -> Option<&SeenChallenge> {
        self.challenges
            .get(resource)
            .filter(|seen| seen.seen_at.elapsed() <= ttl)
    }

    pub fn challenge_count(&self) -> usize {
        self.challenges.len()
    }

    /// Notes a forwarded payment for frequency windows.
    pub fn record_payment(&mut self, payment: RecentPayment) {
        if self.recent.len() >= RECENT_PAYMENTS_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(payment);
    }

    /// Starts the session over: EXPLORE, no remembered challenges. Spend stays in the
    /// ledger; a reset never gives budget back.
    pub fn reset(&mut self) {
        self.phase = Phase::Explore;
        self.challenges.clear();
    }

    /// Moves the phase forward. Backwards, or a skip the policy forbids, is refused.
    pub fn advance(&mut self, to: Phase, rules: &PhasePolicy) -> Result<Phase, TransitionError> {
        let from = self.phase;
        if to == from {
            return Ok(from);
        }
        if to < from {
            return Err(TransitionError::Backwards { from, to });
        }
        if !rules.allows(from, to) {
            return Err(TransitionError::NotAllowed { from, to });
        }
        self.phase = to;
        Ok(from)
    }
}

/// Why a phase change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("phases only move forward: {} → {} is not allowed (reset the session to start over)", phase_name(*.from), phase_name(*.to))]
    Backwards { from: Phase, to: Phase },
    #[error("the policy's transition_rules do not allow {} → {}", phase_name(*.from), phase_name(*.to))]
    NotAllowed { from: Phase, to: Phase },
}

/// All sessions, by `AGENT.SESSION`, bounded by `limits.sessions` and `limits.session_idle`.
///
/// Forgetting a session drops its phase, challenges and frequency window; its spend is in
/// the ledger and stays. A session some request is using right now is never forgotten.
pub struct Sessions {
    map: DashMap<String, Tracked>,
    epoch: Instant,
}

struct Tracked {
    state: Arc<Mutex<SessionState>>,
    /// Milliseconds since `Sessions::epoch`: touched on every use without taking the lock.
    last_used: AtomicU64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            map: DashMap::new(),
            epoch: Instant::now(),
        }
    }
}

impl Sessions {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The session's state, created in EXPLORE on first sight. Creating one past
    /// `limits.sessions` first forgets idle sessions, then the least recently used.
    pub fn get_or_create(
        &self,
        session_id: &str,
        agent: &str,
        limits: &MemoryLimits,
    ) -> Arc<Mutex<SessionState>> {
        let now = self.now_ms();
        if let Some(existing) = self.map.get(session_id) {
            existing.last_used.store(now, Ordering::Relaxed);
            return existing.state.clone();
        }
        if self.map.len() >= limits.sessions {
            self.make_room(limits);
        }
        self.map
            .entry(session_id.to_string())
            .or_insert_with(|| Tracked {
                state: Arc::new(Mutex::new(SessionState::new(agent))),
                last_used: AtomicU64::new(now),
            })
            .state
            .clone()
    }

    pub fn get(&self, session_id: &str) -> Option<Arc<Mutex<SessionState>>> {
        self.map.get(session_id).map(|entry| entry.state.clone())
    }

    /// Forgets sessions unused for `limits.session_idle`. Returns how many went.
    pub fn expire_idle(&self, limits: &MemoryLimits) -> usize {
        let idle_ms = limits.session_idle.as_millis() as u64;
        let cutoff = self.now_ms().saturating_sub(idle_ms);
        let before = self.map.len();
        self.map.retain(|_, tracked| {
            tracked.last_used.load(Ordering::Relaxed) > cutoff || in_use(tracked)
        });
        before.saturating_sub(self.map.len())
    }

    /// Under the cap again, with slack: expiring idle sessions first, then the least
    /// recently used sixteenth, so a flood of new sessions pays for a sweep only once
    /// per many insertions.
    fn make_room(&self, limits: &MemoryLimits) {
        self.expire_idle(limits);
        let target = limits.sessions - (limits.sessions / 16).max(1).min(limits.sessions);
        let excess = self.map.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut ages: Vec<u64> = self
            .map
            .iter()
            .filter(|entry| !in_use(entry.value()))
            .map(|entry| entry.last_used.load(Ordering::Relaxed))
            .collect();
        if ages.is_empty() {
            return;
        }
        let index = excess.min(ages.len()) - 1;
        let (_, cutoff, _) = ages.select_nth_unstable(index);
        let cutoff = *cutoff;
        let mut removed = 0;
        self.map.retain(|_, tracked| {
            let evict = removed < excess
                && tracked.last_used.load(Ordering::Relaxed) <= cutoff
                && !in_use(tracked);
            removed += usize::from(evict);
            !evict
        });
        tracing::info!(
            removed,
            cap = limits.sessions,
            "tracked sessions at the cap; forgot the least recently used"
        );
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
}

/// A request (or a hold) holds the state right now.
fn in_use(tracked: &Tracked) -> bool {
    Arc::strong_count(&tracked.state) > 1
}

/// Locks a session. A poisoned lock means a panic mid-update of plain data; the state is
/// still usable, and refusing every later payment of the session would be worse.
pub fn lock(state: &Mutex<SessionState>) -> MutexGuard<'_, SessionState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Parses a phase name from a header or the admin API.
pub fn parse_phase(text: &str) -> Option<Phase> {
    crate::policy::values::parse_phase(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sessions: usize, idle: Duration) -> MemoryLimits {
        MemoryLimits {
            connections_per_agent: 1,
            sessions,
            session_idle: idle,
            leaf_certificates: 1,
        }
    }

    #[test]
    fn tracked_sessions_never_pass_the_cap() {
        let sessions = Sessions::default();
        let cap = limits(100, Duration::from_secs(3600));
        for index in 0..10_000 {
            sessions.get_or_create(&format!("a.s{index}"), "a", &cap);
            assert!(sessions.len() <= 100, "{} after {index}", sessions.len());
        }
        assert!(sessions.get("a.s9999").is_some(), "the newest is kept");
    }

    #[test]
    fn a_session_in_use_is_not_forgotten() {
        let sessions = Sessions::default();
        let cap = limits(4, Duration::ZERO);
        let held = sessions.get_or_create("a.busy", "a", &cap);
        session_lock_phase(&held, Phase::Commit);
        for index in 0..50 {
            sessions.get_or_create(&format!("a.s{index}"), "a", &cap);
        }
        let again = sessions.get("a.busy").expect("still tracked");
        assert_eq!(lock(&again).phase, Phase::Commit);
        drop(held);
        drop(again);
        assert!(sessions.expire_idle(&cap) > 0);
        assert!(
            sessions.get("a.busy").is_none(),
            "forgotten once idle and unused"
        );
    }

    fn session_lock_phase(state: &Mutex<SessionState>, phase: Phase) {
        lock(state).phase = phase;
    }
}
