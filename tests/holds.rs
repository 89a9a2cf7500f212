//! Holds end to end: approve, deny, time out, veto windows, bounds, reuse, shutdown,
//! admin auth and the metrics they produce. Payments come from the official x402 SDK
//! client where the merchant matters, and from crafted v2 headers where only Purser does.

mod support;

use std::thread::JoinHandle;
use std::time::Duration;
use support::origin::Origin;
use support::python::{agent, paid_server, AgentResult, Facilitator};
use support::{crafted_payment, curl, Purser, PurserOptions, TempDir};

const HOLDING: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
  single_call_threshold: 0.50
approvals:
  timeout: 30s
  max_pending_per_session: 1
"#;

fn proxy(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

fn pending(purser: &Purser, count: usize) -> Vec<serde_json::Value> {
    support::pending_holds(purser, count)
}

fn spawn_agent(url: String, proxy: String) -> JoinHandle<AgentResult> {
    std::thread::spawn(move || agent(&url, &proxy, None, &[]).remove(0))
}

fn hold_lines(purser: &Purser) -> Vec<serde_json::Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|l| l["kind"] == "hold")
        .collect()
}

/// Waits (bounded) until the proof log has a hold line that `matches`: a denied or
/// timed-out hold's line is queued to the trace writer, so it can follow the answer.
fn wait_for_hold_line(purser: &Purser, what: &str, matches: impl Fn(&serde_json::Value) -> bool) {
    for _ in 0..1200 {
        if hold_lines(purser).iter().any(&matches) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {what} hold line in the proof log:\n{}", purser.stderr());
}

fn spawn_curl_payment(
    purser: &Purser,
    session: &str,
    url: String,
    header: String,
) -> JoinHandle<(u16, String)> {
    let proxy = proxy(purser, session);
    std::thread::spawn(move || {
        let payment = format!("PAYMENT-SIGNATURE: {header}");
        support::curl_answer(&["-x", &proxy, "-H", &payment, &url])
    })
}

#[test]
fn an_approved_hold_forwards_exactly_that_payment() {
    let dir = TempDir::new("holds-approve");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "750000"]);
    let purser = Purser::start(HOLDING, None);
    let waiting = spawn_agent(server.url("http", "/paid/data"), proxy(&purser, "a"));
    let hold = pending(&purser, 1).remove(0);
    assert_eq!(hold["amount_usd"], "0.75");
    assert_eq!(hold["rules"], serde_json::json!(["single_call_threshold"]));
    assert!(
        facilitator.settlements().is_empty(),
        "nothing settles while held"
    );
    let (_, session) = purser.admin("GET", "/v1/sessions/agent.a", None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&session).unwrap()["reserved"],
        "0.75"
    );
    let id = hold["id"].as_str().unwrap();
    let (status, _) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(r#"{"by":"alice"}"#),
    );
    assert_eq!(status, 200);
    let result = waiting.join().unwrap();
    assert_eq!(result.status, 200, "{}", result.body);
    assert_eq!(result.header("x-purser-decision"), Some("ALLOWED"));
    assert_eq!(facilitator.settlements().len(), 1);
    let line = hold_lines(&purser).pop().unwrap();
    assert_eq!(line["approval"]["by"], "alice");
    assert_eq!(line["approval"]["outcome"], "approved");
    assert_eq!(line["decision_trace_id"], hold["trace_id"]);
    // The approval was for that hold only: a second use is refused.
    let (again, body) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(r#"{"by":"mallory"}"#),
    );
    assert_eq!(again, 409, "{body}");
    assert_eq!(facilitator.settlements().len(), 1);
}

#[test]
fn a_denied_hold_answers_403_and_moves_no_money() {
    let dir = TempDir::new("holds-deny");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "750000"]);
    let purser = Purser::start(HOLDING, None);
    let waiting = spawn_agent(server.url("http", "/paid/data"), proxy(&purser, "d"));
    let id = pending(&purser, 1)[0]["id"].as_str().unwrap().to_string();
    let (status, _) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(r#"{"by":"bob","reason":"too pricey"}"#),
    );
    assert_eq!(status, 200);
    let result = waiting.join().unwrap();
    assert_eq!(result.status, 403);
    let body = result.json();
    assert_eq!(body["decision"], "DENIED");
    assert_eq!(body["reason"], "approval_denied: denied by bob: too pricey");
    assert!(facilitator.settlements().is_empty());
    let (_, session) = purser.admin("GET", "/v1/sessions/agent.d", None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&session).unwrap()["reserved"],
        "0"
    );
    wait_for_hold_line(&purser, "denied-by-bob", |line| {
        line["approval"]["by"] == "bob"
    });
    assert_eq!(hold_lines(&purser).pop().unwrap()["approval"]["by"], "bob");
}

