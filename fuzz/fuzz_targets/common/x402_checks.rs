//! Invariants every parsed x402 value must hold, shared by the x402 targets.

#![allow(dead_code)] // each target uses the checks for the parsers it runs

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use purser::x402::payment::KNOWN_SCHEMES;
use purser::x402::{
    canonical_network, price, AssetTable, Challenge, Payment, PaymentKind, Receipt, ReplayKey,
    Requirement, X402Error,
};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Debug;
use std::sync::OnceLock;

/// 10^28: every accepted amount has at most 28 digits.
pub const AMOUNT_BOUND: u128 = 10_000_000_000_000_000_000_000_000_000;

fn assets() -> &'static AssetTable {
    static TABLE: OnceLock<AssetTable> = OnceLock::new();
    TABLE.get_or_init(AssetTable::builtin)
}

/// An error is explained: a stable reason and a message.
pub fn check_error(error: &X402Error) {
    assert!(!error.reason().is_empty());
    assert!(!error.to_string().is_empty());
}

pub fn check_result<T>(result: &Result<T, X402Error>) {
    if let Err(error) = result {
        check_error(error);
    }
}

/// Pricing an offer never panics, and a price is never negative.
fn check_price(network: &str, asset: &str, atomic: u128) {
    match price(assets(), network, asset, atomic) {
        Ok(p) => {
            assert_eq!(p.atomic, atomic);
            assert!(!p.amount.is_sign_negative() || p.amount.is_zero(), "{p:?}");
            assert!(!p.usd.is_sign_negative() || p.usd.is_zero(), "{p:?}");
        }
        Err(error) => check_error(&error),
    }
}

pub fn check_requirement(requirement: &Requirement) {
    assert!(requirement.amount_atomic < AMOUNT_BOUND, "{requirement:?}");
    assert!(!requirement.scheme.is_empty());
    assert!(!requirement.network.is_empty());
    assert!(!requirement.asset.is_empty());
    assert!(!requirement.pay_to.is_empty());
    check_price(
        &requirement.network,
        &requirement.asset,
        requirement.amount_atomic,
    );
}

pub fn check_challenge(challenge: &Challenge, version: u8) {
    assert_eq!(challenge.version, version);
    challenge.accepts.iter().for_each(check_requirement);
    if version == 1 {
        let first = challenge.accepts.iter().find_map(|r| r.resource.clone());
        assert_eq!(challenge.resource, first);
    }
}

/// `header` is the header value the payment was parsed from.
pub fn check_payment(payment: &Payment, version: u8, header: &[u8]) {
    assert_eq!(payment.version, version);
    assert!(KNOWN_SCHEMES.contains(&payment.scheme.as_str()));
    assert!(canonical_network(&payment.network).is_some(), "{payment:?}");
    if let Some(amount) = payment.amount_atomic {
        assert!(amount < AMOUNT_BOUND, "{payment:?}");
        assert!(payment.max_cost_atomic() >= Some(amount));
    }
    match payment.kind {
        PaymentKind::EvmAuthorization | PaymentKind::EvmPermit2 => {
            assert!(payment.payer.is_some() && payment.nonce.is_some());
            assert!(payment.pay_to.is_some() && payment.amount_atomic.is_some());
        }
        PaymentKind::Solana => assert!(payment.solana_transaction.is_some()),
        PaymentKind::Other => {}
    }
    // The digest is the SHA-256 of exactly the decoded bytes.
    let decoded = STANDARD
        .decode(header.trim_ascii())
        .expect("a parsed header is base64");
    assert_eq!(payment.digest, <[u8; 32]>::from(Sha256::digest(&decoded)));
    assert_eq!(payment.digest_hex().len(), 64);
    check_replay_keys(payment, version, &decoded);
    if let Some(accepted) = &payment.accepted {
        assert_eq!(accepted.scheme, payment.scheme);
        check_requirement(accepted);
        let _ = payment.mismatch_with(accepted);
    }
    if let (Some(asset), Some(amount)) = (&payment.asset, payment.amount_atomic) {
        check_price(&payment.network, asset, amount);
    }
}

/// Every payment Purser accepts has keys of its kind, and re-spelling its hex fields
/// (no `0x`, upper case) gives other bytes but the same keys.
fn check_replay_keys(payment: &Payment, version: u8, decoded: &[u8]) {
    let keys = payment.replay_keys();
    for key in &keys {
        let text = key.to_string();
        assert!(!text.is_empty() && text.is_ascii(), "{text}");
    }
    let payer_nonce = keys
        .iter()
        .any(|k| matches!(k, ReplayKey::PayerNonce(..)));
    match payment.kind {
        PaymentKind::EvmAuthorization | PaymentKind::EvmPermit2 => assert!(payer_nonce),
        PaymentKind::Solana => {
            assert!(matches!(keys.as_slice(), [ReplayKey::SolanaTransaction(_)]))
        }
        PaymentKind::Other => assert!(keys.is_empty()),
    }
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(decoded) else {
        return;
    };
    let (auth, nonce_too) = match payment.kind {
        PaymentKind::EvmAuthorization => ("authorization", true),
        // A Permit2 nonce without `0x` reads as decimal: only its case may change.
        PaymentKind::EvmPermit2 => ("permit2Authorization", false),
        _ => return,
    };
    let mut respell = |pointer: &str, drop_prefix: bool| {
        if let Some(serde_json::Value::String(text)) = json.pointer_mut(pointer) {
            let digits = text
                .strip_prefix("0x")
                .or_else(|| text.strip_prefix("0X"))
                .unwrap_or(text)
                .to_ascii_uppercase();
            *text = if drop_prefix {
                digits
            } else if text.len() > digits.len() {
                format!("0x{digits}")
            } else {
                text.clone()
            };
        }
    };
    respell(&format!("/payload/{auth}/from"), true);
    respell("/payload/signature", true);
    respell(&format!("/payload/{auth}/nonce"), nonce_too);
    let header = STANDARD.encode(json.to_string());
    let again = match version {
        1 => purser::x402::parse_payment_v1(header.as_bytes()),
        _ => purser::x402::parse_payment_v2(header.as_bytes()),
    };
    // Re-serialising can change other fields (number spellings), so only a payment that
    // still parses is compared.
    if let Ok(again) = again {
        assert_eq!(again.replay_keys(), keys, "{json}");
    }
}

pub fn check_receipt(receipt: &Receipt) {
    if let Some(amount) = receipt.settled_amount_atomic {
        assert!(amount < AMOUNT_BOUND, "{receipt:?}");
    }
}

/// A wire type that decoded re-encodes to JSON that decodes to the same value.
pub fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let text = serde_json::to_string(value).expect("a decoded wire value serialises");
    let again: T = serde_json::from_str(&text).expect("its own JSON decodes");
    assert_eq!(&again, value, "{text}");
}
