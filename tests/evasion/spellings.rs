//! Class 3: header spellings. A CGI/WSGI merchant reads `PAYMENT_SIGNATURE` as
//! `PAYMENT-SIGNATURE`, so Purser does too: payments in any spelling are decided, two
//! payments in one request are refused, Purser's control headers are stripped in every
//! spelling, and a receipt spelt with `_` settles the payment it answers.

use super::{decisions, json, purser_error, RawOrigin, Rig, DEADLINE, EVERY_PATH, POLICY};
use crate::support::{crafted_payment, pay, Purser};
use base64::Engine as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_headers_in_any_spelling_are_decided_on_every_path() {
    let rig = Rig::start(POLICY, &[]).await;
    let spellings = [
        "PAYMENT_SIGNATURE",
        "Payment_Signature",
        "payment.signature",
        "X_PAYMENT",
    ];
    for (index, path) in EVERY_PATH.into_iter().enumerate() {
        let session = format!("spell{index}");
        for (n, name) in spellings.iter().enumerate() {
            let payment = crafted_payment((index * 10 + n) as u8, 1000);
            let answer = rig
                .send(path, &session, "GET", "/paid", &[(name, &payment)], "")
                .await;
            assert_eq!(answer.status(), 403, "{path:?} {name}");
            assert_eq!(json(&answer)["decision"], "DENIED", "{path:?} {name}");
            assert!(answer.headers().contains_key("x-purser-trace"));
        }
        let lines = decisions(&rig.purser, &session);
        assert_eq!(
            lines.len(),
            spellings.len(),
            "{path:?}: a decision line each"
        );
        assert!(lines.iter().all(|line| line["decision"] == "DENIED"));
    }
    assert!(
        rig.received().is_empty(),
        "no payment reached a merchant in EXPLORE: {:?}",
        rig.received()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payments_in_one_request_are_refused_whatever_their_spelling() {
    let rig = Rig::start(POLICY, &[]).await;
    let first = crafted_payment(101, 1000);
    let second = crafted_payment(102, 1000);
    for (index, path) in EVERY_PATH.into_iter().enumerate() {
        let session = format!("two{index}");
        // In COMMIT either payment alone would be forwarded.
        rig.purser.set_phase(&format!("agent.{session}"), "COMMIT");
        let cases: [&[(&str, &str)]; 4] = [
            &[("payment-signature", &first), ("payment_signature", &first)],
            &[
                ("payment-signature", &first),
                ("PAYMENT_SIGNATURE", &second),
            ],
            &[("x-payment", &first), ("payment-signature", &second)],
            &[
                ("payment-signature", &first),
                ("authorization", "Payment eyJ4Ijox"),
            ],
        ];
        for headers in cases {
            let answer = rig.send(path, &session, "GET", "/paid", headers, "").await;
            assert_eq!(answer.status(), 403, "{path:?} {headers:?}");
            assert_eq!(json(&answer)["code"], "ambiguous_payment", "{path:?}");
        }
    }
    assert!(rig.received().is_empty(), "{:?}", rig.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purser_control_headers_never_reach_the_merchant_in_any_spelling() {
    let rig = Rig::start(POLICY, &[]).await;
    let headers: &[(&str, &str)] = &[
        ("x_purser_phase", "COMMIT"),
        ("X_Purser_Transaction", "t-1"),
        ("x.purser.transaction", "t-2"),
        ("x-purser-transaction", "t-3"),
    ];
    for path in EVERY_PATH {
        let answer = rig.send(path, "ctl", "GET", "/read", headers, "").await;
        assert_eq!(answer.status(), 200, "{path:?}");
    }
    let received = rig.received();
    assert_eq!(received.len(), EVERY_PATH.len());
    for request in received {
        let leaked: Vec<&str> = request
            .headers
            .keys()
            .map(|name| name.as_str())
            .filter(|name| {
                let canonical: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                canonical.starts_with("x-purser")
            })
            .collect();
        assert!(leaked.is_empty(), "leaked upstream: {leaked:?}");
    }
    let (_, body) = rig.purser.admin("GET", "/v1/sessions/agent.ctl", None);
    assert!(
        !body.contains("COMMIT"),
        "a misspelt phase header is not honoured: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_to_an_untrusted_tunnel_host_are_refused_in_any_spelling() {
    let rig = Rig::start(&format!("{POLICY}tunnel: ['127.0.0.1']\n"), &[]).await;
    let payment = crafted_payment(7, 1000);
    for headers in [
        &[("PAYMENT_SIGNATURE", payment.as_str())][..],
        &[("x_payment", payment.as_str())],
        &[("authorization", "Payment eyJ4Ijox")],
    ] {
        let answer = rig
            .send(super::Path::Plain, "tun", "GET", "/paid", headers, "")
            .await;
        assert_eq!(answer.status(), 403, "{headers:?}");
        assert_eq!(purser_error(&answer), "tunnel_untrusted", "{headers:?}");
    }
    assert!(rig.received().is_empty(), "{:?}", rig.received());
}

/// A merchant that settles and says so in `payment_response`: the agent's SDK may read it
/// (CGI-style), so Purser counts the payment as spent instead of releasing it.
#[test]
fn a_receipt_spelt_with_underscores_commits_the_payment() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receipt = base64::engine::general_purpose::STANDARD.encode(
        r#"{"success":true,"transaction":"0x5e77","network":"eip155:84532","payer":"0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"}"#,
    );
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\npayment_response: {receipt}\r\n\r\nsettled"
    );
    let merchant = runtime.block_on(RawOrigin::start(answer.into_bytes()));
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.rcpt", "COMMIT");
    let url = format!("http://127.0.0.1:{}/paid", merchant.addr.port());
    let (status, body) = pay(&purser, "rcpt", &url, &crafted_payment(9, 10_000));
    assert_eq!((status, body.as_str()), (200, "settled"));
    let deadline = std::time::Instant::now() + DEADLINE;
    let settlement = loop {
        let found = purser
            .trace_lines()
            .into_iter()
            .find(|line| line["kind"] == "settlement" && line["session"] == "agent.rcpt");
        match found {
            Some(line) => break line,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(25))
            }
            None => panic!("no settlement line"),
        }
    };
    assert_eq!(settlement["outcome"], "committed", "{settlement}");
}
