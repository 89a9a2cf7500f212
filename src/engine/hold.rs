//! Holding a payment for a human: the request stays open while its hold waits in the
//! store; its booking (reservation and replay keys) stays held; the outcome forwards
//! exactly the held payment or answers `403`.

use super::context::Shared;
use super::evaluate::{Evaluation, RecentPayment};
use super::events::{hold_created, wants_hold_events};
use super::facts::RequestFacts;
use super::gate::{Gate, Refusal};
use super::pricing::PricedPayment;
use super::records::base_record;
use super::ticket::{Leaving, Ticket};
use crate::holds::{
    networks, HoldKind, HoldLimits, HoldOutcome, HoldRefused, HoldView, RuleMessage,
};
use crate::policy::rules::{RuleAction, Trust};
use crate::policy::Policy;
use crate::store::{Booking, Session};
use crate::trace::{Approval, Approver, HoldEnd, Kind, Verdict};
use crate::x402::hex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A hold that is open, and what is needed to finish it either way. Dropped (the agent
/// hung up), its booking gives the reservation and the replay keys back.
pub(super) struct OpenedHold {
    id: String,
    outcome: oneshot::Receiver<HoldOutcome>,
    kind: HoldKind,
    wait: Duration,
    booking: Booking,
    leaving: Leaving,
    tier: Option<String>,
    opened: Instant,
}

/// Takes a hold whose request went away (the agent hung up) out of the listing: it must
/// not stay pending, nor be approved for a payment that can no longer leave.
struct AbandonOnDrop<'a> {
    shared: &'a Shared,
    id: &'a str,
    armed: bool,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let denial = HoldOutcome::Denied {
            by: "agent".into(),
            reason: "the agent closed the request while it was held".into(),
        };
        tracing::info!(hold = %self.id, "held request closed by the agent; hold denied");
        self.shared.store.abandon_hold(self.id, denial);
    }
}

/// The hold bounds the policy sets.
pub(super) fn hold_limits(policy: &Policy) -> HoldLimits {
    HoldLimits {
        per_session: policy.approvals.max_pending_per_session,
        total: policy.approvals.max_pending_total,
    }
}

/// Registers a hold for a payment that needs approval (bounded per session and in
/// total), keeping its booking. Refused, the booking is given back.
#[allow(clippy::too_many_arguments)]
pub(super) async fn open_hold(
    shared: &Shared,
    facts: &RequestFacts,
    policy: &Policy,
    priced: &PricedPayment,
    evaluation: &Evaluation,
    trust: Trust,
    trace_id: &str,
    booking: Booking,
) -> Result<OpenedHold, HoldRefused> {
    let (kind, wait) = match evaluation.veto_window {
        Some(window) => (HoldKind::Veto, window),
        None => (
            HoldKind::Explicit,
            evaluation.hold_timeout.unwrap_or(policy.approvals.timeout),
        ),
    };
    let (kind, wait) = within_client_wait(facts, priced, kind, wait);
    let view = hold_view(facts, priced, evaluation, trust, trace_id, kind, wait);
    let event_view = wants_hold_events(shared, policy).then(|| view.clone());
    let (id, outcome) = shared.store.open_hold(view, hold_limits(policy)).await?;
    shared
        .metrics
        .holds_pending(shared.store.pending_hold_count());
    if let Some(mut view) = event_view {
        view.id = id.clone();
        hold_created(shared, &view);
    }
    let gate = evaluation.gate.map(|g| g.as_str());
    Ok(OpenedHold {
        id,
        outcome,
        kind,
        wait,
        booking,
        leaving: Leaving::new(facts, priced, trace_id.to_string(), gate),
        tier: evaluation.tier.clone(),
        opened: Instant::now(),
    })
}

/// How long an MCP client waits for a paid tool call when the challenge does not say
/// (x402's `x402MCPSession`: `maxTimeoutSeconds`, else 300 s, at most 600 s).
const MCP_CLIENT_WAIT_DEFAULT: u64 = 300;
const MCP_CLIENT_WAIT_MAX: u64 = 600;

