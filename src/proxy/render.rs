//! The one place a typed refusal from the engine ([`Refusal`]) becomes an HTTP answer,
//! and the JSON answer builder the admin API shares.
//!
//! The engine decides; this module only spells the decision for plain HTTP (SPEC §5):
//! a JSON body, `Cache-Control: no-store`, and `X-Purser-Decision` / `X-Purser-Trace`
//! when a payment decision refused the request. A renderer for another protocol (a
//! JSON-RPC error for MCP) sits beside [`refusal`] and reads the same fields.

use super::body::{full, ProxyBody};
use crate::engine::{Refusal, RefusalHeader};
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

/// The JSON body of a payment refused by a decision.
#[derive(Debug, Serialize)]
struct DecisionBody<'a> {
    decision: &'a str,
    rule: &'a str,
    /// Human-readable, starting with a stable code (`approval_required: ...`).
    reason: &'a str,
    code: &'a str,
    trace_id: &'a str,
    session: &'a str,
}

/// A payment refused because its decision could not be written: no rule decided it.
#[derive(Debug, Serialize)]
struct UndecidedBody<'a> {
    decision: &'a str,
    reason: &'a str,
    trace_id: &'a str,
}

/// A refusal that is not a payment decision: a control header, the session table.
#[derive(Debug, Serialize)]
struct ControlBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<&'a str>,
    reason: &'a str,
    session: &'a str,
}

/// The HTTP answer for a refusal.
pub fn refusal(refusal: &Refusal) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(refusal.status.http_code()).unwrap_or(StatusCode::FORBIDDEN);
    let trace_id = refusal.trace_id.as_deref().unwrap_or("");
    let mut response = match (refusal.decision, &refusal.rule) {
        (Some(verdict), Some(rule)) => json_answer(
            status,
            &DecisionBody {
                decision: verdict.as_str(),
                rule,
                reason: &refusal.reason,
                code: refusal.code,
                trace_id,
                session: &refusal.session,
            },
            None,
        ),
        (Some(verdict), None) => json_answer(
            status,
            &UndecidedBody {
                decision: verdict.as_str(),
                reason: &refusal.reason,
                trace_id,
            },
            None,
        ),
        (None, _) => json_answer(
            status,
            &ControlBody {
                error: refusal.code,
                phase: refusal.phase,
                reason: &refusal.reason,
                session: &refusal.session,
            },
            None,
        ),
    };
    let headers = response.headers_mut();
    for added in refusal.headers() {
        let (name, value) = match added {
            RefusalHeader::Decision(value) => ("x-purser-decision", value),
            RefusalHeader::Trace(value) => ("x-purser-trace", value),
            RefusalHeader::Error(value) => ("x-purser-error", value),
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

/// A JSON answer with optional decision headers (`X-Purser-Decision`, `X-Purser-Trace`).
pub fn json_answer<T: Serialize>(
    status: StatusCode,
    body: &T,
    decision: Option<(&str, &str)>,
) -> Response<ProxyBody> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string());
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some((decision, trace_id)) = decision {
        if let Ok(value) = HeaderValue::from_str(decision) {
            headers.insert("x-purser-decision", value);
        }
        if let Ok(value) = HeaderValue::from_str(trace_id) {
            headers.insert("x-purser-trace", value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RefusalStatus;
    use http_body_util::BodyExt;

    async fn text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_decision_refusal_is_403_with_its_headers_and_body() {
        let answer = refusal(&Refusal::denied("denied", "r1", "too much", "tr_1", "a.s"));
        assert_eq!(answer.status(), 403);
        assert_eq!(answer.headers()["x-purser-decision"], "DENIED");
        assert_eq!(answer.headers()["x-purser-trace"], "tr_1");
        assert_eq!(answer.headers()["cache-control"], "no-store");
        assert_eq!(
            text(answer).await,
            r#"{"decision":"DENIED","rule":"r1","reason":"r1: too much","code":"denied","trace_id":"tr_1","session":"a.s"}"#
        );
    }

    #[tokio::test]
    async fn an_undurable_decision_is_503_without_a_rule() {
        let answer = refusal(&Refusal::trace_unavailable(&"disk full", "tr_2", "a.s"));
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["x-purser-trace"], "tr_2");
        assert_eq!(
            text(answer).await,
            r#"{"decision":"DENIED","reason":"trace_unavailable: disk full","trace_id":"tr_2"}"#
        );
    }

    #[tokio::test]
    async fn control_refusals_name_their_error() {
        let mut conflict = Refusal::control(
            RefusalStatus::Conflict,
            "invalid_transition",
            "back".into(),
            "a.s",
        );
        conflict.phase = Some("COMMIT");
        let answer = refusal(&conflict);
        assert_eq!(answer.status(), 409);
        assert!(answer.headers().get("x-purser-decision").is_none());
        assert_eq!(
            text(answer).await,
            r#"{"error":"invalid_transition","phase":"COMMIT","reason":"back","session":"a.s"}"#
        );
        let full = Refusal::control(
            RefusalStatus::TooManyRequests,
            "too_many_sessions",
            "full".into(),
            "a.s",
        );
        let answer = refusal(&full);
        assert_eq!(answer.status(), 429);
        assert_eq!(answer.headers()["x-purser-error"], "too_many_sessions");
        assert_eq!(
            text(answer).await,
            r#"{"error":"too_many_sessions","reason":"full","session":"a.s"}"#
        );
    }
}
