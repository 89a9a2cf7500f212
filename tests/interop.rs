//! Interoperability with the official x402 Python SDK (`x402==2.25.0`): its `requests`
//! client pays its FastAPI middleware through Purser, and a facilitator stub records what
//! actually settled. The venv is built under `target/` on first run.

mod support;

use support::pki::TestPki;
use support::python::{agent, paid_server, Facilitator};
use support::{Purser, PurserOptions, TempDir};

const GOVERNED: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
  transition_rules: { agent_header: true }
budget:
  session_limit: 1.00
  single_call_threshold: 0.50
  graduated_gates: { warning: 0.50, halt: 0.90 }
categories:
  forbidden: ["127.0.0.1/forbidden*"]
tiers:
  - name: prohibited
    conditions: { categories: [forbidden] }
    approval: blocked
  - name: autonomous
    approval: none
"#;

fn proxy_for(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

fn decisions(purser: &Purser) -> Vec<serde_json::Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|l| l["kind"] == "decision")
        .collect()
}

/// Waits (bounded) until `condition` holds: settlement lines are queued to the trace
/// writer, so they can follow the answer. The caller then asserts what it needs.
fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if condition() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How many settlement lines there are (of `outcome`, if given).
fn settlements(purser: &Purser, outcome: Option<&str>) -> usize {
    purser
        .trace_lines()
        .iter()
        .filter(|l| l["kind"] == "settlement" && outcome.is_none_or(|o| l["outcome"] == o))
        .count()
}

#[test]
fn a_payment_in_explore_is_blocked_and_settles_after_commit() {
    let dir = TempDir::new("interop-phase");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "50000"]);
    let purser = Purser::start(GOVERNED, None);
    let url = server.url("http", "/paid/data");

    let explore = &agent(&url, &proxy_for(&purser, "s1"), None, &[])[0];
    assert_eq!(explore.status, 403);
    assert_eq!(explore.header("x-purser-decision"), Some("DENIED"));
    assert_eq!(explore.json()["rule"], "phase");
    assert!(explore.json()["trace_id"].as_str().is_some());
    assert!(
        facilitator.settlements().is_empty(),
        "a blocked payment moves no money"
    );

    purser.set_phase("agent.s1", "COMMIT");
    let commit = &agent(&url, &proxy_for(&purser, "s1"), None, &[])[0];
    assert_eq!(commit.status, 200, "{}", commit.body);
    assert_eq!(commit.header("x-purser-decision"), Some("ALLOWED"));
    assert!(commit.header("payment-response").is_some());
    assert_eq!(facilitator.settlements().len(), 1);
    assert_eq!(facilitator.settled_atomic(), 50_000);

    wait_for(|| settlements(&purser, None) >= 1);
    let lines = purser.trace_lines();
    let settled: Vec<_> = lines.iter().filter(|l| l["kind"] == "settlement").collect();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["outcome"], "committed");
    let (_, session) = purser.admin("GET", "/v1/sessions/agent.s1", None);
    let session: serde_json::Value = serde_json::from_str(&session).unwrap();
    assert_eq!(session["phase"], "COMMIT");
    assert_eq!(session["spent"], "0.05");
}

#[test]
fn the_agent_moves_its_own_phase_with_a_header_and_backwards_is_409() {
    let dir = TempDir::new("interop-header");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &[]);
    let purser = Purser::start(GOVERNED, None);
    let url = server.url("http", "/paid/data");
    let paid = &agent(
        &url,
        &proxy_for(&purser, "h"),
        None,
        &["--header", "X-Purser-Phase: COMMIT"],
    )[0];
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(facilitator.settlements().len(), 1);
    let back = &agent(
        &url,
        &proxy_for(&purser, "h"),
        None,
        &["--header", "X-Purser-Phase: EXPLORE"],
    )[0];
    assert_eq!(back.status, 409);
    assert_eq!(facilitator.settlements().len(), 1);
}

#[test]
fn a_payment_above_the_threshold_is_stopped_for_approval() {
    let dir = TempDir::new("interop-threshold");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "750000"]);
    let purser = Purser::start(
        &GOVERNED.replace("budget:", "approvals:\n  timeout: 2s\nbudget:"),
        None,
    );
    purser.set_phase("agent.t", "COMMIT");
    let result = &agent(
        &server.url("http", "/paid/data"),
        &proxy_for(&purser, "t"),
        None,
        &[],
    )[0];
    // Held for a human (approval_required), nobody approved: denied at the timeout.
    assert_eq!(result.status, 403);
    let body = result.json();
    assert_eq!(body["decision"], "DENIED");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("approval_timed_out"),
        "{body}"
    );
    let decision = decisions(&purser).pop().unwrap();
    assert_eq!(decision["decision"], "PENDING_APPROVAL");
    assert_eq!(decision["rule"], "single_call_threshold");
    assert!(decision["reason"]
        .as_str()
        .unwrap()
        .contains("above the per-call threshold"));
    assert!(facilitator.settlements().is_empty());
}

#[test]
fn a_prohibited_tier_is_blocked() {
    let dir = TempDir::new("interop-tier");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--route", "/forbidden/item=10000"]);
    let purser = Purser::start(GOVERNED, None);
    purser.set_phase("agent.p", "COMMIT");
    let result = &agent(
        &server.url("http", "/forbidden/item"),
        &proxy_for(&purser, "p"),
        None,
        &[],
    )[0];
    assert_eq!(result.status, 403);
    assert_eq!(result.json()["rule"], "tier:prohibited");
    assert!(facilitator.settlements().is_empty());
    let decision = decisions(&purser).pop().unwrap();
    assert_eq!(decision["tier"], "prohibited");
    assert_eq!(decision["category"], "forbidden");
}

