//! Judging a priced payment: the policy's [`evaluate`] run inside the store's critical
//! section for the session (phase and frequency windows held still, the reservation
//! booked atomically with the decision), and the one function that writes a decided
//! payment's `decision` line, for new payments and retries alike.

use super::context::Shared;
use super::evaluate::{evaluate, Decider, Evaluation, PaymentFacts, RecentPayment, Verdict};
use super::events::decision_events;
use super::facts::RequestFacts;
use super::pricing::PricedPayment;
use super::records::{budget_snapshot, decision_record};
use crate::ledger::{BudgetView, OverBudget, ReservationId, ReserveRequest};
use crate::policy::rules::{Phase, Trust};
use crate::policy::{Limits, Policy, Tool};
use crate::store::{Booking, Judge, KeyScreen, Screened, Session, SessionState};
use crate::trace::TraceError;
use crate::x402::normalize_address;
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Instant;

/// A payment judged: the evaluation, the booking when it reserved, the session's phase
/// it was judged in, the recipient's trust it was judged with, and what the store's
/// screen of its keys found (a store that screens them: [`crate::store::Store::screens_keys`]).
pub(super) struct Judged {
    pub evaluation: Evaluation,
    pub booking: Option<Booking>,
    pub phase: Phase,
    pub trust: Trust,
    pub screened: Screened,
    /// The accounts as the judge saw them, with this payment's reservation (the decision
    /// line's budget snapshot: no second look at the store). `None` when it never ran.
    pub budget: Option<BudgetView>,
}

/// Judges `priced` for `session` and reserves its amount if it is allowed or held (a
/// held payment keeps its amount reserved while it waits). A retry (`already_counted`:
/// the amount its unknown original holds) is judged as if that amount were not spent
/// yet, and reserves nothing.
#[allow(clippy::too_many_arguments)]
pub(super) async fn judge(
    shared: &Arc<Shared>,
    facts: &RequestFacts,
    policy: &Policy,
    session: &Session,
    priced: &PricedPayment,
    session_id: &str,
    agent: &str,
    already_counted: Option<Decimal>,
    screen: Option<KeyScreen<'_>>,
) -> Judged {
    let limits = policy.limits_for(agent);
    let pay_to = normalize_address(&priced.pay_to);
    let tool = facts.tool(policy);
    let category = facts.category(policy, tool);
    let trust = if policy.verified_recipients.contains(&pay_to) {
        Trust::Verified
    } else if shared.store.has_paid(agent, &pay_to).await {
        Trust::Known
    } else {
        Trust::Unknown
    };
    let request = ReserveRequest {
        session: session_id,
        agent,
        pay_to: &pay_to,
        amount: priced.price.usd,
        limits,
        halt_ratio: policy.budget.gates.halt,
    };
    let mut judge = PaymentJudge {
        policy,
        facts,
        priced,
        tool,
        category,
        trust,
        limits,
        already_counted,
        judged: None,
    };
    let screened = shared
        .store
        .decide_in(session, request, screen, &mut judge)
        .await;
    let Some((evaluation, reservation, phase, budget)) = judge.judged else {
        // The store never ran the decision: nothing was reserved, and nothing leaves.
        return Judged {
            evaluation: unjudged(shared.store.unavailable()),
            booking: None,
            phase: Phase::Explore,
            trust,
            screened,
            budget: None,
        };
    };
    Judged {
        evaluation,
        booking: reservation.map(|id| Booking::new(&shared.store, id)),
        phase,
        trust,
        screened,
        budget: Some(budget),
    }
}

/// The decision inside the store's critical section.
struct PaymentJudge<'a> {
    policy: &'a Policy,
    facts: &'a RequestFacts,
    priced: &'a PricedPayment,
    tool: Option<&'a Tool>,
    category: Option<&'a str>,
    trust: Trust,
    limits: Limits,
    already_counted: Option<Decimal>,
    judged: Option<(Evaluation, Option<ReservationId>, Phase, BudgetView)>,
}

