//! x402 over MCP end to end: the official MCP client (`mcp==1.30.0` `ClientSession` over
//! streamable HTTP) paying through the official x402 MCP client (`x402==2.25.0`
//! `x402MCPSession`), and the official x402 MCP server wrapper on FastMCP, with the
//! facilitator stub on loopback counting what settles, through the real `purser` binary
//! (`tests/interop/mcp/*.py`). Over plain http (absolute form) and intercepted https,
//! with event-stream and JSON answers.
//!
//! What the model sees of a refusal is the tool result the client returns: every
//! refusal here is checked there, and the session is used again after it.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::pki::TestPki;
use support::python::{python, Facilitator, PyServer};
use support::{mcp_session_lines, pending_holds, through_proxy, Purser, PurserOptions, TempDir};

const MCP_AGENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/mcp/mcp_agent.py"
);

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
budget:
  session_limit: 1.00
# Every paid call must answer the challenge Purser saw in that tool's result.
x402: { require_challenge: true }
tools:
  premium: { endpoints: ["mcp://tool/premium_report"], category: reports }
rules:
  - "@no-premium-reports BLOCK premium WHEN phase IS commit"
"#;

/// The paid MCP server: `--json` for JSON answers, TLS files for https.
fn mcp_server(facilitator: &Facilitator, extra: &[&str]) -> PyServer {
    let mut args = vec!["--facilitator".to_string(), facilitator.url()];
    args.extend(extra.iter().map(|s| s.to_string()));
    PyServer::start("mcp/mcp_server.py", &args)
}

