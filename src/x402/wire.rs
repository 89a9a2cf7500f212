//! The x402 messages exactly as they travel, v1 and v2, as serde types (camelCase).
//!
//! These model the protocol for code that wants every field (descriptions, validity
//! windows, Permit2 spenders). Unknown fields land in `other`, so a newer SDK adding a
//! field never breaks decoding; the wire's own `extra` field keeps its name. Amounts are
//! the wire's integer strings here; the `parse_*` functions validate them and give the
//! normalized views the engine uses (see [`super::challenge`], [`super::payment`]).
//!
//! Sources: coinbase/x402 `specs/x402-specification-v1.md`, `-v2.md`,
//! `specs/schemes/exact/scheme_exact_evm.md`, `scheme_exact_svm.md`,
//! `specs/schemes/upto/scheme_upto_evm.md`, and the Python SDK (`mechanisms/evm`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

type Members = Map<String, Value>;

/// A v1 challenge: the JSON body of the `402` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    pub x402_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub accepts: Vec<PaymentRequirementsV1>,
    #[serde(flatten)]
    pub other: Members,
}

/// One way to pay in a v1 challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    pub scheme: String,
    /// A v1 network name such as `base-sepolia`.
    pub network: String,
    /// Atomic units; for `exact` the exact price.
    pub max_amount_required: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub pay_to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_seconds: Option<u64>,
    pub asset: String,
    #[serde(default)]
    pub output_schema: Value,
    /// Scheme data: EIP-712 domain `name`/`version` on EVM, `feePayer` on Solana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Members>,
    #[serde(flatten)]
    pub other: Members,
}

/// A v2 challenge: base64 JSON in the `PAYMENT-REQUIRED` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV2 {
    pub x402_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    pub accepts: Vec<PaymentRequirementsV2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Members>,
    #[serde(flatten)]
    pub other: Members,
}

/// The resource a v2 challenge or payment is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(flatten)]
    pub other: Members,
}

/// One way to pay in a v2 challenge; also the `accepted` member of a v2 payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV2 {
    pub scheme: String,
    /// A CAIP-2 id such as `eip155:84532`.
    pub network: String,
    pub asset: String,
    /// Atomic units; for `upto` the maximum.
    pub amount: String,
    pub pay_to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Members>,
    #[serde(flatten)]
    pub other: Members,
}

/// A v1 payment: base64 JSON in `X-PAYMENT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1 {
    pub x402_version: u8,
    pub scheme: String,
    pub network: String,
    /// Scheme-specific: [`Eip3009Payload`], [`Permit2Payload`] or [`SolanaPayload`].
    pub payload: Members,
    #[serde(flatten)]
    pub other: Members,
}

/// A v2 payment: base64 JSON in `PAYMENT-SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV2 {
    pub x402_version: u8,
    /// Scheme-specific: [`Eip3009Payload`], [`Permit2Payload`] or [`SolanaPayload`].
    pub payload: Members,
    /// The requirement from the challenge that the client chose to pay.
    pub accepted: PaymentRequirementsV2,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Members>,
    #[serde(flatten)]
    pub other: Members,
}

/// EVM `exact` with EIP-3009 `transferWithAuthorization` (USDC and similar tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Payload {
    /// 65-byte signature, 0x hex. Optional in the TypeScript SDK's type, always sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub authorization: Eip3009Authorization,
    #[serde(flatten)]
    pub other: Members,
}

/// The signed EIP-3009 message: `value` moves from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Authorization {
    pub from: String,
    pub to: String,
    pub value: String,
    pub valid_after: String,
    pub valid_before: String,
    /// bytes32, 0x hex; unique per (authorizer, token contract).
    pub nonce: String,
    #[serde(flatten)]
    pub other: Members,
}

/// EVM `exact` or `upto` through Permit2 `permitWitnessTransferFrom` and the x402 proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Payload {
    pub signature: String,
    pub permit2_authorization: Permit2Authorization,
    #[serde(flatten)]
    pub other: Members,
}

/// The signed Permit2 message. For `exact`, `permitted.amount` is the price; for `upto`
/// it is the maximum the merchant may settle for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Authorization {
    /// The payer (the Permit2 `owner`).
    pub from: String,
    pub permitted: TokenPermissions,
    /// The x402 Permit2 proxy contract, not the merchant.
    pub spender: String,
    /// uint256 as a decimal string (Permit2 nonces are unordered bitmaps).
    pub nonce: String,
    pub deadline: String,
    pub witness: Permit2Witness,
    #[serde(flatten)]
    pub other: Members,
}

/// Token and amount a Permit2 signature allows to move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPermissions {
    pub token: String,
    pub amount: String,
    #[serde(flatten)]
    pub other: Members,
}

/// The witness binding a Permit2 transfer to its recipient. Its extra members differ by
/// SDK version (`facilitator` for `upto`, `extra`/`validBefore` in older drafts) and are
/// kept in `other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Witness {
    /// Where the funds go: the merchant's `payTo`.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_after: Option<String>,
    #[serde(flatten)]
    pub other: Members,
}

/// Solana `exact`: a partially signed transaction, base64. The amount is inside the
/// transaction's transfer instruction, not in the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolanaPayload {
    pub transaction: String,
    #[serde(flatten)]
    pub other: Members,
}

/// A settlement receipt: `X-PAYMENT-RESPONSE` (v1) or `PAYMENT-RESPONSE` (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// `upto` only: what was actually charged, at most the signed maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_amount: Option<String>,
    #[serde(flatten)]
    pub other: Members,
}