impl Judge for PaymentJudge<'_> {
    fn judge(
        &mut self,
        session: &mut SessionState,
        budget: BudgetView,
        book: &mut dyn FnMut() -> Result<ReservationId, OverBudget>,
    ) {
        let now = Instant::now();
        let facts = PaymentFacts {
            phase: session.phase,
            cost_usd: self.priced.price.usd,
            tool: self.tool.map(|t| t.name.as_str()),
            category: self.category,
            host: &self.facts.host,
            port: self.facts.port,
            trust: self.trust,
            budget: match self.already_counted {
                Some(amount) => without_unknown(budget, amount),
                None => budget,
            },
            limits: self.limits,
            minute_of_day: minute_of_day(self.policy),
            now,
            recent: &session.recent,
        };
        let mut evaluation = evaluate(self.policy, &facts);
        let mut reservation = None;
        if self.already_counted.is_none()
            && matches!(
                evaluation.verdict,
                Verdict::Allowed | Verdict::PendingApproval
            )
        {
            match book() {
                Ok(id) => reservation = Some(id),
                Err(over) => {
                    // Another payment took the room between the look and the booking.
                    evaluation.verdict = Verdict::Denied;
                    evaluation.rule = Decider::BudgetLimit;
                    evaluation.reason = over.to_string();
                }
            }
        }
        match evaluation.verdict {
            // A retry is not a new payment for frequency windows: its original counted.
            Verdict::Allowed if self.already_counted.is_some() => session.counts.allowed += 1,
            Verdict::Allowed => {
                session.counts.allowed += 1;
                session.record_payment(RecentPayment {
                    at: now,
                    tier: evaluation.tier.clone(),
                    tool: self.tool.map(|t| t.name.clone()),
                    category: self.category.map(str::to_string),
                    host: self.facts.host.clone(),
                    port: self.facts.port,
                });
            }
            Verdict::Denied => session.counts.denied += 1,
            Verdict::PendingApproval => session.counts.pending_approval += 1,
        }
        let seen = match reservation {
            Some(_) => with_reserved(budget, self.priced.price.usd),
            None => budget,
        };
        self.judged = Some((evaluation, reservation, session.phase, seen));
    }
}

/// A refusal for a decision the store never ran (`ledger_unavailable`: a shared store
/// that did not answer, `why`).
fn unjudged(why: Option<String>) -> Evaluation {
    let why = why.unwrap_or_else(|| "the store did not run the decision".to_string());
    Evaluation {
        verdict: Verdict::Denied,
        rule: Decider::refusal("ledger_unavailable"),
        reason: format!("{why}; the payment does not leave (fail closed), send it again later"),
        checks: Vec::new(),
        tier: None,
        gate: None,
        ratio: None,
        veto_window: None,
        hold_timeout: None,
        flagged: false,
    }
}

/// A judged payment's decision, as its line records it.
pub(super) struct Decision<'a> {
    pub judged: &'a Judged,
    pub session_id: &'a str,
    pub trace_id: &'a str,
    pub replay_keys: &'a [String],
    /// The unknown payment a retry retries.
    pub retry_of: Option<&'a str>,
    /// When the decision started, for its latency.
    pub started: Instant,
}

/// Writes a decided payment's `decision` line and waits until it is on disk: raises its
/// webhook events, counts it, and returns the trace id the answer cites (a refusal past
/// the agent's rate cites the line that summarises it).
pub(super) async fn write_decision(
    shared: &Shared,
    facts: &RequestFacts,
    policy: &Policy,
    priced: &PricedPayment,
    decision: Decision<'_>,
) -> Result<String, TraceError> {
    let Decision {
        judged,
        session_id,
        trace_id,
        replay_keys,
        retry_of,
        started,
    } = decision;
    let evaluation = &judged.evaluation;
    decision_events(shared, facts, priced, evaluation, trace_id);
    let agent = &facts.identity.agent;
    let view = match judged.budget {
        Some(view) => view,
        None => shared.store.budget(session_id, agent).await,
    };
    let limits = policy.limits_for(agent);
    let mut record = decision_record(facts, policy, priced, evaluation, trace_id, judged.phase);
    record.replay_keys = replay_keys.to_vec();
    record.retry_of = retry_of.map(str::to_string);
    record.budget = Some(budget_snapshot(evaluation, &limits, &view));
    shared.metrics.decision(
        evaluation.verdict.as_str(),
        &evaluation.rule.name(),
        started.elapsed(),
    );
    shared.trace.append_durable(&record).await
}

/// The accounts once `amount` is reserved at every level.
fn with_reserved(mut view: BudgetView, amount: Decimal) -> BudgetView {
    for account in [&mut view.session, &mut view.agent, &mut view.fleet] {
        account.reserved += amount;
    }
    view
}

/// The budget as a retry is judged against: its original's amount, counted as unknown,
/// taken out again, so the retry is not counted twice.
pub(super) fn without_unknown(mut view: BudgetView, amount: Decimal) -> BudgetView {
    for account in [&mut view.session, &mut view.agent, &mut view.fleet] {
        account.unknown = (account.unknown - amount).max(Decimal::ZERO);
    }
    view
}

fn minute_of_day(policy: &Policy) -> u16 {
    let now = jiff::Timestamp::now().to_zoned(policy.timezone.clone());
    (now.hour() as u16) * 60 + now.minute() as u16
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