/// A held MCP tool call must end before the client stops waiting for it: past
/// `maxTimeoutSeconds` the client gives up but leaves the request open, and a payment
/// approved then would settle for an answer nobody reads (also, the authorization dies
/// at its `validBefore`). So a hold that would outlast that ends a little before it, as
/// a timeout: denied, whatever kind of hold it was. Plain HTTP holds are unchanged.
fn within_client_wait(
    facts: &RequestFacts,
    priced: &PricedPayment,
    kind: HoldKind,
    wait: Duration,
) -> (HoldKind, Duration) {
    if facts.mcp_tool.is_none() {
        return (kind, wait);
    }
    let client = priced
        .payment
        .x402()
        .and_then(|payment| payment.accepted.as_ref())
        .and_then(|offer| offer.max_timeout_seconds)
        .unwrap_or(MCP_CLIENT_WAIT_DEFAULT)
        .min(MCP_CLIENT_WAIT_MAX);
    let mut bound = Duration::from_secs(client);
    if let Some(valid_before) = priced.payment.valid_before() {
        let left = valid_before.saturating_sub(crate::store::replay::unix_now());
        bound = bound.min(Duration::from_secs(left));
    }
    // Time to forward the approved payment and have it settled.
    let margin = (bound / 10).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let bound = bound.saturating_sub(margin);
    if wait <= bound {
        (kind, wait)
    } else {
        (HoldKind::Explicit, bound)
    }
}

/// The hold as the admin API lists it (its id is the store's to give).
fn hold_view(
    facts: &RequestFacts,
    priced: &PricedPayment,
    evaluation: &Evaluation,
    trust: Trust,
    trace_id: &str,
    kind: HoldKind,
    wait: Duration,
) -> HoldView {
    let now = jiff::Timestamp::now();
    let deadline = now
        .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now);
    let rule_messages: Vec<RuleMessage> = evaluation
        .checks
        .iter()
        .filter(|c| c.matched && !c.shadow && c.action == RuleAction::RequireApproval)
        .map(|c| RuleMessage {
            id: c.id.to_string(),
            message: c.message.clone(),
        })
        .collect();
    let network = networks::label(&priced.network);
    HoldView {
        id: String::new(),
        session: facts.identity.session_id().into(),
        agent: facts.identity.agent.to_string(),
        trace_id: trace_id.to_string(),
        created: now.to_string(),
        deadline: deadline.to_string(),
        kind,
        amount_usd: priced.price.usd.to_string(),
        amount: priced.price.amount.to_string(),
        asset_symbol: priced.price.symbol.clone(),
        pay_to: priced.pay_to.clone(),
        method: facts.method.clone(),
        host: facts.host.clone(),
        path: facts.path.clone(),
        tier: evaluation.tier.clone(),
        rules: rule_messages.iter().map(|r| r.id.clone()).collect(),
        reason: evaluation.reason.clone(),
        digest: hex(&priced.payment.digest()),
        network: priced.network.clone(),
        network_id: network.id,
        network_name: network.name,
        network_kind: network.kind,
        payer: priced.payment.payer(),
        trust: trust_name(trust),
        rule: evaluation.rule.to_string(),
        rule_messages,
        cost_usd: priced.price.usd,
    }
}

fn trust_name(trust: Trust) -> &'static str {
    match trust {
        Trust::Verified => "verified",
        Trust::Known => "known",
        Trust::Unknown => "unknown",
    }
}

/// Waits for the hold's outcome, then forwards the held payment or refuses it.
pub(super) async fn await_hold(
    shared: &Arc<Shared>,
    facts: &RequestFacts,
    session: &Session,
    mut hold: Box<OpenedHold>,
) -> Gate {
    // The hold stays in its box and is read in place: this future lives as long as the
    // hold does, and copies of its fields would be carried for all that time.
    let mut guard = AbandonOnDrop {
        shared,
        id: &hold.id,
        armed: true,
    };
    tracing::info!(session = %facts.identity, hold = %hold.id, kind = ?hold.kind, wait_s = hold.wait.as_secs(), "payment held for approval");
    let decided = tokio::select! {
        decided = &mut hold.outcome => decided.unwrap_or(HoldOutcome::ShuttingDown),
        _ = tokio::time::sleep(hold.wait) => {
            let at_deadline = match hold.kind {
                HoldKind::Veto => HoldOutcome::VetoWindowPassed,
                HoldKind::Explicit => HoldOutcome::TimedOut,
            };
            if shared.store.resolve_hold(&hold.id, at_deadline.clone()).await {
                at_deadline
            } else {
                // Someone decided in the same instant; their word stands.
                (&mut hold.outcome).await.unwrap_or(HoldOutcome::ShuttingDown)
            }
        }
    };
    guard.armed = false;
    drop(guard);
    // Boxed: writing the outcome needs a trace record of about a kilobyte, and inline it
    // would widen this future, which every held request keeps for its whole wait.
    Box::pin(finish_hold(shared, facts, session, hold, decided)).await
}

