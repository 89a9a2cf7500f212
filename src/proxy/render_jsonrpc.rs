//! A typed refusal from the engine ([`Refusal`]) spelled for an MCP tool call: the
//! JSON-RPC answer the official MCP clients hand to the model, beside [`super::render`]'s
//! plain HTTP one.
//!
//! MCP clients treat the answer to a JSON-RPC POST in ways that decide what the model
//! sees (`tests/data/captures/mcp/refusal_forms.json`): a non-2xx status tears down the
//! Python client's whole session, and a JSON-RPC error becomes an exception the model
//! never reads. A tool result with `isError: true` is what the model reads, and the
//! session goes on. So a refusal is `200`, the call's own id, and a tool result with
//! `isError: true` whose text carries the decision, rule, reason and trace id, and whose
//! `structuredContent.purser` has the same fields. It carries no `x402Version` nor
//! `accepts`: an x402 client would take those for a new challenge and pay again.

use super::body::{full, ProxyBody};
use crate::engine::{Refusal, RefusalHeader};
use http::{header, HeaderValue, Response, StatusCode};
use jsonrpsee_types::{Id, ResponsePayload};
use serde::Serialize;

/// The MCP session header, echoed on Purser's own answers.
pub const MCP_SESSION_HEADER: &str = "mcp-session-id";

/// The tool result of a refusal.
#[derive(Clone, Debug, Serialize)]
struct ToolRefusal<'a> {
    #[serde(rename = "isError")]
    is_error: bool,
    content: [TextContent; 1],
    #[serde(rename = "structuredContent")]
    structured: Structured<'a>,
}

#[derive(Clone, Debug, Serialize)]
struct TextContent {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
}

#[derive(Clone, Debug, Serialize)]
struct Structured<'a> {
    purser: Fields<'a>,
}

/// The same fields as the plain HTTP refusal's body (SPEC §5).
#[derive(Clone, Debug, Serialize)]
struct Fields<'a> {
    decision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    reason: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    session: &'a str,
}

/// The JSON-RPC answer to the MCP call `id` for a refusal; `session` is the request's
/// `mcp-session-id`, echoed.
pub fn tool_refusal(
    refusal: &Refusal,
    id: &Id<'static>,
    session: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    let decision = refusal
        .decision
        .map_or("REFUSED", |verdict| verdict.as_str());
    let fields = Fields {
        decision,
        rule: refusal.rule.as_deref(),
        reason: &refusal.reason,
        code: refusal.code,
        trace_id: refusal.trace_id.as_deref(),
        session: &refusal.session,
    };
    let result = ToolRefusal {
        is_error: true,
        content: [TextContent {
            kind: "text",
            text: text(&fields),
        }],
        structured: Structured { purser: fields },
    };
    let message = jsonrpsee_types::Response::new(ResponsePayload::success(result), id.clone());
    let body = serde_json::to_string(&message).unwrap_or_else(|_| "{}".to_string());
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(session) = session {
        headers.insert(MCP_SESSION_HEADER, session.clone());
    }
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

/// What the model reads: one sentence per fact, the trace id to quote to a person.
fn text(fields: &Fields<'_>) -> String {
    let mut text = format!(
        "Purser refused this paid tool call. decision: {}",
        fields.decision
    );
    if let Some(rule) = fields.rule {
        text.push_str(&format!("; rule: {rule}"));
    }
    text.push_str(&format!("; reason: {}", fields.reason));
    if let Some(trace_id) = fields.trace_id {
        text.push_str(&format!("; trace id: {trace_id}"));
    }
    text.push_str(". The payment was not forwarded: no money moved.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::Value;

    async fn json(response: Response<ProxyBody>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_refusal_is_a_tool_error_under_the_calls_own_id() {
        let refusal = Refusal::denied("denied", "phase", "not in COMMIT", "tr_1", "a.s");
        let session = HeaderValue::from_static("abc123");
        for id in [Id::Number(4), Id::Str("req-4".into())] {
            let answer = tool_refusal(&refusal, &id, Some(&session));
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.headers()["mcp-session-id"], "abc123");
            assert_eq!(answer.headers()["x-purser-decision"], "DENIED");
            let body = json(answer).await;
            assert_eq!(body["jsonrpc"], "2.0");
            assert_eq!(body["id"], serde_json::to_value(&id).unwrap());
            let result = &body["result"];
            assert_eq!(result["isError"], true);
            let text = result["content"][0]["text"].as_str().unwrap();
            for part in ["DENIED", "phase", "not in COMMIT", "tr_1"] {
                assert!(text.contains(part), "{text}");
            }
            let fields = &result["structuredContent"]["purser"];
            assert_eq!(fields["decision"], "DENIED");
            assert_eq!(fields["rule"], "phase");
            assert_eq!(fields["reason"], "phase: not in COMMIT");
            assert_eq!(fields["trace_id"], "tr_1");
            assert!(result["structuredContent"].get("x402Version").is_none());
        }
    }
}
