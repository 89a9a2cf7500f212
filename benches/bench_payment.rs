//! The x402 v2 payments the paid-path load generators send (`loadgen`, `paid_load`),
//! included by both with `#[path]`: examples cannot share a module any other way.

use base64::Engine;
use http::HeaderValue;

pub const PAY_TO: &str = "0x2096000000000000000000000000000000000287";
pub const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
pub const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// A v2 payment header, unique by (`run`, `index`): nonce and signature both differ.
pub fn payment_header(run: u64, index: u64, amount: &str) -> HeaderValue {
    let payment = serde_json::json!({
        "x402Version": 2,
        "payload": {
            "authorization": {"from": PAYER, "to": PAY_TO, "value": amount,
                              "validAfter": "0", "validBefore": "4102444800",
                              "nonce": format!("0x{run:016x}{index:048x}")},
            "signature": format!("0x{run:016x}{index:016x}{}", "cd".repeat(49)),
        },
        "accepted": {"scheme": "exact", "network": "eip155:84532", "asset": USDC_BASE_SEPOLIA,
                     "amount": amount, "payTo": PAY_TO, "maxTimeoutSeconds": 300, "extra": {}},
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(payment.to_string());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}
