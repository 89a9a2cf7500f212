//! Durability and recovery: a SIGKILL in the middle of paid load loses no spend, replayed
//! payments stay refused across restarts, a torn last line is repaired, and payments
//! whose outcome is unknown stay counted until reconciled.

mod support;

use std::io::{Read, Write};
use support::python::{agent, paid_server, Facilitator};
use support::{crafted_payment, http_status, pay, Purser, TempDir};

const BUDGET: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 1.50
"#;

fn proxy(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

fn session(purser: &Purser, id: &str) -> serde_json::Value {
    let (_, body) = purser.admin("GET", &format!("/v1/sessions/{id}"), None);
    serde_json::from_str(&body).unwrap_or_default()
}

fn dollars(value: &serde_json::Value) -> f64 {
    value.as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[test]
fn a_sigkill_mid_load_never_resets_the_budget() {
    let dir = TempDir::new("recovery-kill");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "10000"]);
    let mut purser = Purser::start(BUDGET, None);
    let url = server.url("http", "/paid/data");
    let load = {
        let (url, proxy) = (url.clone(), proxy(&purser, "k"));
        std::thread::spawn(move || {
            agent(
                &url,
                &proxy,
                None,
                &["--count", "120", "--concurrency", "8"],
            )
        })
    };
    // Kill once real money has moved, while payments are still in flight.
    for _ in 0..600 {
        if facilitator.settlements().len() >= 30 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    purser.kill();
    let _ = load.join();
    let settled_before = facilitator.settled_atomic() as f64 / 1e6;
    assert!(
        settled_before >= 0.30,
        "the load ran before the kill: {settled_before}"
    );

    purser.restart();
    let rebuilt = session(&purser, "agent.k");
    let counted = dollars(&rebuilt["spent"]);
    assert!(
        counted + 1e-9 >= settled_before,
        "rebuilt spend {counted} must cover what the facilitator settled ({settled_before}): {rebuilt}"
    );
    // More load after the restart cannot take the session past its limit.
    let after = agent(
        &url,
        &proxy(&purser, "k"),
        None,
        &["--count", "200", "--concurrency", "8"],
    );
    assert!(after.iter().any(|r| r.status == 403), "the budget runs out");
    let total = facilitator.settled_atomic() as f64 / 1e6;
    assert!(
        total <= 1.50 + 1e-9,
        "settled {total} against a $1.50 limit across the restart"
    );
    assert_chain_verifies(&purser);
}

#[test]
fn a_replayed_payment_is_refused_within_a_run_and_after_a_restart() {
    let origin = support::origin::Origin::plain_blocking();
    let mut purser = Purser::start(BUDGET, None);
    // The merchant settles it (a receipt): a copy is a replay, never a retry.
    let url = format!("http://127.0.0.1:{}/settle", origin.port());
    let payment = crafted_payment(7, 10_000);
    assert_eq!(pay(&purser, "r", &url, &payment).0, 200);
    let (status, body) = pay(&purser, "r", &url, &payment);
    assert_eq!(status, 403);
    assert!(body.contains("replayed_payment"), "{body}");
    purser.restart();
    let (status, body) = pay(&purser, "r2", &url, &payment);
    assert_eq!(status, 403, "the replay set survives a restart: {body}");
    assert!(body.contains("replayed_payment"));
    assert_eq!(
        origin.requests().len(),
        1,
        "the merchant saw the payment once"
    );
}

#[test]
fn a_torn_last_line_is_cut_and_the_chain_continues() {
    let origin = support::origin::Origin::plain_blocking();
    let mut purser = Purser::start(BUDGET, None);
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    assert_eq!(pay(&purser, "t", &url, &crafted_payment(1, 10_000)).0, 200);
    crash_leaving(&mut purser, br#"{"prev_hash":"00","kind":"decis"#);
    assert_eq!(pay(&purser, "t", &url, &crafted_payment(2, 10_000)).0, 200);
    assert_chain_verifies(&purser);
}

#[test]
fn a_line_torn_inside_a_character_is_cut_like_any_torn_line() {
    let origin = support::origin::Origin::plain_blocking();
    let mut purser = Purser::start(BUDGET, None);
    let url = format!("http://127.0.0.1:{}/settle", origin.port());
    assert_eq!(pay(&purser, "u", &url, &crafted_payment(3, 10_000)).0, 200);
    let before = session(&purser, "agent.u");
    assert_ne!(before["spent"], "0", "the payment counts: {before}");
    // The first byte of a two-byte character ("é"), then the crash.
    crash_leaving(
        &mut purser,
        b"{\"prev_hash\":\"00\",\"kind\":\"decision\",\"reason\":\"caf\xc3",
    );
    assert_eq!(
        session(&purser, "agent.u")["spent"],
        before["spent"],
        "the payment before the torn line is still spent"
    );
    assert_eq!(pay(&purser, "u", &url, &crafted_payment(4, 10_000)).0, 200);
    assert_chain_verifies(&purser);
}

#[test]
fn a_payment_whose_decision_cannot_be_written_never_leaves() {
    let origin = support::origin::Origin::plain_blocking();
    let mut options = support::PurserOptions::new(BUDGET);
    // The proof log can grow to 6 KiB, as if the disk filled up: a few payments fit.
    options.file_size_limit_kib = Some(6);
    let mut purser = Purser::start_with(options);
    let url = format!("http://127.0.0.1:{}/settle", origin.port());
    let mut forwarded = 0;
    let mut refused = None;
    for nonce in 1..=40 {
        let payment = crafted_payment(nonce, 10_000);
        match pay(&purser, "full", &url, &payment) {
            (200, _) => forwarded += 1,
            (status, body) => {
                refused = Some((status, body, payment));
                break;
            }
        }
    }
    let (status, body, payment) = refused.expect("the proof log filled up within 40 payments");
    assert!(
        forwarded >= 1,
        "payments went through before the log was full"
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("trace_unavailable"), "{body}");
    let paid = |origin: &support::origin::Origin| {
        origin
            .requests()
            .iter()
            .filter(|r| r.headers.contains_key("payment-signature"))
            .count()
    };
    assert_eq!(
        paid(&origin),
        forwarded,
        "the payment whose decision was not written never reached the merchant"
    );
    assert_eq!(
        session(&purser, "agent.full")["reserved"],
        "0",
        "its reservation was released"
    );
    let log = std::fs::read(purser.trace_path()).unwrap();
    assert_eq!(
        log.last(),
        Some(&b'\n'),
        "the failed write left no torn line behind"
    );
    // Traffic that carries no payment still flows.
    let plain = format!("http://127.0.0.1:{}/plain", origin.port());
    assert_eq!(http_status(&["-x", &proxy(&purser, "full"), &plain]), "200");

    // Room again: the refused payment was never recorded as seen, so it can go now.
    purser.file_size_limit_kib = None;
    purser.restart();
    assert_eq!(pay(&purser, "full", &url, &payment).0, 200);
    assert_eq!(paid(&origin), forwarded + 1);
    assert_chain_verifies(&purser);
}

/// An upstream that reads the request and hangs up without answering: the payment left,
/// its outcome is unknown.
fn hang_up_upstream() -> (u16, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer);
            served += 1;
        }
        served
    });
    (port, handle)
}

