//! Payment receipts: the `Payment-Receipt` header (base64url JSON) over HTTP, and the
//! object in MCP's `result._meta["org.paymentauth/receipt"]`.
//!
//! Required: `status`, `method`, `reference` (the transaction hash, or Stripe's payment
//! id) and `timestamp`. The SDKs only ever send `"success"`; a receipt that says
//! `"failed"` is read as a failure, any other status as unreadable. The HTTP receipt
//! carries no amount: what settled is the bound challenge's amount. Over MCP it may
//! name the challenge and the amount settled.

use super::canonical::{amount, b64url_object};
use super::error::{excerpt, MppError};
use super::limits::MAX_PARAM_BYTES;
use serde_json::Value;

/// What a receipt says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// `"success"`: the payment settled.
    Success,
    /// `"failed"`: it did not.
    Failed,
}

/// A receipt, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Success or failure.
    pub status: ReceiptStatus,
    /// The method that settled (`evm`, `tempo`, `stripe`).
    pub method: String,
    /// The settlement's reference: a transaction hash, or a payment id.
    pub reference: String,
    /// When it settled (RFC 3339), as written.
    pub timestamp: String,
    /// MCP: the challenge the payment answered.
    pub challenge_id: Option<String>,
    /// MCP: `settlement.amount`, in base units.
    pub settled_amount: Option<u128>,
}

/// The receipt in a `Payment-Receipt` field value.
pub fn parse_receipt_header(value: &[u8]) -> Result<Receipt, MppError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| MppError::WrongShape("the Payment-Receipt value is not UTF-8".into()))?;
    receipt_from_json(&b64url_object(text, "receipt", MAX_PARAM_BYTES)?)
}

/// A receipt given as a JSON object.
pub fn receipt_from_json(json: &Value) -> Result<Receipt, MppError> {
    let text = |name: &str| match json.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        _ => Err(MppError::Missing(format!(
            "receipt field {name:?} (a string)"
        ))),
    };
    let status = match text("status")?.as_str() {
        "success" => ReceiptStatus::Success,
        "failed" => ReceiptStatus::Failed,
        other => {
            return Err(MppError::WrongShape(format!(
                "receipt status {} is neither \"success\" nor \"failed\"",
                excerpt(other)
            )))
        }
    };
    let settled_amount = match json.get("settlement").and_then(|s| s.get("amount")) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(amount(text)?),
        Some(_) => {
            return Err(MppError::WrongShape(
                "receipt settlement.amount must be an integer string".into(),
            ))
        }
    };
    Ok(Receipt {
        status,
        method: text("method")?,
        reference: text("reference")?,
        timestamp: text("timestamp")?,
        challenge_id: json
            .get("challengeId")
            .and_then(Value::as_str)
            .map(str::to_string),
        settled_amount,
    })
}
