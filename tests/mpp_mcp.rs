//! MPP over MCP through the real binary: the official MCP client (`mcp==1.30.0`
//! `ClientSession` over streamable HTTP) paying through pympp 0.16.0's `McpClient`
//! (`_meta["org.paymentauth/credential"]`), and a pympp MCP server answering `-32042`
//! with its challenges and settling through the facilitator stub on loopback, which
//! counts the money that moved (`tests/interop/mpp/mpp_mcp_*.py`).
//!
//! What the model sees of a refusal is the tool result the client returns: each refusal
//! is checked there (a tool error, not the exception pympp raises for a JSON-RPC error
//! on a paid retry), and the session is used again after it.

mod support;

use serde_json::Value;
use support::mpp::{assert_schema_valid, mcp_agent, McpMerchant};
use support::{Purser, TempDir};

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

fn proxy_for(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

fn lines_of(purser: &Purser, kind: &str) -> Vec<Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|line| line["kind"] == kind)
        .collect()
}

/// The settlement lines, once `count` are written (they follow the answer closely).
fn settlements(purser: &Purser, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let lines = lines_of(purser, "settlement");
        if lines.len() >= count {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    lines_of(purser, "settlement")
}

fn session_view(purser: &Purser, session: &str) -> Value {
    let (_, body) = purser.admin("GET", &format!("/v1/sessions/agent.{session}"), None);
    serde_json::from_str(&body).unwrap()
}

/// Asserts a step is the tool error the model reads for a refusal by `rule`: decision,
/// rule, reason and trace id in its text and in `structuredContent.purser`, no receipt.
fn assert_refused(step: &Value, rule: &str) -> String {
    assert_eq!(
        step["error"],
        Value::Null,
        "a refusal is no exception: {step}"
    );
    assert_eq!(step["is_error"], true, "{step}");
    let fields = &step["structured"]["purser"];
    assert_eq!(fields["decision"], "DENIED", "{step}");
    assert_eq!(fields["rule"], rule, "{step}");
    let trace_id = fields["trace_id"].as_str().expect("a trace id").to_string();
    let reason = fields["reason"].as_str().expect("a reason");
    let text = step["text"].as_str().expect("text content");
    for part in ["DENIED", rule, reason, &trace_id] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(step["receipt"], Value::Null, "{step}");
    trace_id
}

fn assert_pong(step: &Value) {
    assert_eq!(step["error"], Value::Null, "{step}");
    assert_eq!(step["text"], "pong", "the session still works: {step}");
}

fn assert_paid(step: &Value) {
    assert_eq!(step["error"], Value::Null, "{step}");
    assert_eq!(step["is_error"], false, "{step}");
    assert_eq!(step["text"], "echo: hi", "{step}");
    assert_eq!(step["receipt"]["status"], "success", "{step}");
}

/// EXPLORE refuses the paid call as a tool error (nothing settles, the session goes on);
/// COMMIT pays it once, with its decision and settlement lines.
fn explore_then_commit(label: &str, json_answers: bool) {
    let dir = TempDir::new(label);
    let merchant = McpMerchant::start(dir.path(), json_answers);
    let purser = Purser::start(POLICY, None);
    let url = merchant.url();
    let proxy = proxy_for(&purser, label);

    let (steps, closed) = mcp_agent(&url, &proxy, &["ping", "call:premium_echo", "ping"]);
    assert_pong(&steps[0]);
    let trace_id = assert_refused(&steps[1], "phase");
    assert_pong(&steps[2]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(merchant.settled().is_empty(), "EXPLORE moved money");
    assert!(lines_of(&purser, "settlement").is_empty());
    let decisions = lines_of(&purser, "decision");
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let refused = &decisions[0];
    assert_eq!(refused["trace_id"], trace_id.as_str());
    assert_eq!(refused["decision"], "DENIED");
    assert_eq!(refused["protocol"], "mpp");
    assert_eq!(refused["mcp_tool"], "premium_echo");
    assert_eq!(refused["scheme"], "evm/charge");
    assert_eq!(refused["amount_atomic"], "10000");
    let session = session_view(&purser, label);
    assert_eq!(session["challenges"], 1, "the tool's -32042: {session}");
    assert_eq!(session["spent"], "0", "{session}");

    purser.set_phase(&format!("agent.{label}"), "COMMIT");
    let (steps, closed) = mcp_agent(&url, &proxy, &["call:premium_echo", "ping"]);
    assert_paid(&steps[0]);
    assert_pong(&steps[1]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert_eq!(merchant.settled(), [10_000], "settled exactly once");
    let decisions = lines_of(&purser, "decision");
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let allowed = &decisions[1];
    assert_eq!(allowed["decision"], "ALLOWED");
    assert_eq!(allowed["protocol"], "mpp");
    assert_eq!(allowed["mcp_tool"], "premium_echo");
    assert_eq!(allowed["amount_usd"], "0.01");
    assert!(allowed.get("x402_version").is_none());
    let settled = settlements(&purser, 1);
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0]["outcome"], "committed");
    assert_eq!(settled[0]["decision_trace_id"], allowed["trace_id"]);
    assert_eq!(settled[0]["transaction"], steps[0]["receipt"]["reference"]);
    assert_eq!(session_view(&purser, label)["spent"], "0.01");
    assert_schema_valid(&purser);
}

#[test]
fn over_event_streams_explore_refuses_the_paid_call_and_commit_pays_it_once() {
    explore_then_commit("mpp-mcp-sse", false);
}

#[test]
fn over_json_answers_the_same_holds() {
    explore_then_commit("mpp-mcp-json", true);
}

#[test]
fn a_replayed_credential_is_refused_and_settles_nothing_more() {
    let dir = TempDir::new("mpp-mcp-replay");
    let merchant = McpMerchant::start(dir.path(), false);
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.replay", "COMMIT");
    let (steps, closed) = mcp_agent(
        &merchant.url(),
        &proxy_for(&purser, "replay"),
        &["replay:premium_echo", "ping"],
    );
    assert_paid(&steps[0]);
    assert_refused(&steps[1], "replayed_payment");
    assert_pong(&steps[2]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert_eq!(merchant.settled(), [10_000], "the replay never left");
    assert_eq!(settlements(&purser, 1).len(), 1);
    let decisions = lines_of(&purser, "decision");
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert_eq!(decisions[1]["decision"], "DENIED");
    assert_eq!(decisions[1]["protocol"], "mpp");
}
