//! [`Shared`]: the services every flow of the engine uses (the policy, the store, the
//! proof log, metrics, webhook events) and the trace ids it hands out. The flows
//! (`decide`, `hold`, `retry`, `settle`, ...) are functions over it; a forwarded
//! payment's ticket keeps a reference to it so it can settle itself if dropped.

use crate::holds::notify::Notifier;
use crate::policy::PolicyStore;
use crate::store::SharedStore;
use crate::telemetry::metrics::Metrics;
use crate::trace::TraceLog;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the engine's flows share.
pub(super) struct Shared {
    pub policy: Arc<PolicyStore>,
    pub store: SharedStore,
    pub trace: TraceLog,
    pub metrics: Arc<Metrics>,
    /// Webhook events, when the runtime has one.
    pub notifier: Option<Notifier>,
    trace_ids: TraceIds,
}

impl Shared {
    pub(super) fn new(
        policy: Arc<PolicyStore>,
        store: SharedStore,
        trace: TraceLog,
        metrics: Arc<Metrics>,
        notifier: Option<Notifier>,
    ) -> Self {
        Shared {
            policy,
            store,
            trace,
            metrics,
            notifier,
            trace_ids: TraceIds::new(),
        }
    }

    /// A new trace id, unique across restarts.
    pub(super) fn next_trace_id(&self) -> String {
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
