//! The scheme-specific `payload` of a payment: who signed, for whom, how much, which nonce.
//!
//! Shapes (coinbase/x402 specs and SDKs):
//! * EVM `exact`, EIP-3009: `{signature, authorization: {from, to, value, validAfter,
//!   validBefore, nonce}}` (`specs/schemes/exact/scheme_exact_evm.md`; the captures).
//! * EVM `exact` or `upto`, Permit2: `{signature, permit2Authorization: {from, permitted:
//!   {token, amount}, spender, nonce, deadline, witness: {to, validAfter, ...}}}`
//!   (same spec §2 and `scheme_upto_evm.md`; Python `mechanisms/evm/upto/client.py`). For
//!   `upto`, `permitted.amount` is the signed maximum and so the most it can cost. The
//!   witness's other members vary by SDK version (`facilitator`, `extra`) and are ignored.
//! * Solana `exact`: `{transaction}`, a base64 partially signed transaction; the amount is
//!   inside it and is taken from the challenge (`scheme_exact_svm.md`).
//!
//! The payload's kind follows the network's namespace, so an EVM authorization cannot be
//! passed off on a Solana network or the reverse. The first `upto` draft's EIP-2612 shape
//! (`authorization: {owner, spender, value, deadline, nonce}`) was never shipped by an SDK
//! and is refused as malformed.

use super::canonical;
use super::error::{excerpt, X402Error};
use super::fields::Obj;
use super::replay_key::ReplayKey;
use super::solana;
use sha2::{Digest, Sha256};

/// How a payment moves money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentKind {
    /// EIP-3009 `transferWithAuthorization` (EVM `exact`, e.g. USDC).
    EvmAuthorization,
    /// Permit2 `permitWitnessTransferFrom` through the x402 proxy (EVM `exact` or `upto`).
    EvmPermit2,
    /// A partially signed Solana transaction.
    Solana,
    /// A network family Purser does not read payloads for (Aptos, Stellar, ...).
    Other,
}

/// What the signed payload says, before it is joined with the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed {
    pub kind: PaymentKind,
    pub payer: Option<String>,
    pub pay_to: Option<String>,
    pub amount_atomic: Option<u128>,
    pub asset: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
    /// Permit2: the contract the signature lets pull the tokens.
    pub spender: Option<String>,
    pub solana_transaction: Option<String>,
    pub valid_before: Option<u64>,
    /// Replay keys from canonical bytes; empty only for [`PaymentKind::Other`].
    pub keys: Vec<ReplayKey>,
}

impl Signed {
    fn of_kind(kind: PaymentKind) -> Self {
        Signed {
            kind,
            payer: None,
            pay_to: None,
            amount_atomic: None,
            asset: None,
            nonce: None,
            signature: None,
            spender: None,
            solana_transaction: None,
            valid_before: None,
            keys: Vec::new(),
        }
    }
}

/// Reads `payload` for a payment on a network of CAIP-2 `namespace`.
pub(crate) fn read(payload: &Obj<'_>, namespace: &str) -> Result<Signed, X402Error> {
    match namespace {
        // Two authorizations in one payload is ambiguous: Purser could judge one while
        // the facilitator executes the other, so neither is trusted.
        "eip155" if payload.has("permit2Authorization") && payload.has("authorization") => {
            Err(X402Error::WrongShape(
                "payload holds both an authorization and a permit2Authorization; \
                 send exactly one"
                    .into(),
            ))
        }
        "eip155" if payload.has("permit2Authorization") => permit2(payload),
        "eip155" if payload.has("authorization") => eip3009(payload),
        "eip155" => Err(X402Error::WrongShape(
            "payload must hold an EIP-3009 authorization or a permit2Authorization \
             on an EVM network"
                .into(),
        )),
        "solana" => solana_transaction(payload),
        _ => Ok(Signed::of_kind(PaymentKind::Other)),
    }
}

