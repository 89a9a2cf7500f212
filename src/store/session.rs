//! One session's state: phase, recent payments for frequency windows, and decision
//! counts, behind a [`Session`] handle. Budgets live in the ledger, not here, so a
//! session forgotten for idleness never forgets spend; remembered 402 challenges live in
//! the engine (`engine::challenges`), and the table of all sessions in
//! [`super::session_table`].

use crate::policy::rules::{phase_name, Phase};
use crate::policy::PhasePolicy;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// Recent payments kept per session for frequency windows (a window longer than what
/// this many payments span counts only these).
const RECENT_PAYMENTS_KEPT: usize = 1024;

/// A payment this session made earlier (for frequency windows).
#[derive(Clone, Debug)]
pub struct RecentPayment {
    pub at: Instant,
    pub tier: Option<String>,
    pub tool: Option<String>,
    pub category: Option<String>,
    pub host: String,
    pub port: u16,
}

/// A session as this process holds it. Holding a handle (a request being decided, a
/// hold waiting) keeps the session in use: it is never forgotten to make room.
#[derive(Clone, Debug)]
pub struct Session {
    state: Arc<Mutex<SessionState>>,
    /// `AGENT.SESSION`: a shared store keeps the session's phase under it.
    id: Arc<str>,
}

impl Session {
    pub(super) fn new(id: &str, agent: &str) -> Self {
        Session {
            state: Arc::new(Mutex::new(SessionState::new(agent))),
            id: Arc::from(id),
        }
    }

    /// The session's id, `AGENT.SESSION`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Locks the state. A poisoned lock means a panic mid-update of plain data; the state
    /// is still usable, and refusing every later payment of the session would be worse.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state, if nobody holds its lock right now.
    pub(super) fn try_lock(&self) -> Option<MutexGuard<'_, SessionState>> {
        self.state.try_lock().ok()
    }

    /// Whether anyone besides the table holds this session.
    pub(super) fn in_use(&self) -> bool {
        Arc::strong_count(&self.state) > 1
    }
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
            recent: VecDeque::new(),
            counts: DecisionCounts::default(),
        }
    }

    /// Notes a forwarded payment for frequency windows.
    pub fn record_payment(&mut self, payment: RecentPayment) {
        if self.recent.len() >= RECENT_PAYMENTS_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(payment);
    }

    /// Starts the session over in EXPLORE (its remembered challenges are forgotten by
    /// the caller, in [`super::challenges`]). Spend stays in the ledger; a reset never
    /// gives budget back.
    pub fn reset(&mut self) {
        self.phase = Phase::Explore;
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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("phases only move forward: {} → {} is not allowed (reset the session to start over)", phase_name(*.from), phase_name(*.to))]
    Backwards { from: Phase, to: Phase },
    #[error("the policy's transition_rules do not allow {} → {}", phase_name(*.from), phase_name(*.to))]
    NotAllowed { from: Phase, to: Phase },
    /// The fleet store, which keeps phases, did not answer: nothing changed.
    #[error("the fleet store did not answer ({reason}); the phase was not changed, try again")]
    Unavailable { from: Phase, reason: String },
}
