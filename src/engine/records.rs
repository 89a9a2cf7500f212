//! The proof-log lines the engine writes, built in one place: `decision`, `settlement`,
//! `resolution`, `hold` and `phase` lines (the `compensation` lines are the refund
//! task's, in `compensation`).

use super::evaluate::Evaluation;
use super::facts::RequestFacts;
use super::pricing::PricedPayment;
use crate::detect::Protocol;
use crate::ledger::{BudgetView, Level, Outcome, UnknownPayment};
use crate::policy::rules::Phase;
use crate::policy::{Limits, Policy, SessionId};
use crate::trace::{self, BudgetSnapshot, Decider, Kind, RuleOutcome, TraceRecord, Verdict};
use crate::x402::{hex, ChainAuthorization};

/// The fields every line about a request carries.
pub(super) fn base_record(
    facts: &RequestFacts,
    policy: &Policy,
    trace_id: &str,
    kind: Kind,
) -> TraceRecord {
    TraceRecord {
        trace_id: trace_id.to_string(),
        kind,
        time: jiff::Timestamp::now().to_string(),
        session: facts.identity.session_id(),
        agent: facts.identity.agent.to_string(),
        method: Some(facts.method.clone()),
        host: Some(facts.host.clone()),
        path: Some(facts.path.clone()),
        mcp_tool: facts.mcp_tool.clone(),
        policy_digest: Some(policy.digest.clone()),
        purser_version: Some(crate::VERSION.into()),
        ..TraceRecord::default()
    }
}

/// The payment's terms, as priced.
pub(super) fn fill_payment(record: &mut TraceRecord, priced: &PricedPayment) {
    record.protocol = (priced.payment.protocol() == Protocol::Mpp).then(|| "mpp".to_string());
    record.x402_version = priced.payment.x402_version();
    record.scheme = Some(priced.scheme.clone());
    record.network = Some(priced.network.clone());
    record.asset = Some(priced.asset.clone());
    record.asset_symbol = Some(priced.price.symbol.clone());
    record.amount_atomic = Some(priced.price.atomic.to_string());
    record.amount = Some(priced.price.amount);
    record.amount_usd = Some(priced.price.usd);
    record.pay_to = Some(priced.pay_to.clone());
    record.payer = priced.payment.payer();
    record.payment_digest = Some(hex(&priced.payment.digest()));
}

/// A `decision` line refusing a payment before any rule ran (`priced` when it was).
pub(super) fn rejection_record(
    facts: &RequestFacts,
    policy: &Policy,
    priced: Option<&PricedPayment>,
    trace_id: &str,
    code: &'static str,
    message: &str,
) -> TraceRecord {
    let mut record = base_record(facts, policy, trace_id, Kind::Decision);
    if let Some(priced) = priced {
        fill_payment(&mut record, priced);
    }
    record.decision = Some(Verdict::Denied);
    record.rule = Some(Decider::refusal(code));
    record.reason = Some(message.to_string());
    record
}

/// The `decision` line of a payment the rules decided.
pub(super) fn decision_record(
    facts: &RequestFacts,
    policy: &Policy,
    priced: &PricedPayment,
    evaluation: &Evaluation,
    trace_id: &str,
    phase: Phase,
) -> TraceRecord {
    let mut record = base_record(facts, policy, trace_id, Kind::Decision);
    fill_payment(&mut record, priced);
    record.resource_digest = Some(facts.resource_digest());
    record.phase = Some(phase);
    record.tier = evaluation.tier.clone();
    let tool = facts.tool(policy);
    record.tool = tool.map(|t| t.name.clone());
    record.category = facts.category(policy, tool).map(str::to_string);
    record.rules = evaluation
        .checks
        .iter()
        .map(|check| RuleOutcome {
            id: check.id.clone(),
            action: check.action,
            matched: check.matched,
            shadow: check.shadow,
            detail: None,
        })
        .collect();
    if evaluation.verdict != Verdict::Denied {
        record.onchain = priced.payment.x402().and_then(ChainAuthorization::of);
    }
    record.decision = Some(evaluation.verdict);
    record.rule = Some(evaluation.rule.clone());
    record.reason = Some(evaluation.reason.clone());
    record.gate = evaluation.gate;
    record
}

