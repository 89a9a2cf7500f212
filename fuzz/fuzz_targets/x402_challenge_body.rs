//! The v1 challenge: the JSON body of a `402` answer, normalized and as a wire type.

#![no_main]

#[path = "common/x402_checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;
use purser::x402::{self, decode, wire};

fuzz_target!(|data: &[u8]| {
    let challenge = x402::parse_challenge_v1_body(data);
    checks::check_result(&challenge);
    if let Ok(challenge) = &challenge {
        checks::check_challenge(challenge, 1);
    }
    let json = decode::decode_body_json(data);
    checks::check_result(&json);
    if data.len() <= x402::MAX_CHALLENGE_BODY_BYTES {
        if let Ok(message) = serde_json::from_slice::<wire::PaymentRequiredV1>(data) {
            checks::round_trip(&message);
        }
    }
});
