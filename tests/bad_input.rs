//! Hostile x402 input through the running proxy: for every malformed payment the
//! merchant receives nothing, the agent gets a 4xx with a reason, and Purser keeps
//! serving everyone else.

mod support;

use purser_kit::x402::{Pay, USDC_BASE_SEPOLIA as USDC};
use support::origin::Origin;
use support::{crafted, crafted_payment, curl, http_status, pay, Purser};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 100.00
"#;

fn b64(text: &str) -> String {
    purser_kit::x402::b64(text)
}

/// A v2 payment (nonce `0x01`, no `extra`, no resource) with the version, scheme,
/// network, asset or amount (both the signed value and the offer's) replaced.
fn v2_with(amount: &str, version: u8, scheme: &str, network: &str, asset: &str) -> Pay {
    Pay::usdc(amount)
        .version(version)
        .scheme(scheme)
        .network(network)
        .asset(asset)
        .extra(None)
}

#[test]
fn malformed_payments_are_refused_with_a_reason_and_never_reach_the_merchant() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let eighty_digits = "9".repeat(80);
    let thirty_one = format!("1{}", "0".repeat(30));
    let huge_header = b64(&"x".repeat(20 * 1024));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "invalid base64",
            "!!!not base64!!!".to_string(),
            "malformed_payment",
        ),
        (
            "base64 of non-JSON",
            b64("hello, merchant"),
            "malformed_payment",
        ),
        (
            "JSON with wrong types",
            b64(r#"{"x402Version":2,"payload":"oops","accepted":7}"#),
            "malformed_payment",
        ),
        (
            "negative amount",
            v2_with("-5", 2, "exact", "eip155:84532", USDC).header(),
            "bad_amount",
        ),
        (
            "fractional amount",
            v2_with("1.5", 2, "exact", "eip155:84532", USDC).header(),
            "bad_amount",
        ),
        (
            "huge amount",
            v2_with(&thirty_one, 2, "exact", "eip155:84532", USDC).header(),
            "bad_amount",
        ),
        (
            "80-digit amount",
            v2_with(&eighty_digits, 2, "exact", "eip155:84532", USDC).header(),
            "bad_amount",
        ),
        (
            "unknown version",
            v2_with("100", 3, "exact", "eip155:84532", USDC).header(),
            "unsupported_version",
        ),
        (
            "unknown scheme",
            v2_with("100", 2, "stream", "eip155:84532", USDC).header(),
            "unsupported_payment",
        ),
        (
            "unknown network",
            v2_with("100", 2, "exact", "moonchain", USDC).header(),
            "unknown_network",
        ),
        (
            "unknown asset",
            v2_with(
                "100",
                2,
                "exact",
                "eip155:84532",
                "0x00000000000000000000000000000000000000aa",
            )
            .header(),
            "unknown_asset",
        ),
        (
            "a header over the size bound",
            huge_header,
            "payment_too_large",
        ),
        (
            "an authorization whose validBefore is past",
            v2_with("100", 2, "exact", "eip155:84532", USDC)
                .valid_before(1)
                .header(),
            "expired_payment",
        ),
    ];
    for (label, header, code) in cases {
        let (status, body) = pay(&purser, "bad", &url, &header);
        assert_eq!(status, 403, "{label}: {body}");
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{label}: {body}"));
        assert_eq!(answer["decision"], "DENIED", "{label}");
        assert_eq!(answer["code"], code, "{label}: {body}");
        assert!(
            answer["reason"].as_str().unwrap().len() > code.len() + 2,
            "{label}: the reason says why"
        );
    }
    assert!(
        origin.requests().is_empty(),
        "no malformed payment reached the merchant"
    );
    // Still serving: a good payment and a plain read go through.
    assert_eq!(pay(&purser, "good", &url, &crafted_payment(1, 1000)).0, 200);
    assert_eq!(origin.requests().len(), 1);
}

