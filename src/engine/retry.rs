//! The agent's retry of a payment whose outcome is unknown (SPEC §1).
//!
//! The retry is the same authorization, so it reserves nothing: its amount is already
//! counted as the original's. It is not a bypass either: it is judged against the policy
//! as it is now (phase, rules, budget as if the original's amount were not spent yet), and
//! its decision line is on disk before it leaves, like any payment's. A retry that would
//! need a human is refused: a hold would have nothing of its own to reserve or release.
//! Which copies count as the retry, and that only one is in flight, is
//! [`super::unknown`]'s business.

use super::evaluate::{phase_name, Verdict};
use super::flow::{
    budget_snapshot, decision_record, refuse, settled_payment, Decided, RequestFacts, Ticket,
};
use super::gate::{Gate, Refusal};
use super::pricing::{PricedPayment, Rejection};
use super::session::SessionState;
use super::unknown::{resource_digest, Claim, RetryClaim, RetryIdentity};
use super::Engine;
use crate::ledger::BudgetView;
use crate::policy::{hex, Policy};
use rust_decimal::Decimal;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A payment found to be the retry of an unknown one, with its claim.
pub(super) struct Retry {
    pub priced: PricedPayment,
    pub replay_keys: Vec<String>,
    pub claim: RetryClaim,
    pub started: Instant,
}

impl Engine {
    /// Checks a payment's keys against the unknown payments.
    pub(super) fn claim_retry(
        &self,
        facts: &RequestFacts,
        priced: &PricedPayment,
        keys: &[String],
    ) -> Claim {
        self.unknowns.claim(keys, || RetryIdentity {
            digest: hex(&priced.payment.digest),
            session: facts.identity.session_id(),
            resource: resource_digest(facts),
        })
    }

    /// Decides a retry, writes its decision line, and forwards it or refuses it. The
    /// claim goes with the ticket, so no other copy goes out until this one is settled.
    pub(super) async fn decide_retry(
        &self,
        facts: &RequestFacts,
        policy: &Arc<Policy>,
        state: &Arc<Mutex<SessionState>>,
        retry: Retry,
    ) -> Decided {
        let Retry {
            priced,
            replay_keys,
            claim,
            started,
        } = retry;
        let original = claim.original().to_string();
        let session_id = facts.identity.session_id();
        let agent = facts.identity.agent.to_string();
        let Some(counted) = self.ledger.unknown_payment(&original).map(|p| p.amount) else {
            // Resolved between the claim and now: it is no longer a retry of anything.
            let rejection = Rejection {
                code: "replayed_payment",
                message: format!("payment {original} was resolved while this copy arrived"),
            };
            return Decided::Done(refuse(
                self.refuse_priced(facts, policy, &priced, rejection).await,
            ));
        };
        let limits = policy.limits_for(&agent);
        let (mut evaluation, _, phase) = self.evaluate_and_reserve(
            facts,
            policy,
            state,
            &priced,
            &session_id,
            &agent,
            Some(counted),
        );
        if evaluation.verdict == Verdict::PendingApproval {
            evaluation.verdict = Verdict::Denied;
            evaluation.reason = format!(
                "{} ({}); a retry of a payment whose outcome is unknown is not held for \
                 approval: an operator can resolve {original} instead",
                evaluation.rule, evaluation.reason
            );
            evaluation.rule = "retry_needs_approval".to_string();
        }
        let trace_id = self.next_trace_id();
        self.notify_decision(facts, &priced, &evaluation, &trace_id);
        let view = self.ledger.view(&session_id, &agent);
        let mut record = decision_record(
            facts,
            policy,
            &priced,
            &evaluation,
            &trace_id,
            phase_name(phase),
        );
        record.replay_keys = replay_keys.clone();
        record.retry_of = Some(original.clone());
        record.budget = Some(budget_snapshot(&evaluation, &limits, &view));
        self.metrics.decision(
            evaluation.verdict.as_str(),
            &evaluation.rule,
            started.elapsed(),
        );
        // A refusal past its agent's rate is summarised, not written: the answer cites
        // the line the writer says it is part of.
        let cited = match self.trace.append_durable(&record).await {
            Ok(cited) => cited,
            Err(error) => {
                tracing::error!(%error, "retry decision could not be made durable; refusing it");
                return Decided::Done(refuse(Refusal::trace_unavailable(
                    &error,
                    &trace_id,
                    &session_id,
                )));
            }
        };
        tracing::info!(session = %session_id, trace = %trace_id, %original, decision = evaluation.verdict.as_str(), rule = %evaluation.rule, "retry of a payment whose outcome is unknown");
        if evaluation.verdict != Verdict::Allowed {
            return Decided::Done(refuse(Refusal::denied(
                "denied",
                &evaluation.rule,
                &evaluation.reason,
                &cited,
                &session_id,
            )));
        }
        Decided::Done(Gate::Forward(Some(Box::new(Ticket {
            settled: Some(settled_payment(facts, &priced, &original)),
            trace_id,
            reservation: 0,
            amount_usd: priced.price.usd,
            gate: evaluation.gate.map(|g| g.as_str()),
            version: priced.payment.version,
            replay_keys,
            payment_digest: priced.payment.digest,
            retry: Some(claim),
            // A retry reserves nothing; dropping it drops its claim, and that is all.
            guard: None,
        }))))
    }
}

/// The budget as a retry is judged against: its original's amount, counted as unknown,
/// taken out again, so the retry is not counted twice.
pub(super) fn without_unknown(mut view: BudgetView, amount: Decimal) -> BudgetView {
    for account in [&mut view.session, &mut view.agent, &mut view.fleet] {
        account.unknown = (account.unknown - amount).max(Decimal::ZERO);
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Account;

    #[test]
    fn a_retry_is_judged_without_its_own_amount() {
        let account = |unknown| Account {
            committed: Decimal::ONE,
            unknown,
            reserved: Decimal::ZERO,
        };
        let view = BudgetView {
            session: account(Decimal::new(25, 2)),
            agent: account(Decimal::new(50, 2)),
            fleet: account(Decimal::new(10, 2)),
        };
        let judged = without_unknown(view, Decimal::new(25, 2));
        assert_eq!(judged.session.unknown, Decimal::ZERO);
        assert_eq!(judged.agent.unknown, Decimal::new(25, 2));
        assert_eq!(judged.fleet.unknown, Decimal::ZERO, "never below zero");
        assert_eq!(judged.session.committed, Decimal::ONE);
    }
}
