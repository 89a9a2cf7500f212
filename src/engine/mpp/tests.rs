//! Binding, pricing and settling MPP credentials, on the pympp captures and credentials
//! built from them.

use super::*;
use crate::detect::mpp::MppMethod;
use crate::mpp::parse_www_authenticate;
use rust_decimal::Decimal;
use serde_json::Value;

const EVM: &str = include_str!("../../../tests/data/captures/mpp/mpp_http_evm_charge.json");
const TEMPO: &str = include_str!("../../../tests/data/captures/mpp/mpp_http_tempo_charge.json");

fn header(capture: &str, index: usize, side: &str, name: &str) -> Vec<String> {
    let exchanges: Value = serde_json::from_str(capture).unwrap();
    exchanges[index][side]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_string())
        .collect()
}

/// The capture's paid credential and the binding of the challenge with its id.
fn paid(capture: &str) -> (MppPayment, [u8; 32]) {
    let values = header(capture, 0, "response", "www-authenticate");
    let challenges = parse_www_authenticate(values.iter().map(|v| v.as_bytes())).challenges;
    let payment =
        read_credential(header(capture, 1, "request", "authorization")[0].as_bytes()).unwrap();
    let seen = challenges
        .iter()
        .find(|c| c.id == payment.credential.challenge.id)
        .unwrap()
        .binding();
    (payment, seen)
}

#[test]
fn a_bound_evm_credential_costs_its_challenges_amount() {
    let (payment, seen) = paid(EVM);
    bind(&payment, Some(seen)).unwrap();
    let priced = price_bound(payment, &AssetTable::builtin()).unwrap();
    assert_eq!(priced.scheme, "evm/charge");
    assert_eq!(priced.network, "eip155:84532");
    assert_eq!(priced.price.usd, Decimal::new(1, 2));
    assert_eq!(priced.price.symbol, "USDC");
    assert_eq!(priced.pay_to, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    assert!(matches!(&priced.payment, Paid::Mpp(p) if p.method == MppMethod::Evm));
    assert_eq!(priced.payment.protocol(), crate::detect::Protocol::Mpp);
    assert_eq!(priced.payment.x402_version(), None);
}

#[test]
fn a_bound_tempo_credential_costs_its_challenges_amount() {
    let (payment, seen) = paid(TEMPO);
    bind(&payment, Some(seen)).unwrap();
    let priced = price_bound(payment, &AssetTable::builtin()).unwrap();
    assert_eq!(priced.scheme, "tempo/charge");
    assert_eq!(priced.price.symbol, "OUSD");
    assert_eq!(priced.price.usd, Decimal::new(1, 2));
}

#[test]
fn a_credential_for_an_unseen_or_altered_challenge_is_refused() {
    let (payment, seen) = paid(EVM);
    assert_eq!(bind(&payment, None).unwrap_err().code, "unquoted_payment");
    let mut other = seen;
    other[0] ^= 1;
    let refused = bind(&payment, Some(other)).unwrap_err();
    assert_eq!(refused.code, "payload_mismatch");
    assert!(refused
        .message
        .contains("differs from the challenge the merchant sent"));
}

#[test]
fn what_is_signed_must_pay_exactly_the_challenge() {
    let (payment, _) = paid(EVM);
    let assets = AssetTable::builtin();
    for (signed, expect) in [
        (
            Signed::Authorization {
                to: payment.terms.recipient.to_lowercase(),
                value: 10_000,
            },
            None,
        ),
        (
            Signed::Authorization {
                to: payment.terms.recipient.clone(),
                value: 10_001,
            },
            Some("signs 10001 base units"),
        ),
        (
            Signed::Authorization {
                to: "0x0000000000000000000000000000000000000001".into(),
                value: 10_000,
            },
            Some("not the challenge's recipient"),
        ),
    ] {
        let mut altered = payment.clone();
        altered.signed = signed;
        match (price_bound(altered, &assets), expect) {
            (Ok(_), None) => {}
            (Err(refused), Some(text)) => {
                assert_eq!(refused.code, "payload_mismatch");
                assert!(refused.message.contains(text), "{}", refused.message);
            }
            (other, _) => panic!("{:?}", other.map(|p| p.price)),
        }
    }
    let mut decimals = payment;
    decimals.terms.decimals = Some(18);
    assert_eq!(
        price_bound(decimals, &assets).unwrap_err().code,
        "unknown_asset"
    );
}

#[test]
fn tempo_transfers_must_match_the_challenge_and_its_splits() {
    let (payment, _) = paid(TEMPO);
    let Signed::Transfers { transfers, .. } = &payment.signed else {
        panic!("tempo signs transfers");
    };
    let terms = &payment.terms;
    let one = transfers[0].clone();
    assert!(check_transfers(terms, 42431, transfers).is_ok());
    assert!(
        check_transfers(terms, 4217, transfers).is_err(),
        "another chain"
    );
    let mut more = one.clone();
    more.amount += 1;
    assert!(check_transfers(terms, 42431, &[more]).is_err());
    let mut token = one.clone();
    token.token[19] ^= 1;
    assert!(check_transfers(terms, 42431, &[token]).is_err());
    assert!(check_transfers(terms, 42431, &[one.clone(), one.clone()]).is_err());
    // With a split of 2500, the recipient gets 7500 and the split's recipient 2500.
    let mut split_terms = terms.clone();
    split_terms.splits = vec![(format!("0x{}", "ab".repeat(20)), 2_500)];
    let mut primary = one.clone();
    primary.amount = 7_500;
    let mut split = one.clone();
    split.amount = 2_500;
    split.to = [0xab; 20];
    assert!(check_transfers(&split_terms, 42431, &[split.clone(), primary.clone()]).is_ok());
    assert!(check_transfers(&split_terms, 42431, &[primary.clone()]).is_err());
    split.amount = 2_501;
    assert!(check_transfers(&split_terms, 42431, &[split, primary]).is_err());
}

#[test]
fn only_the_payment_receipt_settles_an_mpp_payment() {
    let receipt = header(EVM, 1, "response", "payment-receipt")[0].clone();
    let answer = |status: u16, pairs: &[(&str, &str)]| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        read_answer(StatusCode::from_u16(status).unwrap(), &headers)
    };
    let committed = answer(200, &[("payment-receipt", &receipt)]);
    assert_eq!(committed.outcome, Outcome::Committed);
    assert!(committed.transaction.unwrap().starts_with("0xf66ce977"));
    assert_eq!(answer(402, &[]).outcome, Outcome::Released);
    assert_eq!(answer(200, &[]).outcome, Outcome::Unknown);
    assert_eq!(answer(403, &[]).outcome, Outcome::Unknown);
    // An x402 receipt on the same answer says nothing about the MPP payment.
    let x402_receipt = "eyJzdWNjZXNzIjp0cnVlfQ==";
    assert_eq!(
        answer(200, &[("payment-response", x402_receipt)]).outcome,
        Outcome::Unknown
    );
    assert_eq!(
        answer(200, &[("payment-receipt", "not base64url!")]).outcome,
        Outcome::Unknown
    );
    assert_eq!(
        answer(
            200,
            &[("payment-receipt", &receipt), ("payment_receipt", "eyJ9")]
        )
        .outcome,
        Outcome::Unknown,
        "receipts that differ"
    );
}