/// Traces a decided hold and turns its outcome into the gate.
async fn finish_hold(
    shared: &Arc<Shared>,
    facts: &RequestFacts,
    session: &Session,
    hold: Box<OpenedHold>,
    decided: HoldOutcome,
) -> Gate {
    let OpenedHold {
        id,
        booking,
        leaving,
        tier,
        opened,
        ..
    } = *hold;
    let waited = opened.elapsed();
    shared.metrics.hold_finished(decided.label(), waited);
    shared
        .metrics
        .holds_pending(shared.store.pending_hold_count());
    let line = hold_record(shared, facts, &id, &leaving, &decided, waited);
    if !decided.approved() {
        shared.trace.append(&line);
        drop(booking);
        let code = match decided {
            HoldOutcome::TimedOut => "approval_timed_out",
            HoldOutcome::ShuttingDown => "shutting_down",
            _ => "approval_denied",
        };
        return refuse(code, &denial_reason(&decided), &leaving, facts);
    }
    // The approval is what lets the payment leave, so it is on disk first: after a crash
    // the payment then recovers as `unknown` (still counted), never as a hold that was
    // dropped while its payment went out.
    if let Err(error) = shared.trace.append_durable(&line).await {
        tracing::error!(%error, hold = %id, "approval could not be made durable; refusing the payment");
        drop(booking);
        return refuse("trace_unavailable", &error.to_string(), &leaving, facts);
    }
    record_approved(shared, facts, session, tier);
    Gate::Forward(Some(Box::new(Ticket::reserved(
        shared, facts, leaving, booking,
    ))))
}

fn refuse(code: &'static str, message: &str, leaving: &Leaving, facts: &RequestFacts) -> Gate {
    Gate::Refuse(Box::new(Refusal::rejected(
        code,
        message,
        &leaving.trace_id,
        &facts.identity.session_id(),
    )))
}

/// An approved payment counts in its session's frequency windows from now.
fn record_approved(shared: &Shared, facts: &RequestFacts, session: &Session, tier: Option<String>) {
    let policy = shared.policy.current();
    let tool = facts.tool(&policy);
    let category = facts.category(&policy, tool);
    let mut state = session.lock();
    state.counts.allowed += 1;
    state.record_payment(RecentPayment {
        at: Instant::now(),
        tier,
        tool: tool.map(|t| t.name.clone()),
        category: category.map(str::to_string),
        host: facts.host.clone(),
        port: facts.port,
    });
}

/// One `hold` line: who decided, when, after how long.
fn hold_record(
    shared: &Shared,
    facts: &RequestFacts,
    hold_id: &str,
    leaving: &Leaving,
    outcome: &HoldOutcome,
    waited: Duration,
) -> crate::trace::TraceRecord {
    let policy = shared.policy.current();
    let trace_id = shared.next_trace_id();
    let mut record = base_record(facts, &policy, &trace_id, Kind::Hold);
    record.decision_trace_id = Some(leaving.trace_id.clone());
    record.decision = Some(if outcome.approved() {
        Verdict::Allowed
    } else {
        Verdict::Denied
    });
    record.amount_usd = Some(leaving.amount_usd);
    record.reason = Some(denial_reason(outcome));
    let (end, by) = match outcome {
        HoldOutcome::Approved { by } => (HoldEnd::Approved, Approver::Person(by.clone())),
        HoldOutcome::Denied { by, .. } => (HoldEnd::Denied, Approver::Person(by.clone())),
        HoldOutcome::TimedOut => (HoldEnd::TimedOut, Approver::Timeout),
        HoldOutcome::VetoWindowPassed => (HoldEnd::VetoWindowPassed, Approver::VetoWindow),
        HoldOutcome::ShuttingDown => (HoldEnd::ShuttingDown, Approver::Shutdown),
    };
    record.approval = Some(Approval {
        at: jiff::Timestamp::now().to_string(),
        by,
        hold_id: hold_id.to_string(),
        outcome: end,
        waited_ms: waited.as_millis() as u64,
    });
    record
}

fn denial_reason(outcome: &HoldOutcome) -> String {
    match outcome {
        HoldOutcome::Approved { by } => format!("approved by {by}"),
        HoldOutcome::VetoWindowPassed => {
            "no veto within the window; the payment went ahead".to_string()
        }
        HoldOutcome::Denied { by, reason } => format!("denied by {by}: {reason}"),
        HoldOutcome::TimedOut => {
            "nobody approved the payment before the hold timed out".to_string()
        }
        HoldOutcome::ShuttingDown => {
            "Purser is shutting down; held payments are denied".to_string()
        }
    }
}
