//! Tests against real captures from the official x402 Python SDK (2.25.0), kept in the
//! repository at `tests/data/x402/vectors.json`: every header must parse to its decoded form.

use super::decode::decode_header_as;
use super::wire::{PaymentPayloadV1, PaymentPayloadV2, PaymentRequiredV2, SettlementResponse};
use super::*;
use rust_decimal::Decimal;
use serde_json::Value;

const VECTORS: &str = include_str!("../../tests/data/x402/vectors.json");

const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
const PAY_TO: &str = "0x2096000000000000000000000000000000000287";
const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const RESOURCE: &str = "http://127.0.0.1:18402/market-feed";

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors.json is JSON")
}

/// A string member of the vectors by JSON pointer.
fn text(pointer: &str) -> String {
    vectors()
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vectors.json has no string at {pointer}"))
        .to_string()
}

#[test]
fn v2_challenge_header_parses_to_its_decoded_form() {
    let header = text("/v2/challenge_headers/payment-required");
    let challenge = parse_challenge_v2_header(header.as_bytes()).unwrap();
    assert_eq!(challenge.version, 2);
    assert_eq!(challenge.resource.as_deref(), Some(RESOURCE));
    assert_eq!(challenge.accepts.len(), 1);
    let offer = &challenge.accepts[0];
    assert_eq!(offer.scheme, "exact");
    assert_eq!(offer.network, "eip155:84532");
    assert_eq!(offer.asset, USDC_BASE_SEPOLIA);
    assert_eq!(offer.amount_atomic, 50_000);
    assert_eq!(offer.pay_to, PAY_TO);
    assert_eq!(offer.max_timeout_seconds, Some(300));
    assert_eq!(offer.resource.as_deref(), Some(RESOURCE));
    assert_eq!(offer.extra["name"], "USDC");
    assert_eq!(offer.extra["version"], "2");
}

#[test]
fn v2_challenge_wire_type_matches_the_decoded_json() {
    let header = text("/v2/challenge_headers/payment-required");
    let wire: PaymentRequiredV2 = decode_header_as(header.as_bytes()).unwrap();
    let decoded: PaymentRequiredV2 =
        serde_json::from_value(vectors()["v2"]["PAYMENT-REQUIRED_decoded"].clone()).unwrap();
    assert_eq!(wire, decoded);
    assert_eq!(wire.accepts[0].amount, "50000");
    assert_eq!(
        wire.resource.as_ref().map(|r| r.url.as_str()),
        Some(RESOURCE)
    );
    // Nothing in the capture is unknown to the wire types.
    assert!(wire.other.is_empty() && wire.accepts[0].other.is_empty());
}

#[test]
fn v2_payment_parses_with_payer_amount_nonce_and_accepted() {
    let header = text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE");
    let payment = parse_payment_v2(header.as_bytes()).unwrap();
    assert_eq!(payment.version, 2);
    assert_eq!(payment.scheme, "exact");
    assert_eq!(payment.network, "eip155:84532");
    assert_eq!(payment.kind, PaymentKind::EvmAuthorization);
    assert_eq!(payment.payer.as_deref(), Some(PAYER));
    assert_eq!(payment.pay_to.as_deref(), Some(PAY_TO));
    assert_eq!(payment.amount_atomic, Some(50_000));
    assert_eq!(payment.asset.as_deref(), Some(USDC_BASE_SEPOLIA));
    assert_eq!(
        payment.nonce.as_deref(),
        Some("0xf1ed9951c5f6b6c8cc595218205f620c260688803acde8036d33d78110905837")
    );
    assert!(payment
        .signature
        .as_deref()
        .unwrap()
        .starts_with("0xa4947771"));
    assert_eq!(payment.valid_before, Some(1_795_288_646));
    assert_eq!(payment.resource.as_deref(), Some(RESOURCE));
    assert_eq!(payment.solana_transaction, None);
    let accepted = payment.accepted.as_ref().unwrap();
    assert_eq!(accepted.amount_atomic, 50_000);
    assert_eq!(accepted.pay_to, PAY_TO);
    assert_eq!(accepted.resource.as_deref(), Some(RESOURCE));
    assert_eq!(payment.mismatch_with(accepted), None);
    assert_eq!(payment.max_cost_atomic(), Some(50_000));
}

