//! Per-session state in memory: phase, remembered 402 challenges, recent payments for
//! frequency windows, and decision counts. Budgets live in the ledger, not here, so a
//! session forgotten for idleness never forgets spend.

use super::evaluate::{phase_name, RecentPayment};
use crate::policy::rules::Phase;
use crate::policy::PhasePolicy;
use crate::x402::Challenge;
use dashmap::DashMap;
use std::collections::{HashMap, VecDeque};
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
        if !rules.allow_skip && (to as u8) - (from as u8) > 1 {
            return Err(TransitionError::Skip { from, to });
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
    #[error("the policy does not allow skipping a phase: {} → {}", phase_name(*.from), phase_name(*.to))]
    Skip { from: Phase, to: Phase },
}

/// All sessions, by `AGENT.SESSION`.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<String, Arc<Mutex<SessionState>>>,
}

impl Sessions {
    /// The session's state, created in EXPLORE on first sight.
    pub fn get_or_create(&self, session_id: &str, agent: &str) -> Arc<Mutex<SessionState>> {
        if let Some(existing) = self.map.get(session_id) {
            return existing.clone();
        }
        self.map
            .entry(session_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(SessionState::new(agent))))
            .clone()
    }

    pub fn get(&self, session_id: &str) -> Option<Arc<Mutex<SessionState>>> {
        self.map.get(session_id).map(|entry| entry.clone())
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
