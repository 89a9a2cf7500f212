//! Starvation: one agent must not deny the others (issue 15, classes 8 to 10), through
//! the running proxy. A flood of large 402 challenges stays within the challenge memory
//! and leaves another agent's challenge priced; a flood of sessions never takes another
//! agent's COMMIT phase; a flood of refusals with 30 KB paths keeps the proof log small
//! (lines cut and hashed, refusals past the rate summarised, files rotated, an alarm),
//! while payments that leave are written in full and recovery still rebuilds spend.

#[path = "starvation/clients.rs"]
mod clients;
mod support;

use clients::{challenge_flood_origin, h2_agent, h2_get, header, Agent};
use http::StatusCode;
use serde_json::Value;
use support::origin::Origin;
use support::pki::upstream_pki;
use support::{crafted_payment, log_files_text, purser_cli, Purser, PurserOptions};

const CHALLENGE_POLICY: &str = r#"
agents:
  mallory: { token: m-token }
  bob: { token: b-token }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
x402:
  require_challenge: true
"#;

/// Bob reads the price of `/priced`, then mallory floods Purser with `count` large 402
/// challenges over eight sessions. Returns the bytes of challenges mallory received.
async fn flood_after_bobs_challenge(purser: &Purser, origin: &Origin, count: usize) -> usize {
    let flood = challenge_flood_origin().await;
    let mut agent = Agent::new(purser.proxy);
    let priced = format!("http://127.0.0.1:{}/priced", origin.port());
    let answer = agent.get("bob", "b-token", &priced, &[]).await;
    assert_eq!(answer.status(), StatusCode::PAYMENT_REQUIRED);
    let mut received = 0usize;
    for n in 0..count {
        let user = format!("mallory.s{}", n % 8);
        let path = if n % 4 == 3 { "v2" } else { "v1" };
        let url = format!("http://{flood}/{path}/{n}");
        let answer = agent.get(&user, "m-token", &url, &[]).await;
        assert_eq!(
            answer.status(),
            StatusCode::PAYMENT_REQUIRED,
            "the 402 passes unchanged"
        );
        received += answer.body().len() + header(&answer, "payment-required").len();
    }
    received
}

