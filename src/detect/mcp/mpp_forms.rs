//! What an MCP tool call's JSON-RPC response says about an MPP payment, in the forms
//! pympp 0.16.0 writes and reads (draft-payment-transport-mcp-00,
//! `tests/data/captures/mpp/mpp_over_mcp_evm.json`):
//!
//! * challenges: a JSON-RPC error with code `-32042` (payment required) whose
//!   `data.challenges` are challenge objects (`request` and `opaque` as JSON objects, not
//!   base64url); `-32043` (verification failed) carries fresh ones the same way;
//! * a receipt: the result's `_meta["org.paymentauth/receipt"]`: `status`, `challengeId`,
//!   `method`, `timestamp`, `reference` and, unlike HTTP's, `settlement.amount`.
//!
//! [`read_answer`] gathers both; the engine settles on them as on x402's forms (SPEC §1):
//! a receipt decides; without one, fresh challenges mean the merchant did not take the
//! payment.

use crate::mpp::{self, Challenge, MppError, Receipt};
use jsonrpsee_types::{Response, ResponsePayload};
use serde_json::Value;

/// The receipt key in a result's `_meta`.
pub const RECEIPT_KEY: &str = "org.paymentauth/receipt";
/// The JSON-RPC error code of a payment-required answer.
pub const PAYMENT_REQUIRED_CODE: i32 = -32042;
/// The JSON-RPC error code of a credential the merchant rejected.
pub const VERIFICATION_FAILED_CODE: i32 = -32043;

/// What one response says about an MPP payment.
#[derive(Debug, Default)]
pub struct MppCallAnswer {
    /// The receipt, if the result carries one (an error if it is unreadable).
    pub receipt: Option<Result<Receipt, MppError>>,
    /// The challenges of a `-32042` or `-32043` error, as far as they could be read.
    pub challenges: Vec<Challenge>,
    /// The JSON-RPC error code, when the response is an error.
    pub error_code: Option<i32>,
    /// Why a `-32043` says the merchant rejected the credential (`failure.reason`).
    pub failure: Option<String>,
}

/// Reads a response's receipt and challenges.
pub fn read_answer(response: &Response<'_, Value>) -> MppCallAnswer {
    match &response.payload {
        ResponsePayload::Success(result) => MppCallAnswer {
            receipt: result
                .as_ref()
                .get("_meta")
                .and_then(|meta| meta.get(RECEIPT_KEY))
                .filter(|receipt| !receipt.is_null())
                .map(mpp::receipt_from_json),
            ..MppCallAnswer::default()
        },
        ResponsePayload::Error(error) => {
            let code = error.code();
            let data = [PAYMENT_REQUIRED_CODE, VERIFICATION_FAILED_CODE]
                .contains(&code)
                .then(|| error.data())
                .flatten()
                .and_then(|data| serde_json::from_str::<Value>(data.get()).ok());
            let Some(data) = data else {
                return MppCallAnswer {
                    error_code: Some(code),
                    ..MppCallAnswer::default()
                };
            };
            let parsed = mpp::challenges_from_mcp(&data);
            for error in &parsed.errors {
                tracing::info!(%error, "an MPP challenge in an MCP answer cannot be read");
            }
            MppCallAnswer {
                receipt: None,
                challenges: parsed.challenges,
                error_code: Some(code),
                failure: data
                    .get("failure")
                    .and_then(|failure| failure.get("reason"))
                    .and_then(Value::as_str)
                    .map(|reason| reason.chars().take(64).collect()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpp::ReceiptStatus;

    fn response(json: &str) -> Response<'static, Value> {
        serde_json::from_str::<Response<'_, Value>>(json)
            .unwrap()
            .into_owned()
    }

    /// The answers pympp's MCP server wrote in the capture (exchanges 3 and 4), as the
    /// event stream's data carried them.
    fn captured() -> (Response<'static, Value>, Response<'static, Value>) {
        let exchanges: Value = serde_json::from_str(include_str!(
            "../../../tests/data/captures/mpp/mpp_over_mcp_evm.json"
        ))
        .unwrap();
        let answer = |index: usize| {
            let data = exchanges[index]["response"]["sse_events"][0]["data"]
                .as_str()
                .unwrap();
            response(data)
        };
        (answer(3), answer(4))
    }

    #[test]
    fn the_captured_challenge_and_receipt_are_read() {
        let (challenge, receipt) = captured();
        let asked = read_answer(&challenge);
        assert_eq!(asked.error_code, Some(PAYMENT_REQUIRED_CODE));
        assert_eq!(asked.challenges.len(), 1);
        let first = &asked.challenges[0];
        assert_eq!(first.method, "evm");
        assert_eq!(first.realm, "mcp.merchant.test");
        assert_eq!(first.amount(), Some(10_000));
        assert!(asked.receipt.is_none());

        let paid = read_answer(&receipt);
        let receipt = paid.receipt.unwrap().unwrap();
        assert_eq!(receipt.status, ReceiptStatus::Success);
        assert_eq!(receipt.challenge_id.as_deref(), Some(first.id.as_str()));
        assert_eq!(receipt.settled_amount, Some(10_000));
        assert!(paid.challenges.is_empty());
        assert_eq!(paid.error_code, None);
    }

    #[test]
    fn a_rejected_credential_brings_fresh_challenges_and_its_reason() {
        let answer = read_answer(&response(
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32043,"message":"Payment Verification Failed",
            "data":{"httpStatus":402,"failure":{"reason":"verification-failed"},"challenges":[
            {"id":"c2","realm":"r","method":"evm","intent":"charge","request":{"amount":"5"}}]}}}"#,
        ));
        assert_eq!(answer.error_code, Some(VERIFICATION_FAILED_CODE));
        assert_eq!(answer.challenges.len(), 1);
        assert_eq!(answer.failure.as_deref(), Some("verification-failed"));
    }

    #[test]
    fn other_errors_and_unreadable_receipts_say_what_they_can() {
        let other = read_answer(&response(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Invalid params",
            "data":{"challenges":[{"id":"c","realm":"r","method":"evm","intent":"charge","request":{}}]}}}"#,
        ));
        assert_eq!(other.error_code, Some(-32602));
        assert!(
            other.challenges.is_empty(),
            "only -32042/-32043 carry challenges"
        );
        let bad = read_answer(&response(
            r#"{"jsonrpc":"2.0","id":1,"result":{"_meta":{"org.paymentauth/receipt":{"status":"maybe"}},"content":[]}}"#,
        ));
        assert!(matches!(bad.receipt, Some(Err(_))));
        let none = read_answer(&response(
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#,
        ));
        assert!(none.receipt.is_none() && none.challenges.is_empty());
    }
}
