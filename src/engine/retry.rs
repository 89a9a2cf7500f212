//! The agent's retry of a payment whose outcome is unknown (SPEC §1).
//!
//! The retry is the same authorization, so it reserves nothing: its amount is already
//! counted as the original's. It is not a bypass either: it is judged against the policy
//! as it is now (phase, rules, budget as if the original's amount were not spent yet), and
//! its decision line is on disk before it leaves, like any payment's. A retry that would
//! need a human is refused: a hold would have nothing of its own to reserve or release.
//! Which copies count as the retry, and that only one is in flight, is the store's
//! business (`store::unknown`).

use super::context::Shared;
use super::evaluate::{Decider, Verdict};
use super::facts::RequestFacts;
use super::gate::{Gate, Refusal};
use super::judge::{judge, write_decision, Decision};
use super::pricing::{PricedPayment, Rejection};
use super::refuse::refuse;
use super::ticket::{Leaving, Ticket};
use crate::policy::Policy;
use crate::store::{RetryClaim, Session};
use std::sync::Arc;
use std::time::Instant;

/// A payment found to be the retry of an unknown one, with its claim.
pub(super) struct Retry {
    pub priced: PricedPayment,
    pub replay_keys: Vec<String>,
    pub claim: RetryClaim,
    pub started: Instant,
}

/// Decides a retry, writes its decision line, and forwards it or refuses it. The claim
/// goes with the ticket, so no other copy goes out until this one is settled.
pub(super) async fn decide_retry(
    shared: &Arc<Shared>,
    facts: &RequestFacts,
    policy: &Policy,
    session: &Session,
    retry: Retry,
) -> Gate {
    let Retry {
        priced,
        replay_keys,
        claim,
        started,
    } = retry;
    let original = claim.original().to_string();
    let session_id = facts.identity.session_id();
    let agent: &str = &facts.identity.agent;
    let Some(counted) = shared
        .store
        .unknown_payment(&original)
        .await
        .map(|p| p.amount)
    else {
        // Resolved between the claim and now: it is no longer a retry of anything.
        let rejection = Rejection {
            code: "replayed_payment",
            message: format!("payment {original} was resolved while this copy arrived"),
        };
        let refusal = refuse(shared, facts, policy, Some(&priced), rejection).await;
        return Gate::Refuse(Box::new(refusal));
    };
    let mut judged = judge(
        shared,
        facts,
        policy,
        session,
        &priced,
        &session_id,
        agent,
        Some(counted),
        None,
    )
    .await;
    let evaluation = &mut judged.evaluation;
    if evaluation.verdict == Verdict::PendingApproval {
        evaluation.verdict = Verdict::Denied;
        evaluation.reason = format!(
            "{} ({}); a retry of a payment whose outcome is unknown is not held for \
             approval: an operator can resolve {original} instead",
            evaluation.rule, evaluation.reason
        );
        evaluation.rule = Decider::refusal("retry_needs_approval");
    }
    let trace_id = shared.next_trace_id();
    let decision = Decision {
        judged: &judged,
        session_id: &session_id,
        trace_id: &trace_id,
        replay_keys: &replay_keys,
        retry_of: Some(&original),
        started,
    };
    let written = write_decision(shared, facts, policy, &priced, decision).await;
    // A refusal past its agent's rate is summarised, not written: the answer cites the
    // line the writer says it is part of.
    let cited = match written {
        Ok(cited) => cited,
        Err(error) => {
            tracing::error!(%error, "retry decision could not be made durable; refusing it");
            let refusal = Refusal::trace_unavailable(&error, &trace_id, &session_id);
            return Gate::Refuse(Box::new(refusal));
        }
    };
    let evaluation = &judged.evaluation;
    tracing::info!(session = %session_id, trace = %trace_id, %original, decision = evaluation.verdict.as_str(), rule = %evaluation.rule, "retry of a payment whose outcome is unknown");
    if evaluation.verdict != Verdict::Allowed {
        let refusal = Refusal::denied(
            "denied",
            &evaluation.rule.name(),
            &evaluation.reason,
            &cited,
            &session_id,
        );
        return Gate::Refuse(Box::new(refusal));
    }
    let gate = evaluation.gate.map(|g| g.as_str());
    let leaving = Leaving::new(facts, &priced, trace_id, gate);
    Gate::Forward(Some(Box::new(Ticket::retry(leaving, replay_keys, claim))))
}
