//! `/v1/payments`: the payments whose outcome is unknown, and their reconciliation.
//!
//! * `GET /v1/payments?outcome=unknown[&session=ID][&agent=NAME]` (also
//!   `GET /v1/payments/unknown`): oldest first, each with what an operator needs to find
//!   it at the merchant or on chain (`onchain`: the nonce and the contract keeping it).
//! * `GET /v1/payments/{id}`: one of them.
//! * `POST /v1/payments/{id}/resolve` `{"outcome": "committed"|"released", "by", "reason"}`:
//!   the `resolution` line is on disk before the budget changes; the answer carries the
//!   session's budget afterwards.
//!
//! `id` is the payment's decision trace id. Only unknown outcomes are kept in memory;
//! committed and released payments are in the proof log (`GET /v1/traces`).

use super::reply::error;
use super::AdminState;
use crate::engine::settle::ResolveError;
use crate::ledger::UnknownPayment;
use crate::proxy::body::ProxyBody;
use crate::proxy::render::json_answer;
use crate::store::UnknownView;
use crate::trace::{Outcome, Vocabulary};
use http::{Response, StatusCode};
use serde_json::{json, Value};

/// Longest `by` and `reason` kept in the proof log.
const MAX_BY: usize = 128;
const MAX_REASON: usize = 512;

/// The only outcome listed: the others are settled and live in the proof log.
const LISTED: Outcome = Outcome::Unknown;

/// `GET /v1/payments?outcome=unknown&session=&agent=`.
pub(super) async fn list(state: &AdminState, params: &[(String, String)]) -> Response<ProxyBody> {
    let value = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if let Some(outcome) = value("outcome").filter(|o| Outcome::parse_any_case(o) != Ok(LISTED)) {
        let body = json!({"error": "bad_filter",
            "reason": format!("outcome `{outcome}` is not listed here: only unknown outcomes wait for reconciliation (settled ones are in GET /v1/traces)"),
            "parameter": "outcome", "valid": [LISTED]});
        return json_answer(StatusCode::BAD_REQUEST, &body, None);
    }
    let (session, agent) = (value("session"), value("agent"));
    let payments: Vec<Value> = state
        .proxy
        .engine
        .unknown_payments()
        .await
        .iter()
        .filter(|(payment, _)| session.is_none_or(|s| payment.session == s))
        .filter(|(payment, _)| agent.is_none_or(|a| payment.agent == a))
        .map(|(payment, view)| payment_json(payment, view))
        .collect();
    json_answer(StatusCode::OK, &json!({ "payments": payments }), None)
}

/// `GET /v1/payments/{id}`.
pub(super) async fn show(state: &AdminState, id: &str) -> Response<ProxyBody> {
    let found = state
        .proxy
        .engine
        .unknown_payments()
        .await
        .into_iter()
        .find(|(_, view)| view.id == id);
    match found {
        Some((payment, view)) => json_answer(StatusCode::OK, &payment_json(&payment, &view), None),
        None => not_unknown(id),
    }
}

/// `POST /v1/payments/{id}/resolve`.
pub(super) async fn resolve(state: &AdminState, id: &str, body: &Value) -> Response<ProxyBody> {
    let outcome = body.get("outcome").and_then(Value::as_str);
    let committed = match outcome.map(Outcome::parse_any_case) {
        Some(Ok(Outcome::Committed)) => true,
        Some(Ok(Outcome::Released)) => false,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_outcome",
                "body must be {\"outcome\": \"committed\"|\"released\", \"by\": \"who\", \"reason\": \"why\"}",
            )
        }
    };
    let text = |key: &str, default: &str, max: usize| -> String {
        let given = body.get(key).and_then(Value::as_str).map(str::trim);
        let chosen = given.filter(|t| !t.is_empty()).unwrap_or(default);
        chosen.chars().take(max).collect()
    };
    let by = text("by", "admin-api", MAX_BY);
    let reason = text("reason", "no reason given", MAX_REASON);
    let engine = &state.proxy.engine;
    match engine.resolve_unknown(id, committed, &by, &reason).await {
        Ok(resolved) => {
            let payment = &resolved.payment;
            let budget = engine.budget(&payment.session, &payment.agent).await;
            let outcome = if committed {
                Outcome::Committed
            } else {
                Outcome::Released
            };
            json_answer(
                StatusCode::OK,
                &json!({
                    "id": id, "outcome": outcome, "by": by, "reason": reason,
                    "trace_id": resolved.trace_id,
                    "session": payment.session, "agent": payment.agent,
                    "amount_usd": payment.amount.normalize().to_string(),
                    "budget": {
                        "session_spent": budget.session.spent().normalize().to_string(),
                        "session_unknown": budget.session.unknown.normalize().to_string(),
                        "agent_spent": budget.agent.spent().normalize().to_string(),
                        "fleet_spent": budget.fleet.spent().normalize().to_string(),
                    },
                }),
                None,
            )
        }
        Err(ResolveError::NotUnknown(_)) => not_unknown(id),
        Err(failure @ ResolveError::RetryInFlight(_)) => error(
            StatusCode::CONFLICT,
            "retry_in_flight",
            &failure.to_string(),
        ),
        Err(failure @ ResolveError::Trace(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "trace_unavailable",
            &failure.to_string(),
        ),
    }
}

fn not_unknown(id: &str) -> Response<ProxyBody> {
    error(
        StatusCode::NOT_FOUND,
        "unknown_payment",
        &format!("no payment with an unknown outcome has trace id `{id}`"),
    )
}

fn payment_json(payment: &UnknownPayment, view: &UnknownView) -> Value {
    let details = &view.details;
    json!({
        "id": view.id,
        "outcome": LISTED,
        "session": payment.session,
        "agent": payment.agent,
        "amount_usd": payment.amount.normalize().to_string(),
        "pay_to": payment.pay_to,
        "since": details.since,
        "method": details.method,
        "host": details.host,
        "path": details.path,
        "payment_digest": details.payment_digest,
        "why": details.why,
        "upstream_status": details.upstream_status,
        "retries": view.retries,
        "retry_in_flight": view.retry_in_flight,
        // What the chain can be asked about it (EVM): nonce, contract, valid-before.
        "onchain": details.onchain,
    })
}
