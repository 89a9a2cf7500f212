//! Webhook events the decision path raises (SPEC §3 "Notifications"): a budget gate
//! crossed, a prohibited attempt, a hold opened. Sent through the notifier's queue, so
//! the decision never waits on a webhook.

use super::context::Shared;
use super::evaluate::{Decider, Evaluation, Verdict};
use super::facts::RequestFacts;
use super::pricing::PricedPayment;
use crate::holds::HoldView;
use serde_json::json;

/// Events for a decision: a gate crossed, a prohibited attempt.
pub(super) fn decision_events(
    shared: &Shared,
    facts: &RequestFacts,
    priced: &PricedPayment,
    evaluation: &Evaluation,
    trace_id: &str,
) {
    let Some(notifier) = &shared.notifier else {
        return;
    };
    if shared.policy.peek().notifications.webhook.is_none() {
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
    let prohibited =
        matches!(evaluation.rule, Decider::Tier(_)) && evaluation.verdict == Verdict::Denied;
    if prohibited {
        let mut event = base;
        event["event"] = json!("prohibited_attempt");
        event["tier"] = json!(evaluation.tier);
        notifier.send(event);
    }
}

/// Whether a hold's event will be sent under `policy`: the hold's view is copied for it
/// only then.
pub(super) fn wants_hold_events(shared: &Shared, policy: &crate::policy::Policy) -> bool {
    shared.notifier.is_some() && policy.notifications.webhook.is_some()
}

/// `hold_created`, with the hold as the API shows it.
pub(super) fn hold_created(shared: &Shared, view: &HoldView) {
    if let Some(notifier) = &shared.notifier {
        notifier.send(json!({"event": "hold_created", "hold": view}));
    }
}
