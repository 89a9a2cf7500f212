//! What the agent is told when Purser does not forward its payment (SPEC §5): `403`,
//! JSON, `X-Purser-Decision` and `X-Purser-Trace`.

use crate::proxy::body::{full, ProxyBody};
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

/// The JSON body of a refusal.
#[derive(Debug, Serialize)]
pub struct RefusalBody<'a> {
    pub decision: &'a str,
    pub rule: &'a str,
    /// Human-readable, starting with a stable code (`approval_required: ...`).
    pub reason: &'a str,
    pub code: &'a str,
    pub trace_id: &'a str,
    pub session: &'a str,
}

/// `403` with the decision headers and body.
pub fn refusal(body: &RefusalBody<'_>) -> Response<ProxyBody> {
    json_answer(
        StatusCode::FORBIDDEN,
        body,
        Some((body.decision, body.trace_id)),
    )
}

/// A JSON answer with optional decision headers.
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
