//! Permit2 `exact` and `upto`, from payloads the official SDKs made (x402 2.25.0 for
//! Python, @x402/evm 2.27.0 for TypeScript; copied from `tests/data/captures/x402/` into
//! `tests/data/x402/`): what they are priced at, who they pay, how they are keyed, what
//! the chain can be asked about them, and what their receipts commit.

use super::tests::b64;
use super::*;
use serde_json::Value;

const PYTHON: &str = include_str!("../../tests/data/x402/permit2_upto_python.json");
const NPM: &str = include_str!("../../tests/data/x402/permit2_upto_npm.json");

const PAYER: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// The raw header `name` of exchange `index` of the Python capture (`request` or
/// `response` side).
fn python_header(index: usize, side: &str, name: &str) -> String {
    let capture: Value = serde_json::from_str(PYTHON).unwrap();
    let headers = capture[index][side]["headers"].as_array().unwrap();
    headers
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
        .unwrap_or_else(|| panic!("no {name} in exchange {index} {side}"))
        .to_string()
}

/// The npm SDK's `PAYMENT-SIGNATURE` for `which` (`permit2` or `upto`).
fn npm_header(which: &str) -> String {
    let capture: Value = serde_json::from_str(NPM).unwrap();
    capture[which]["paymentSignatureHeader"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every SDK's payment for `which`, with the challenge it answers.
fn payments(which: &str) -> Vec<(Payment, Challenge)> {
    let exchange = if which == "permit2" { 0 } else { 2 };
    let challenge = parse_challenge_v2_header(
        python_header(exchange, "response", "payment-required").as_bytes(),
    )
    .unwrap();
    let python = python_header(exchange + 1, "request", "payment-signature");
    [python, npm_header(which)]
        .iter()
        .map(|header| {
            (
                parse_payment_v2(header.as_bytes()).unwrap(),
                challenge.clone(),
            )
        })
        .collect()
}

#[test]
fn a_permit2_exact_payment_is_priced_from_what_it_signs() {
    for (payment, challenge) in payments("permit2") {
        assert_eq!(payment.scheme, "exact");
        assert_eq!(payment.kind, PaymentKind::EvmPermit2);
        assert_eq!(payment.amount_atomic, Some(20_000));
        assert_eq!(payment.max_cost_atomic(), Some(20_000));
        assert!(same_address(payment.pay_to.as_deref().unwrap(), PAY_TO));
        assert!(same_address(payment.asset.as_deref().unwrap(), USDC));
        assert!(same_address(payment.payer.as_deref().unwrap(), PAYER));
        assert_eq!(payment.permit2_spender_problem(), None);
        assert_eq!(payment.mismatch_with(&challenge.accepts[0]), None);
        // The decimal uint256 nonce and the signature: two keys.
        assert_eq!(payment.replay_keys().len(), 2);
        let price = price(&AssetTable::builtin(), &payment.network, USDC, 20_000).unwrap();
        assert_eq!(price.usd.to_string(), "0.02");
    }
}

#[test]
fn an_upto_payment_costs_its_signed_maximum_to_the_upto_proxy() {
    for (payment, challenge) in payments("upto") {
        assert_eq!(payment.scheme, "upto");
        assert_eq!(payment.kind, PaymentKind::EvmPermit2);
        assert_eq!(payment.amount_atomic, Some(100_000));
        assert_eq!(payment.max_cost_atomic(), Some(100_000));
        assert!(same_address(
            payment.spender.as_deref().unwrap(),
            permit2::UPTO_PROXY
        ));
        assert_eq!(payment.permit2_spender_problem(), None);
        assert_eq!(payment.mismatch_with(&challenge.accepts[0]), None);
    }
}

/// Re-encodes the Python SDK's payment for `which` after `edit`.
fn edited(which: &str, edit: impl FnOnce(&mut Value)) -> Payment {
    let exchange = if which == "permit2" { 1 } else { 3 };
    let header = python_header(exchange, "request", "payment-signature");
    let mut json: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, header).unwrap(),
    )
    .unwrap();
    edit(&mut json);
    parse_payment_v2(b64(&json.to_string()).as_bytes()).unwrap()
}