#[test]
fn an_undecided_hold_times_out_as_a_denial() {
    let dir = TempDir::new("holds-timeout");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "750000"]);
    let purser = Purser::start(&HOLDING.replace("timeout: 30s", "timeout: 1s"), None);
    let result = agent(
        &server.url("http", "/paid/data"),
        &proxy(&purser, "t"),
        None,
        &[],
    )
    .remove(0);
    assert_eq!(result.status, 403);
    assert!(
        result.json()["reason"]
            .as_str()
            .unwrap()
            .starts_with("approval_timed_out"),
        "{}",
        result.body
    );
    assert!(facilitator.settlements().is_empty());
    wait_for_hold_line(&purser, "timed_out", |line| {
        line["approval"]["outcome"] == "timed_out"
    });
    assert_eq!(
        hold_lines(&purser).pop().unwrap()["approval"]["outcome"],
        "timed_out"
    );
}

const VETO: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
tiers:
  - name: supervised
    conditions: { max_amount: 1.00 }
    approval: notify_with_veto
    veto_window: 2s
"#;

#[test]
fn a_veto_window_goes_ahead_unless_vetoed() {
    let dir = TempDir::new("holds-veto");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "100000"]);
    let purser = Purser::start(VETO, None);
    let url = server.url("http", "/paid/data");
    // Nobody objects: it goes ahead when the window ends.
    let quiet = agent(&url, &proxy(&purser, "v"), None, &[]).remove(0);
    assert_eq!(quiet.status, 200, "{}", quiet.body);
    assert_eq!(facilitator.settlements().len(), 1);
    assert_eq!(
        hold_lines(&purser).pop().unwrap()["approval"]["outcome"],
        "veto_window_passed"
    );
    // A veto inside the window stops it.
    let waiting = spawn_agent(url, proxy(&purser, "v"));
    let hold = pending(&purser, 1).remove(0);
    assert_eq!(hold["kind"], "veto");
    let id = hold["id"].as_str().unwrap();
    let (status, _) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(r#"{"by":"carol","reason":"veto"}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(waiting.join().unwrap().status, 403);
    assert_eq!(facilitator.settlements().len(), 1);
}

#[test]
fn holds_are_bounded_and_approvals_are_bound_to_their_payment() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(
        &HOLDING.replace(
            "max_pending_per_session: 1",
            "max_pending_per_session: 1\n  max_pending_total: 2",
        ),
        None,
    );
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let first = spawn_curl_payment(&purser, "b1", url.clone(), crafted_payment(1, 600_000));
    let hold = pending(&purser, 1).remove(0);
    // A second hold in the same session is refused at once.
    let (status, body) =
        spawn_curl_payment(&purser, "b1", url.clone(), crafted_payment(2, 600_000))
            .join()
            .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("hold_limit"), "{body}");
    // Another session may hold one more; then the total bound applies.
    let second = spawn_curl_payment(&purser, "b2", url.clone(), crafted_payment(3, 600_000));
    pending(&purser, 2);
    let (status, body) =
        spawn_curl_payment(&purser, "b3", url.clone(), crafted_payment(4, 600_000))
            .join()
            .unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("hold_limit"), "{body}");
    // An approval naming another payment's digest does not approve this one.
    let id = hold["id"].as_str().unwrap();
    let wrong = format!(r#"{{"by":"eve","digest":"{}"}}"#, "00".repeat(32));
    let (status, body) = purser.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(&wrong));
    assert_eq!(status, 409, "{body}");
    let right = format!(
        r#"{{"by":"eve","digest":"{}"}}"#,
        hold["digest"].as_str().unwrap()
    );
    let (status, _) = purser.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(&right));
    assert_eq!(status, 200);
    assert_eq!(first.join().unwrap().0, 200);
    let seen = origin.requests();
    assert_eq!(
        seen.len(),
        1,
        "only the approved payment reached the merchant"
    );
    assert_eq!(
        seen[0].headers["payment-signature"],
        crafted_payment(1, 600_000).as_str()
    );
    let other = pending(&purser, 1).remove(0)["id"]
        .as_str()
        .unwrap()
        .to_string();
    purser.admin(
        "POST",
        &format!("/v1/approvals/{other}/deny"),
        Some(r#"{"by":"eve"}"#),
    );
    assert_eq!(second.join().unwrap().0, 403);
}

#[test]
fn sigterm_denies_held_payments_and_traces_them() {
    let origin = Origin::plain_blocking();
    let mut purser = Purser::start(HOLDING, None);
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let held = spawn_curl_payment(&purser, "s", url, crafted_payment(9, 600_000));
    pending(&purser, 1);
    purser.signal("TERM");
    let (status, body) = held.join().unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("shutting_down"), "{body}");
    assert!(purser.child.wait().unwrap().success());
    assert_eq!(
        hold_lines(&purser).pop().unwrap()["approval"]["outcome"],
        "shutdown"
    );
    assert!(origin.requests().is_empty());
}

