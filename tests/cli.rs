//! The operator commands (`purser sessions | traces | approvals`) against a real Purser:
//! the CLI binary talks to the admin API of a `purser run` on loopback. Also: every
//! command and flag has help text, filter values match in any case, and `traces tail`
//! and `traces show` print the same table.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::Duration;
use support::origin::Origin;
use support::{crafted_payment, curl, Purser, PurserOptions};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
  transition_rules: { allow_skip: true }
budget:
  session_limit: 10.00
  single_call_threshold: 0.50
approvals:
  timeout: 60s
"#;

/// What one CLI run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    #[track_caller]
    fn failed(self) -> String {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stderr
    }

    /// Refused by the argument parser (clap exits 2), before anything ran.
    #[track_caller]
    fn bad_usage(self) -> String {
        assert_eq!(
            self.code, 2,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stderr
    }
}

fn cli_command(purser: &Purser, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_purser"));
    command
        .args(args)
        .args(["--admin", &format!("http://{}", purser.admin)])
        .env_remove("PURSER_ADMIN_TOKEN");
    command
}

fn cli(purser: &Purser, args: &[&str]) -> Run {
    Run::from(cli_command(purser, args).output().expect("run purser cli"))
}

/// The row of a table that mentions `needle`.
#[track_caller]
fn row<'a>(table: &'a str, needle: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle} in:\n{table}"))
}

