//! Holding a payment for a human: the request stays open while a hold waits in
//! [`crate::approvals::Holds`]; its reservation stays booked; the outcome forwards exactly
//! the held payment or answers `403`.

use super::evaluate::{Evaluation, RecentPayment};
use super::flow::{base_record, hold_limits, refuse, settled_payment, RequestFacts, Ticket};
use super::gate::{Gate, Refusal};
use super::pricing::PricedPayment;
use super::session::{self, SessionState};
use super::Engine;
use crate::approvals::{networks, HoldKind, HoldOutcome, HoldRefused, HoldView, RuleMessage};
use crate::ledger::{Outcome, ReservationId};
use crate::policy::rules::RuleAction;
use crate::policy::{hex, normalize_address, Policy};
use rust_decimal::Decimal;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A hold that is open, and what is needed to finish it either way.
pub struct OpenedHold {
    id: String,
    outcome: oneshot::Receiver<HoldOutcome>,
    kind: HoldKind,
    wait: Duration,
    reservation: ReservationId,
    replay_keys: Vec<String>,
    trace_id: String,
    settled: super::compensation::SettledPayment,
    amount_usd: Decimal,
    version: u8,
    gate: Option<&'static str>,
    tier: Option<String>,
    digest: [u8; 32],
    opened: Instant,
}

/// Releases a hold whose request went away (the agent hung up): the reservation must not
/// stay booked and the hold must not stay listed.
struct AbandonOnDrop<'a> {
    engine: &'a Engine,
    id: &'a str,
    reservation: ReservationId,
    replay_keys: &'a [String],
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
        if self.engine.holds.resolve(self.id, denial).is_some() {
            tracing::info!(hold = %self.id, "held request closed by the agent; hold denied");
        }
        self.engine
            .ledger
            .settle(self.reservation, Outcome::Released);
        self.engine.forget_replay_keys(self.replay_keys);
    }
}