#[test]
fn the_admin_api_is_not_served_beyond_loopback_without_a_token() {
    let dir = TempDir::new("admin-exposed");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, HOLDING).unwrap();
    let trace = dir.path().join("trace.jsonl");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .env_remove("PURSER_ADMIN_TOKEN")
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--ca-dir")
        .arg(dir.path().join("ca"))
        .arg("--trace-log")
        .arg(&trace)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("refusing to serve the admin API on 0.0.0.0:0 without a token"),
        "stderr: {stderr}"
    );
    // Refused before anything else: no proof log was opened, nothing listened.
    assert!(!trace.exists());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}

#[test]
fn the_admin_api_wants_its_own_token_and_metrics_count_what_happened() {
    let origin = Origin::plain_blocking();
    let mut options = PurserOptions::new(HOLDING);
    options.extra_args = vec!["--admin-token".into(), "s3cret-admin".into()];
    let purser = Purser::start_with(options);
    let admin = format!("http://{}/v1/sessions", purser.admin);
    let code = support::http_status;
    assert_eq!(code(&[&admin]), "401", "no token");
    assert_eq!(
        code(&["-u", "agent:t0ken", &admin]),
        "401",
        "an agent's credentials are not an admin token"
    );
    assert_eq!(
        code(&["-H", "Proxy-Authorization: Basic YWdlbnQ6dDBrZW4=", &admin]),
        "401"
    );
    assert_eq!(
        code(&["-H", "Authorization: Bearer s3cret-admin", &admin]),
        "200"
    );
    assert_eq!(
        code(&[
            "-x",
            &proxy(&purser, "x"),
            "-H",
            "Authorization: Bearer s3cret-admin",
            &admin
        ]),
        "403",
        "not through the proxy"
    );
    // Produce a denial and an allowed payment (the merchant settles it, so its copy is a
    // replay), then scrape.
    let url = format!("http://127.0.0.1:{}/settle", origin.port());
    assert_eq!(
        spawn_curl_payment(&purser, "m", url.clone(), crafted_payment(20, 10_000))
            .join()
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        spawn_curl_payment(&purser, "m", url, crafted_payment(20, 10_000))
            .join()
            .unwrap()
            .0,
        403,
        "a replay"
    );
    let output = curl(&[
        "-s",
        "-H",
        "Authorization: Bearer s3cret-admin",
        &format!("http://{}/metrics", purser.admin),
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(series))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (_, number) = line.rsplit_once(' ').expect("name value");
        assert!(number.parse::<f64>().is_ok(), "unparsable sample: {line}");
    }
    assert_eq!(
        value(r#"purser_decisions_total{decision="ALLOWED",rule="default"}"#),
        1.0
    );
    assert_eq!(
        value(r#"purser_decisions_total{decision="DENIED",rule="replayed_payment"}"#),
        1.0
    );
    assert_eq!(
        value(r#"purser_settlements_total{outcome="committed"}"#),
        1.0,
        "the origin's receipt says it settled"
    );
    assert_eq!(value("purser_decision_seconds_count"), 1.0);
    assert_eq!(value("purser_holds_pending"), 0.0);
}

#[test]
fn the_webhook_hears_of_holds_gates_and_prohibited_attempts() {
    let hooks = Origin::plain_blocking();
    let merchant = Origin::plain_blocking();
    let policy = format!(
        r#"
agents:
  agent: {{ token: t0ken }}
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 1.00
  single_call_threshold: 0.50
  graduated_gates: {{ warning: 0.05 }}
categories:
  forbidden: ["127.0.0.1/forbidden*"]
tiers:
  - {{ name: prohibited, conditions: {{ categories: [forbidden] }}, approval: blocked }}
  - {{ name: open, approval: none }}
notifications:
  webhook: http://127.0.0.1:{}/hooks
  timeout: 2s
"#,
        hooks.port()
    );
    let purser = Purser::start(&policy, None);
    let base = format!("http://127.0.0.1:{}", merchant.port());
    let held = spawn_curl_payment(
        &purser,
        "w",
        format!("{base}/paid"),
        crafted_payment(30, 600_000),
    );
    let id = pending(&purser, 1)[0]["id"].as_str().unwrap().to_string();
    purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(r#"{"by":"ops"}"#),
    );
    assert_eq!(held.join().unwrap().0, 403);
    assert_eq!(
        spawn_curl_payment(
            &purser,
            "w",
            format!("{base}/forbidden/x"),
            crafted_payment(31, 10_000)
        )
        .join()
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        spawn_curl_payment(
            &purser,
            "w",
            format!("{base}/paid"),
            crafted_payment(32, 100_000)
        )
        .join()
        .unwrap()
        .0,
        200
    );
    let events = || -> Vec<String> {
        hooks
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/hooks")
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body_prefix).ok())
            .filter_map(|v| v["event"].as_str().map(str::to_string))
            .collect()
    };
    for _ in 0..200 {
        if events().len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = events();
    assert!(seen.contains(&"hold_created".to_string()), "{seen:?}");
    assert!(seen.contains(&"prohibited_attempt".to_string()), "{seen:?}");
    assert!(seen.contains(&"budget_gate".to_string()), "{seen:?}");
}