#[test]
fn an_echoed_amount_never_outweighs_the_signed_one() {
    // The client says it accepted 10x the challenge but signed the maximum: the signed
    // amount is what can move, and what it costs.
    let payment = edited("upto", |json| {
        json["accepted"]["amount"] = Value::from("1000000");
    });
    assert_eq!(payment.max_cost_atomic(), Some(100_000));
    // Signing more than the challenge asked is a mismatch, whatever `accepted` echoes.
    let payment = edited("upto", |json| {
        json["payload"]["permit2Authorization"]["permitted"]["amount"] = Value::from("100001");
    });
    let challenge = &payments("upto")[0].1;
    let why = payment.mismatch_with(&challenge.accepts[0]).unwrap();
    assert!(why.contains("more than"), "{why}");
}

#[test]
fn a_permit2_signature_for_another_spender_is_refused() {
    let payment = edited("permit2", |json| {
        json["payload"]["permit2Authorization"]["spender"] =
            Value::from("0x0000000000000000000000000000000000000bad");
    });
    let why = payment.permit2_spender_problem().unwrap();
    assert!(why.contains(permit2::EXACT_PROXY), "{why}");
    // An exact payment signed to the upto proxy (or the reverse) is refused too.
    let payment = edited("permit2", |json| {
        json["payload"]["permit2Authorization"]["spender"] = Value::from(permit2::UPTO_PROXY);
    });
    assert!(payment.permit2_spender_problem().is_some());
}

#[test]
fn the_chain_is_asked_about_the_permit2_nonce_as_32_bytes() {
    let (payment, _) = payments("upto").remove(0);
    let onchain = ChainAuthorization::of(&payment).unwrap();
    assert_eq!(onchain.method, TransferMethod::Permit2);
    assert_eq!(onchain.network, "eip155:84532");
    assert_eq!(onchain.token, USDC.to_ascii_lowercase());
    assert_eq!(onchain.payer, PAYER.to_ascii_lowercase());
    assert_eq!(onchain.valid_before, Some(1_796_599_249));
    // 47685892588226553825731973320467092057694267282384691521570896982592279924516
    assert_eq!(
        onchain.nonce,
        "0x696d423ce487c29310829a3613a8fc6bac33cfead221e9bb7a78fcbd29d5cf24"
    );
    let permit2_exact = payments("permit2").remove(0).0;
    assert_eq!(
        ChainAuthorization::of(&permit2_exact).unwrap().method,
        TransferMethod::Permit2
    );
}

#[test]
fn the_upto_receipt_reports_what_was_charged() {
    let receipt =
        parse_receipt(python_header(3, "response", "payment-response").as_bytes()).unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.settled_amount_atomic, Some(37_000));
    let receipt =
        parse_receipt(python_header(1, "response", "payment-response").as_bytes()).unwrap();
    assert_eq!(receipt.settled_amount_atomic, Some(20_000));
    // A failed settlement's empty amount is no amount; both spellings, the larger wins.
    let failed =
        r#"{"success":false,"errorReason":"x","transaction":"","network":"base","amount":""}"#;
    assert_eq!(
        parse_receipt(b64(failed).as_bytes())
            .unwrap()
            .settled_amount_atomic,
        None
    );
    let both = r#"{"success":true,"network":"base","amount":"5","settledAmount":"7"}"#;
    assert_eq!(
        parse_receipt(b64(both).as_bytes())
            .unwrap()
            .settled_amount_atomic,
        Some(7)
    );
    let bad = r#"{"success":true,"network":"base","amount":"-5"}"#;
    assert!(parse_receipt(b64(bad).as_bytes()).is_err());
}
