//! Holds and their outcomes as the fleet store keeps them: a [`HoldView`] as the JSON the
//! admin API shows (so any replica can list a hold another holds), and a
//! [`HoldOutcome`] as `{"outcome": ..., "by": ..., "reason": ...}` (the NOTIFY payload
//! that releases a held request on the replica holding it).

use crate::holds::networks;
use crate::holds::{HoldKind, HoldOutcome, HoldView, RuleMessage};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;

/// Longest `by` and `reason` carried in an outcome (a NOTIFY payload is at most 8000
/// bytes; the admin API already cuts them shorter).
const MAX_WORDS: usize = 1024;

/// An outcome as stored and notified.
pub(super) fn outcome_json(outcome: &HoldOutcome) -> Value {
    let cut = |text: &str| text.chars().take(MAX_WORDS).collect::<String>();
    match outcome {
        HoldOutcome::Approved { by } => json!({"outcome": outcome.label(), "by": cut(by)}),
        HoldOutcome::Denied { by, reason } => {
            json!({"outcome": outcome.label(), "by": cut(by), "reason": cut(reason)})
        }
        _ => json!({"outcome": outcome.label()}),
    }
}

/// An outcome read back; anything unreadable is a denial, never an approval.
pub(super) fn outcome_from(value: &Value) -> HoldOutcome {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match value.get("outcome").and_then(Value::as_str) {
        Some("approved") => HoldOutcome::Approved { by: text("by") },
        Some("timed_out") => HoldOutcome::TimedOut,
        Some("veto_window_passed") => HoldOutcome::VetoWindowPassed,
        Some("shutdown") => HoldOutcome::ShuttingDown,
        Some("denied") => HoldOutcome::Denied {
            by: text("by"),
            reason: text("reason"),
        },
        _ => HoldOutcome::Denied {
            by: "purser".into(),
            reason: "the hold's outcome could not be read from the fleet store".into(),
        },
    }
}

/// A hold as the admin API lists it, from the JSON its replica stored.
pub(super) fn view_from(value: &Value) -> Option<HoldView> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let list = |key: &str| -> Vec<String> {
        value
            .get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let network = text("network")?;
    let label = networks::label(&network);
    let amount_usd = text("amount_usd")?;
    let rule_messages = value
        .get("rule_messages")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some(RuleMessage {
                        id: item.get("id")?.as_str()?.to_string(),
                        message: item
                            .get("message")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(HoldView {
        id: text("id")?,
        session: text("session")?,
        agent: text("agent")?,
        trace_id: text("trace_id")?,
        created: text("created").unwrap_or_default(),
        deadline: text("deadline").unwrap_or_default(),
        kind: match text("kind").as_deref() {
            Some("veto") => HoldKind::Veto,
            _ => HoldKind::Explicit,
        },
        cost_usd: Decimal::from_str(&amount_usd).ok()?,
        amount_usd,
        amount: text("amount").unwrap_or_default(),
        asset_symbol: text("asset_symbol").unwrap_or_default(),
        pay_to: text("pay_to").unwrap_or_default(),
        method: text("method").unwrap_or_default(),
        host: text("host").unwrap_or_default(),
        path: text("path").unwrap_or_default(),
        tier: text("tier"),
        rules: list("rules"),
        reason: text("reason").unwrap_or_default(),
        digest: text("digest")?,
        network,
        network_id: label.id,
        network_name: label.name,
        network_kind: label.kind,
        payer: text("payer"),
        trust: match text("trust").as_deref() {
            Some("verified") => "verified",
            Some("known") => "known",
            _ => "unknown",
        },
        rule: text("rule").unwrap_or_default(),
        rule_messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holds::networks::NetworkKind;

    fn view() -> HoldView {
        HoldView {
            id: "hold_1_0".into(),
            session: "a.s".into(),
            agent: "a".into(),
            trace_id: "tr_1".into(),
            created: "2026-01-01T00:00:00Z".into(),
            deadline: "2026-01-01T00:05:00Z".into(),
            kind: HoldKind::Veto,
            amount_usd: "0.75".into(),
            amount: "0.75".into(),
            asset_symbol: "USDC".into(),
            pay_to: "0x1".into(),
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            tier: Some("supervised".into()),
            rules: vec!["big".into()],
            reason: "r".into(),
            digest: "abc".into(),
            network: "eip155:84532".into(),
            network_id: Some("eip155:84532".into()),
            network_name: Some("Base Sepolia"),
            network_kind: NetworkKind::Testnet,
            payer: Some("0x2".into()),
            trust: "known",
            rule: "big".into(),
            rule_messages: vec![RuleMessage {
                id: "big".into(),
                message: Some("ask".into()),
            }],
            cost_usd: Decimal::new(75, 2),
        }
    }

    #[test]
    fn a_hold_reads_back_as_it_was_listed() {
        let stored = serde_json::to_value(view()).unwrap();
        let read = view_from(&stored).expect("readable");
        assert_eq!(serde_json::to_value(&read).unwrap(), stored);
        assert_eq!(read.cost_usd, Decimal::new(75, 2));
    }

    #[test]
    fn outcomes_round_trip_and_garbage_is_a_denial() {
        for outcome in [
            HoldOutcome::Approved { by: "ann".into() },
            HoldOutcome::Denied {
                by: "bob".into(),
                reason: "no".into(),
            },
            HoldOutcome::TimedOut,
            HoldOutcome::VetoWindowPassed,
            HoldOutcome::ShuttingDown,
        ] {
            assert_eq!(outcome_from(&outcome_json(&outcome)), outcome);
        }
        assert!(!outcome_from(&json!({"outcome": "approve"})).approved());
    }
}