#[test]
fn v2_payment_answers_the_v2_challenge() {
    let challenge =
        parse_challenge_v2_header(text("/v2/challenge_headers/payment-required").as_bytes())
            .unwrap();
    let payment =
        parse_payment_v2(text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE").as_bytes())
            .unwrap();
    assert_eq!(payment.accepted.as_ref(), Some(&challenge.accepts[0]));
    assert_eq!(payment.mismatch_with(&challenge.accepts[0]), None);
}

#[test]
fn payment_digest_is_sha256_of_the_decoded_json() {
    let header = text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE");
    let payment = parse_payment_v2(header.as_bytes()).unwrap();
    let decoded = decode::decode_header(header.as_bytes()).unwrap();
    use sha2::Digest;
    let expected: [u8; 32] = sha2::Sha256::digest(&decoded).into();
    assert_eq!(payment.digest, expected);
    assert_eq!(payment.digest_hex().len(), 64);
    // Surrounding whitespace changes nothing: same bytes, same payment.
    let padded = format!("  {header}\t");
    assert_eq!(parse_payment_v2(padded.as_bytes()).unwrap(), payment);
}

#[test]
fn v2_payment_wire_type_matches_the_decoded_json() {
    let header = text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE");
    let wire: PaymentPayloadV2 = decode_header_as(header.as_bytes()).unwrap();
    let decoded: PaymentPayloadV2 =
        serde_json::from_value(vectors()["v2"]["PAYMENT-SIGNATURE_decoded"].clone()).unwrap();
    assert_eq!(wire, decoded);
    let payload: wire::Eip3009Payload =
        serde_json::from_value(Value::Object(wire.payload.clone())).unwrap();
    assert_eq!(payload.authorization.value, "50000");
    assert_eq!(payload.authorization.from, PAYER);
}

#[test]
fn v1_challenge_body_parses() {
    let body = text("/v1/challenge_body");
    let challenge = parse_challenge_v1_body(body.as_bytes()).unwrap();
    assert_eq!(challenge.version, 1);
    assert_eq!(challenge.resource.as_deref(), Some(RESOURCE));
    let offer = &challenge.accepts[0];
    assert_eq!(offer.scheme, "exact");
    assert_eq!(offer.network, "base-sepolia");
    assert_eq!(offer.amount_atomic, 50_000);
    assert_eq!(offer.asset, USDC_BASE_SEPOLIA);
    assert_eq!(offer.pay_to, PAY_TO);
    assert_eq!(offer.max_timeout_seconds, Some(60));
    assert_eq!(offer.extra["name"], "USDC");
    let wire: wire::PaymentRequiredV1 = serde_json::from_str(&body).unwrap();
    assert_eq!(wire.accepts[0].max_amount_required, "50000");
    assert_eq!(wire.accepts[0].output_schema, Value::Null);
}

#[test]
fn v1_x_payment_parses() {
    let header = text("/v1/X-PAYMENT");
    let payment = parse_payment_v1(header.as_bytes()).unwrap();
    assert_eq!(payment.version, 1);
    assert_eq!(payment.scheme, "exact");
    assert_eq!(payment.network, "base-sepolia");
    assert_eq!(payment.kind, PaymentKind::EvmAuthorization);
    assert_eq!(payment.payer.as_deref(), Some(PAYER));
    assert_eq!(payment.pay_to.as_deref(), Some(PAY_TO));
    assert_eq!(payment.amount_atomic, Some(50_000));
    assert_eq!(payment.accepted, None);
    assert_eq!(payment.asset, None); // v1 EIP-3009 names no asset: the challenge does
    assert_eq!(
        payment.nonce.as_deref(),
        Some("0x0431b4aec8a5e19c271d13ada1a395e50e90bcfd1059f6958b1ab3ef5da8e077")
    );
    let wire: PaymentPayloadV1 = decode_header_as(header.as_bytes()).unwrap();
    assert_eq!(wire.network, "base-sepolia");

    let challenge = parse_challenge_v1_body(text("/v1/challenge_body").as_bytes()).unwrap();
    assert_eq!(payment.mismatch_with(&challenge.accepts[0]), None);
}

#[test]
fn receipts_parse() {
    let receipt = parse_receipt(text("/v2/PAYMENT-RESPONSE").as_bytes()).unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.payer.as_deref(), Some(PAYER));
    assert_eq!(
        receipt.transaction.as_deref(),
        Some("0xe5e6d41f4c3ff05d75eb2398278e629bcce00d919ba6c3f01ff5addbf8675fda")
    );
    assert_eq!(receipt.network.as_deref(), Some("eip155:84532"));
    assert_eq!(receipt.error_reason, None);
    assert_eq!(receipt.settled_amount_atomic, None);

    // The v1 example is given decoded only; encode it as a server would.
    let v1 = vectors()["v1"]["X-PAYMENT-RESPONSE_example_decoded"].to_string();
    let receipt = parse_receipt(b64(&v1).as_bytes()).unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.network.as_deref(), Some("base-sepolia"));
    assert_eq!(receipt.payer.as_deref(), Some(PAYER));

    let wire: SettlementResponse =
        decode_header_as(text("/v2/PAYMENT-RESPONSE").as_bytes()).unwrap();
    assert!(wire.success);
}

