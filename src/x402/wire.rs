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
    /// The protocol version, `1` here.
    pub x402_version: u8,
    /// Why the server asks for payment or refused the last one, as the server wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The ways the server accepts payment; the client pays one of them.
    pub accepts: Vec<PaymentRequirementsV1>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// One way to pay in a v1 challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    /// The payment scheme: `exact` (a fixed price) or `upto` (a signed maximum).
    pub scheme: String,
    /// A v1 network name such as `base-sepolia`.
    pub network: String,
    /// Atomic units; for `exact` the exact price.
    pub max_amount_required: String,
    /// The URL of the resource being paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// What the payment buys, in the merchant's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The media type of the paid resource's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// The merchant's address that receives the funds (EVM: 0x hex; Solana: base58).
    pub pay_to: String,
    /// How long, in seconds, the merchant allows for the payment to settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_seconds: Option<u64>,
    /// The token paid in: its contract (EVM: 0x hex) or mint (Solana: base58).
    pub asset: String,
    /// The JSON schema of the paid answer, if the merchant gives one; `null` if not.
    #[serde(default)]
    pub output_schema: Value,
    /// Scheme data: EIP-712 domain `name`/`version` on EVM, `feePayer` on Solana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Members>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// A v2 challenge: base64 JSON in the `PAYMENT-REQUIRED` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV2 {
    /// The protocol version, `2` here.
    pub x402_version: u8,
    /// Why the server asks for payment or refused the last one, as the server wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource being paid for, shared by every entry in `accepts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The ways the server accepts payment; the client pays one of them.
    pub accepts: Vec<PaymentRequirementsV2>,
    /// Protocol extensions (such as discovery metadata), kept as sent and not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Members>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// The resource a v2 challenge or payment is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The resource's absolute URL.
    pub url: String,
    /// What the payment buys, in the merchant's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The media type of the paid resource's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// One way to pay in a v2 challenge; also the `accepted` member of a v2 payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV2 {
    /// The payment scheme: `exact` (a fixed price) or `upto` (a signed maximum).
    pub scheme: String,
    /// A CAIP-2 id such as `eip155:84532`.
    pub network: String,
    /// The token paid in: its contract (EVM: 0x hex) or mint (Solana: base58).
    pub asset: String,
    /// Atomic units; for `upto` the maximum.
    pub amount: String,
    /// The merchant's address that receives the funds (EVM: 0x hex; Solana: base58).
    pub pay_to: String,
    /// How long, in seconds, the merchant allows for the payment to settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_seconds: Option<u64>,
    /// Scheme data: EIP-712 domain `name`/`version` on EVM, `feePayer` on Solana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Members>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// A v1 payment: base64 JSON in `X-PAYMENT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1 {
    /// The protocol version, `1` here.
    pub x402_version: u8,
    /// The payment scheme the client chose: `exact` or `upto`.
    pub scheme: String,
    /// The v1 network name the payment is on, such as `base-sepolia`.
    pub network: String,
    /// Scheme-specific: [`Eip3009Payload`], [`Permit2Payload`] or [`SolanaPayload`].
    pub payload: Members,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// A v2 payment: base64 JSON in `PAYMENT-SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV2 {
    /// The protocol version, `2` here.
    pub x402_version: u8,
    /// Scheme-specific: [`Eip3009Payload`], [`Permit2Payload`] or [`SolanaPayload`].
    pub payload: Members,
    /// The requirement from the challenge that the client chose to pay.
    pub accepted: PaymentRequirementsV2,
    /// The resource the payment is for, echoed from the challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// Protocol extensions, kept as sent and not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Members>,
    /// Members this type does not name, kept so re-encoding loses nothing.
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
    /// The signed transfer: payer, merchant, amount, validity window and nonce.
    pub authorization: Eip3009Authorization,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// The signed EIP-3009 message: `value` moves from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Authorization {
    /// The payer's address, as signed (0x hex).
    pub from: String,
    /// The recipient's address, as signed (0x hex); must be the requirement's `payTo`.
    pub to: String,
    /// The amount moved, in the token's atomic units (decimal integer string).
    pub value: String,
    /// Unix time in seconds after which the authorization is valid (decimal string).
    pub valid_after: String,
    /// Unix time in seconds before which the authorization must be used (decimal string).
    pub valid_before: String,
    /// bytes32, 0x hex; unique per (authorizer, token contract).
    pub nonce: String,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// EVM `exact` or `upto` through Permit2 `permitWitnessTransferFrom` and the x402 proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Payload {
    /// The payer's signature over the Permit2 message, 0x hex.
    pub signature: String,
    /// The signed Permit2 message: token, amount, spender, nonce, deadline, witness.
    pub permit2_authorization: Permit2Authorization,
    /// Members this type does not name, kept so re-encoding loses nothing.
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
    /// The token and amount the signature allows to move.
    pub permitted: TokenPermissions,
    /// The x402 Permit2 proxy contract, not the merchant.
    pub spender: String,
    /// uint256 as a decimal string (Permit2 nonces are unordered bitmaps).
    pub nonce: String,
    /// Unix time in seconds after which the signature is void (decimal string).
    pub deadline: String,
    /// Binds the transfer to its recipient (the merchant's `payTo`).
    pub witness: Permit2Witness,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// Token and amount a Permit2 signature allows to move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPermissions {
    /// The token contract's address, 0x hex.
    pub token: String,
    /// The amount in the token's atomic units (decimal integer string).
    pub amount: String,
    /// Members this type does not name, kept so re-encoding loses nothing.
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
    /// Unix time in seconds before which the transfer may not settle (decimal string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_after: Option<String>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// Solana `exact`: a partially signed transaction, base64. The amount is inside the
/// transaction's transfer instruction, not in the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolanaPayload {
    /// The partially signed Solana transaction, base64.
    pub transaction: String,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}

/// A settlement receipt: `X-PAYMENT-RESPONSE` (v1) or `PAYMENT-RESPONSE` (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    /// Whether the merchant's facilitator settled the payment.
    pub success: bool,
    /// The address that paid, as the facilitator reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The settlement transaction's id on the network (EVM: 0x hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// The network the payment settled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Why settlement failed, as the facilitator reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// `upto` only: what was actually charged, at most the signed maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_amount: Option<String>,
    /// Members this type does not name, kept so re-encoding loses nothing.
    #[serde(flatten)]
    pub other: Members,
}