/// EIP-3009: `value` from `from` to `to`, unique by (from, nonce), the nonce a `bytes32`.
fn eip3009(payload: &Obj<'_>) -> Result<Signed, X402Error> {
    let auth = payload.object("authorization")?;
    let mut signed = Signed {
        payer: Some(auth.string("from")?),
        pay_to: Some(auth.string("to")?),
        amount_atomic: Some(auth.amount("value")?),
        nonce: Some(auth.string("nonce")?),
        valid_before: auth.opt_timestamp("validBefore")?,
        signature: non_empty(payload.opt_string("signature")?),
        ..Signed::of_kind(PaymentKind::EvmAuthorization)
    };
    let (payer, nonce) = (signed.payer.as_deref(), signed.nonce.as_deref());
    let payer = address(&auth, "from", payer.unwrap_or_default())?;
    let nonce_text = nonce.unwrap_or_default();
    let nonces = canonical::bytes32_nonce(nonce_text)
        .ok_or_else(|| uncanonical(&auth, "nonce", nonce_text, "a 32-byte nonce in hex"))?;
    signed.keys = nonces
        .into_iter()
        .map(|nonce| ReplayKey::PayerNonce(payer, nonce))
        .collect();
    signed
        .keys
        .extend(signature_key(payload, signed.signature.as_deref())?);
    Ok(signed)
}

/// Permit2: `permitted.amount` of `permitted.token` to `witness.to`, unique by
/// (from, nonce), the nonce a `uint256`.
fn permit2(payload: &Obj<'_>) -> Result<Signed, X402Error> {
    let auth = payload.object("permit2Authorization")?;
    let permitted = auth.object("permitted")?;
    let witness = auth.object("witness")?;
    let mut signed = Signed {
        payer: Some(auth.string("from")?),
        pay_to: Some(witness.string("to")?),
        amount_atomic: Some(permitted.amount("amount")?),
        asset: Some(permitted.string("token")?),
        nonce: Some(auth.string("nonce")?),
        valid_before: auth.opt_timestamp("deadline")?,
        signature: Some(payload.string("signature")?),
        spender: Some(auth.string("spender")?),
        ..Signed::of_kind(PaymentKind::EvmPermit2)
    };
    let payer = address(&auth, "from", signed.payer.as_deref().unwrap_or_default())?;
    let nonce_text = signed.nonce.as_deref().unwrap_or_default();
    let nonce = canonical::uint256(nonce_text).ok_or_else(|| {
        uncanonical(
            &auth,
            "nonce",
            nonce_text,
            "a uint256 in decimal digits or 0x hex",
        )
    })?;
    signed.keys = vec![ReplayKey::PayerNonce(payer, nonce)];
    signed
        .keys
        .extend(signature_key(payload, signed.signature.as_deref())?);
    Ok(signed)
}

/// The payer as 20 bytes, or why it cannot be keyed.
fn address(object: &Obj<'_>, key: &str, text: &str) -> Result<[u8; 20], X402Error> {
    canonical::address(text)
        .ok_or_else(|| uncanonical(object, key, text, "a 20-byte address in hex"))
}

/// The key of a signature: SHA-256 of its bytes, whatever their hex spelling.
fn signature_key(
    payload: &Obj<'_>,
    signature: Option<&str>,
) -> Result<Option<ReplayKey>, X402Error> {
    let Some(text) = signature else {
        return Ok(None);
    };
    let bytes = canonical::hex_bytes(text)
        .ok_or_else(|| uncanonical(payload, "signature", text, "hex bytes (with or without 0x)"))?;
    Ok(Some(ReplayKey::Signature(Sha256::digest(&bytes).into())))
}

/// A field a replay key is built from, which does not read as the bytes it must be.
fn uncanonical(object: &Obj<'_>, key: &str, text: &str, expected: &str) -> X402Error {
    X402Error::WrongShape(format!(
        "{} must be {expected}, not {}",
        object.path_of(key),
        excerpt(text)
    ))
}

/// Solana: the transaction must at least be base64 of a signed transaction, so its replay
/// identity is well defined.
fn solana_transaction(payload: &Obj<'_>) -> Result<Signed, X402Error> {
    let transaction = payload.string("transaction")?;
    let Some(message) = solana::message_id(&transaction) else {
        return Err(X402Error::WrongShape(format!(
            "{} must be a base64 serialized Solana transaction",
            payload.path_of("transaction")
        )));
    };
    Ok(Signed {
        solana_transaction: Some(transaction),
        keys: vec![ReplayKey::SolanaTransaction(message)],
        ..Signed::of_kind(PaymentKind::Solana)
    })
}

/// An empty signature string is no signature.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}