#[test]
fn failed_and_upto_receipts_parse() {
    let failed =
        r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"base"}"#;
    let receipt = parse_receipt(b64(failed).as_bytes()).unwrap();
    assert!(!receipt.success);
    assert_eq!(receipt.error_reason.as_deref(), Some("insufficient_funds"));
    let upto = r#"{"success":true,"transaction":"0x12","network":"eip155:84532","settledAmount":"2350000"}"#;
    let receipt = parse_receipt(b64(upto).as_bytes()).unwrap();
    assert_eq!(receipt.settled_amount_atomic, Some(2_350_000));
}

#[test]
fn fifty_thousand_usdc_units_on_base_sepolia_cost_five_cents() {
    let table = AssetTable::builtin();
    for network in ["base-sepolia", "eip155:84532"] {
        let price = price(&table, network, USDC_BASE_SEPOLIA, 50_000).unwrap();
        assert_eq!(price.atomic, 50_000);
        assert_eq!(price.symbol, "USDC");
        assert_eq!(price.amount, Decimal::new(5, 2));
        assert_eq!(price.usd, Decimal::new(5, 2));
        assert_eq!(price.usd.to_string(), "0.05");
    }
    // EVM addresses match in any case.
    let lower = USDC_BASE_SEPOLIA.to_ascii_lowercase();
    assert!(price(&table, "base-sepolia", &lower, 1).is_ok());
}

#[test]
fn replay_keys_of_the_captured_payments() {
    let v2 = parse_payment_v2(text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE").as_bytes())
        .unwrap();
    let keys = v2.replay_keys();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0].to_string(),
        format!(
            "payer_nonce:{}:{}",
            PAYER.to_ascii_lowercase(),
            "0xf1ed9951c5f6b6c8cc595218205f620c260688803acde8036d33d78110905837"
        )
    );
    assert!(matches!(&keys[1], ReplayKey::Signature(_)));
    assert!(keys[1].to_string().starts_with("signature_sha256:"));
    assert_eq!(keys[1].to_string().len(), "signature_sha256:".len() + 64);

    // The v1 capture is another payment: nothing in common.
    let v1 = parse_payment_v1(text("/v1/X-PAYMENT").as_bytes()).unwrap();
    assert!(v1.replay_keys().iter().all(|k| !keys.contains(k)));
}

