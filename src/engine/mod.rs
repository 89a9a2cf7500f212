//! The governance engine: what happens to a request that carries a payment, and to the
//! answer that comes back.
//!
//! * [`pricing`]: parse the payment, match it to its challenge, price it.
//! * [`evaluate`]: the decision, a pure function of the payment's facts and the policy.
//! * [`session`]: phases, remembered challenges and recent payments per session.
//! * [`gate`]: what the proxy is told to do: forward, or a typed [`Refusal`] it renders.
//! * [`settle`]: what an answer says about a payment; reconciling unknown outcomes.
//! * [`unknown`] and `retry`: payments whose outcome is unknown, and their one retry.
//!
//! Reads (no payment header) always pass. A payment is forwarded only after the decision
//! to forward it is on disk and its amount is reserved in the [`crate::ledger`].

pub mod cases;
pub mod challenges;
pub mod compensation;
pub mod evaluate;
mod flow;
pub mod gate;
mod hold;
pub mod pricing;
pub mod recovery;
pub mod replay;
mod retry;
pub mod session;
mod session_table;
pub mod settle;
pub mod unknown;
mod unsupported;

pub use flow::{RequestFacts, Ticket, TRANSACTION_HEADER};
pub use gate::{Gate, Refusal, RefusalHeader, RefusalStatus};

use crate::approvals::notify::Notifier;
use crate::approvals::Holds;
use crate::ledger::Ledger;
use crate::policy::PolicyStore;
use crate::telemetry::metrics::Metrics;
use crate::trace::TraceLog;
use session::Sessions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Everything the decision path shares.
pub struct Engine {
    pub policy: Arc<PolicyStore>,
    pub sessions: Sessions,
    /// Remembered 402 challenges, bounded in bytes per agent and overall.
    pub challenges: challenges::ChallengeStore,
    pub ledger: Arc<Ledger>,
    pub trace: TraceLog,
    pub metrics: Arc<Metrics>,
    /// Payments waiting for a human.
    pub holds: Holds,
    /// Webhook events, when the runtime has one.
    pub notifier: Option<Notifier>,
    /// Transactions and refunds, when the runtime has them.
    pub compensator: Option<compensation::Compensator>,
    /// Replay keys of payments forwarded, while they could still settle.
    seen_payments: replay::ReplaySet,
    /// Payments whose outcome is unknown: their keys, details and the one retry of each
    /// that may be in flight.
    unknowns: Arc<unknown::UnknownSet>,
    /// What a ticket dropped unsettled needs to settle itself.
    settler: Arc<settle::Settler>,
    trace_ids: Arc<TraceIds>,
}

impl Engine {
    pub fn new(
        policy: Arc<PolicyStore>,
        trace: TraceLog,
        metrics: Arc<Metrics>,
        notifier: Option<Notifier>,
    ) -> Self {
        let ledger = Arc::new(Ledger::new());
        let books = ledger.clone();
        let unknowns = Arc::<unknown::UnknownSet>::default();
        let trace_ids = Arc::new(TraceIds::new());
        let settler = Arc::new(settle::Settler {
            ledger: ledger.clone(),
            unknowns: unknowns.clone(),
            trace: trace.clone(),
            policy: policy.clone(),
            metrics: metrics.clone(),
            trace_ids: trace_ids.clone(),
        });
        Engine {
            policy,
            // A session with money reserved or unknown is never forgotten for room.
            sessions: Sessions::with_stakes(Box::new(move |session, agent| {
                let account = books.view(session, agent).session;
                !account.reserved.is_zero() || !account.unknown.is_zero()
            })),
            challenges: challenges::ChallengeStore::default(),
            ledger,
            trace,
            metrics,
            holds: Holds::default(),
            notifier,
            compensator: None,
            seen_payments: replay::ReplaySet::default(),
            unknowns,
            settler,
            trace_ids,
        }
    }

    /// Forgets replay keys of payments that can no longer settle. Returns how many.
    pub fn forget_expired_replay_keys(&self) -> usize {
        self.seen_payments.forget_expired(replay::unix_now())
    }

    /// Adds the refund task (needs a runtime and an HTTP client).
    pub fn with_compensator(mut self, client: crate::outbound::SharedOutbound) -> Self {
        self.compensator = Some(compensation::Compensator::start(
            compensation::RefundContext {
                policy: self.policy.clone(),
                client,
                trace: self.trace.clone(),
                ledger: self.ledger.clone(),
            },
        ));
        self
    }

    /// A new trace id, unique across restarts.
    pub fn next_trace_id(&self) -> String {
        self.trace_ids.next()
    }
}

/// Trace ids: a random per-process prefix and a counter.
pub(crate) struct TraceIds {
    prefix: u32,
    counter: AtomicU64,
}

impl TraceIds {
    fn new() -> Self {
        let mut bytes = [0u8; 4];
        // Without the OS RNG the clock still makes the prefix differ between runs.
        if getrandom::fill(&mut bytes).is_err() {
            bytes = (jiff::Timestamp::now().as_nanosecond() as u32).to_le_bytes();
        }
        TraceIds {
            prefix: u32::from_le_bytes(bytes),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("tr_{:08x}{n:08x}", self.prefix)
    }
}
