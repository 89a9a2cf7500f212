//! The admin API's error answer, shared by its handlers: `{"error": CODE, "reason": ...}`
//! with the status given.

use crate::proxy::body::ProxyBody;
use crate::proxy::render::json_answer;
use http::{Response, StatusCode};
use serde_json::json;

/// An error answer: a stable `code` for programs and a `reason` for people.
pub(super) fn error(status: StatusCode, code: &str, reason: &str) -> Response<ProxyBody> {
    json_answer(status, &json!({"error": code, "reason": reason}), None)
}
