//! Every x402 header parser (`X-PAYMENT`, `PAYMENT-SIGNATURE`, `PAYMENT-REQUIRED`,
//! receipts) on arbitrary bytes: once as the header value itself (size, base64), and once
//! base64-encoded, so the fuzzer mutates the JSON inside the header.

#![no_main]

#[path = "common/x402_checks.rs"]
mod checks;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use purser::x402::{self, decode, wire};

fn headers(value: &[u8]) {
    let v1 = x402::parse_payment_v1(value);
    checks::check_result(&v1);
    if let Ok(payment) = &v1 {
        checks::check_payment(payment, 1, value);
    }
    let v2 = x402::parse_payment_v2(value);
    checks::check_result(&v2);
    if let Ok(payment) = &v2 {
        checks::check_payment(payment, 2, value);
    }
    let challenge = x402::parse_challenge_v2_header(value);
    checks::check_result(&challenge);
    if let Ok(challenge) = &challenge {
        checks::check_challenge(challenge, 2);
    }
    let receipt = x402::parse_receipt(value);
    checks::check_result(&receipt);
    if let Ok(receipt) = &receipt {
        checks::check_receipt(receipt);
    }
    // The typed wire path.
    if let Ok(message) = decode::decode_header_as::<wire::PaymentPayloadV1>(value) {
        checks::round_trip(&message);
    }
    if let Ok(message) = decode::decode_header_as::<wire::PaymentPayloadV2>(value) {
        checks::round_trip(&message);
    }
    if let Ok(message) = decode::decode_header_as::<wire::PaymentRequiredV2>(value) {
        checks::round_trip(&message);
    }
    if let Ok(message) = decode::decode_header_as::<wire::SettlementResponse>(value) {
        checks::round_trip(&message);
    }
}

fuzz_target!(|data: &[u8]| {
    headers(data);
    headers(STANDARD.encode(data).as_bytes());
});
