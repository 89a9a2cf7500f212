//! x402 schemes beyond EIP-3009 `exact`, through the real binary with the official Python
//! SDK (x402 2.25.0) on both sides: `exact` paid through Permit2, and `upto` (a signed
//! maximum, of which the merchant charges part). What commits to the budget and to the
//! proof log is what was signed, and for `upto` what the receipt says was charged; a
//! payment signed for more than the challenge asked is refused before it leaves.

mod support;

use serde_json::Value;
use std::process::Command;
use support::python::{agent, python, Facilitator, PyServer};
use support::{curl_answer, Purser, TempDir};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
budget:
  session_limit: 1.00
tiers:
  - name: autonomous
    approval: none
"#;

const SIGNER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sign_payment.py");

/// The facilitator stub and the SDK's Permit2/upto server in front of it.
fn merchant(dir: &TempDir) -> (Facilitator, PyServer) {
    let facilitator = Facilitator::start(dir.path());
    let server = PyServer::start(
        "schemes_server.py",
        &["--facilitator".to_string(), facilitator.url()],
    );
    (facilitator, server)
}

/// Purser, with `session` of `agent` moved to COMMIT.
fn purser_in_commit(sessions: &[&str]) -> Purser {
    let purser = Purser::start(POLICY, None);
    for session in sessions {
        purser.set_phase(&format!("agent.{session}"), "COMMIT");
    }
    purser
}

fn proxy(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

/// The session as `GET /v1/sessions/{id}` shows it.
fn session(purser: &Purser, session: &str) -> Value {
    let (status, body) = purser.admin("GET", &format!("/v1/sessions/agent.{session}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The proof log's lines of `kind` about `session`.
fn lines(purser: &Purser, kind: &str, session: &str) -> Vec<Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|l| l["kind"] == kind && l["session"] == format!("agent.{session}"))
        .collect()
}

/// The settlement lines about `session`, once there is one: they are queued to the trace
/// writer, so they can follow the answer.
fn settlements(purser: &Purser, session: &str) -> Vec<Value> {
    for _ in 0..1200 {
        let settled = lines(purser, "settlement", session);
        if !settled.is_empty() {
            return settled;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "no settlement line for agent.{session}:\n{}",
        purser.stderr()
    );
}

#[test]
fn a_permit2_exact_payment_commits_what_it_signed() {
    let dir = TempDir::new("schemes-permit2");
    let (facilitator, server) = merchant(&dir);
    let purser = purser_in_commit(&["p2"]);

    let paid = &agent(
        &server.url("http", "/permit2"),
        &proxy(&purser, "p2"),
        None,
        &[],
    )[0];
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.header("x-purser-decision"), Some("ALLOWED"));

    let settled = facilitator.settlements();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["transfer_method"], "permit2");
    assert_eq!(settled[0]["authorized_value"], "20000");

    let decision = &lines(&purser, "decision", "p2")[0];
    assert_eq!(decision["decision"], "ALLOWED");
    assert_eq!(decision["scheme"], "exact");
    assert_eq!(decision["amount_atomic"], "20000");
    assert_eq!(decision["amount_usd"], "0.02");
    let settlement = &settlements(&purser, "p2")[0];
    assert_eq!(settlement["outcome"], "committed");
    assert_eq!(settlement["amount_usd"], "0.02");
    assert_eq!(session(&purser, "p2")["spent"], "0.02");
}

#[test]
fn an_upto_payment_reserves_its_maximum_and_commits_what_the_receipt_charged() {
    let dir = TempDir::new("schemes-upto");
    let (facilitator, server) = merchant(&dir);
    let purser = purser_in_commit(&["up"]);

    let paid = &agent(
        &server.url("http", "/upto"),
        &proxy(&purser, "up"),
        None,
        &[],
    )[0];
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.header("x-purser-decision"), Some("ALLOWED"));
    assert_eq!(facilitator.settled_atomic(), 37_000);

    // The decision reserved the signed maximum...
    let decision = &lines(&purser, "decision", "up")[0];
    assert_eq!(decision["scheme"], "upto");
    assert_eq!(decision["amount_atomic"], "100000");
    assert_eq!(decision["amount_usd"], "0.1");
    assert_eq!(decision["budget"]["reserved"], "0.1");
    // ...and the settlement committed what the receipt charged; the rest went back.
    let settlement = &settlements(&purser, "up")[0];
    assert_eq!(settlement["outcome"], "committed");
    assert_eq!(settlement["amount_atomic"], "37000");
    assert_eq!(settlement["amount_usd"], "0.037");
    let view = session(&purser, "up");
    assert_eq!(view["spent"], "0.037");
    assert_eq!(view["reserved"], "0");

    // A restart rebuilds the same spend from the proof log.
    let mut purser = purser;
    purser.restart();
    assert_eq!(session(&purser, "up")["spent"], "0.037");
}

#[test]
fn a_payment_signed_for_more_than_the_challenge_is_refused() {
    let dir = TempDir::new("schemes-over");
    let (facilitator, server) = merchant(&dir);
    let purser = purser_in_commit(&["over"]);
    let url = server.url("http", "/permit2");
    let through = proxy(&purser, "over");

    // The agent sees the 20000 challenge through Purser, then signs 50000 with the SDK.
    let (status, _) = curl_answer(&["-x", &through, &url]);
    assert_eq!(status, 402);
    let signed = Command::new(python())
        .args([SIGNER, "--url", &url, "--amount", "50000"])
        .output()
        .expect("run sign_payment.py");
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let header = format!(
        "PAYMENT-SIGNATURE: {}",
        String::from_utf8_lossy(&signed.stdout).trim()
    );
    let (status, body) = curl_answer(&["-x", &through, "-H", &header, &url]);
    assert_eq!(status, 403, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["rule"], "payload_mismatch", "{body}");
    assert!(
        refusal["reason"].as_str().unwrap().contains("50000"),
        "{body}"
    );
    assert!(facilitator.settlements().is_empty(), "no money moved");
    assert_eq!(session(&purser, "over")["spent"], "0");
}
