//! Payloads built by hand from the specs (Permit2 `exact`, `upto`, Solana), which the
//! captures do not cover, and the builders the bad-input matrix reuses.

use super::tests::b64;
use super::*;
use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{json, Value};

pub(super) const PAYER: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
pub(super) const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
pub(super) const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

pub(super) fn accepted(scheme: &str, network: &str, amount: &str) -> Value {
    json!({"scheme": scheme, "network": network, "asset": USDC, "amount": amount,
           "payTo": PAY_TO, "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2"}})
}

pub(super) fn permit2_payload(amount: &str) -> Value {
    json!({
        "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
        "permit2Authorization": {
            "from": PAYER,
            "permitted": {"token": USDC, "amount": amount},
            "spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
            "nonce": "84923401923840198230498123049812304981230498123049812304981230498",
            "deadline": "1740672154",
            "witness": {"to": PAY_TO, "validAfter": "1740672089", "facilitator": PAYER}
        }
    })
}

pub(super) fn eip3009_payload(value: Value) -> Value {
    json!({
        "signature": "0xabc",
        "authorization": {"from": PAYER, "to": PAY_TO, "value": value, "validAfter": "0",
                          "validBefore": "1740672154", "nonce": "0x01"}
    })
}

pub(super) fn v2(accepted: Value, payload: Value) -> String {
    let message = json!({"x402Version": 2, "accepted": accepted, "payload": payload,
                         "resource": {"url": "https://api.example.com/llm"}});
    b64(&message.to_string())
}

pub(super) fn v1(network: &str, payload: Value) -> String {
    let message =
        json!({"x402Version": 1, "scheme": "exact", "network": network, "payload": payload});
    b64(&message.to_string())
}

/// A serialized Solana transaction: one signature slot and a message.
pub(super) fn solana_transaction(message: &[u8]) -> String {
    let mut bytes = vec![1u8];
    bytes.extend([0u8; 64]);
    bytes.extend(message);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn permit2_exact_payment_parses() {
    let header = v2(
        accepted("exact", "eip155:84532", "10000"),
        permit2_payload("10000"),
    );
    let payment = parse_payment_v2(header.as_bytes()).unwrap();
    assert_eq!(payment.kind, PaymentKind::EvmPermit2);
    assert_eq!(payment.payer.as_deref(), Some(PAYER));
    assert_eq!(payment.pay_to.as_deref(), Some(PAY_TO));
    assert_eq!(payment.amount_atomic, Some(10_000));
    assert_eq!(payment.asset.as_deref(), Some(USDC));
    assert_eq!(payment.valid_before, Some(1_740_672_154));
    assert_eq!(payment.replay_keys().len(), 2);
    assert_eq!(
        payment.mismatch_with(payment.accepted.as_ref().unwrap()),
        None
    );
}

#[test]
fn a_permit2_nonce_has_one_key_in_decimal_or_hex() {
    let key = |nonce: &str, signature: &str| {
        let mut payload = permit2_payload("10000");
        payload["permit2Authorization"]["nonce"] = json!(nonce);
        payload["signature"] = json!(signature);
        let header = v2(accepted("exact", "eip155:84532", "10000"), payload);
        parse_payment_v2(header.as_bytes()).map(|p| p.replay_keys())
    };
    let signature = permit2_payload("1")["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let decimal = key("255", &signature).unwrap();
    assert_eq!(key("0xff", &signature).unwrap(), decimal);
    assert_eq!(key("0x00FF", &signature[2..]).unwrap(), decimal);
    assert_eq!(
        key("000255", &signature.to_uppercase()[2..]).unwrap(),
        decimal
    );
    assert_ne!(key("256", &signature).unwrap()[0], decimal[0]);
    for bad in ["ff", "-1", "1e3", &"9".repeat(80)] {
        let error = key(bad, &signature).unwrap_err();
        assert_eq!(error.reason(), "malformed_payment", "{bad}");
    }
}

#[test]
fn upto_payment_costs_its_signed_maximum() {
    let header = v2(
        accepted("upto", "eip155:84532", "5000000"),
        permit2_payload("5000000"),
    );
    let payment = parse_payment_v2(header.as_bytes()).unwrap();
    assert_eq!(payment.scheme, "upto");
    assert_eq!(payment.kind, PaymentKind::EvmPermit2);
    assert_eq!(payment.amount_atomic, Some(5_000_000));
    assert_eq!(payment.max_cost_atomic(), Some(5_000_000));
}

#[test]
fn signed_amount_above_the_accepted_one_is_a_mismatch() {
    let header = v2(
        accepted("upto", "eip155:84532", "100"),
        permit2_payload("5000000"),
    );
    let payment = parse_payment_v2(header.as_bytes()).unwrap();
    assert_eq!(payment.max_cost_atomic(), Some(5_000_000));
    let why = payment
        .mismatch_with(payment.accepted.as_ref().unwrap())
        .unwrap();
    assert!(why.contains("more than"), "{why}");

    let mut other_recipient = eip3009_payload(json!("100"));
    other_recipient["authorization"]["to"] = json!("0x0000000000000000000000000000000000000bad");
    let header = v2(accepted("exact", "eip155:84532", "100"), other_recipient);
    let payment = parse_payment_v2(header.as_bytes()).unwrap();
    let why = payment
        .mismatch_with(payment.accepted.as_ref().unwrap())
        .unwrap();
    assert!(why.contains("payTo"), "{why}");
}

#[test]
fn solana_payments_parse_v1_and_v2() {
    let transaction = solana_transaction(b"transfer 1000 to merchant");
    let v1_header = v1("solana-devnet", json!({"transaction": transaction}));
    let payment = parse_payment_v1(v1_header.as_bytes()).unwrap();
    assert_eq!(payment.kind, PaymentKind::Solana);
    assert_eq!(payment.amount_atomic, None);
    assert_eq!(payment.max_cost_atomic(), None);
    assert_eq!(payment.payer, None);
    assert_eq!(
        payment.solana_transaction.as_deref(),
        Some(transaction.as_str())
    );
    let keys = payment.replay_keys();
    assert!(matches!(keys.as_slice(), [ReplayKey::SolanaTransaction(_)]));

    let mint = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
    let offer = json!({"scheme": "exact", "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
                       "asset": mint, "amount": "1000", "payTo": "2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4",
                       "extra": {"feePayer": "EwWqGE4ZFKLofuestmU4LDdK7XM1N4ALgdZccwYugwGd"}});
    let v2_header = v2(offer, json!({"transaction": transaction}));
    let payment = parse_payment_v2(v2_header.as_bytes()).unwrap();
    assert_eq!(payment.kind, PaymentKind::Solana);
    assert_eq!(payment.asset.as_deref(), Some(mint));
    assert_eq!(payment.max_cost_atomic(), Some(1000));
    assert_eq!(payment.replay_keys(), keys); // same signed message, same identity
    let price = price(&AssetTable::builtin(), &payment.network, mint, 1000).unwrap();
    assert_eq!(price.usd, Decimal::new(1, 3));
}
