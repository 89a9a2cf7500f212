//! Payments whose outcome is unknown: an operator reconciles them through the admin API
//! and the CLI, and an agent that hangs up while its payment is upstream leaves it
//! counted as unknown (its identical retry is still a retry).

use super::merchant::Merchant;
use super::{pay, payment, session, spent, unknown_payments, wait_for, ReleaseOnDrop, POLICY};
use crate::support::{self, Purser};
use serde_json::Value;

#[test]
fn unknown_payments_are_reconciled_through_the_api_and_the_cli() {
    let merchant = Merchant::start();
    let mut purser = Purser::start(POLICY, None);
    assert_eq!(
        pay(
            &purser,
            "u",
            &merchant.url("/ok/x?id=1"),
            &payment(14, 250_000)
        )
        .0,
        200
    );
    assert_eq!(
        pay(
            &purser,
            "u",
            &merchant.url("/error/y"),
            &payment(15, 150_000)
        )
        .0,
        500
    );
    let listed = unknown_payments(&purser, "?outcome=unknown&agent=agent");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let first = &listed[0];
    for (key, value) in [
        ("session", "agent.u"),
        ("agent", "agent"),
        ("amount_usd", "0.25"),
        ("method", "GET"),
        ("host", "127.0.0.1"),
        ("path", "/ok/x"),
        ("outcome", "unknown"),
    ] {
        assert_eq!(first[key], value, "{key}: {first}");
    }
    assert_eq!(first["upstream_status"], 200);
    assert_eq!(first["payment_digest"].as_str().unwrap().len(), 64);
    let id = first["id"].as_str().unwrap().to_string();
    let second = listed[1]["id"].as_str().unwrap().to_string();
    let (status, body) = purser.admin("GET", &format!("/v1/payments/{id}"), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = purser.admin("GET", "/v1/payments?outcome=committed", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_filter"), "{body}");

    let table = cli(&purser, &["payments", "list"]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table.lines().find(|l| l.contains(&id)).expect(&table);
    for cell in ["agent.u", "0.25", "GET 127.0.0.1/ok/x", "without a receipt"] {
        assert!(row.contains(cell), "{cell} missing: {row}");
    }
    let resolved = cli(
        &purser,
        &[
            "payments",
            "resolve",
            &id,
            "--outcome",
            "Released",
            "--by",
            "ana",
            "--reason",
            "the merchant never settled it",
        ],
    );
    let out = String::from_utf8_lossy(&resolved.stdout).into_owned();
    assert!(resolved.status.success(), "{resolved:?}");
    assert!(
        out.starts_with(&format!("released payment {id} (0.25 USD")),
        "{out}"
    );
    assert_eq!(spent(&purser, "u"), ("0.15".into(), "0.15".into()));
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/payments/{second}/resolve"),
        Some(r#"{"outcome":"committed","by":"ops","reason":"tx 0xabc on chain"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["budget"]["session_spent"], "0.15");
    assert_eq!(answer["budget"]["session_unknown"], "0");

    let resolutions: Vec<Value> = purser
        .trace_lines()
        .into_iter()
        .filter(|l| l["kind"] == "resolution")
        .collect();
    assert_eq!(resolutions.len(), 2);
    assert_eq!(resolutions[0]["decision_trace_id"], *id);
    assert_eq!(resolutions[0]["outcome"], "released");
    let reason = resolutions[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("ana") && reason.contains("never settled"),
        "{reason}"
    );

    let empty = cli(&purser, &["payments", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&empty.stdout),
        "no payments with an unknown outcome\n"
    );
    let again = cli(
        &purser,
        &[
            "payments",
            "resolve",
            &id,
            "--outcome",
            "released",
            "--reason",
            "twice",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no payment with an unknown outcome"));
    let bad = cli(
        &purser,
        &[
            "payments",
            "resolve",
            &id,
            "--outcome",
            "settled",
            "--reason",
            "x",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "clap refuses the outcome");

    // The resolutions survive a restart.
    purser.restart();
    assert_eq!(spent(&purser, "u"), ("0.15".into(), "0".into()));
    assert!(unknown_payments(&purser, "").is_empty());
}

#[test]
fn a_payment_whose_request_goes_away_upstream_stays_counted_as_unknown() {
    let merchant = Merchant::start();
    let purser = Purser::start(POLICY, None);
    merchant.hold(true);
    let _release = ReleaseOnDrop(&merchant);
    let url = merchant.url("/hold/abandoned");
    let sent = payment(16, 250_000);
    let request = format!(
        "GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nProxy-Authorization: {}\r\n\
         PAYMENT-SIGNATURE: {sent}\r\n\r\n",
        merchant.port,
        support::basic("agent.gone", "t0ken")
    );
    let mut agent = std::net::TcpStream::connect(purser.proxy).unwrap();
    std::io::Write::write_all(&mut agent, request.as_bytes()).unwrap();
    wait_for("the payment at the merchant", || merchant.waiting() == 1);
    // The agent hangs up while its payment is upstream.
    agent.shutdown(std::net::Shutdown::Both).unwrap();
    drop(agent);
    // The payment's details (its `why`) can land just after the ledger's figures.
    wait_for("the payment to become unknown, saying why", || {
        spent(&purser, "gone") == ("0.25".into(), "0.25".into())
            && unknown_payments(&purser, "?outcome=unknown")
                .first()
                .and_then(|payment| payment["why"].as_str())
                .is_some_and(|why| why.contains("went away"))
    });
    assert_eq!(session(&purser, "gone")["reserved"], "0");
    let listed = unknown_payments(&purser, "?outcome=unknown");
    assert!(listed[0]["why"].as_str().unwrap().contains("went away"));
    // Its identical retry is a retry.
    merchant.hold(false);
    assert_eq!(pay(&purser, "gone", &url, &sent).0, 200);
    assert_eq!(merchant.paid().len(), 2);
}

fn cli(purser: &Purser, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(args)
        .args(["--admin", &format!("http://{}", purser.admin)])
        .env_remove("PURSER_ADMIN_TOKEN")
        .output()
        .expect("run purser cli")
}