fn proxy_for(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

/// One MCP session running `steps` (see `mcp_agent.py`): a line per step, then whether
/// the session closed cleanly.
fn mcp_agent(url: &str, proxy: &str, ca: Option<&Path>, steps: &[&str]) -> (Vec<Value>, Value) {
    let mut command = Command::new(python());
    command.arg(MCP_AGENT).args(["--url", url]).args(steps);
    through_proxy(&mut command, proxy);
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    mcp_session_lines(&mut command, "mcp_agent.py")
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

/// Asserts a step is the tool error the model reads for a refusal by `rule`, with the
/// decision, rule, reason and trace id in its text and in `structuredContent.purser`.
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
    assert_eq!(step["payment_response"], Value::Null, "{step}");
    trace_id
}

fn assert_pong(step: &Value) {
    assert_eq!(step["error"], Value::Null, "{step}");
    assert_eq!(step["text"], "pong", "the session still works: {step}");
}

fn assert_paid(step: &Value) {
    assert_eq!(step["error"], Value::Null, "{step}");
    assert_eq!(step["is_error"], false, "{step}");
    assert_eq!(step["payment_response"]["success"], true, "{step}");
}

/// EXPLORE refuses the paid call (nothing settles, the session goes on); COMMIT pays it
/// once, with its decision and settlement lines. `https` runs it through interception.
fn explore_then_commit(label: &str, json_answers: bool, https: bool) {
    let dir = TempDir::new(label);
    let facilitator = Facilitator::start(dir.path());
    let pki = TestPki::new(dir.path(), "mcp-merchant");
    let (cert, key) = pki.server_cert_files(dir.path(), "mcp-merchant");
    let mut extra: Vec<&str> = Vec::new();
    if json_answers {
        extra.push("--json");
    }
    if https {
        extra.extend(["--tls-cert", cert.to_str().unwrap()]);
        extra.extend(["--tls-key", key.to_str().unwrap()]);
    }
    let server = mcp_server(&facilitator, &extra);
    let mut options = PurserOptions::new(POLICY);
    options.upstream_ca = Some(&pki.ca_path);
    let purser = Purser::start_with(options);
    let ca = purser.ca_pem();
    let ca = https.then_some(ca.as_path());
    let url = server.url(if https { "https" } else { "http" }, "/mcp");
    let proxy = proxy_for(&purser, label);

    let (steps, closed) = mcp_agent(
        &url,
        &proxy,
        ca,
        &["call:ping", "call:get_weather", "call:ping"],
    );
    assert_pong(&steps[0]);
    let trace_id = assert_refused(&steps[1], "phase");
    assert_pong(&steps[2]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(facilitator.settlements().is_empty(), "EXPLORE moved money");
    let decisions = lines_of(&purser, "decision");
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let refused = &decisions[0];
    assert_eq!(refused["trace_id"], trace_id.as_str());
    assert_eq!(refused["decision"], "DENIED");
    assert_eq!(refused["mcp_tool"], "get_weather");
    assert_eq!(refused["amount_atomic"], "10000");
    assert_eq!(refused["x402_version"], 2);
    let (_, session) = purser.admin("GET", &format!("/v1/sessions/agent.{label}"), None);
    let session: Value = serde_json::from_str(&session).unwrap();
    assert_eq!(
        session["challenges"], 1,
        "the probe's challenge, for its tool: {session}"
    );

    purser.set_phase(&format!("agent.{label}"), "COMMIT");
    let (steps, closed) = mcp_agent(&url, &proxy, ca, &["call:get_weather", "call:ping"]);
    assert_paid(&steps[0]);
    assert_pong(&steps[1]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert_eq!(facilitator.settlements().len(), 1, "settled exactly once");
    assert_eq!(facilitator.settled_atomic(), 10_000);
    let decisions = lines_of(&purser, "decision");
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let allowed = &decisions[1];
    assert_eq!(allowed["decision"], "ALLOWED");
    assert_eq!(allowed["mcp_tool"], "get_weather");
    let settled = settlements(&purser, 1);
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0]["outcome"], "committed");
    assert_eq!(settled[0]["decision_trace_id"], allowed["trace_id"]);
    assert_eq!(
        settled[0]["transaction"],
        steps[0]["payment_response"]["transaction"]
    );
    let (_, session) = purser.admin("GET", &format!("/v1/sessions/agent.{label}"), None);
    let session: Value = serde_json::from_str(&session).unwrap();
    assert_eq!(session["spent"], "0.01", "{session}");
}

#[test]
fn over_http_explore_refuses_the_paid_call_and_commit_pays_it_once() {
    explore_then_commit("mcp-http", false, false);
}

#[test]
fn over_intercepted_https_with_json_answers_the_same_holds() {
    explore_then_commit("mcp-https", true, true);
}

#[test]
fn a_rule_targeting_the_tool_name_applies_to_that_tool_only() {
    let dir = TempDir::new("mcp-rule");
    let facilitator = Facilitator::start(dir.path());
    let server = mcp_server(&facilitator, &[]);
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.rule", "COMMIT");
    let (steps, closed) = mcp_agent(
        &server.url("http", "/mcp"),
        &proxy_for(&purser, "rule"),
        None,
        &["call:premium_report", "call:get_weather"],
    );
    assert_refused(&steps[0], "no-premium-reports");
    assert_paid(&steps[1]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert_eq!(facilitator.settlements().len(), 1);
    let decisions = lines_of(&purser, "decision");
    assert_eq!(decisions[0]["mcp_tool"], "premium_report");
    assert_eq!(decisions[0]["tool"], "premium");
    assert_eq!(decisions[0]["category"], "reports");
    assert_eq!(decisions[0]["amount_atomic"], "20000");
    assert_eq!(decisions[1]["mcp_tool"], "get_weather");
    assert_eq!(decisions[1]["tool"], Value::Null);
}

#[test]
fn a_replayed_payment_is_refused_and_settles_nothing_more() {
    let dir = TempDir::new("mcp-replay");
    let facilitator = Facilitator::start(dir.path());
    let server = mcp_server(&facilitator, &[]);
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.replay", "COMMIT");
    let (steps, closed) = mcp_agent(
        &server.url("http", "/mcp"),
        &proxy_for(&purser, "replay"),
        None,
        &["replay:get_weather", "call:ping"],
    );
    assert_paid(&steps[0]);
    assert_refused(&steps[1], "replayed_payment");
    assert_pong(&steps[2]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert_eq!(facilitator.settlements().len(), 1, "the replay never left");
}

#[test]
fn an_oversized_paid_call_is_refused_unsent_and_the_session_goes_on() {
    let dir = TempDir::new("mcp-big");
    let facilitator = Facilitator::start(dir.path());
    let server = mcp_server(&facilitator, &[]);
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.big", "COMMIT");
    // 100 KB of arguments: the probe (no payment) streams through; the paid retry is
    // larger than Purser reads before forwarding a payment.
    let (steps, closed) = mcp_agent(
        &server.url("http", "/mcp"),
        &proxy_for(&purser, "big"),
        None,
        &["big:get_weather:100000", "call:ping"],
    );
    assert_refused(&steps[0], "unsupported_payment");
    assert!(
        steps[0]["text"].as_str().unwrap().contains("larger than"),
        "{}",
        steps[0]
    );
    assert_pong(&steps[1]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(facilitator.settlements().is_empty());
}

#[test]
fn a_held_call_waits_for_a_human_and_ends_before_the_client_gives_up() {
    let dir = TempDir::new("mcp-hold");
    let facilitator = Facilitator::start(dir.path());
    // The client waits 6 s for a paid call: the hold must end before.
    let server = mcp_server(&facilitator, &["--max-timeout", "6"]);
    let policy = POLICY.replace(
        "budget:\n  session_limit: 1.00",
        "approvals:\n  timeout: 5m\nbudget:\n  session_limit: 1.00\n  single_call_threshold: 0.001",
    );
    let purser = Purser::start(&policy, None);
    purser.set_phase("agent.hold", "COMMIT");
    let url = server.url("http", "/mcp");
    let proxy = proxy_for(&purser, "hold");

    // Nobody decides: denied at the client's deadline, not after five minutes.
    let (steps, closed) = mcp_agent(&url, &proxy, None, &["call:get_weather", "call:ping"]);
    assert_refused(&steps[0], "approval_timed_out");
    assert_pong(&steps[1]);
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(facilitator.settlements().is_empty());

    // A person approves while the call is held: it pays once.
    let waiting = std::thread::spawn({
        let (url, proxy) = (url.clone(), proxy.clone());
        move || mcp_agent(&url, &proxy, None, &["call:get_weather"])
    });
    let hold = &pending_holds(&purser, 1)[0];
    assert_eq!(hold["path"], "/mcp");
    // The hold is set to end before the client's 6 s (and the signature's validBefore,
    // 6 s after it was signed), with a second to spare for forwarding.
    let at = |field: &str| {
        hold[field]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let lasts = at("deadline").duration_since(at("created")).as_secs();
    assert!((1..=5).contains(&lasts), "{hold}");
    let id = hold["id"].as_str().unwrap();
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(r#"{"by":"tester"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (steps, _) = waiting.join().unwrap();
    assert_paid(&steps[0]);
    assert_eq!(facilitator.settlements().len(), 1);
    let holds = lines_of(&purser, "hold");
    assert_eq!(holds.len(), 2, "{holds:?}");
    assert_eq!(holds[0]["approval"]["outcome"], "timed_out");
    assert_eq!(holds[1]["approval"]["outcome"], "approved");
    assert_eq!(settlements(&purser, 1)[0]["outcome"], "committed");
}