#[test]
fn an_unknown_outcome_stays_spent_until_reconciled_and_a_retry_is_not_counted_twice() {
    let (port, upstream) = hang_up_upstream();
    let mut purser = Purser::start(BUDGET, None);
    let url = format!("http://127.0.0.1:{port}/paid");
    let payment = crafted_payment(3, 250_000);
    let (status, _) = pay(&purser, "u", &url, &payment);
    assert_eq!(
        status, 502,
        "the connection was lost after the payment left"
    );
    let state = session(&purser, "agent.u");
    assert_eq!(state["unknown"], "0.25");
    assert_eq!(state["spent"], "0.25");
    // The agent retries the same payment: forwarded, but not booked a second time.
    let (status, _) = pay(&purser, "u", &url, &payment);
    assert_eq!(status, 502);
    assert_eq!(session(&purser, "agent.u")["spent"], "0.25");
    assert_eq!(upstream.join().unwrap(), 2);
    // It survives a restart, then an operator reconciles it.
    purser.restart();
    assert_eq!(session(&purser, "agent.u")["unknown"], "0.25");
    let (_, listed) = purser.admin("GET", "/v1/payments/unknown", None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = listed["payments"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/payments/{id}/resolve"),
        Some(r#"{"outcome":"released","by":"ops"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let state = session(&purser, "agent.u");
    assert_eq!(state["spent"], "0");
    assert_eq!(state["unknown"], "0");
    let (status, _) = purser.admin(
        "POST",
        &format!("/v1/payments/{id}/resolve"),
        Some(r#"{"outcome":"released"}"#),
    );
    assert_eq!(status, 404, "resolved once");
}

#[test]
fn the_chain_verifies_and_a_tampered_line_is_named() {
    let origin = support::origin::Origin::plain_blocking();
    let mut purser = Purser::start(BUDGET, None);
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    for nonce in 10..14 {
        assert_eq!(
            pay(&purser, "c", &url, &crafted_payment(nonce, 10_000)).0,
            200
        );
    }
    // Settlement lines follow the answer without waiting: let the last one land.
    for _ in 0..200 {
        if support::log_files_text(&purser).lines().count() >= 8 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    purser.kill();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
            .args(args)
            .arg(purser.trace_path())
            .output()
            .unwrap()
    };
    let clean = run(&["traces", "verify"]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(
        String::from_utf8_lossy(&clean.stdout).contains("8 lines"),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let shown = run(&["traces", "show", "--session", "agent.c", "--file"]);
    let table = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("decision") && l.contains("ALLOWED"))
            .count(),
        4,
        "{table}"
    );
    // Lower the amount of the third line: the fourth line's hash no longer matches.
    let text = std::fs::read_to_string(purser.trace_path()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = lines[2].replace("\"amount_usd\":\"0.01\"", "\"amount_usd\":\"0.001\"");
    std::fs::write(purser.trace_path(), lines.join("\n") + "\n").unwrap();
    let tampered = run(&["traces", "verify"]);
    assert!(!tampered.status.success());
    let message = String::from_utf8_lossy(&tampered.stderr);
    assert!(message.contains(":4: chain broken"), "{message}");
}

#[test]
fn the_log_rotates_by_size_and_the_chain_and_the_budget_cross_files() {
    let origin = support::origin::Origin::plain_blocking();
    let mut options = support::PurserOptions::new(BUDGET);
    options.extra_args = vec!["--trace-rotate-size".into(), "8KiB".into()];
    let mut purser = Purser::start_with(options);
    let url = format!("http://127.0.0.1:{}/settle", origin.port());
    for nonce in 40..60 {
        assert_eq!(
            pay(&purser, "rot", &url, &crafted_payment(nonce, 10_000)).0,
            200
        );
    }
    let rotated = std::fs::read_dir(purser.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("trace.jsonl."))
        .count();
    assert!(rotated >= 2, "rotated {rotated} times");
    // Settlement lines are written after the answer, without waiting: let the last one land.
    let all_lines = || support::log_files_text(&purser).lines().count();
    for _ in 0..200 {
        if all_lines() >= 40 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    purser.kill();
    let verify = verify_log(&purser);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(text.contains("40 lines"), "{text}");
    // A replay from the oldest file is still known after a restart.
    purser.restart();
    assert_eq!(
        pay(&purser, "rot", &url, &crafted_payment(40, 10_000)).0,
        403
    );
}

#[test]
fn a_reload_swaps_the_policy_and_a_bad_file_keeps_the_old_one() {
    let origin = support::origin::Origin::plain_blocking();
    let purser = Purser::start(BUDGET, None);
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let policy_path = purser.dir.path().join("policy.yaml");
    let status = |user: &str, token: &str| {
        http_status(&["-x", &purser.proxy_url(Some((user, token))), &url])
    };
    assert_eq!(status("agent", "t0ken"), "200");
    std::fs::write(
        &policy_path,
        BUDGET
            .replace("t0ken", "rotated-token")
            .replace("session_limit", "sesion_limit"),
    )
    .unwrap();
    let (code, body) = purser.admin("POST", "/v1/policy/reload", None);
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("unknown field `sesion_limit`"), "{body}");
    assert_eq!(status("agent", "t0ken"), "200", "the old policy stays");
    std::fs::write(&policy_path, BUDGET.replace("t0ken", "rotated-token")).unwrap();
    purser.signal("HUP");
    let mut swapped = false;
    for _ in 0..100 {
        if status("agent", "rotated-token") == "200" {
            swapped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(swapped, "SIGHUP loads the new policy");
    assert_eq!(status("agent", "t0ken"), "407");
}

/// `purser traces verify` on the test's proof log (rotated files included).
/// A crash in the middle of writing `fragment`: SIGKILL, the fragment at the end of the
/// proof log, then a restart on that log.
fn crash_leaving(purser: &mut Purser, fragment: &[u8]) {
    purser.kill();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(purser.trace_path())
        .unwrap();
    file.write_all(fragment).unwrap();
    drop(file);
    purser.restart();
}

fn assert_chain_verifies(purser: &Purser) {
    let verify = verify_log(purser);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn verify_log(purser: &Purser) -> std::process::Output {
    let path = purser.trace_path();
    support::purser_cli(&["traces".as_ref(), "verify".as_ref(), path.as_os_str()])
}