#[test]
fn ambiguous_payment_headers_are_refused() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let proxy = purser.proxy_url(Some(("agent.amb", "t0ken")));
    let payment = crafted_payment(2, 1000);
    let both = curl(&[
        "-s",
        "-x",
        &proxy,
        "-H",
        &format!("PAYMENT-SIGNATURE: {payment}"),
        "-H",
        &format!("X-PAYMENT: {payment}"),
        &url,
    ]);
    let repeated = curl(&[
        "-s",
        "-x",
        &proxy,
        "-H",
        &format!("PAYMENT-SIGNATURE: {payment}"),
        "-H",
        &format!("Payment-Signature: {payment}"),
        &url,
    ]);
    for output in [both, repeated] {
        let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(body["code"], "ambiguous_payment", "{body}");
    }
    assert!(origin.requests().is_empty());
}

#[test]
fn bad_402_challenges_pass_through_unremembered_and_cannot_price_a_payment() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let proxy = purser.proxy_url(Some(("agent.chal", "t0ken")));
    for path in ["/402/big", "/402/notjson", "/402/badheader"] {
        let output = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "-x",
            &proxy,
            &format!("http://127.0.0.1:{}{path}", origin.port()),
        ]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            text.starts_with("402 "),
            "{path}: the merchant's 402 passes through: {text}"
        );
    }
    // A v1 payment names no asset: with no readable challenge it cannot be priced.
    let v1 = Pay::usdc(50_000)
        .nonce("0x03")
        .signature("0x04")
        .v1_header("base-sepolia");
    let output = curl(&[
        "-s",
        "-x",
        &proxy,
        "-H",
        &format!("X-PAYMENT: {v1}"),
        &format!("http://127.0.0.1:{}/402/notjson", origin.port()),
    ]);
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["code"], "unquoted_payment", "{body}");
    let paid: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.headers.contains_key("x-payment"))
        .collect();
    assert!(paid.is_empty());
}

#[test]
fn payments_that_differ_from_what_was_offered_are_payload_mismatch_and_never_leave() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let url = format!("http://127.0.0.1:{}/priced", origin.port());
    let other_pay_to = "0x9999000000000000000000000000000000000001";
    let code_of = |payment: &str| {
        let (status, body) = pay(&purser, "offer", &url, payment);
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            status,
            answer["code"].as_str().unwrap_or("").to_string(),
            body,
        )
    };

    // Signed for one thing, claiming to accept another: refused before any 402 is seen.
    let cases = [
        (
            "signs 20,000 while its accepted offer says 10,000",
            crafted(1, 10_000).signed_value(20_000).header(),
        ),
        (
            "signs to another payTo than its accepted offer",
            crafted(2, 10_000).signed_to(other_pay_to).header(),
        ),
    ];
    for (label, payment) in &cases {
        let (status, code, body) = code_of(payment);
        assert_eq!(
            (status, code.as_str()),
            (403, "payload_mismatch"),
            "{label}: {body}"
        );
    }

    // The agent reads the price, a 402 Purser remembers for this session and resource.
    let proxy = purser.proxy_url(Some(("agent.offer", "t0ken")));
    assert_eq!(http_status(&["-x", &proxy, &url]), "402");

    // Consistent in itself, but more than the offer, or to someone the offer does not name.
    let overpaid = crafted_payment(3, 50_000);
    let (status, code, body) = code_of(&overpaid);
    assert_eq!((status, code.as_str()), (403, "payload_mismatch"), "{body}");
    assert!(
        body.contains("50000") && body.contains("10000"),
        "the reason names both: {body}"
    );
    let elsewhere = crafted(4, 10_000).pay_to(other_pay_to).header();
    let (status, code, body) = code_of(&elsewhere);
    assert_eq!((status, code.as_str()), (403, "payload_mismatch"), "{body}");

    // What was offered goes through, and it is the only payment the merchant ever saw.
    let (status, _, body) = code_of(&crafted_payment(5, 10_000));
    assert_eq!(status, 200, "{body}");
    let payments: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.headers.contains_key("payment-signature"))
        .collect();
    assert_eq!(
        payments.len(),
        1,
        "only the matching payment reached the merchant"
    );
}
