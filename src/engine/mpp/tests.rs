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

const OVER_MCP: &str = include_str!("../../../tests/data/captures/mpp/mpp_over_mcp_evm.json");

/// The MPP-over-MCP capture's challenges (the `-32042` error's data) and the credential
/// object of the paid call, as JSON text.
fn over_mcp() -> (Vec<crate::mpp::Challenge>, String) {
    let exchanges: Value = serde_json::from_str(OVER_MCP).unwrap();
    let error = &exchanges[3]["response"]["sse_events"][0]["data_json"]["error"];
    let challenges = crate::mpp::challenges_from_mcp(&error["data"]).challenges;
    let meta = &exchanges[4]["request"]["json"]["params"]["_meta"];
    (challenges, meta["org.paymentauth/credential"].to_string())
}

#[test]
fn an_mcp_credential_binds_to_the_tools_challenge_object_and_costs_its_amount() {
    let (challenges, credential) = over_mcp();
    let payment = read_meta_credential(&credential).unwrap();
    bind(&payment, Some(challenges[0].binding())).unwrap();
    let priced = price_bound(payment, &AssetTable::builtin()).unwrap();
    assert_eq!(priced.scheme, "evm/charge");
    assert_eq!(priced.price.usd, Decimal::new(1, 2));
    assert_eq!(priced.payment.protocol(), crate::detect::Protocol::Mpp);
    // The echo's request object changed (a lower amount): not the challenge sent.
    let altered = credential.replacen(r#""amount":"10000""#, r#""amount":"1""#, 1);
    let payment = read_meta_credential(&altered).unwrap();
    let refused = bind(&payment, Some(challenges[0].binding())).unwrap_err();
    assert_eq!(refused.code, "payload_mismatch");
}

#[test]
fn an_mcp_answer_settles_from_its_receipt_or_its_fresh_challenges() {
    use crate::detect::mcp::mpp_forms::read_answer as read_mcp;
    let response = |json: &str| {
        let response: jsonrpsee_types::Response<'_, Value> = serde_json::from_str(json).unwrap();
        read_mcp(&response.into_owned())
    };
    let receipt = |amount: &str| {
        response(&format!(
            r#"{{"jsonrpc":"2.0","id":2,"result":{{"_meta":{{"org.paymentauth/receipt":{{
            "status":"success","challengeId":"c","method":"evm","timestamp":"t",
            "reference":"0xabc","settlement":{{"amount":"{amount}"}}}}}},"content":[]}}}}"#
        ))
    };
    let committed = read_call_answer(Ok(receipt("10000")), "10000");
    assert_eq!(committed.outcome, Outcome::Committed);
    assert_eq!(committed.transaction.as_deref(), Some("0xabc"));
    assert_eq!(committed.note, None);
    let over = read_call_answer(Ok(receipt("20000")), "10000");
    assert_eq!(over.outcome, Outcome::Committed);
    assert!(over.note.unwrap().contains("more than the 10000"));
    let fresh = response(
        r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32043,"message":"m","data":{
        "failure":{"reason":"verification-failed"},"challenges":[
        {"id":"c2","realm":"r","method":"evm","intent":"charge","request":{"amount":"1"}}]}}}"#,
    );
    let released = read_call_answer(Ok(fresh), "10000");
    assert_eq!(released.outcome, Outcome::Released);
    assert!(released.note.unwrap().contains("verification-failed"));
    let bare = response(r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#);
    assert_eq!(
        read_call_answer(Ok(bare), "10000").outcome,
        Outcome::Unknown
    );
    let failed = response(r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"m"}}"#);
    assert_eq!(
        read_call_answer(Ok(failed), "10000").outcome,
        Outcome::Unknown
    );
    let unreadable = read_call_answer(Err("the answer broke off".into()), "10000");
    assert_eq!(unreadable.outcome, Outcome::Unknown);
    assert!(unreadable.note.unwrap().starts_with("the answer broke off"));
}