impl Engine {
    /// Registers a hold for a payment that needs approval (bounded per session and in
    /// total). The reservation is already booked.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_hold(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        priced: &PricedPayment,
        evaluation: &Evaluation,
        trace_id: &str,
        reservation: ReservationId,
        replay_keys: &[String],
    ) -> Result<OpenedHold, HoldRefused> {
        let (kind, wait) = match evaluation.veto_window {
            Some(window) => (HoldKind::Veto, window),
            None => (
                HoldKind::Explicit,
                evaluation.hold_timeout.unwrap_or(policy.approvals.timeout),
            ),
        };
        let now = jiff::Timestamp::now();
        let deadline = now
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(now);
        let rule_messages: Vec<RuleMessage> = evaluation
            .checks
            .iter()
            .filter(|c| c.matched && !c.shadow && c.action == RuleAction::RequireApproval)
            .map(|c| RuleMessage {
                id: c.id.clone(),
                message: c.message.clone(),
            })
            .collect();
        let network = networks::label(&priced.network);
        let view = HoldView {
            id: String::new(),
            session: facts.identity.session_id(),
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
            digest: hex(&priced.payment.digest),
            network: priced.network.clone(),
            network_id: network.id,
            network_name: network.name,
            network_kind: network.kind,
            payer: priced.payment.payer.clone(),
            trust: self.recipient_trust(policy, &facts.identity.agent, &priced.pay_to),
            rule: evaluation.rule.clone(),
            rule_messages,
            cost_usd: priced.price.usd,
        };
        let event_view = policy.notifications.webhook.is_some().then(|| view.clone());
        let (id, outcome) = self.holds.open(view, hold_limits(policy))?;
        self.metrics.holds_pending(self.holds.len());
        if let (Some(notifier), Some(mut view)) = (&self.notifier, event_view) {
            view.id = id.clone();
            notifier.send(json!({"event": "hold_created", "hold": view}));
        }
        Ok(OpenedHold {
            id,
            outcome,
            kind,
            wait,
            reservation,
            replay_keys: replay_keys.to_vec(),
            trace_id: trace_id.to_string(),
            settled: settled_payment(facts, priced, trace_id),
            amount_usd: priced.price.usd,
            version: priced.payment.version,
            gate: evaluation.gate.map(|g| g.as_str()),
            tier: evaluation.tier.clone(),
            digest: priced.payment.digest,
            opened: Instant::now(),
        })
    }

    /// The recipient's trust, worked out as the decision worked it out (the decision
    /// does not keep it). They differ only if a payment to the same recipient settled in
    /// the microseconds between the two.
    fn recipient_trust(&self, policy: &Policy, agent: &str, pay_to: &str) -> &'static str {
        let pay_to = normalize_address(pay_to);
        if policy.verified_recipients.contains(&pay_to) {
            "verified"
        } else if self.ledger.has_paid(agent, &pay_to) {
            "known"
        } else {
            "unknown"
        }
    }

    /// Waits for the hold's outcome, then forwards the held payment or refuses it.
    pub(super) async fn await_hold(
        &self,
        facts: &RequestFacts,
        state: &Mutex<SessionState>,
        mut hold: Box<OpenedHold>,
    ) -> Gate {
        // The hold stays in its box and is read in place: this future lives as long as
        // the hold does, and copies of its fields would be carried for all that time.
        let mut guard = AbandonOnDrop {
            engine: self,
            id: &hold.id,
            reservation: hold.reservation,
            replay_keys: &hold.replay_keys,
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
                // A bool, not the resolved view: a match on the view would keep its slot
                // in this future, which lives as long as the hold does.
                let ours = self.holds.resolve(&hold.id, at_deadline.clone()).is_some();
                if ours {
                    at_deadline
                } else {
                    // Someone decided in the same instant; their word stands.
                    (&mut hold.outcome).await.unwrap_or(HoldOutcome::ShuttingDown)
                }
            }
        };
        guard.armed = false;
        drop(guard);
        // Boxed: writing the outcome needs a trace record of about a kilobyte, and inline
        // it would widen this future, which every held request keeps for its whole wait.
        Box::pin(self.finish_hold(facts, state, hold, decided)).await
    }

    /// Traces a decided hold and turns its outcome into the gate.
    async fn finish_hold(
        &self,
        facts: &RequestFacts,
        state: &Mutex<SessionState>,
        hold: Box<OpenedHold>,
        decided: HoldOutcome,
    ) -> Gate {
        let OpenedHold {
            id,
            reservation,
            replay_keys,
            trace_id,
            settled,
            amount_usd,
            version,
            gate,
            tier,
            digest,
            opened,
            ..
        } = *hold;
        let waited = opened.elapsed();
        self.metrics.hold_finished(decided.label(), waited);
        self.metrics.holds_pending(self.holds.len());
        let line = self.hold_record(facts, &id, &trace_id, &decided, waited, amount_usd);
        if decided.approved() {
            // The approval is what lets the payment leave, so it is on disk first: after a
            // crash the payment then recovers as `unknown` (still counted), never as a
            // hold that was dropped while its payment went out.
            if let Err(error) = self.trace.append_durable(&line).await {
                tracing::error!(%error, hold = %id, "approval could not be made durable; refusing the payment");
                self.ledger.settle(reservation, Outcome::Released);
                self.forget_replay_keys(&replay_keys);
                return refuse(Refusal::rejected(
                    "trace_unavailable",
                    &error.to_string(),
                    &trace_id,
                    &facts.identity.session_id(),
                ));
            }
        } else {
            self.trace.append(&line);
        }
        if decided.approved() {
            self.record_approved(facts, state, tier);
            return Gate::Forward(Some(Box::new(Ticket {
                trace_id,
                reservation,
                amount_usd,
                gate,
                version,
                replay_keys,
                settled: Some(settled),
                payment_digest: digest,
                retry: None,
                guard: Some(self.drop_guard(facts)),
            })));
        }
        self.ledger.settle(reservation, Outcome::Released);
        self.forget_replay_keys(&replay_keys);
        let code = match decided {
            HoldOutcome::TimedOut => "approval_timed_out",
            HoldOutcome::ShuttingDown => "shutting_down",
            _ => "approval_denied",
        };
        refuse(Refusal::rejected(
            code,
            &denial_reason(&decided),
            &trace_id,
            &facts.identity.session_id(),
        ))
    }

    fn record_approved(
        &self,
        facts: &RequestFacts,
        state: &Mutex<SessionState>,
        tier: Option<String>,
    ) {
        let policy = self.policy.current();
        let tool = policy.tool_for(&facts.host, facts.port, &facts.path);
        let category = policy.category_for(tool, &facts.host, facts.port, &facts.path);
        let mut session = session::lock(state);
        session.counts.allowed += 1;
        session.record_payment(RecentPayment {
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
        &self,
        facts: &RequestFacts,
        hold_id: &str,
        decision_trace: &str,
        outcome: &HoldOutcome,
        waited: Duration,
        amount_usd: Decimal,
    ) -> crate::trace::TraceRecord {
        let policy = self.policy.current();
        let trace_id = self.next_trace_id();
        let mut record = base_record(facts, &policy, &trace_id, "hold");
        record.decision_trace_id = Some(decision_trace.to_string());
        record.decision = Some(if outcome.approved() {
            "ALLOWED"
        } else {
            "DENIED"
        });
        record.amount_usd = Some(amount_usd);
        record.reason = Some(denial_reason(outcome));
        record.approval = Some(json!({
            "hold_id": hold_id,
            "outcome": outcome.label(),
            "by": outcome.by(),
            "at": jiff::Timestamp::now().to_string(),
            "waited_ms": waited.as_millis() as u64,
        }));
        record
    }

    /// Lets a payment that never left be decided afresh if the agent sends it again.
    pub(super) fn forget_replay_keys(&self, keys: &[String]) {
        for key in keys {
            self.seen_payments.remove(key);
        }
    }

    /// Webhook events for a decision: a gate crossed, a prohibited attempt.
    pub(super) fn notify_decision(
        &self,
        facts: &RequestFacts,
        priced: &PricedPayment,
        evaluation: &Evaluation,
        trace_id: &str,
    ) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        if self.policy.peek().notifications.webhook.is_none() {
            return;
        }
        let base = json!({
            "session": facts.identity.session_id(),
            "agent": facts.identity.agent.as_ref(),
            "trace_id": trace_id,
            "host": facts.host,
            "path": facts.path,
            "amount_usd": priced.price.usd.to_string(),
            "decision": evaluation.verdict.as_str(),
            "rule": evaluation.rule,
        });
        if let Some(gate) = evaluation.gate {
            let mut event = base.clone();
            event["event"] = json!("budget_gate");
            event["gate"] = json!(gate.as_str());
            event["ratio"] = json!(evaluation.ratio.map(|r| r.1.round_dp(4).to_string()));
            notifier.send(event);
        }
        let prohibited = evaluation.rule.starts_with("tier:")
            && evaluation.verdict == super::evaluate::Verdict::Denied;
        if prohibited {
            let mut event = base;
            event["event"] = json!("prohibited_attempt");
            event["tier"] = json!(evaluation.tier);
            notifier.send(event);
        }
    }
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
