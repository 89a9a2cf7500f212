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

use super::error::X402Error;
use super::fields::Obj;
use super::solana;

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
    pub solana_transaction: Option<String>,
    pub valid_before: Option<u64>,
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
            solana_transaction: None,
            valid_before: None,
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

/// EIP-3009: `value` from `from` to `to`, unique by (from, nonce).
fn eip3009(payload: &Obj<'_>) -> Result<Signed, X402Error> {
    let auth = payload.object("authorization")?;
    Ok(Signed {
        payer: Some(auth.string("from")?),
        pay_to: Some(auth.string("to")?),
        amount_atomic: Some(auth.amount("value")?),
        nonce: Some(auth.string("nonce")?),
        valid_before: auth.opt_timestamp("validBefore")?,
        signature: non_empty(payload.opt_string("signature")?),
        ..Signed::of_kind(PaymentKind::EvmAuthorization)
    })
}

/// Permit2: `permitted.amount` of `permitted.token` to `witness.to`, unique by
/// (from, nonce).
fn permit2(payload: &Obj<'_>) -> Result<Signed, X402Error> {
    let auth = payload.object("permit2Authorization")?;
    let permitted = auth.object("permitted")?;
    let witness = auth.object("witness")?;
    Ok(Signed {
        payer: Some(auth.string("from")?),
        pay_to: Some(witness.string("to")?),
        amount_atomic: Some(permitted.amount("amount")?),
        asset: Some(permitted.string("token")?),
        nonce: Some(auth.string("nonce")?),
        valid_before: auth.opt_timestamp("deadline")?,
        signature: Some(payload.string("signature")?),
        ..Signed::of_kind(PaymentKind::EvmPermit2)
    })
}

/// Solana: the transaction must at least be base64 of a signed transaction, so its replay
/// identity is well defined.
fn solana_transaction(payload: &Obj<'_>) -> Result<Signed, X402Error> {
    let transaction = payload.string("transaction")?;
    if solana::message_id(&transaction).is_none() {
        return Err(X402Error::WrongShape(format!(
            "{} must be a base64 serialized Solana transaction",
            payload.path_of("transaction")
        )));
    }
    Ok(Signed {
        solana_transaction: Some(transaction),
        ..Signed::of_kind(PaymentKind::Solana)
    })
}

/// An empty signature string is no signature.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}
