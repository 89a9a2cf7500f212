//! The proof log against its published schema (`schemas/trace-line.schema.json`): real
//! scenarios through the real binary write every kind of line (allowed, denied and held
//! decisions, approvals, settlements, phase changes, a resolution, a compensation, v1 and
//! v2 payments), and every line must validate under the x402 venv's `jsonschema`. A few
//! lines altered by hand must not, so the schema is known to have teeth.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::origin::Origin;
use support::python::{agent, paid_server, python, Facilitator};
use support::{crafted_payment, Purser, TempDir};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/trace-line.schema.json"
);

/// Validates a JSONL file: one `LINE<TAB>PATH<TAB>MESSAGE` per error, exit 1 on any.
const VALIDATOR: &str = r#"
import json, sys
from jsonschema import Draft202012Validator

schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
bad = 0
count = 0
for number, text in enumerate(open(sys.argv[2]), start=1):
    if not text.strip():
        continue
    count += 1
    try:
        line = json.loads(text)
    except ValueError as error:
        print(f"{number}\t$\tnot JSON: {error}")
        bad += 1
        continue
    errors = sorted(validator.iter_errors(line), key=lambda e: list(e.absolute_path))
    for error in errors:
        print(f"{number}\t{error.json_path}\t{error.message}")
    bad += bool(errors)
print(f"checked {count} lines, {bad} invalid", file=sys.stderr)
sys.exit(1 if bad else 0)
"#;

fn policy(refund_port: u16) -> String {
    format!(
        r#"
agents:
  agent: {{ token: t0ken }}
phases:
  allowed_payment_phase: COMMIT
  transition_rules: {{ agent_header: true, allow_skip: true }}
budget:
  session_limit: 5.00
  single_call_threshold: 0.50
  graduated_gates: {{ warning: 0.05 }}
categories:
  data: ["127.0.0.1/paid*"]
tools:
  pay_for_data:
    endpoints: ["127.0.0.1/paid/*"]
    category: data
tiers:
  - {{ name: open, approval: none }}
rules:
  - "@shadow-flag SHADOW FLAG *"
approvals:
  timeout: 30s
compensation:
  enabled: true
  default_action: refund
  endpoint: http://127.0.0.1:{refund_port}/refunds
  credit_budget: true
"#
    )
}

fn proxy(purser: &Purser, session: &str) -> String {
    purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")))
}

/// A curl through the proxy with extra headers: `(status, body)`.
fn pay(proxy: &str, url: &str, headers: &[String]) -> (u16, String) {
    let mut args: Vec<&str> = vec!["-x", proxy];
    for header in headers {
        args.extend(["-H", header.as_str()]);
    }
    args.push(url);
    support::curl_answer(&args)
}

fn signature(header: &str) -> String {
    format!("PAYMENT-SIGNATURE: {header}")
}

fn spawn_pay(proxy: String, url: String, header: String) -> JoinHandle<(u16, String)> {
    std::thread::spawn(move || pay(&proxy, &url, &[signature(&header)]))
}

fn pending(purser: &Purser, count: usize) -> Vec<serde_json::Value> {
    support::pending_holds(purser, count)
}

/// An upstream that reads one request and hangs up: the payment left, its outcome is
/// unknown.
fn hang_up_upstream() -> (u16, JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer);
        }
    });
    (port, handle)
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs the validator on a JSONL file: (passed, invalid line numbers, report).
fn validate(file: &Path, dir: &Path) -> (bool, BTreeSet<usize>, String) {
    let script = dir.join("validate_trace.py");
    std::fs::write(&script, VALIDATOR).expect("write validator");
    let output = Command::new(python())
        .arg(&script)
        .arg(SCHEMA)
        .arg(file)
        .output()
        .expect("run validator");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains("checked "),
        "the validator did not run: {stderr}"
    );
    let invalid = stdout
        .lines()
        .filter_map(|line| line.split('\t').next()?.parse().ok())
        .collect();
    (
        output.status.success(),
        invalid,
        format!("{stdout}{stderr}"),
    )
}

