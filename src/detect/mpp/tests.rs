//! MPP credentials read as payments: the pympp captures, and credentials built to cover
//! the methods, intents and payload forms the captures do not.

use super::*;
use base64::Engine;

const EVM: &str = include_str!("../../../tests/data/captures/mpp/mpp_http_evm_charge.json");
const TEMPO: &str = include_str!("../../../tests/data/captures/mpp/mpp_http_tempo_charge.json");

/// The `Authorization` value the client sent in the capture's exchange `index`.
fn authorization(capture: &str, index: usize) -> String {
    let exchanges: Value = serde_json::from_str(capture).unwrap();
    exchanges[index]["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "authorization")
        .and_then(|pair| pair[1].as_str())
        .unwrap()
        .to_string()
}

fn b64url(json: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

/// A credential for `method`/`intent` with `request` and `payload`, as a header value.
fn credential(method: &str, intent: &str, request: Value, payload: Value) -> String {
    let json = serde_json::json!({
        "challenge": {"id": "ch1", "realm": "api.test", "method": method, "intent": intent,
                      "request": b64url(&request), "expires": "2099-01-01T00:00:00Z"},
        "payload": payload,
        "source": "did:pkh:eip155:1:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
    });
    format!("Payment {}", b64url(&json))
}

#[test]
fn the_captured_evm_credential_is_a_charge_of_its_request() {
    let payment = read_credential(authorization(EVM, 1).as_bytes()).unwrap();
    assert_eq!(payment.method, MppMethod::Evm);
    assert_eq!(payment.terms.network, "eip155:84532");
    assert_eq!(
        payment.terms.currency,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    );
    assert_eq!(payment.terms.amount, 10_000);
    assert_eq!(payment.terms.decimals, Some(6));
    assert_eq!(
        payment.signed,
        Signed::Authorization {
            to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            value: 10_000
        }
    );
    assert_eq!(
        payment.payer.as_deref(),
        Some("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")
    );
    // The authorization is valid until the challenge expires (2026-12-06T23:21:47Z).
    assert_eq!(payment.valid_before, Some(1_796_599_307));
    let kinds: Vec<&str> = payment
        .replay_keys
        .iter()
        .map(|k| k.split(':').next().unwrap())
        .collect();
    assert_eq!(kinds, ["mpp_challenge", "payer_nonce", "signature_sha256"]);
    // The same authorization as x402 would key it: a payment cannot be replayed across
    // protocols.
    assert!(payment.replay_keys[1]
        .starts_with("payer_nonce:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23:0x7d44976c8645bdee"));
}

const OVER_MCP: &str = include_str!("../../../tests/data/captures/mpp/mpp_over_mcp_evm.json");

/// The credential object pympp's `McpClient` put in the paid call's `_meta`, as JSON text.
fn meta_credential() -> String {
    let exchanges: Value = serde_json::from_str(OVER_MCP).unwrap();
    exchanges[4]["request"]["json"]["params"]["_meta"]["org.paymentauth/credential"].to_string()
}

#[test]
fn the_captured_mcp_credential_is_a_charge_of_its_request_object() {
    let payment = read_meta_credential(&meta_credential()).unwrap();
    assert_eq!(payment.method, MppMethod::Evm);
    assert_eq!(payment.terms.network, "eip155:84532");
    assert_eq!(payment.terms.amount, 10_000);
    assert_eq!(
        payment.signed,
        Signed::Authorization {
            to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            value: 10_000
        }
    );
    let kinds: Vec<&str> = payment
        .replay_keys
        .iter()
        .map(|k| k.split(':').next().unwrap())
        .collect();
    assert_eq!(kinds, ["mpp_challenge", "payer_nonce", "signature_sha256"]);
    // The HTTP form's base64url request is not the MCP form.
    let http_form = meta_credential().replace(r#""request":{"#, r#""request":"e30","unused":{"#);
    assert!(read_meta_credential(&http_form).is_err());
    for bad in ["", "[]", "{", "{\"challenge\":{}}", "null"] {
        let refused = read_meta_credential(bad).unwrap_err();
        assert_eq!(refused.reason(), "malformed_payment", "{bad}: {refused}");
    }
    let huge = format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(crate::mpp::MAX_CREDENTIAL_BYTES)
    );
    assert_eq!(
        read_meta_credential(&huge).unwrap_err().reason(),
        "payment_too_large"
    );
}

#[test]
fn the_captured_tempo_credential_carries_its_transfers() {
    let payment = read_credential(authorization(TEMPO, 1).as_bytes()).unwrap();
    assert_eq!(payment.method, MppMethod::Tempo);
    assert_eq!(payment.terms.network, "eip155:42431");
    assert_eq!(payment.terms.amount, 10_000);
    let Signed::Transfers {
        chain_id,
        transfers,
    } = &payment.signed
    else {
        panic!("a tempo credential signs transfers");
    };
    assert_eq!(*chain_id, 42431);
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].amount, 10_000);
    assert!(payment.replay_keys[1].starts_with("tempo_tx:"));
    assert_eq!(
        payment.payer.as_deref(),
        Some("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
        "from the source DID"
    );
}

#[test]
fn a_stripe_charge_is_priced_in_cents_of_its_currency() {
    let request = serde_json::json!({"amount": "50", "currency": "USD",
        "methodDetails": {"networkId": "bn_123", "paymentMethodTypes": ["card"]}});
    let value = credential(
        "stripe",
        "charge",
        request,
        serde_json::json!({"spt": "spt_1"}),
    );
    let payment = read_credential(value.as_bytes()).unwrap();
    assert_eq!(payment.terms.network, STRIPE_NETWORK);
    assert_eq!(payment.terms.currency, "usd");
    assert_eq!(payment.terms.recipient, "bn_123");
    assert_eq!(payment.signed, Signed::Token);
    assert!(payment.replay_keys[1].starts_with("stripe_spt:"));
    assert_eq!(payment.valid_before, Some(4_070_908_800));
}

#[test]
fn intents_methods_and_payloads_purser_cannot_price_are_unsupported() {
    let request = serde_json::json!({"amount": "1", "currency": "0x20c0000000000000000000000000000000000000",
                                     "recipient": "0x2096", "methodDetails": {"chainId": 4217}});
    let cases = [
        (
            "tempo",
            "session",
            serde_json::json!({"action": "voucher"}),
            "MPP session intent is not governed yet: ",
        ),
        (
            "tempo",
            "subscribe",
            serde_json::json!({}),
            "MPP intent \"subscribe\" is not governed",
        ),
        (
            "lightning",
            "charge",
            serde_json::json!({}),
            "MPP payment method \"lightning\" is not governed",
        ),
        (
            "tempo",
            "charge",
            serde_json::json!({"type": "hash", "hash": "0x01"}),
            "already broadcast",
        ),
        (
            "evm",
            "charge",
            serde_json::json!({"type": "permit2"}),
            "evm charge payload of type \"permit2\"",
        ),
    ];
    for (method, intent, payload, message) in cases {
        let mut request = request.clone();
        request["methodDetails"]["chainId"] = Value::from(4217);
        let value = credential(method, intent, request, payload);
        let error = read_credential(value.as_bytes()).unwrap_err();
        assert_eq!(error.reason(), "unsupported_payment", "{method}/{intent}");
        assert!(error.to_string().contains(message), "{error}");
    }
}

#[test]
fn malformed_payloads_and_terms_are_refused() {
    let request = serde_json::json!({"amount": "10000", "currency": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "recipient": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "methodDetails": {"chainId": 84532}});
    let payload = serde_json::json!({"type": "authorization", "from": format!("0x{}", "11".repeat(20)),
        "to": format!("0x{}", "22".repeat(20)), "value": "10000", "validAfter": "0",
        "validBefore": "1796599307", "nonce": format!("0x{}", "33".repeat(32)), "signature": "0xabcd"});
    assert!(read_credential(
        credential("evm", "charge", request.clone(), payload.clone()).as_bytes()
    )
    .is_ok());
    let mut broken = Vec::new();
    for (field, value) in [
        ("from", "0x11"),
        ("nonce", "0x33"),
        ("value", "-1"),
        ("validBefore", "soon"),
        ("signature", "abcd"),
    ] {
        let mut payload = payload.clone();
        payload[field] = Value::from(value);
        broken.push((request.clone(), payload));
    }
    for (field, value) in [("amount", Value::from("1.5")), ("currency", Value::Null)] {
        let mut request = request.clone();
        request[field] = value;
        broken.push((request, payload.clone()));
    }
    let mut no_chain = request.clone();
    no_chain["methodDetails"] = serde_json::json!({});
    broken.push((no_chain, payload.clone()));
    for (request, payload) in broken {
        let value = credential("evm", "charge", request.clone(), payload.clone());
        let error = read_credential(value.as_bytes()).unwrap_err();
        assert_ne!(
            error.reason(),
            "unsupported_payment",
            "{request} {payload}: {error}"
        );
    }
    let json = serde_json::json!({
        "challenge": {"id": "ch1", "realm": "api.test", "method": "evm", "intent": "charge",
                      "request": b64url(&request), "expires": "next tuesday"},
        "payload": payload,
    });
    let error = read_credential(format!("Payment {}", b64url(&json)).as_bytes()).unwrap_err();
    assert!(error.to_string().contains("RFC 3339"), "{error}");
}

#[test]
fn mutated_credentials_are_read_or_refused_never_a_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for capture in [EVM, TEMPO] {
        let value = authorization(capture, 1);
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim_start_matches("Payment "))
            .unwrap();
        for _ in 0..2000 {
            let mut mutated = json.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % mutated.len() as u64) as usize;
                mutated[at] = b"0123456789abcdefx\":,{}[] "[(next() % 25) as usize];
            }
            let header = format!(
                "Payment {}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mutated)
            );
            let _ = read_credential(header.as_bytes());
        }
    }
}
