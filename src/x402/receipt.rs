//! Settlement receipts: `X-PAYMENT-RESPONSE` (v1) and `PAYMENT-RESPONSE` (v2) have the
//! same shape, `{success, payer, transaction, network, errorReason?, amount?}`. A receipt
//! decides whether a reservation commits, so it is read as strictly as a payment: a
//! malformed one is an error, never a guessed success.
//!
//! The amount settled is `amount` (x402 2.x `SettleResponse`; for `upto` it is what the
//! merchant charged, at most the signed maximum: 37000 of 100000 in the capture
//! `tests/data/captures/x402/x402_v2_permit2_and_upto_http.json`). The early `upto` draft
//! named it `settledAmount`; both are read, and if both come and differ the larger counts.

use super::decode::decode_header_json;
use super::error::X402Error;
use super::fields::Obj;
use serde_json::Value;

/// A parsed settlement receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Whether the merchant says the payment settled.
    pub success: bool,
    /// The address that paid, as the receipt reports it.
    pub payer: Option<String>,
    /// The settlement transaction hash (EVM) or signature (Solana).
    pub transaction: Option<String>,
    /// The network the payment settled on, as the receipt names it.
    pub network: Option<String>,
    /// Why settlement failed (`errorReason`), when it did.
    pub error_reason: Option<String>,
    /// What the receipt says was charged (`amount`, or the draft's `settledAmount`); for
    /// `upto`, what the budget commits (never more than the signed maximum).
    pub settled_amount_atomic: Option<u128>,
}

/// Parses a receipt header of either version.
pub fn parse_receipt(header: &[u8]) -> Result<Receipt, X402Error> {
    let (json, _) = decode_header_json(header)?;
    parse_receipt_json(&json)
}

/// Parses a receipt given as a JSON object: x402 over MCP puts it in a tool result's
/// `_meta["x402/payment-response"]`.
pub fn parse_receipt_json(json: &Value) -> Result<Receipt, X402Error> {
    let root = Obj::root(json, "the payment receipt")?;
    Ok(Receipt {
        success: root.boolean("success")?,
        payer: root.opt_string("payer")?,
        transaction: root.opt_string("transaction")?,
        network: root.opt_string("network")?,
        error_reason: root.opt_string("errorReason")?,
        settled_amount_atomic: settled_amount(&root)?,
    })
}

/// `amount`, or `settledAmount`; the larger when both come and differ, so a receipt
/// cannot commit less than either of its own figures. An empty string (a failed
/// settlement's) is no amount.
fn settled_amount(root: &Obj<'_>) -> Result<Option<u128>, X402Error> {
    let read = |key: &str| -> Result<Option<u128>, X402Error> {
        match root.opt_string(key) {
            Ok(Some(text)) if text.is_empty() => Ok(None),
            _ => root.opt_amount(key),
        }
    };
    Ok(match (read("amount")?, read("settledAmount")?) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    })
}