#[test]
fn a_payment_crossing_the_halt_gate_is_blocked() {
    let dir = TempDir::new("interop-halt");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "400000"]);
    let purser = Purser::start(GOVERNED, None);
    purser.set_phase("agent.g", "COMMIT");
    let url = server.url("http", "/paid/data");
    let first = &agent(&url, &proxy_for(&purser, "g"), None, &[])[0];
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-purser-budget"), None, "40% crosses no gate");
    let second = &agent(&url, &proxy_for(&purser, "g"), None, &[])[0];
    assert_eq!(second.status, 200, "80% crosses the warning gate");
    assert_eq!(second.header("x-purser-budget"), Some("warning"));
    let third = &agent(&url, &proxy_for(&purser, "g"), None, &[])[0];
    assert_eq!(third.status, 403, "120% is past the halt gate");
    assert_eq!(third.json()["rule"], "budget_limit");
    assert_eq!(facilitator.settlements().len(), 2);
    let decision = decisions(&purser).pop().unwrap();
    assert_eq!(decision["gate"], "halt");
}

#[test]
fn a_v1_payment_is_priced_from_its_challenge() {
    let dir = TempDir::new("interop-v1");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--version", "1", "--price-atomic", "50000"]);
    let purser = Purser::start(GOVERNED, None);
    purser.set_phase("agent.v1", "COMMIT");
    let result = &agent(
        &server.url("http", "/paid/data"),
        &proxy_for(&purser, "v1"),
        None,
        &[],
    )[0];
    assert_eq!(result.status, 200, "{}", result.body);
    assert!(result.header("x-payment-response").is_some());
    let decision = decisions(&purser).pop().unwrap();
    assert_eq!(decision["x402_version"], 1);
    assert_eq!(decision["network"], "base-sepolia");
    assert_eq!(decision["amount_atomic"], "50000");
    assert_eq!(decision["amount"], "0.05");
    assert_eq!(decision["amount_usd"], "0.05");
    assert_eq!(decision["asset_symbol"], "USDC");
    assert_eq!(
        decision["pay_to"],
        "0x2096000000000000000000000000000000000287"
    );
    assert_eq!(facilitator.settled_atomic(), 50_000);
}

#[test]
fn two_hundred_concurrent_payments_never_overspend_a_one_dollar_budget() {
    let dir = TempDir::new("interop-concurrent");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "10000"]);
    let policy = "agents:\n  agent: { token: t0ken }\nphases:\n  allowed_payment_phase: EXPLORE\nbudget:\n  session_limit: 1.00\n";
    let purser = Purser::start(policy, None);
    let results = agent(
        &server.url("http", "/paid/data"),
        &proxy_for(&purser, "c"),
        None,
        &["--count", "200", "--concurrency", "50"],
    );
    assert_eq!(results.len(), 200);
    let allowed = results.iter().filter(|r| r.status == 200).count();
    let denied = results.iter().filter(|r| r.status == 403).count();
    // Under this load the SDK's merchant itself now and then answers a paid retry with a
    // fresh 402 (it does so without Purser in between too): a fresh 402 says it did not
    // take the payment, so Purser must release those reservations rather than count them.
    let refused_by_merchant = results.iter().filter(|r| r.status == 402).count();
    // How many it refuses depends on the merchant's load, not on Purser (a fresh clone
    // under CI saw 12 of 200): what Purser owes is that each one is released, below, and
    // that the budget is still spent in full (`allowed`, at the end).
    assert_eq!(allowed + denied + refused_by_merchant, 200);
    wait_for(|| settlements(&purser, Some("released")) == refused_by_merchant);
    let released = settlements(&purser, Some("released"));
    assert_eq!(released, refused_by_merchant);
    let settled = facilitator.settled_atomic();
    assert!(
        settled <= 1_000_000,
        "settled {settled} atomic units against a $1.00 budget"
    );
    assert_eq!(
        settled,
        allowed as u128 * 10_000,
        "every allowed payment settled, nothing else did"
    );
    // The budget is used, not starved. A payment the merchant refuses with a fresh 402
    // held its reservation until that answer, so payments decided meanwhile were denied
    // on a budget that was full at the time: the merchant's refusals count as use here.
    assert!(
        allowed + refused_by_merchant >= 90,
        "the budget is used, not starved: {allowed} allowed, {refused_by_merchant} refused by the merchant"
    );
}

#[test]
fn payments_over_https_are_governed_through_interception() {
    let dir = TempDir::new("interop-https");
    let pki = TestPki::new(dir.path(), "merchant");
    let (cert, key) = pki.server_cert_files(dir.path(), "merchant");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(
        &facilitator,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let mut options = PurserOptions::new(GOVERNED);
    options.upstream_ca = Some(&pki.ca_path);
    let purser = Purser::start_with(options);
    let url = server.url("https", "/paid/data");
    let ca = purser.ca_pem();
    let explore = &agent(&url, &proxy_for(&purser, "tls"), Some(&ca), &[])[0];
    assert_eq!(explore.status, 403);
    purser.set_phase("agent.tls", "COMMIT");
    let commit = &agent(&url, &proxy_for(&purser, "tls"), Some(&ca), &[])[0];
    assert_eq!(commit.status, 200, "{}", commit.body);
    assert_eq!(commit.header("x-purser-decision"), Some("ALLOWED"));
    assert_eq!(facilitator.settlements().len(), 1);
    let decision = decisions(&purser).pop().unwrap();
    assert_eq!(decision["host"], "localhost");
    assert_eq!(decision["x402_version"], 2);
}
