//! Payments refused before any rule runs: one that cannot be parsed, priced, keyed for
//! replay checks, or decided at all (a protocol Purser does not govern yet, two payments
//! in one request, a JSON body it cannot read), and replays. Each gets a durable
//! `decision` line (`DENIED`, the code as its rule) and a `403` naming the code.

use super::context::Shared;
use super::facts::RequestFacts;
use super::gate::Refusal;
use super::pricing::{PricedPayment, Rejection};
use super::records::rejection_record;
use crate::detect::Undecidable;
use crate::policy::Policy;
use crate::trace::TraceRecord;

/// Refuses a payment the detector found but Purser cannot decide.
pub(super) async fn refuse_undecidable(
    shared: &Shared,
    facts: &RequestFacts,
    undecidable: Undecidable,
) -> Refusal {
    let policy = shared.policy.current();
    let rejection = Rejection {
        code: undecidable.code,
        message: undecidable.message,
    };
    refuse(shared, facts, &policy, None, rejection).await
}

/// Refuses a payment before any rule ran; `priced` when it got that far.
pub(super) async fn refuse(
    shared: &Shared,
    facts: &RequestFacts,
    policy: &Policy,
    priced: Option<&PricedPayment>,
    rejection: Rejection,
) -> Refusal {
    let trace_id = shared.next_trace_id();
    let record = rejection_record(
        facts,
        policy,
        priced,
        &trace_id,
        rejection.code,
        &rejection.message,
    );
    finish(shared, facts, record, rejection).await
}

async fn finish(
    shared: &Shared,
    facts: &RequestFacts,
    record: TraceRecord,
    rejection: Rejection,
) -> Refusal {
    let session_id = facts.identity.session_id();
    if let Some(session) = shared.store.find_session(&session_id).await {
        session.lock().counts.denied += 1;
    }
    shared
        .metrics
        .decision("DENIED", rejection.code, std::time::Duration::ZERO);
    // A refusal past the agent's rate cites the line that summarises it.
    let cited = match shared.trace.append_durable(&record).await {
        Ok(cited) => cited,
        Err(error) => {
            tracing::error!(%error, "refusal could not be traced");
            record.trace_id.clone()
        }
    };
    if cited == record.trace_id {
        tracing::info!(session = %session_id, trace = %cited, code = rejection.code, reason = %rejection.message, "payment refused");
    } else {
        tracing::debug!(session = %session_id, trace = %cited, code = rejection.code, "payment refused; counted in a summary");
    }
    Refusal::rejected(rejection.code, &rejection.message, &cited, &session_id)
}
