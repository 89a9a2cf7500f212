//! A matrix of bad input: each must give the right error variant and reason, and no
//! input at all may panic.

use super::tests::b64;
use super::tests_payloads::{
    accepted, eip3009_payload, permit2_payload, v1, v2, PAYER, PAY_TO, USDC,
};
use super::*;
use rust_decimal::Decimal;
use serde_json::json;

/// Whether an error is the expected one.
type Check = fn(&X402Error) -> bool;

#[test]
fn json_number_amounts_are_accepted_only_as_exact_integers() {
    let header = v1("base", eip3009_payload(json!(50000)));
    assert_eq!(
        parse_payment_v1(header.as_bytes()).unwrap().amount_atomic,
        Some(50_000)
    );
    for bad in [json!(-5), json!(1.5), json!(5.0), json!(1e30), json!(-0.5)] {
        let header = v1("base", eip3009_payload(bad.clone()));
        assert!(
            matches!(
                parse_payment_v1(header.as_bytes()),
                Err(X402Error::BadAmount(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn bad_amounts_are_bad_amount() {
    let eighty = "9".repeat(80);
    let cases = [
        "-1",
        "1.5",
        "",
        "12a",
        "+5",
        "0x10",
        " 5",
        "1e5",
        "２",
        eighty.as_str(),
    ];
    for amount in cases {
        let header = v1("base", eip3009_payload(json!(amount)));
        let error = parse_payment_v1(header.as_bytes()).unwrap_err();
        assert!(
            matches!(error, X402Error::BadAmount(_)),
            "{amount:?}: {error}"
        );
        assert_eq!(error.reason(), "bad_amount");
    }
    // 28 digits is the most that parses; pricing then caps a payment at $10^15, so the
    // ledger's sums can never overflow.
    let max = "9".repeat(28);
    let header = v1("base", eip3009_payload(json!(max)));
    let atomic = parse_payment_v1(header.as_bytes())
        .unwrap()
        .amount_atomic
        .unwrap();
    assert!(matches!(
        price(&AssetTable::builtin(), "base-sepolia", USDC, atomic),
        Err(X402Error::BadAmount(_))
    ));
    let largest = 10u128.pow(15 + 6);
    let priced = price(&AssetTable::builtin(), "base-sepolia", USDC, largest).unwrap();
    assert_eq!(priced.usd.to_string(), "1000000000000000");
    assert!(price(&AssetTable::builtin(), "base-sepolia", USDC, largest + 1).is_err());
    let too_many = "1".repeat(29);
    let header = v1("base", eip3009_payload(json!(too_many)));
    assert!(matches!(
        parse_payment_v1(header.as_bytes()),
        Err(X402Error::BadAmount(_))
    ));
    // Pricing a hand-made huge amount fails cleanly instead of panicking.
    assert!(matches!(
        price(&AssetTable::builtin(), "base-sepolia", USDC, u128::MAX),
        Err(X402Error::BadAmount(_))
    ));
}

#[test]
fn undecodable_headers_are_malformed() {
    let cases: [(&[u8], Check); 7] = [
        (b"!!!not base64!!!", |e| {
            matches!(e, X402Error::InvalidBase64)
        }),
        (b"eyJ4NDAyVmVyc2lvbiI6Mn0", |e| {
            matches!(e, X402Error::InvalidBase64)
        }), // unpadded
        (b"eyJ4-_", |e| matches!(e, X402Error::InvalidBase64)), // URL-safe
        (b"aGVsbG8gd29ybGQ=", |e| matches!(e, X402Error::NotJson(_))), // "hello world"
        (b"", |e| matches!(e, X402Error::NotJson(_))),
        (b"   ", |e| matches!(e, X402Error::NotJson(_))),
        (b"/w==", |e| matches!(e, X402Error::NotJson(_))), // a lone 0xff byte
    ];
    for (header, expected) in cases {
        for parse in [parse_payment_v1, parse_payment_v2] {
            let error = parse(header).unwrap_err();
            assert!(
                expected(&error),
                "{:?}: {error}",
                String::from_utf8_lossy(header)
            );
            assert_eq!(error.reason(), "malformed_payment");
        }
        assert!(parse_challenge_v2_header(header).is_err());
        assert!(parse_receipt(header).is_err());
    }
}

#[test]
fn wrong_json_types_are_wrong_shape() {
    let mut not_string = eip3009_payload(json!("1"));
    not_string["authorization"]["from"] = json!(42);
    let mut amount_object = eip3009_payload(json!("1"));
    amount_object["authorization"]["value"] = json!({"amount": 1});
    let mut ambiguous = permit2_payload("1");
    ambiguous["authorization"] = eip3009_payload(json!("1"))["authorization"].clone();
    let cases = [
        b64("[1,2,3]"),
        b64("\"a string\""),
        v1("base", json!("a payload that is a string")),
        v1("base", not_string),
        v1("base", amount_object),
        v1("base", json!({"authorization": []})),
        v1("base", json!({"nothing": "here"})),
        v1("base", ambiguous),
        v1("solana", json!({"transaction": "bm90IGEgdHJhbnNhY3Rpb24="})),
        b64(r#"{"x402Version":1,"scheme":7,"network":"base","payload":{}}"#),
    ];
    for header in cases {
        let error = parse_payment_v1(header.as_bytes()).unwrap_err();
        assert!(
            matches!(error, X402Error::WrongShape(_)),
            "{header}: {error}"
        );
    }
    let missing = v1("base", json!({"authorization": {"from": PAYER}}));
    let error = parse_payment_v1(missing.as_bytes()).unwrap_err();
    assert_eq!(
        error,
        X402Error::MissingField("payload.authorization.to".into())
    );
    assert!(error.to_string().contains("payload.authorization.to"));
    let no_accepted = b64(r#"{"x402Version":2,"payload":{}}"#);
    assert_eq!(
        parse_payment_v2(no_accepted.as_bytes()).unwrap_err(),
        X402Error::MissingField("accepted".into())
    );
}

#[test]
fn unknown_version_scheme_and_network_are_named() {
    let payload = eip3009_payload(json!("1"));
    let v2_as_v1 = v2(accepted("exact", "eip155:8453", "1"), payload.clone());
    assert!(matches!(
        parse_payment_v1(v2_as_v1.as_bytes()),
        Err(X402Error::UnsupportedVersion(_))
    ));
    let v1_as_v2 = v1("base", payload.clone());
    assert!(matches!(
        parse_payment_v2(v1_as_v2.as_bytes()),
        Err(X402Error::UnsupportedVersion(_))
    ));
    for version in [json!(3), json!("2"), json!(-1), json!(1.5)] {
        let header = b64(&json!({"x402Version": version, "accepts": []}).to_string());
        let error = parse_challenge_v2_header(header.as_bytes()).unwrap_err();
        assert!(
            matches!(error, X402Error::UnsupportedVersion(_)),
            "{version}"
        );
        assert_eq!(error.reason(), "unsupported_version");
    }
    let scheme = v2(accepted("deferred", "eip155:8453", "1"), payload.clone());
    assert_eq!(
        parse_payment_v2(scheme.as_bytes()).unwrap_err(),
        X402Error::UnknownScheme("deferred".into())
    );
    for network in ["base-goerli", "Base", "eip155", "not a network"] {
        let header = v1(network, payload.clone());
        let error = parse_payment_v1(header.as_bytes()).unwrap_err();
        assert_eq!(error, X402Error::UnknownNetwork(network.into()));
        assert_eq!(error.reason(), "unknown_network");
    }
}

#[test]
fn unknown_assets_cannot_be_priced_until_added() {
    let mut table = AssetTable::builtin();
    let weth = "0x4200000000000000000000000000000000000006";
    let error = price(&table, "base", weth, 1).unwrap_err();
    assert!(matches!(error, X402Error::UnknownAsset { .. }));
    assert_eq!(error.reason(), "unknown_asset");
    // Solana mints are case-sensitive.
    let mint = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
    assert!(price(&table, "solana", mint, 1).is_ok());
    assert!(price(&table, "solana", &mint.to_ascii_lowercase(), 1).is_err());
    assert!(matches!(
        price(&table, "nowhere", weth, 1),
        Err(X402Error::UnknownNetwork(_))
    ));

    let info = AssetInfo {
        symbol: "WETH".into(),
        decimals: 18,
        usd_peg: Decimal::new(3000, 0),
    };
    table.insert("eip155:8453", weth, info.clone()).unwrap();
    let priced = price(
        &table,
        "base",
        &weth.to_ascii_uppercase().replace("0X", "0x"),
        10u128.pow(18),
    )
    .unwrap();
    assert_eq!(priced.usd, Decimal::new(3000, 0));
    assert!(table.insert("nowhere", weth, info.clone()).is_err());
    let too_precise = AssetInfo {
        decimals: 29,
        ..info.clone()
    };
    assert!(table.insert("base", weth, too_precise).is_err());
    let negative = AssetInfo {
        usd_peg: Decimal::new(-1, 0),
        ..info
    };
    assert!(table.insert("base", weth, negative).is_err());
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let header = "A".repeat(MAX_PAYMENT_HEADER_BYTES + 4);
    for error in [
        parse_payment_v1(header.as_bytes()).unwrap_err(),
        parse_payment_v2(header.as_bytes()).unwrap_err(),
        parse_challenge_v2_header(header.as_bytes()).unwrap_err(),
        parse_receipt(header.as_bytes()).unwrap_err(),
    ] {
        assert_eq!(
            error,
            X402Error::TooLarge {
                limit: MAX_PAYMENT_HEADER_BYTES
            }
        );
        assert_eq!(error.reason(), "payment_too_large");
    }
    let body = vec![b' '; MAX_CHALLENGE_BODY_BYTES + 1];
    assert_eq!(
        parse_challenge_v1_body(&body).unwrap_err(),
        X402Error::TooLarge {
            limit: MAX_CHALLENGE_BODY_BYTES
        }
    );
}

#[test]
fn challenges_keep_unknown_offers_but_refuse_malformed_ones() {
    let body = json!({"x402Version": 1, "accepts": [
        {"scheme": "exact", "network": "base", "maxAmountRequired": "10", "payTo": PAY_TO, "asset": USDC},
        {"scheme": "future", "network": "chain:x", "maxAmountRequired": "1", "payTo": "p", "asset": "a", "newField": 1}
    ], "newTopLevel": true});
    let challenge = parse_challenge_v1_body(body.to_string().as_bytes()).unwrap();
    assert_eq!(challenge.accepts.len(), 2);
    assert_eq!(challenge.resource, None);
    let bad = json!({"x402Version": 1, "accepts": [
        {"scheme": "exact", "network": "base", "maxAmountRequired": "-10", "payTo": PAY_TO, "asset": USDC}]});
    assert!(matches!(
        parse_challenge_v1_body(bad.to_string().as_bytes()),
        Err(X402Error::BadAmount(m)) if m.starts_with("accepts[0].maxAmountRequired")
    ));
    let not_array = json!({"x402Version": 1, "accepts": {}});
    assert!(matches!(
        parse_challenge_v1_body(not_array.to_string().as_bytes()),
        Err(X402Error::WrongShape(_))
    ));
    let receipt = b64(r#"{"success":"yes"}"#);
    assert!(matches!(
        parse_receipt(receipt.as_bytes()),
        Err(X402Error::WrongShape(_))
    ));
    assert!(matches!(
        parse_receipt(b64("{}").as_bytes()),
        Err(X402Error::MissingField(_))
    ));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic fuzz: random bytes, truncations of a real header, deep nesting.
    let real = v2(
        accepted("exact", "eip155:84532", "10000"),
        permit2_payload("10000"),
    );
    let mut inputs: Vec<Vec<u8>> = (0..real.len())
        .map(|n| real.as_bytes()[..n].to_vec())
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let len = (state % 64) as usize;
        let bytes = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        inputs.push(bytes);
    }
    inputs.push(b64(&format!("{}{}", "[".repeat(5_000), "]".repeat(5_000))).into_bytes());
    for input in &inputs {
        let _ = parse_payment_v1(input);
        let _ = parse_payment_v2(input);
        let _ = parse_challenge_v2_header(input);
        let _ = parse_challenge_v1_body(input);
        let _ = parse_receipt(input);
    }
}