/// The budget level the decision measured, as the decision line shows it.
pub(super) fn budget_snapshot(
    evaluation: &Evaluation,
    limits: &Limits,
    view: &BudgetView,
) -> BudgetSnapshot {
    let level = evaluation.ratio.map(|r| r.0).unwrap_or(Level::Session);
    let (account, limit) = match level {
        Level::Session => (view.session, limits.session),
        Level::Agent => (view.agent, limits.agent),
        Level::Fleet => (view.fleet, limits.fleet),
    };
    BudgetSnapshot {
        level: level.as_str().into(),
        limit,
        spent: account.spent(),
        reserved: account.reserved,
        ratio: evaluation.ratio.map(|r| r.1.round_dp(6)),
    }
}

/// What a settlement says about a payment.
pub(super) struct Settlement {
    pub outcome: Outcome,
    /// What the settlement counts: the reservation, or what an `upto` receipt charged.
    pub amount_usd: rust_decimal::Decimal,
    /// Set only when it differs from the decision's (an `upto` charge).
    pub amount_atomic: Option<u128>,
    pub transaction: Option<String>,
    pub note: Option<String>,
    pub upstream_status: Option<u16>,
    pub retry_of: Option<String>,
}

/// A `settlement` line.
pub(super) fn settlement_record(
    facts: &RequestFacts,
    policy: &Policy,
    trace_id: &str,
    decision_trace: &str,
    settlement: Settlement,
) -> TraceRecord {
    let mut record = base_record(facts, policy, trace_id, Kind::Settlement);
    record.decision_trace_id = Some(decision_trace.to_string());
    record.outcome = Some(traced(settlement.outcome));
    record.amount_usd = Some(settlement.amount_usd);
    record.amount_atomic = settlement.amount_atomic.map(|atomic| atomic.to_string());
    record.transaction = settlement.transaction;
    record.reason = settlement.note;
    record.upstream_status = settlement.upstream_status;
    record.retry_of = settlement.retry_of;
    record
}

/// A `resolution` line: an unknown payment reconciled.
pub(super) fn resolution_record(
    policy: &Policy,
    trace_id: String,
    decision_trace: &str,
    payment: &UnknownPayment,
    committed: bool,
    reason: &str,
) -> TraceRecord {
    TraceRecord {
        trace_id,
        kind: Kind::Resolution,
        time: jiff::Timestamp::now().to_string(),
        // The ledger keeps session ids as text; each came from a `SessionId`.
        session: SessionId::parse(&payment.session).unwrap_or_default(),
        agent: payment.agent.clone(),
        decision_trace_id: Some(decision_trace.to_string()),
        outcome: Some(if committed {
            trace::Outcome::Committed
        } else {
            trace::Outcome::Released
        }),
        amount_usd: Some(payment.amount),
        pay_to: Some(payment.pay_to.clone()),
        reason: Some(reason.to_string()),
        policy_digest: Some(policy.digest.clone()),
        purser_version: Some(crate::VERSION.into()),
        ..TraceRecord::default()
    }
}

/// A `phase` line: who moved a session, from where to where.
pub(super) fn phase_record(
    policy: &Policy,
    trace_id: String,
    session_id: &SessionId,
    from: Phase,
    to: Phase,
    by: &str,
) -> TraceRecord {
    TraceRecord {
        trace_id,
        kind: Kind::Phase,
        time: jiff::Timestamp::now().to_string(),
        session: session_id.clone(),
        agent: session_id.agent().to_string(),
        phase: Some(to),
        reason: Some(format!("{from} → {to} by {by}")),
        policy_digest: Some(policy.digest.clone()),
        purser_version: Some(crate::VERSION.into()),
        ..TraceRecord::default()
    }
}

/// A settled reservation's outcome as the proof log (and the metrics) name it.
pub(super) fn traced(outcome: Outcome) -> trace::Outcome {
    match outcome {
        Outcome::Committed => trace::Outcome::Committed,
        Outcome::Released => trace::Outcome::Released,
        Outcome::Unknown => trace::Outcome::Unknown,
    }
}
