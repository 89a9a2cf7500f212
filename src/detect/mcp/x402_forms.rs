//! What an MCP tool call's JSON-RPC response says about an x402 payment, in the forms
//! the official SDKs write and read (x402 2.25.0, its v1 and v2 MCP transport specs):
//!
//! * a challenge: a tool result (`isError: true`) whose `structuredContent` is the
//!   PaymentRequired object, or whose `content[0].text` is it as JSON (also wrapped as
//!   `{"x402/error": {"code": 402, "data": ...}}`, or after a prefix such as FastMCP's
//!   "Error executing tool X: "); or a JSON-RPC error with code `402` and the object as
//!   its `data` (the v1 transport);
//! * a receipt: the result's `_meta["x402/payment-response"]`; a settlement that failed
//!   puts it in `structuredContent` beside a fresh challenge.
//!
//! [`read_answer`] gathers both, the way the engine settles on them (SPEC §1): a receipt
//! decides; without one, a fresh challenge means the merchant did not take the payment.

use crate::x402::{self, Challenge, Receipt, X402Error};
use jsonrpsee_types::{Response, ResponsePayload};
use serde_json::{Map, Value};

/// The receipt key in a result's `_meta` (and `structuredContent`).
pub const RECEIPT_KEY: &str = "x402/payment-response";
/// The same, as older clients spelled the payment key.
const RECEIPT_KEY_DOTTED: &str = "x402.payment-response";
/// The JSON-RPC error code of the v1 MCP transport's challenge.
pub const CHALLENGE_ERROR_CODE: i32 = 402;

/// What one response says about an x402 payment.
#[derive(Debug, Default)]
pub struct CallAnswer {
    /// The receipt, if the response carries one (an error if it is unreadable, or two
    /// that differ).
    pub receipt: Option<Result<Receipt, X402Error>>,
    /// A challenge, if the response asks to be paid.
    pub challenge: Option<Challenge>,
    /// The JSON-RPC error code, when the response is an error.
    pub error_code: Option<i32>,
    /// Whether the tool result says `isError`.
    pub tool_error: bool,
}

/// Reads a response's receipt and challenge.
pub fn read_answer(response: &Response<'_, Value>) -> CallAnswer {
    match &response.payload {
        ResponsePayload::Success(result) => {
            let result = result.as_ref();
            CallAnswer {
                receipt: receipt_in(result),
                challenge: challenge_in_result(result),
                error_code: None,
                tool_error: result.get("isError").and_then(Value::as_bool) == Some(true),
            }
        }
        ResponsePayload::Error(error) => CallAnswer {
            receipt: None,
            challenge: (error.code() == CHALLENGE_ERROR_CODE)
                .then(|| error.data())
                .flatten()
                .and_then(|data| serde_json::from_str::<Value>(data.get()).ok())
                .and_then(|data| challenge_in_value(&data)),
            error_code: Some(error.code()),
            tool_error: false,
        },
    }
}

/// The receipt in a result's `_meta`, or in its `structuredContent`; two that differ
/// say nothing.
fn receipt_in(result: &Value) -> Option<Result<Receipt, X402Error>> {
    let places = [member(result, "_meta"), member(result, "structuredContent")];
    let mut found: Option<&Value> = None;
    for place in places.into_iter().flatten() {
        for key in [RECEIPT_KEY, RECEIPT_KEY_DOTTED] {
            let Some(value) = place.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            match found {
                Some(first) if first != value => {
                    return Some(Err(X402Error::WrongShape(
                        "the tool result carries receipts that differ".into(),
                    )))
                }
                _ => found = Some(value),
            }
        }
    }
    found.map(x402::parse_receipt_json)
}

/// A challenge in a tool result: `structuredContent`, else the first text content.
fn challenge_in_result(result: &Value) -> Option<Challenge> {
    if let Some(challenge) = member(result, "structuredContent")
        .map(|content| Value::Object(content.clone()))
        .and_then(|content| challenge_in_value(&content))
    {
        return Some(challenge);
    }
    let text = result
        .get("content")?
        .as_array()?
        .iter()
        .find(|item| item.get("type").and_then(Value::as_str) == Some("text"))?
        .get("text")?
        .as_str()?;
    challenge_in_text(text)
}

/// A challenge written as text: the object as JSON, the `x402/error` wrapper, or the
/// object after a prefix ("Error executing tool X: {...}").
fn challenge_in_text(text: &str) -> Option<Challenge> {
    if text.len() > super::answer::MAX_ANSWER_BYTES || !text.contains("accepts") {
        return None;
    }
    let parsed = serde_json::from_str::<Value>(text).ok().or_else(|| {
        let start = text.find('{')?;
        let end = text.rfind('}')?;
        serde_json::from_str::<Value>(text.get(start..=end)?).ok()
    })?;
    challenge_in_value(&parsed)
}

/// A PaymentRequired object (either version, with at least one offer), or the
/// `x402/error` wrapper around one.
fn challenge_in_value(value: &Value) -> Option<Challenge> {
    if let Some(data) = value
        .get("x402/error")
        .and_then(|wrapper| wrapper.get("data"))
    {
        return challenge_in_value(data);
    }
    let offers = value.get("accepts")?.as_array()?;
    if value.get("x402Version").is_none() || offers.is_empty() {
        return None;
    }
    match x402::parse_challenge_json(value) {
        Ok(challenge) => Some(challenge),
        Err(error) => {
            tracing::info!(%error, "an MCP tool result looks like an x402 challenge but cannot be read");
            None
        }
    }
}

fn member<'v>(value: &'v Value, key: &str) -> Option<&'v Map<String, Value>> {
    value.get(key)?.as_object()
}