/// Bob pays `/priced`: with `require_challenge`, only his remembered challenge can price
/// it, so a `200 ALLOWED` shows it survived.
async fn bob_pays_by_his_challenge(purser: &Purser, origin: &Origin) {
    let mut agent = Agent::new(purser.proxy);
    let priced = format!("http://127.0.0.1:{}/priced", origin.port());
    let payment = crafted_payment(1, 10_000);
    let answer = agent
        .get(
            "bob",
            "b-token",
            &priced,
            &[("payment-signature", &payment)],
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.body());
    assert_eq!(header(&answer, "x-purser-decision"), "ALLOWED");
    let (_, body) = purser.admin("GET", "/v1/sessions/bob.default", None);
    let session: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(session["challenges"], 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_challenges_costs_kilobytes_not_megabytes() {
    let origin = Origin::plain().await;
    let purser = Purser::start(CHALLENGE_POLICY, None);
    let rss_before = purser.memory_kb("VmRSS");
    let received = flood_after_bobs_challenge(&purser, &origin, 300).await;
    assert!(
        received > 14 * 1024 * 1024,
        "{received} bytes of challenges sent"
    );
    // Kept whole, these challenges took over 100 MiB; what pricing needs is a few KiB each.
    let grown_kb = purser.memory_kb("VmRSS").saturating_sub(rss_before);
    assert!(
        grown_kb < 48 * 1024,
        "VmRSS grew {grown_kb} kB for {received} bytes of challenges"
    );
    bob_pays_by_his_challenge(&purser, &origin).await;
    let remembered = purser.metric("purser_challenge_bytes");
    assert!(
        remembered > 0.0 && remembered < 2.0 * 1024.0 * 1024.0,
        "{remembered} bytes remembered"
    );
    assert!(
        purser.metric("purser_challenge_offers_dropped_total") > 0.0,
        "offers past 32 are dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_memory_stays_in_its_budget_and_another_agents_challenge_survives() {
    let origin = Origin::plain().await;
    let policy = format!(
        "{CHALLENGE_POLICY}  challenge_memory: 1MiB\n  challenge_memory_per_agent: 128KiB\n  max_offers_per_challenge: 16\n"
    );
    let purser = Purser::start(&policy, None);
    flood_after_bobs_challenge(&purser, &origin, 120).await;
    let remembered = purser.metric("purser_challenge_bytes");
    assert!(
        remembered > 0.0 && remembered <= 128.0 * 1024.0 + 4096.0,
        "{remembered} bytes remembered"
    );
    assert_eq!(
        purser.metric("purser_challenge_bytes_limit"),
        1024.0 * 1024.0
    );
    assert!(
        purser.metric("purser_challenges_evicted_total") > 0.0,
        "mallory's own oldest went"
    );
    bob_pays_by_his_challenge(&purser, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_flood_never_sends_another_agents_commit_session_back_to_explore() {
    let origin = Origin::plain().await;
    let policy = r#"
agents:
  alice: { token: a-token }
  bob: { token: b-token }
budget:
  session_limit: 10.00
limits:
  sessions: 64
"#;
    let purser = Purser::start(policy, None);
    purser.set_phase("bob.work", "COMMIT");
    purser.set_phase("alice.keep", "COMMIT");
    let mut agent = Agent::new(purser.proxy);
    let echo = format!("http://127.0.0.1:{}/echo", origin.port());
    // Each request names a new session; `X-Purser-Transaction` makes Purser track it.
    for n in 0..3_000 {
        let user = format!("alice.s{n}");
        let answer = agent
            .get(&user, "a-token", &echo, &[("x-purser-transaction", "t")])
            .await;
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "alice's own idle sessions make room ({n})"
        );
    }
    for (id, phase) in [("bob.work", "COMMIT"), ("alice.keep", "COMMIT")] {
        let (status, body) = purser.admin("GET", &format!("/v1/sessions/{id}"), None);
        assert_eq!(status, 200, "{id} is still tracked: {body}");
        let session: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(session["phase"], phase, "{body}");
    }
    let settle = format!("http://127.0.0.1:{}/settle", origin.port());
    let payment = crafted_payment(7, 10_000);
    let answer = agent
        .get(
            "bob.work",
            "b-token",
            &settle,
            &[("payment-signature", &payment)],
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.body());
    assert_eq!(header(&answer, "x-purser-decision"), "ALLOWED");
    assert!(purser.metric("purser_sessions_tracked") <= 64.0);
    assert!(purser.metric("purser_sessions_evicted_total") > 0.0);

    // With a per-agent cap, once all of alice's sessions are worth keeping her next new
    // one is refused, and only hers: bob still opens sessions.
    let capped = format!("{policy}  sessions_per_agent: 32\n");
    std::fs::write(purser.dir.path().join("policy.yaml"), capped).unwrap();
    let (status, body) = purser.admin("POST", "/v1/policy/reload", None);
    assert_eq!(status, 200, "{body}");
    for n in 0..31 {
        purser.set_phase(&format!("alice.c{n}"), "DECIDE");
    }
    let answer = agent
        .get(
            "alice.one-more",
            "a-token",
            &echo,
            &[("x-purser-transaction", "t")],
        )
        .await;
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&answer, "x-purser-error"), "too_many_sessions");
    let reason: Value = serde_json::from_slice(answer.body()).unwrap();
    assert!(reason["reason"]
        .as_str()
        .unwrap()
        .contains("limits.sessions_per_agent"));
    let answer = agent
        .get(
            "bob.new",
            "b-token",
            &echo,
            &[("x-purser-transaction", "t")],
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let plain = agent.get("alice.one-more", "a-token", &echo, &[]).await;
    assert_eq!(
        plain.status(),
        StatusCode::OK,
        "reads without a payment never need a session"
    );
}

/// Every proof-log line, from the rotated files and the live one.
fn log_lines(purser: &Purser) -> Vec<String> {
    log_files_text(purser).lines().map(str::to_string).collect()
}

/// Sends `count` refused payments as alice (alternately one the phase rule refuses and
/// one that does not parse) to a 30 KB path; the trace ids the answers cite.
async fn refusal_flood(purser: &Purser, origin: &Origin, count: usize) -> Vec<String> {
    let mut agent = Agent::new(purser.proxy);
    let long_path = format!("/{}", "a".repeat(30_000));
    let url = format!("http://127.0.0.1:{}{long_path}", origin.port());
    let payment = crafted_payment(3, 10_000);
    let mut cited = Vec::new();
    for n in 0..count {
        let value = if n % 2 == 0 {
            payment.as_str()
        } else {
            "not-a-payment"
        };
        let user = format!("alice.s{}", n % 5);
        let answer = agent
            .get(&user, "a-token", &url, &[("payment-signature", value)])
            .await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "refusal {n}");
        let trace = header(&answer, "x-purser-trace");
        assert!(trace.starts_with("tr_"), "refusal {n} cites a trace");
        cited.push(trace);
    }
    assert!(
        origin.requests().is_empty(),
        "no refused payment reached the merchant"
    );
    cited
}

const FLOOD_POLICY: &str = r#"
agents:
  alice: { token: a-token }
  bob: { token: b-token }
budget:
  session_limit: 10.00
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_flood_with_long_paths_keeps_the_proof_log_small_and_recoverable() {
    let origin = Origin::plain().await;
    let mut options = PurserOptions::new(FLOOD_POLICY);
    options.extra_args = vec!["--trace-rotate-size".into(), "64KiB".into()];
    let mut purser = Purser::start_with(options);
    let refusals = 1_500;
    let cited = refusal_flood(&purser, &origin, refusals).await;
    let lines = log_lines(&purser);
    for line in &lines {
        assert!(
            line.len() <= 8 * 1024,
            "a {}-byte line: {}",
            line.len(),
            &line[..200]
        );
    }
    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
    assert!(
        total < 4 * 1024 * 1024,
        "{total} bytes of proof log for {refusals} refusals of 30 KB paths"
    );

    // Payments that leave are never summarised, whoever sends them.
    purser.set_phase("alice.pay", "COMMIT");
    purser.set_phase("bob.pay", "COMMIT");
    let mut agent = Agent::new(purser.proxy);
    let settle = format!("http://127.0.0.1:{}/settle", origin.port());
    for (user, token, nonce) in [("alice.pay", "a-token", 4u8), ("bob.pay", "b-token", 5)] {
        let payment = crafted_payment(nonce, 10_000);
        let answer = agent
            .get(user, token, &settle, &[("payment-signature", &payment)])
            .await;
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "{user}: {:?}",
            answer.body()
        );
    }
    assert!(purser.metric("purser_trace_refusals_suppressed_total") > 0.0);
    assert!(purser.metric("purser_trace_lines_cut_total") > 0.0);
    assert!(purser.metric("purser_trace_rotations_total") > 0.0);
    assert!(purser.metric("purser_trace_log_bytes") >= purser.metric("purser_trace_file_bytes"));

    // A graceful stop closes the open summaries; then a restart replays the log.
    purser.signal("TERM");
    let _ = purser.child.wait();
    purser.restart();

    let parsed: Vec<Value> = log_lines(&purser)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for value in &parsed {
        if let Some(path) = value["path"].as_str().filter(|p| p.len() > 1000) {
            let tail = &path[path.len() - 100..];
            assert!(
                path.contains("[sha256:") && path.ends_with(", 30001 bytes]"),
                "{tail}"
            );
        }
    }
    let denied = parsed
        .iter()
        .filter(|l| l["kind"] == "decision" && l["agent"] == "alice" && l["decision"] == "DENIED")
        .count();
    let suppressed: u64 = parsed
        .iter()
        .filter(|l| l["kind"] == "summary")
        .map(|l| l["summary"]["suppressed"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        suppressed > 0 && denied < refusals,
        "{denied} refusal lines for {refusals} refusals"
    );
    assert_eq!(
        suppressed as usize + denied,
        refusals,
        "every refusal is a line or counted in a summary"
    );
    for trace in &cited {
        assert!(
            parsed.iter().any(|l| l["trace_id"] == trace.as_str()),
            "the cited trace {trace} resolves to a line"
        );
    }
    for session in ["alice.pay", "bob.pay"] {
        let decision = parsed
            .iter()
            .find(|l| l["kind"] == "decision" && l["session"] == session)
            .unwrap_or_else(|| panic!("{session}'s payment has its decision line"));
        assert_eq!(decision["decision"], "ALLOWED");
        assert_eq!(decision["path"], "/settle");
        assert!(decision["payment_digest"].is_string() && decision.get("summary").is_none());
    }

    // Recovery rebuilt the spend, and the chain verifies across the rotated files.
    for session in ["alice.pay", "bob.pay"] {
        let (_, body) = purser.admin("GET", &format!("/v1/sessions/{session}"), None);
        let view: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(view["spent"], "0.01", "{body}");
        assert_eq!(view["phase"], "COMMIT", "{body}");
    }
    let verified = purser_cli(&[
        "traces".as_ref(),
        "verify".as_ref(),
        purser.trace_path().as_os_str(),
    ]);
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let files: usize = report
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(files >= 2, "the log rotated: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusal_rate_and_the_disk_alarm_are_set_on_the_command_line() {
    let origin = Origin::plain().await;
    let mut options = PurserOptions::new(FLOOD_POLICY);
    options.extra_args = [
        "--trace-refusals-per-minute",
        "20",
        "--trace-rotate-size",
        "16KiB",
        "--trace-alarm-size",
        "24KiB",
    ]
    .map(String::from)
    .to_vec();
    let purser = Purser::start_with(options);
    let cited = refusal_flood(&purser, &origin, 200).await;
    let opened = cited.last().unwrap();
    let opening = log_lines(&purser)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["trace_id"] == opened.as_str())
        .expect("the opening line is on disk before the answer");
    assert_eq!(opening["summary"]["opens"], true, "{opening}");
    assert_eq!(opening["summary"]["limit_per_minute"], 20);
    let distinct: std::collections::HashSet<&String> = cited.iter().collect();
    assert!(
        distinct.len() <= 21 * 4,
        "{} trace ids for 200 refusals",
        distinct.len()
    );
    assert!(purser.metric("purser_trace_refusals_suppressed_total") >= 100.0);
    assert_eq!(purser.metric("purser_trace_disk_alarm"), 1.0);
    assert_eq!(
        purser.metric("purser_trace_disk_alarm_bytes"),
        24.0 * 1024.0
    );
    assert!(support::eventually(|| purser.stderr().contains("past --trace-alarm-size")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_intercepted_http2_floods_of_sessions_and_refusals_spare_other_agents() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), true).await;
    let policy = format!("{FLOOD_POLICY}limits:\n  sessions: 32\n");
    let mut options = PurserOptions::new(&policy);
    options.upstream_ca = Some(&upstream.pki.ca_path);
    options.extra_args = vec!["--trace-refusals-per-minute".into(), "10".into()];
    let purser = Purser::start_with(options);
    purser.set_phase("bob.work", "COMMIT");
    let authority = format!("localhost:{}", origin.port());
    let long = format!("https://{authority}/{}", "l".repeat(20_000));
    let payment = crafted_payment(9, 10_000);
    for tunnel in 0..80 {
        let mut alice = h2_agent(&purser, &authority, &format!("alice.t{tunnel}"), "a-token").await;
        for _ in 0..3 {
            let answer = h2_get(&mut alice, &long, &payment).await;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "tunnel {tunnel}");
        }
    }
    let mut bob = h2_agent(&purser, &authority, "bob.work", "b-token").await;
    let paid = h2_get(
        &mut bob,
        &format!("https://{authority}/settle"),
        &crafted_payment(10, 10_000),
    )
    .await;
    assert_eq!(
        paid.status(),
        StatusCode::OK,
        "bob's COMMIT session survived: {:?}",
        paid.body()
    );
    assert_eq!(header(&paid, "x-purser-decision"), "ALLOWED");

    let lines = log_lines(&purser);
    assert!(
        lines.iter().all(|line| line.len() <= 8 * 1024),
        "every line is bounded"
    );
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refusals = parsed
        .iter()
        .filter(|l| l["agent"] == "alice" && l["decision"] == "DENIED")
        .count();
    assert!(refusals < 240, "{refusals} lines for 240 refusals");
    let decision = parsed
        .iter()
        .find(|l| l["session"] == "bob.work" && l["kind"] == "decision")
        .expect("bob's decision line");
    assert_eq!(decision["decision"], "ALLOWED");
    assert_eq!(decision["path"], "/settle");
}
