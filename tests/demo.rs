//! `purser demo`, run as a user runs it: the real binary, its output and its exit code.
//! Every step's decision and rule appear, the proof log it keeps verifies, a person can
//! approve the held payment while the demo waits, and nothing is left behind unless asked.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::TempDir;

fn purser(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_purser"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_demo(args: &[&str]) -> (Output, String) {
    let output = purser(&[&["demo"], args].concat())
        .output()
        .expect("run purser demo");
    let stdout = text(&output.stdout);
    (output, stdout)
}

/// The proof log's lines, parsed.
fn trace_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("traces/purser-trace.jsonl"))
        .expect("the proof log is kept")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a trace line is JSON"))
        .collect()
}

#[test]
fn every_step_behaves_and_the_kept_proof_log_verifies() {
    let dir = TempDir::new("demo-dir");
    let work = dir.path().join("run");
    let (output, stdout) = run_demo(&["--dir", work.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{}",
        output.status,
        text(&output.stderr)
    );
    for expected in [
        "NO MONEY MOVES",
        "STUB: records /settle and /refunds, verifies nothing",
        "Watch it live in Purser's console: http://127.0.0.1:",
        // Step 1: free reads, both challenge forms.
        "402 · $0.01 USDC on eip155:84532 · x402 v2, PAYMENT-REQUIRED header",
        "402 · $0.10 USDC on base-sepolia · x402 v1, JSON body",
        // Step 2: refused in EXPLORE by the phase rule.
        "Purser   DENIED · rule phase",
        "the session is in EXPLORE",
        // Step 3: COMMIT by the agent's header, then paid and settled.
        "EXPLORE → COMMIT by agent",
        "Purser   ALLOWED · rule default",
        "200 OK · settled by the facilitator stub",
        "receipt in PAYMENT-RESPONSE: tx 0x",
        "receipt in X-PAYMENT-RESPONSE: tx 0x",
        "$0.11 spent of $2.00",
        // Step 4: held over the threshold, approved.
        "PENDING_APPROVAL · the request is held open",
        "PENDING_APPROVAL → ALLOWED · rule single_call_threshold",
        "approved by purser-demo",
        // Step 5: the failed step and the refunds.
        "500 Internal Server Error · settled",
        "for the car rental",
        "for the hotel booking",
        "for the flight booking",
        // Step 6: a paid MCP tool call, refused in EXPLORE, paid in COMMIT.
        "tools/call fx_quote  (paid, in EXPLORE)",
        "decided on MCP tool fx_quote",
        "a tool result, isError (HTTP 200: the MCP session goes on)",
        "the model reads \"Purser refused this paid tool call. decision: DENIED; rule: ",
        "receipt in result._meta[\"x402/payment-response\"]: tx 0x",
        "Done · every step behaved as expected",
        "No money moved.",
        "hash chain intact",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("compensation refund requested").count(),
        3,
        "{stdout}"
    );
    for step in 1..=6 {
        assert!(stdout.contains(&format!("Step {step} of 6")), "{stdout}");
    }
    assert_eq!(stdout.matches("✓").count(), 6, "{stdout}");

    let log = work.join("traces/purser-trace.jsonl");
    let verify = purser(&["traces", "verify", log.to_str().unwrap()])
        .output()
        .expect("run purser traces verify");
    assert!(
        verify.status.success() && text(&verify.stdout).contains("chain correctly"),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    let lines = trace_lines(&work);
    let decided = |decision: &str, rule: &str| {
        lines
            .iter()
            .any(|l| l["kind"] == "decision" && l["decision"] == decision && l["rule"] == rule)
    };
    assert!(decided("DENIED", "phase"));
    assert!(decided("ALLOWED", "default"));
    assert!(decided("PENDING_APPROVAL", "single_call_threshold"));
    assert!(lines
        .iter()
        .any(|l| l["kind"] == "hold" && l["approval"]["outcome"] == "approved"));
    let refunds: Vec<_> = lines
        .iter()
        .filter(|l| l["kind"] == "compensation" && l["outcome"] == "requested")
        .collect();
    assert_eq!(refunds.len(), 3);
    assert!(refunds
        .iter()
        .all(|l| l["compensation"]["transaction"] == "trip-42"));
    let committed = lines
        .iter()
        .filter(|l| l["kind"] == "settlement" && l["outcome"] == "committed")
        .count();
    assert_eq!(committed, 7, "seven payments settled");
    let mcp_decisions: Vec<_> = lines
        .iter()
        .filter(|l| l["kind"] == "decision" && l["mcp_tool"] == "fx_quote")
        .map(|l| {
            (
                l["decision"].as_str(),
                l["rule"].as_str(),
                l["session"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        mcp_decisions,
        [
            (Some("DENIED"), Some("phase"), Some("demo-agent.tools")),
            (Some("ALLOWED"), Some("default"), Some("demo-agent.tools")),
        ]
    );
    let policy = std::fs::read_to_string(work.join("policy.yaml")).unwrap();
    assert!(
        policy.contains("endpoint: http://127.0.0.1:") && !policy.contains("FACILITATOR"),
        "the refund endpoint points at the stub:\n{policy}"
    );
}

#[test]
fn without_keep_nothing_is_left_behind() {
    let tmp = TempDir::new("demo-tmp");
    let output = purser(&["demo"])
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run purser demo");
    assert!(output.status.success(), "{}", text(&output.stdout));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_directory_with_an_earlier_run_is_refused() {
    let dir = TempDir::new("demo-reuse");
    let work = dir.path().join("run");
    let (first, _) = run_demo(&["--dir", work.to_str().unwrap()]);
    assert!(first.status.success());
    let (second, stdout) = run_demo(&["--dir", work.to_str().unwrap()]);
    assert!(!second.status.success(), "{stdout}");
    assert!(
        text(&second.stderr).contains("already holds a proof log from an earlier run"),
        "{}",
        text(&second.stderr)
    );
}

/// Kills the demo if the test fails while it runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pause_at_hold_waits_for_a_person_to_approve() {
    let child = purser(&["demo", "--pause-at-hold"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start purser demo");
    let mut demo = Running(child);
    let stdout = demo.0.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let paused = loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no PAUSED line; output so far:\n{}", seen.join("\n")));
        if line.trim_start().starts_with("PAUSED ") {
            break line;
        }
        seen.push(line);
    };
    let field = |name: &str| {
        paused
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in `{paused}`"))
            .to_string()
    };
    let hold = field("hold");
    let console = field("console");
    assert!(
        demo.0.try_wait().unwrap().is_none(),
        "the demo waits for the person"
    );
    let listed = support::curl(&["-s", "--noproxy", "*", &format!("{console}v1/approvals")]);
    assert!(
        text(&listed.stdout).contains(&hold),
        "the hold is pending in the admin API: {}",
        text(&listed.stdout)
    );
    let approved = support::curl(&[
        "-s",
        "--noproxy",
        "*",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"by": "a test person"}"#,
        &format!("{console}v1/approvals/{hold}/approve"),
    ]);
    assert!(
        text(&approved.stdout).contains("\"outcome\":\"approved\""),
        "{}",
        text(&approved.stdout)
    );
    let rest: Vec<String> = received.iter().collect();
    let status = demo.0.wait().expect("the demo ends");
    let output = [seen, rest].concat().join("\n");
    assert!(status.success(), "exit {status:?}:\n{output}");
    assert!(output.contains("approved by a test person"), "{output}");
    assert!(
        output.contains("Done · every step behaved as expected"),
        "{output}"
    );
}

#[test]
fn the_demo_policy_passes_its_cases_and_every_option_has_help() {
    let cases = purser(&[
        "policy",
        "test",
        "policies/demo.yaml",
        "policies/demo.cases.yaml",
    ])
    .output()
    .expect("run purser policy test");
    let report = text(&cases.stdout);
    assert!(
        cases.status.success() && report.contains(" 0 failed"),
        "{report}"
    );
    let help = purser(&["demo", "--help"])
        .output()
        .expect("purser demo --help");
    let help = text(&help.stdout);
    for option in ["--pause-at-hold", "--keep", "--dir <DIR>"] {
        let line = help
            .lines()
            .find(|line| line.trim_start().starts_with(option))
            .unwrap_or_else(|| panic!("no {option} in:\n{help}"));
        assert!(
            line.trim().len() > option.len() + 10,
            "{option} has help text: {help}"
        );
    }
}
