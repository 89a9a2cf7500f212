//! The Machine Payments Protocol through the real binary, with the official SDKs on both
//! sides (pympp 0.16.0, its own venv; mppx 0.11.0 on Node): each agent pays its merchant
//! through Purser, and only the payment backends are stubs on loopback (the x402
//! facilitator stub settles `evm` charges, a Tempo JSON-RPC node takes `tempo`
//! broadcasts), so what they record is the money that moved.

mod support;

use support::mpp::{
    agent, assert_schema_valid, mppx_agent, x402_agent, Merchant, MppxMerchant, Paid,
};
use support::{Purser, TempDir};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
  transition_rules: { agent_header: true }
approvals:
  timeout: 2s
budget:
  session_limit: 1.00
  single_call_threshold: 0.50
tiers:
  - name: autonomous
    approval: none
"#;

fn proxy_for(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

fn lines(purser: &Purser, kind: &str) -> Vec<serde_json::Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|line| line["kind"] == kind)
        .collect()
}

/// The settlement lines, once `count` are written: they are queued to the trace writer,
/// so they can follow the answer.
fn settlements(purser: &Purser, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..1200 {
        let settled = lines(purser, "settlement");
        if settled.len() >= count {
            return settled;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lines(purser, "settlement")
}

fn refused(result: &Paid, rule: &str) {
    assert_eq!(result.status, 403, "{}", result.body);
    assert_eq!(result.header("x-purser-decision"), Some("DENIED"));
    assert_eq!(result.json()["rule"], rule, "{}", result.body);
    assert!(result.json()["trace_id"].as_str().is_some());
}

fn spent(purser: &Purser, session: &str) -> String {
    let (_, body) = purser.admin("GET", &format!("/v1/sessions/{session}"), None);
    let session: serde_json::Value = serde_json::from_str(&body).unwrap();
    session["spent"].as_str().unwrap_or_default().to_string()
}

#[test]
fn an_evm_charge_is_refused_in_explore_and_settles_once_in_commit() {
    let dir = TempDir::new("mpp-evm");
    let merchant = Merchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    let url = merchant.url("/paid");

    let explore = &agent(&url, &proxy_for(&purser, "e"), &[])[0];
    refused(explore, "phase");
    assert!(explore
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Payment "));
    assert!(merchant.evm_settled().is_empty(), "EXPLORE moves no money");

    purser.set_phase("agent.e", "COMMIT");
    let commit = &agent(&url, &proxy_for(&purser, "e"), &[])[0];
    assert_eq!(commit.status, 200, "{}", commit.body);
    assert_eq!(commit.header("x-purser-decision"), Some("ALLOWED"));
    assert!(commit.header("payment-receipt").is_some());
    assert_eq!(merchant.evm_settled(), [10_000]);

    let allowed: Vec<_> = lines(&purser, "decision")
        .into_iter()
        .filter(|line| line["decision"] == "ALLOWED")
        .collect();
    assert_eq!(allowed.len(), 1);
    let decision = &allowed[0];
    assert_eq!(decision["protocol"], "mpp");
    assert_eq!(decision["scheme"], "evm/charge");
    assert_eq!(decision["network"], "eip155:84532");
    assert_eq!(decision["amount_usd"], "0.01");
    assert_eq!(decision["payer"], support::mpp::PAYER);
    assert!(decision.get("x402_version").is_none());
    let settled = settlements(&purser, 1);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["outcome"], "committed");
    assert_eq!(settled[0]["decision_trace_id"], decision["trace_id"]);
    let reference = commit.json()["reference"].as_str().unwrap().to_string();
    assert_eq!(settled[0]["transaction"], reference.as_str());
    assert_eq!(spent(&purser, "agent.e"), "0.01");
    assert_schema_valid(&purser);
}

#[test]
fn a_tempo_charge_broadcasts_nothing_in_explore_and_once_in_commit() {
    let dir = TempDir::new("mpp-tempo");
    let merchant = Merchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    let url = merchant.url("/paid");
    let rpc = merchant.chain_url();
    let tempo = ["--method", "tempo", "--rpc", rpc.as_str()];

    refused(&agent(&url, &proxy_for(&purser, "t"), &tempo)[0], "phase");
    assert_eq!(merchant.tempo_broadcasts(), 0, "EXPLORE moves no money");

    let header = ["--header", "X-Purser-Phase: COMMIT"];
    let args: Vec<&str> = tempo.iter().chain(header.iter()).copied().collect();
    let commit = &agent(&url, &proxy_for(&purser, "t"), &args)[0];
    assert_eq!(commit.status, 200, "{}", commit.body);
    assert_eq!(merchant.tempo_broadcasts(), 1);
    assert!(merchant.evm_settled().is_empty());
    let decision = lines(&purser, "decision").pop().unwrap();
    assert_eq!(decision["scheme"], "tempo/charge");
    assert_eq!(decision["network"], "eip155:42431");
    assert!(decision["replay_keys"][1]
        .as_str()
        .unwrap()
        .starts_with("tempo_tx:"));
    let settled = settlements(&purser, 1);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["outcome"], "committed");
    assert_eq!(spent(&purser, "agent.t"), "0.01");
}

#[test]
fn a_credential_for_a_challenge_purser_did_not_see_or_with_an_altered_echo_is_refused() {
    let dir = TempDir::new("mpp-binding");
    let merchant = Merchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.b", "COMMIT");
    let url = merchant.url("/paid");

    // Challenge fetched from the merchant directly: Purser never saw it.
    let foreign = &agent(&url, &proxy_for(&purser, "b"), &["--mode", "foreign"])[0];
    refused(foreign, "unquoted_payment");
    // Challenge fetched through Purser, its echoed request changed to ask less.
    let altered = &agent(&url, &proxy_for(&purser, "b"), &["--mode", "altered"])[0];
    refused(altered, "payload_mismatch");
    // A challenge seen in another session does not bind a credential in this one.
    let other = proxy_for(&purser, "c");
    let elsewhere = &agent(
        &url,
        &proxy_for(&purser, "b"),
        &["--mode", "foreign", "--probe-proxy", other.as_str()],
    )[0];
    refused(elsewhere, "unquoted_payment");
    assert!(merchant.evm_settled().is_empty());
    assert!(lines(&purser, "settlement").is_empty());
    assert_eq!(spent(&purser, "agent.b"), "0");
}

#[test]
fn a_replayed_credential_is_refused_and_settles_once() {
    let dir = TempDir::new("mpp-replay");
    let merchant = Merchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.r", "COMMIT");
    let results = agent(
        &merchant.url("/paid"),
        &proxy_for(&purser, "r"),
        &["--mode", "replay"],
    );
    assert_eq!(results[0].status, 200, "{}", results[0].body);
    assert_eq!(results[0].authorization, results[1].authorization);
    refused(&results[1], "replayed_payment");
    assert_eq!(merchant.evm_settled(), [10_000]);
    assert_eq!(settlements(&purser, 1).len(), 1);
}

#[test]
fn a_body_bound_charge_pays_with_its_body_and_a_large_one_waits_for_approval() {
    let dir = TempDir::new("mpp-body");
    let merchant = Merchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.p", "COMMIT");
    let posted = &agent(
        &merchant.url("/paid-body"),
        &proxy_for(&purser, "p"),
        &["--data", r#"{"q":"deep"}"#],
    )[0];
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(merchant.evm_settled(), [250_000]);

    // 0.75 is above the per-call threshold: held, nobody approves, denied at the timeout.
    let held = &agent(&merchant.url("/pricey"), &proxy_for(&purser, "p"), &[])[0];
    assert_eq!(held.status, 403, "{}", held.body);
    let reason = held.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("approval_timed_out"), "{reason}");
    assert_eq!(merchant.evm_settled(), [250_000]);
    let decision = lines(&purser, "decision").pop().unwrap();
    assert_eq!(decision["decision"], "PENDING_APPROVAL");
    assert_eq!(decision["rule"], "single_call_threshold");
    assert_eq!(spent(&purser, "agent.p"), "0.25");
}

#[test]
fn an_x402_client_paying_the_same_merchant_counts_only_its_x402_payment() {
    let dir = TempDir::new("mpp-x402");
    let merchant = Merchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.x", "COMMIT");
    // pympp's evm endpoint offers x402 too: PAYMENT-REQUIRED beside the MPP challenges.
    let paid = &x402_agent(&merchant.url("/paid"), &proxy_for(&purser, "x"))[0];
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert!(paid.header("payment-response").is_some());
    assert!(
        paid.header("payment-receipt").is_some(),
        "it answers both receipts"
    );
    assert_eq!(merchant.evm_settled(), [10_000]);
    let decisions = lines(&purser, "decision");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["x402_version"], 2);
    assert!(decisions[0].get("protocol").is_none());
    let settled = settlements(&purser, 1);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["outcome"], "committed");
    assert_eq!(spent(&purser, "agent.x"), "0.01");
}

#[test]
fn the_mppx_agent_pays_the_mppx_merchant_once_and_only_in_commit() {
    let dir = TempDir::new("mpp-mppx");
    let merchant = MppxMerchant::start(dir.path());
    let purser = Purser::start(POLICY, None);
    let url = merchant.url("/paid");
    // undici's EnvHttpProxyAgent: the request goes as CONNECT, then plaintext HTTP.
    refused(&mppx_agent(&url, &proxy_for(&purser, "n")), "phase");
    assert!(merchant.settled().is_empty(), "EXPLORE moves no money");

    purser.set_phase("agent.n", "COMMIT");
    let paid = mppx_agent(&url, &proxy_for(&purser, "n"));
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.header("x-purser-decision"), Some("ALLOWED"));
    assert!(paid.header("payment-receipt").is_some());
    assert_eq!(merchant.settled(), [10_000]);
    let decision = lines(&purser, "decision").pop().unwrap();
    assert_eq!(decision["protocol"], "mpp");
    assert_eq!(decision["scheme"], "evm/charge");
    let settled = settlements(&purser, 1);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["outcome"], "committed");
    assert_eq!(spent(&purser, "agent.n"), "0.01");
}