/// Alters one line of the given kind (and decision) in the way `mutate` says.
fn alter(
    lines: &[serde_json::Value],
    kind: &str,
    decision: Option<&str>,
    mutate: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> serde_json::Value {
    let mut line = lines
        .iter()
        .find(|l| l["kind"] == kind && decision.is_none_or(|d| l["decision"] == d))
        .unwrap_or_else(|| panic!("no {kind} line ({decision:?}) to alter"))
        .clone();
    mutate(line.as_object_mut().unwrap());
    line
}

#[test]
fn every_line_of_a_real_proof_log_matches_the_schema_and_altered_lines_do_not() {
    let dir = TempDir::new("trace-schema");
    let refunds = Origin::plain_blocking();
    let merchant = Origin::plain_blocking();
    let facilitator = Facilitator::start(dir.path());
    let paid_v2 = paid_server(&facilitator, &["--price-atomic", "50000"]);
    let paid_v1 = paid_server(&facilitator, &["--version", "1", "--price-atomic", "20000"]);
    let purser = Purser::start(&policy(refunds.port()), None);
    let paid = format!("http://127.0.0.1:{}/paid/item", merchant.port());

    // Denied by a rule (EXPLORE), and refused before pricing (an unreadable header).
    let (status, body) = pay(
        &proxy(&purser, "deny"),
        &paid,
        &[signature(&crafted_payment(1, 10_000))],
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = pay(
        &proxy(&purser, "deny"),
        &paid,
        &[signature("not-a-payment!")],
    );
    assert_eq!(status, 403, "{body}");

    // An operator's phase change, an allowed payment (released: the merchant answers a
    // fresh 402), a replay.
    purser.set_phase("agent.ok", "COMMIT");
    let payment = crafted_payment(2, 10_000);
    let asks_again = format!("http://127.0.0.1:{}/402/notjson", merchant.port());
    let (status, body) = pay(&proxy(&purser, "ok"), &asks_again, &[signature(&payment)]);
    assert_eq!(status, 402, "{body}");
    let (status, body) = pay(&proxy(&purser, "ok"), &asks_again, &[signature(&payment)]);
    assert_eq!(status, 403, "{body}");

    // The agent's own phase change, with a payment on the same request.
    let (status, body) = pay(
        &proxy(&purser, "hdr"),
        &paid,
        &[
            "X-Purser-Phase: COMMIT".to_string(),
            signature(&crafted_payment(3, 10_000)),
        ],
    );
    assert_eq!(status, 200, "{body}");

    // Holds: one approved, one denied.
    purser.set_phase("agent.hold", "COMMIT");
    let approved = spawn_pay(
        proxy(&purser, "hold"),
        paid.clone(),
        crafted_payment(4, 600_000),
    );
    let id = pending(&purser, 1)[0]["id"].as_str().unwrap().to_string();
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(r#"{"by":"alice"}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(approved.join().unwrap().0, 200);
    let denied = spawn_pay(
        proxy(&purser, "hold"),
        paid.clone(),
        crafted_payment(5, 600_000),
    );
    let id = pending(&purser, 1)[0]["id"].as_str().unwrap().to_string();
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(r#"{"by":"bob","reason":"no"}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(denied.join().unwrap().0, 403);

    // An unknown outcome (the upstream hangs up), then reconciled by an operator.
    purser.set_phase("agent.unk", "COMMIT");
    let (port, upstream) = hang_up_upstream();
    let (status, _) = pay(
        &proxy(&purser, "unk"),
        &format!("http://127.0.0.1:{port}/paid"),
        &[signature(&crafted_payment(6, 250_000))],
    );
    assert_eq!(status, 502);
    upstream.join().unwrap();
    let (_, listed) = purser.admin("GET", "/v1/payments/unknown", None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = listed["payments"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/payments/{id}/resolve"),
        Some(r#"{"outcome":"committed","by":"ops"}"#),
    );
    assert_eq!(status, 200, "{body}");

    // The official SDK: a v1 payment, and a v2 transaction whose second step fails, so
    // its paid first step is refunded.
    purser.set_phase("agent.v1", "COMMIT");
    let result = agent(
        &paid_v1.url("http", "/paid/data"),
        &proxy(&purser, "v1"),
        None,
        &[],
    )
    .remove(0);
    assert_eq!(result.status, 200, "{}", result.body);
    purser.set_phase("agent.tx", "COMMIT");
    let step = |path: &str| {
        agent(
            &paid_v2.url("http", path),
            &proxy(&purser, "tx"),
            None,
            &["--header", "X-Purser-Transaction: order-1"],
        )
        .remove(0)
    };
    let result = step("/paid/data");
    assert_eq!(result.status, 200, "{}", result.body);
    assert_eq!(step("/fail").status, 500);

    // Lines not awaited by the engine (phase, hold, settlement, resolution, compensation)
    // land shortly after the answers.
    let count = |lines: &[serde_json::Value], kind: &str, field: &str, value: &str| {
        lines
            .iter()
            .filter(|l| l["kind"] == kind && l[field] == value)
            .count()
    };
    wait_for("every line of the scenarios", || {
        let lines = purser.trace_lines();
        count(&lines, "compensation", "outcome", "requested") == 1
            && count(&lines, "resolution", "outcome", "committed") == 1
            && count(&lines, "hold", "kind", "hold") == 2
            && count(&lines, "settlement", "kind", "settlement") == 6
            && count(&lines, "phase", "kind", "phase") == 6
    });
    let lines = purser.trace_lines();

    // The scenarios wrote what this test claims to cover.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        let kind = line["kind"].as_str().unwrap();
        let detail = match kind {
            "decision" | "hold" => line["decision"].as_str(),
            "settlement" | "resolution" | "compensation" => line["outcome"].as_str(),
            _ => None,
        };
        let key = match detail {
            Some(detail) => format!("{kind}:{detail}"),
            None => kind.to_string(),
        };
        *seen.entry(key).or_default() += 1;
    }
    for expected in [
        "decision:ALLOWED",
        "decision:DENIED",
        "decision:PENDING_APPROVAL",
        "hold:ALLOWED",
        "hold:DENIED",
        "settlement:committed",
        "settlement:released",
        "settlement:unknown",
        "phase",
        "resolution:committed",
        "compensation:pending",
        "compensation:requested",
    ] {
        assert!(seen.contains_key(expected), "no {expected} line: {seen:?}");
    }
    let versions: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| l["x402_version"].as_u64())
        .collect();
    assert_eq!(versions, BTreeSet::from([1, 2]), "v1 and v2 payments");
    assert!(
        lines.iter().any(|l| l["kind"] == "decision"
            && l["decision"] == "DENIED"
            && l.get("amount_usd").is_none()),
        "a refusal before pricing"
    );
    assert!(lines.iter().any(|l| l["gate"] == "warning"), "a gate");
    assert!(
        lines.iter().any(|l| l["rules"]
            .as_array()
            .is_some_and(|rules| rules.iter().any(|r| r["shadow"] == true))),
        "a shadow rule"
    );

    // Every real line validates.
    let (valid, invalid, report) = validate(&purser.trace_path(), dir.path());
    assert!(
        valid && invalid.is_empty(),
        "proof-log lines that do not match schemas/trace-line.schema.json:\n{report}"
    );
    assert!(
        report.contains(&format!("checked {} lines, 0 invalid", lines.len())),
        "{report}"
    );

    // Altered lines do not: each of these must be rejected.
    use serde_json::json;
    let altered = [
        alter(&lines, "decision", Some("ALLOWED"), |l| {
            l["amount_usd"] = json!(0.01);
        }),
        alter(&lines, "decision", Some("DENIED"), |l| {
            l.remove("policy_digest");
        }),
        alter(&lines, "decision", Some("PENDING_APPROVAL"), |l| {
            l.remove("payment_digest");
        }),
        alter(&lines, "decision", Some("ALLOWED"), |l| {
            l["budget"]["spent"] = json!(0);
        }),
        alter(&lines, "decision", Some("ALLOWED"), |l| {
            l["rules"][0]["action"] = json!("PERMIT");
        }),
        alter(&lines, "decision", Some("ALLOWED"), |l| {
            l["amount_atomic"] = json!("1e4");
        }),
        alter(&lines, "decision", None, |l| {
            l.insert("note".into(), json!("an unknown field"));
        }),
        alter(&lines, "decision", None, |l| {
            l["prev_hash"] = json!("AB".repeat(32));
        }),
        alter(&lines, "decision", None, |l| {
            l["time"] = json!("yesterday at noon");
        }),
        alter(&lines, "decision", None, |l| {
            l["kind"] = json!("refund");
        }),
        alter(&lines, "settlement", None, |l| {
            l["outcome"] = json!("pending");
        }),
        alter(&lines, "settlement", None, |l| {
            l.remove("decision_trace_id");
        }),
        alter(&lines, "hold", None, |l| {
            l["decision"] = json!("PENDING_APPROVAL");
        }),
        alter(&lines, "hold", None, |l| {
            l["approval"].as_object_mut().unwrap().remove("by");
        }),
        alter(&lines, "phase", None, |l| {
            l.remove("phase");
        }),
        alter(&lines, "resolution", None, |l| {
            l["outcome"] = json!("unknown");
        }),
        alter(&lines, "compensation", None, |l| {
            l["compensation"]["loss_usd"] = json!(0.05);
        }),
        alter(&lines, "compensation", None, |l| {
            l.remove("agent");
        }),
    ];
    let text: String = altered.iter().map(|l| format!("{l}\n")).collect();
    let file = dir.path().join("altered.jsonl");
    std::fs::write(&file, text).unwrap();
    let (valid, invalid, report) = validate(&file, dir.path());
    assert!(!valid, "altered lines passed:\n{report}");
    let all: BTreeSet<usize> = (1..=altered.len()).collect();
    assert_eq!(
        invalid, all,
        "every altered line must be rejected:\n{report}"
    );
    assert!(
        report.contains("0.01 is not of type 'string'"),
        "a number for a decimal is named: {report}"
    );
    assert!(
        report.contains("'policy_digest' is a required property"),
        "{report}"
    );
}
