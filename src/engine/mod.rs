//! The governance engine: what happens to a request that carries a payment, and to the
//! answer that comes back.
//!
//! * [`pricing`]: parse the payment, match it to its challenge, price it.
//! * [`evaluate`]: the decision, a pure function of the payment's facts and the policy.
//! * [`session`]: phases, remembered challenges and recent payments per session.
//! * [`answer`]: the `403` the agent gets when a payment does not go out.
//!
//! Reads (no payment header) always pass. A payment is forwarded only after the decision
//! to forward it is on disk and its amount is reserved in the [`crate::ledger`].

pub mod answer;
pub mod cases;
pub mod compensation;
pub mod evaluate;
mod flow;
mod hold;
pub mod pricing;
pub mod recovery;
pub mod replay;
pub mod session;
mod unsupported;

pub use flow::{Gate, RequestFacts, Ticket, TRANSACTION_HEADER};

use crate::admin::metrics::Metrics;
use crate::approvals::notify::Notifier;
use crate::approvals::Holds;
use crate::ledger::Ledger;
use crate::policy::PolicyStore;
use crate::trace::TraceLog;
use session::Sessions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Everything the decision path shares.
pub struct Engine {
    pub policy: Arc<PolicyStore>,
    pub sessions: Sessions,
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
    /// Replay keys of payments whose outcome is unknown, to their decision's trace id:
    /// the agent's retry of such a payment settles it rather than paying twice.
    unknown_by_key: dashmap::DashMap<String, String>,
    trace_ids: TraceIds,
}

impl Engine {
    pub fn new(
        policy: Arc<PolicyStore>,
        trace: TraceLog,
        metrics: Arc<Metrics>,
        notifier: Option<Notifier>,
    ) -> Self {
        Engine {
            policy,
            sessions: Sessions::default(),
            ledger: Arc::new(Ledger::new()),
            trace,
            metrics,
            holds: Holds::default(),
            notifier,
            compensator: None,
            seen_payments: replay::ReplaySet::default(),
            unknown_by_key: dashmap::DashMap::new(),
            trace_ids: TraceIds::new(),
        }
    }

    /// Forgets replay keys of payments that can no longer settle. Returns how many.
    pub fn forget_expired_replay_keys(&self) -> usize {
        self.seen_payments.forget_expired(replay::unix_now())
    }

    /// Adds the refund task (needs a runtime and an HTTP client).
    pub fn with_compensator(mut self, client: crate::proxy::upstream::UpstreamClient) -> Self {
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
struct TraceIds {
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

    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("tr_{:08x}{n:08x}", self.prefix)
    }
}