#[test]
fn sessions_commands_show_and_move_sessions() {
    let purser = Purser::start(POLICY, None);
    assert_eq!(
        cli(&purser, &["sessions", "list"]).ok(),
        "no sessions yet\n"
    );
    let moved = cli(&purser, &["sessions", "phase", "agent.s1", "DECIDE"]).ok();
    assert_eq!(moved, "agent.s1: EXPLORE -> DECIDE\n");

    let table = cli(&purser, &["sessions", "list"]).ok();
    let header = table.lines().next().unwrap();
    for column in [
        "SESSION",
        "PHASE",
        "SPENT / LIMIT",
        "RESERVED",
        "RATIO",
        "ALLOWED/DENIED/HELD",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let line = row(&table, "agent.s1");
    for cell in ["DECIDE", "0.00 / 10.00", "[..........]   0%", "0/0/0"] {
        assert!(line.contains(cell), "{cell} missing: {line}");
    }

    let shown = cli(&purser, &["sessions", "show", "agent.s1"]).ok();
    for line in [
        "session      agent.s1",
        "agent        agent",
        "phase        DECIDE",
        "limit (USD)  10.00",
        "decisions    0 allowed, 0 denied, 0 held",
    ] {
        assert!(shown.contains(line), "{line} missing:\n{shown}");
    }
    let json = cli(&purser, &["sessions", "show", "agent.s1", "--json"]).ok();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(parsed["phase"], "DECIDE");

    let moved = cli(&purser, &["sessions", "phase", "agent.s1", "COMMIT"]).ok();
    assert_eq!(moved, "agent.s1: DECIDE -> COMMIT\n");
    let refused = cli(&purser, &["sessions", "phase", "agent.s1", "DECIDE"]).failed();
    assert!(
        refused.contains("phases only move forward: COMMIT → DECIDE is not allowed")
            && refused.contains("HTTP 409"),
        "{refused}"
    );
    let reset = cli(&purser, &["sessions", "reset", "agent.s1"]).ok();
    assert_eq!(reset, "agent.s1: COMMIT -> EXPLORE (reset)\n");
    let unknown = cli(&purser, &["sessions", "show", "agent.nobody"]).failed();
    assert!(
        unknown.contains("no session `agent.nobody` has been seen"),
        "{unknown}"
    );
}

#[test]
fn traces_tail_lists_decisions_and_follows_new_ones() {
    let purser = Purser::start(POLICY, None);
    assert_eq!(
        cli(&purser, &["traces", "tail"]).ok(),
        "no trace lines match\n"
    );
    refused_payment(&purser, "t1");
    refused_payment(&purser, "t2");
    let table = cli(&purser, &["traces", "tail", "-n", "20"]).ok();
    assert!(table.starts_with("TIME "), "{table}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .ends_with("AMOUNT  APPROVAL  TRACE ID"),
        "{table}"
    );
    let line = row(&table, "agent.t1");
    for cell in ["decision", "DENIED", "malformed_payment", "tr_"] {
        assert!(line.contains(cell), "{cell} missing: {line}");
    }
    let only = cli(&purser, &["traces", "tail", "--session", "agent.t2"]).ok();
    assert_eq!(only.lines().count(), 2, "header and one line:\n{only}");
    assert!(
        only.contains("agent.t2") && !only.contains("agent.t1"),
        "{only}"
    );
    let none = cli(&purser, &["traces", "tail", "--decision", "ALLOWED"]).ok();
    assert_eq!(none, "no trace lines match\n");

    // --follow prints the last line, then only what is new, until Ctrl-C.
    let mut child = cli_command(&purser, &["traces", "tail", "-n", "1", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn follow");
    let lines = line_channel(child.stdout.take().unwrap());
    let next = || lines.recv_timeout(Duration::from_secs(15)).expect("a line");
    assert!(next().starts_with("TIME "));
    assert!(next().contains("agent.t2"), "the last line first");
    refused_payment(&purser, "t3");
    assert!(next().contains("agent.t3"), "then the new one");
    std::thread::sleep(Duration::from_millis(1500));
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C ends --follow cleanly");
    let rest: Vec<String> = lines.iter().collect();
    assert!(rest.is_empty(), "nothing printed twice: {rest:?}");
}

/// The lines a child prints, as they come.
fn line_channel(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[test]
fn approvals_are_listed_approved_and_denied() {
    let purser = Purser::start(POLICY, None);
    let listed = cli(&purser, &["approvals", "list"]).ok();
    assert_eq!(listed, "no payments are waiting for approval\n");
    let origin = Origin::plain_blocking();
    for session in ["agent.h1", "agent.h2"] {
        cli(&purser, &["sessions", "phase", session, "COMMIT"]).ok();
    }
    let denied = held_payment(&purser, "h1", origin.port(), 1);
    let approved = held_payment(&purser, "h2", origin.port(), 2);
    let table = wait_for_holds(&purser, 2);
    let header = table.lines().next().unwrap();
    for column in [
        "ID",
        "AGENT/SESSION",
        "AMOUNT (USD)",
        "PAY TO",
        "RESOURCE",
        "TIER",
        "KIND",
        "EXPIRES IN",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let line = row(&table, "agent.h1");
    for cell in ["0.60", "0x2096...0287", "GET 127.0.0.1/paid", "explicit"] {
        assert!(line.contains(cell), "{cell} missing: {line}");
    }
    assert!(line.ends_with('s'), "a countdown ends the row: {line}");
    let id = |session: &str| {
        row(&table, session)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (first, second) = (id("agent.h1"), id("agent.h2"));
    let json = cli(&purser, &["approvals", "list", "--json"]).ok();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(parsed["approvals"].as_array().map(Vec::len), Some(2));

    let said = cli(
        &purser,
        &[
            "approvals",
            "deny",
            &first,
            "--reason",
            "too dear",
            "--by",
            "ana",
        ],
    )
    .ok();
    assert!(
        said.starts_with(&format!("denied hold {first} (by ana); trace tr_")),
        "{said}"
    );
    let (status, body) = denied.join().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("denied by ana: too dear"), "{body}");
    let said = cli(&purser, &["approvals", "approve", &second, "--by", "bo"]).ok();
    assert!(
        said.starts_with(&format!("approved hold {second} (by bo)")),
        "{said}"
    );
    assert_eq!(approved.join().unwrap().0, 200);

    let again = cli(&purser, &["approvals", "approve", &first]).failed();
    assert!(again.contains("HTTP 409"), "{again}");
    let unknown = cli(
        &purser,
        &["approvals", "deny", "no-such-hold", "--reason", "x"],
    )
    .failed();
    assert!(unknown.contains("HTTP 404"), "{unknown}");
    let holds = cli(&purser, &["traces", "tail", "--kind", "hold"]).ok();
    assert_eq!(holds.lines().count(), 3, "header and two holds:\n{holds}");
}

#[test]
fn a_wrong_admin_token_or_no_purser_is_explained() {
    let mut options = PurserOptions::new(POLICY);
    options.extra_args = vec!["--admin-token".into(), "secret".into()];
    let purser = Purser::start_with(options);
    let expected =
        "purser: admin token required or wrong: set --admin-token or PURSER_ADMIN_TOKEN\n";
    assert_eq!(cli(&purser, &["sessions", "list"]).failed(), expected);
    let wrong = cli(&purser, &["sessions", "list", "--admin-token", "guess"]);
    assert_eq!(wrong.failed(), expected);
    let right = cli_command(&purser, &["traces", "tail"])
        .env("PURSER_ADMIN_TOKEN", "secret")
        .output()
        .unwrap();
    assert_eq!(Run::from(right).ok(), "no trace lines match\n");
    let right = cli(&purser, &["sessions", "list", "--admin-token", "secret"]).ok();
    assert_eq!(right, "no sessions yet\n");

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["sessions", "list", "--admin", &format!("http://{closed}")])
        .output()
        .unwrap();
    let stderr = Run::from(output).failed();
    assert!(
        stderr.starts_with(&format!(
            "purser: cannot reach the admin API at http://{closed}: "
        )) && stderr.contains("(is `purser run` running?)"),
        "{stderr}"
    );
}

#[test]
fn every_command_and_argument_has_help_text() {
    let mut root = purser::cli::command();
    root.build();
    let mut missing = Vec::new();
    missing_help(&root, "purser", &mut missing);
    assert!(
        missing.is_empty(),
        "give these a doc comment (clap shows it as help):\n{}",
        missing.join("\n")
    );
    // The check sees positional arguments too: `policy test FILE CASES` has both.
    let test = root
        .find_subcommand("policy")
        .and_then(|policy| policy.find_subcommand("test"))
        .expect("policy test");
    assert_eq!(test.get_positionals().count(), 2);
    // The binary prints the same help.
    let help = support::purser_cli(&["help".as_ref(), "traces".as_ref(), "show".as_ref()]);
    let help = Run::from(help).ok();
    assert!(help.contains("--decision <DECISION|TRACE>"), "{help}");
}

/// Collects `path` of every visible command or argument under `command` with no help.
fn missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    let has_text = |text: Option<&clap::builder::StyledStr>| {
        text.is_some_and(|text| !text.to_string().trim().is_empty())
    };
    if !has_text(command.get_about()) && !has_text(command.get_long_about()) {
        missing.push(format!("{path} (command)"));
    }
    for argument in command.get_arguments().filter(|a| !a.is_hide_set()) {
        if !has_text(argument.get_help()) && !has_text(argument.get_long_help()) {
            missing.push(format!("{path} {}", argument.get_id()));
        }
    }
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        missing_help(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn filter_values_match_in_any_case_and_unknown_ones_are_refused() {
    let purser = Purser::start(POLICY, None);
    refused_payment(&purser, "f1");
    let table = cli(&purser, &["traces", "tail", "--decision", "denied"]).ok();
    assert!(row(&table, "agent.f1").contains("DENIED"), "{table}");
    let table = cli(&purser, &["traces", "tail", "--kind", "Decision"]).ok();
    assert!(table.contains("agent.f1"), "{table}");
    let empty = cli(
        &purser,
        &["traces", "tail", "--decision", "pending_approval"],
    )
    .ok();
    assert_eq!(empty, "no trace lines match\n");

    let refused = cli(&purser, &["traces", "tail", "--decision", "refused"]).bad_usage();
    assert!(
        refused.contains(
            "`refused` is not a decision; valid values: ALLOWED, DENIED, PENDING_APPROVAL"
        ),
        "{refused}"
    );
    let refused = cli(&purser, &["traces", "tail", "--kind", "settlements"]).bad_usage();
    assert!(
        refused
            .contains("valid values: decision, settlement, hold, phase, resolution, compensation"),
        "{refused}"
    );

    // The admin API matches in any case too, and answers an unknown value with a 400.
    let (status, body) = purser.admin("GET", "/v1/traces?decision=Denied&kind=DECISION", None);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["traces"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = purser.admin("GET", "/v1/traces?decision=nope", None);
    assert_eq!(status, 400, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"], "bad_filter");
    assert_eq!(answer["parameter"], "decision");
    assert_eq!(
        answer["valid"],
        serde_json::json!(["ALLOWED", "DENIED", "PENDING_APPROVAL"])
    );
    let (status, body) = purser.admin("GET", "/v1/traces?kind=nope", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("\"valid\":[\"decision\",\"settlement\""),
        "{body}"
    );

    // Phases, and `traces show` on the log file.
    let moved = cli(&purser, &["sessions", "phase", "agent.f2", "commit"]).ok();
    assert_eq!(moved, "agent.f2: EXPLORE -> COMMIT\n");
    let refused = cli(&purser, &["sessions", "phase", "agent.f2", "later"]).bad_usage();
    assert!(
        refused.contains("`later` is not a phase; valid values: EXPLORE, DECIDE, COMMIT"),
        "{refused}"
    );
    // The phase line is queued to the trace writer: `show` reads the file, so wait for it.
    let phased = || {
        purser
            .trace_lines()
            .iter()
            .any(|line| line["kind"] == "phase" && line["session"] == "agent.f2")
    };
    for _ in 0..1200 {
        if phased() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(phased(), "no phase line for agent.f2 in the proof log");
    let file = purser.trace_path();
    let show = |filter: &[&str]| {
        let file = file.to_str().unwrap();
        cli(
            &purser,
            &[&["traces", "show", "--file", file], filter].concat(),
        )
    };
    let shown = show(&["--decision", "denied"]).ok();
    assert!(row(&shown, "agent.f1").contains("DENIED"), "{shown}");
    let shown = show(&["--kind", "PHASE"]).ok();
    assert!(row(&shown, "agent.f2").contains("phase"), "{shown}");
    assert!(!shown.contains("agent.f1"), "{shown}");
    let refused = show(&["--decision", "x"]).bad_usage();
    assert!(
        refused.contains("ALLOWED, DENIED, PENDING_APPROVAL, or a trace id (tr_...)"),
        "{refused}"
    );
    let parsed =
        purser::cli::command().try_get_matches_from(["purser", "run", "--log-format", "JSON"]);
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn traces_show_and_tail_print_amounts_and_approvers_alike() {
    let purser = Purser::start(POLICY, None);
    let origin = Origin::plain_blocking();
    cli(&purser, &["sessions", "phase", "agent.a1", "COMMIT"]).ok();
    let approved = held_payment(&purser, "a1", origin.port(), 7);
    let table = wait_for_holds(&purser, 1);
    let id = row(&table, "agent.a1")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    cli(&purser, &["approvals", "approve", &id, "--by", "ana"]).ok();
    assert_eq!(approved.join().unwrap().0, 200);
    wait_for_trace(&purser, "settlement");

    let tail = cli(&purser, &["traces", "tail", "-n", "50"]).ok();
    let file = purser.trace_path();
    let show = cli(
        &purser,
        &["traces", "show", "--file", file.to_str().unwrap()],
    )
    .ok();
    assert_eq!(tail, show, "one table for both");
    let decision = row(&tail, "PENDING_APPROVAL");
    assert!(decision.contains("0.60 USDC (0.60 USD)"), "{decision}");
    let hold = row(&tail, " hold ");
    assert!(hold.contains("ALLOWED"), "{hold}");
    assert!(hold.contains("0.60 USD"), "{hold}");
    let approver = hold
        .split("by ana at ")
        .nth(1)
        .unwrap_or_else(|| panic!("no `by ana at TIME` in {hold}"));
    let time = &approver[..19];
    assert!(
        jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", time).is_ok(),
        "{hold}"
    );
    let settlement = row(&tail, " settlement ");
    assert!(settlement.contains("0.60 USD"), "{settlement}");
}

/// Waits (bounded) until the proof log has a line of `kind`.
fn wait_for_trace(purser: &Purser, kind: &str) {
    for _ in 0..200 {
        if purser.trace_lines().iter().any(|line| line["kind"] == kind) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {kind} line in the proof log:\n{}", purser.stderr());
}

/// A payment header that cannot be parsed: refused at once, with a decision line.
fn refused_payment(purser: &Purser, session: &str) {
    let proxy = purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")));
    let output = curl(&[
        "-s",
        "-x",
        &proxy,
        "-H",
        "X-PAYMENT: garbage",
        "http://127.0.0.1:9/paid",
    ]);
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(body.contains("malformed_payment"), "{body}");
}

/// A 0.60 USDC v2 payment (over the 0.50 threshold), sent in the background: it waits
/// for a decision. Returns the agent's status and body.
fn held_payment(purser: &Purser, session: &str, port: u16, nonce: u8) -> JoinHandle<(u16, String)> {
    let proxy = purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")));
    let header = format!("PAYMENT-SIGNATURE: {}", crafted_payment(nonce, 600_000));
    let url = format!("http://127.0.0.1:{port}/paid");
    std::thread::spawn(move || support::curl_answer(&["-x", &proxy, "-H", &header, &url]))
}

/// Polls `approvals list` until it shows `count` holds; returns the table.
fn wait_for_holds(purser: &Purser, count: usize) -> String {
    for _ in 0..200 {
        let table = cli(purser, &["approvals", "list"]).ok();
        if table.lines().count() > count {
            return table;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{count} holds never showed up:\n{}", purser.stderr());
}