/// The captured v2 payment, decoded, with `edit` applied to its JSON.
fn respelled(edit: impl FnOnce(&mut serde_json::Value)) -> Payment {
    let header = text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE");
    let json = decode::decode_header(header.as_bytes()).unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    edit(&mut value);
    parse_payment_v2(b64(&value.to_string()).as_bytes()).unwrap()
}

fn rewrite(value: &mut serde_json::Value, pointer: &str, change: impl Fn(&str) -> String) {
    let field = value.pointer_mut(pointer).unwrap();
    *field = serde_json::Value::String(change(field.as_str().unwrap()));
}

#[test]
fn replay_keys_do_not_depend_on_hex_spelling() {
    let original = respelled(|_| {});
    let without_prefix = |t: &str| t.trim_start_matches("0x").to_string();
    let upper = |t: &str| format!("0x{}", t[2..].to_ascii_uppercase());
    let fields = [
        "/payload/authorization/from",
        "/payload/authorization/nonce",
        "/payload/signature",
    ];
    for change in [&without_prefix as &dyn Fn(&str) -> String, &upper] {
        for field in fields {
            let variant = respelled(|v| rewrite(v, field, change));
            assert_ne!(original.digest, variant.digest, "{field}");
            assert_eq!(original.replay_keys(), variant.replay_keys(), "{field}");
        }
    }
}

#[test]
fn a_nonce_without_its_zero_padding_shares_a_key_with_the_padded_one() {
    let padded = respelled(|v| {
        rewrite(v, "/payload/authorization/nonce", |_| {
            format!("0x{:064x}", 0xabcd)
        })
    });
    for short in ["0xabcd", "abcd", "0xABCD", "0x0000abcd"] {
        let unpadded = respelled(|v| rewrite(v, "/payload/authorization/nonce", |_| short.into()));
        assert!(
            unpadded.replay_keys().contains(&padded.replay_keys()[0]),
            "{short}"
        );
    }
    // Read as an ABI bytes32 (zeros on the right) it is also the same authorization.
    let right = respelled(|v| {
        rewrite(v, "/payload/authorization/nonce", |_| {
            format!("0xabcd{}", "0".repeat(60))
        })
    });
    let short = respelled(|v| rewrite(v, "/payload/authorization/nonce", |_| "0xabcd".into()));
    assert!(short.replay_keys().contains(&right.replay_keys()[0]));
}

#[test]
fn payments_whose_key_fields_are_not_bytes_are_refused() {
    let header = text("/v2/paid_retry_request_headers/PAYMENT-SIGNATURE");
    let json = decode::decode_header(header.as_bytes()).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    for (field, bad) in [
        ("/payload/authorization/from", "alice"),
        (
            "/payload/authorization/from",
            "0x01ffffffffffffffffffffffffffffffffffffffff",
        ),
        ("/payload/authorization/nonce", "0xnot-hex"),
        ("/payload/authorization/nonce", "nonce-1"),
        (
            "/payload/authorization/nonce",
            &format!("0x01{}", "0".repeat(64)),
        ),
        ("/payload/signature", "0xsig"),
        ("/payload/signature", "not hex at all"),
    ] {
        let mut value = value.clone();
        *value.pointer_mut(field).unwrap() = serde_json::Value::String(bad.into());
        let error = parse_payment_v2(b64(&value.to_string()).as_bytes()).unwrap_err();
        assert_eq!(error.reason(), "malformed_payment", "{field} = {bad}");
        assert!(error.to_string().contains("must be"), "{error}");
    }
}

#[test]
fn same_address_folds_case_only_for_hex() {
    assert!(same_address(PAYER, &PAYER.to_ascii_lowercase()));
    assert!(same_address("0xAB", "0Xab"));
    assert!(!same_address("0xab", "0xac"));
    let mint = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
    assert!(same_address(mint, mint));
    assert!(!same_address(mint, &mint.to_ascii_lowercase()));
    assert!(!same_address("ab", "0xab"));
}

/// Standard base64, as the SDKs encode.
pub(super) fn b64(json: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(json)
}
