//! `soak` (issue #6, part 6): minutes of mixed traffic through one fresh Purser, then the
//! checks. `cargo build --release --bin purser --example bench`, then
//! `target/release/examples/bench soak` (ten minutes; `--duration 60` for a short run).
//!
//! It starts the stub merchant and facilitator (recording, in process on a thread of its
//! own) and a fresh Purser (own proof log and CA, the policy `--policy` copied to the run
//! directory, every refusal written, the proof log rotated at `--rotate`), then for
//! `--duration` seconds sends a fixed mix of traffic at `--rate` operations per second over
//! `--conns` keep-alive HTTP/1.1 connections (one agent session each, `soak.cN`).
//! Meanwhile it approves every hold through the admin API, rewrites the policy (a new
//! generation comment, so a new digest) and reloads it through `POST /v1/policy/reload`
//! every `--reload-every` seconds, rewrites it and sends `SIGHUP` halfway between, and
//! samples Purser's VmRSS, threads and open descriptors every `--sample-every` seconds.
//! At the end it snapshots `GET /v1/sessions` and the stub's record, stops Purser with
//! `SIGTERM` (it flushes its proof log), and checks ([`report`]). The Markdown summary is
//! printed and written to `benches/results/soak-DATE.md`; the exit status is 1 when a
//! check fails (the run directory is then kept).
//!
//! # The mix
//!
//! A cycle of 20 operations, taken in turn by whichever connection is next:
//!
//! | class | per 20 | request | expected answer |
//! |---|---:|---|---|
//! | plain | 7 | `GET /plain/N`, no payment | `200` |
//! | paid (direct) | 3 | `GET /paid/N` with a fresh v2 payment of $0.001 (1000 atomic USDC) | `200`, `X-Purser-Decision: ALLOWED`, a receipt |
//! | paid (x402) | 3 | `GET /priced/N?price=1000` → `402` with a challenge, then the same `GET` paying exactly that | `402`, then as above |
//! | held | 2 | `GET /premium/N` paying $0.75 (above the $0.50 per-call threshold) | held; the approver approves it (with its digest); `200` ALLOWED |
//! | denied | 2 | alternately $3.00 to `/paid/N` (rule `per-call-max`) and $0.001 to `/forbidden/N` (`forbidden-merchant`) | `403` DENIED naming that rule |
//! | malformed | 3 | `PAYMENT-SIGNATURE` that is not base64, base64 of text, JSON with wrong types, truncated JSON (in turn) | a `4xx` |
//!
//! Every payment has a unique nonce and signature. Each connection paces itself at
//! `rate / conns` operations per second (a held payment keeps its connection waiting,
//! as an agent would wait; ticks missed meanwhile are not made up).
//!
//! # The checks
//!
//! 1. **Zero panics**: no line of Purser's stderr log contains `panicked`, Purser was
//!    alive at every sample, and it exited 0 after `SIGTERM`.
//! 2. **RSS flat within 10%**: with W = 60 s (or a fifth of the run if it is shorter than
//!    180 s), the median VmRSS of the samples in the last W seconds is within ±10% of the
//!    median of the samples in [W, 2W) (the second minute: after warm-up).
//! 3. **Every payment accounted for**: every request the driver sent with a payment
//!    (paid, held, denied, and malformed) has a decision line whose `trace_id` is the
//!    answer's `X-Purser-Trace` and whose `payment_digest` is the SHA-256 of the payment
//!    sent (malformed ones have no digest), with the expected decision (held ones also a
//!    `hold` line approving them); every paid and held one has exactly one `committed`
//!    settlement line carrying the stub's receipt transaction; no decision line is left
//!    over; the stub settled exactly the paid and held payments (by digest), once each.
//! 4. **The chain verifies**: `purser traces verify` on the live log (with its rotated
//!    predecessors).
//! 5. **The ledger equals the facilitator's record**: the sum over the agent's sessions of
//!    committed spend (`spent - unknown` in `GET /v1/sessions`) equals the sum of the
//!    stub's settlements and the sum of the `committed` settlement lines, compared as
//!    `rust_decimal` values; nothing is left reserved or unknown.
//!
//! Two more rows: every class got only expected answers, and every reload took effect
//! (each admin reload answered with the digest of the file written; every generation's
//! digest appears in decision lines; Purser logged one reload per `SIGHUP`).

mod checks;
mod drive;
mod report;
mod traffic;

use crate::stage::{write_report, Machine, Stage};
use clap::Args;
use purser_kit::admin::Answered;
use purser_kit::process::{purser_command, RunDir, Sample};
use purser_kit::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone)]
pub(crate) struct SoakArgs {
    /// The purser binary.
    #[arg(long, default_value = "target/release/purser")]
    pub purser: PathBuf,
    #[arg(long, default_value = "benches/soak-policy.yaml")]
    pub policy: PathBuf,
    /// Seconds of traffic (at least 10).
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Operations per second, all connections together (an x402 operation is 2 requests).
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    #[arg(long, default_value = "soak")]
    pub agent: String,
    #[arg(long, default_value = "soak-token")]
    pub token: String,
    /// Seconds between admin-API reloads; a SIGHUP goes halfway between them.
    #[arg(long, default_value_t = 30)]
    pub reload_every: u64,
    #[arg(long, default_value_t = 5)]
    pub sample_every: u64,
    /// Purser's --trace-rotate-size (so a long soak rotates the log).
    #[arg(long, default_value = "64MiB")]
    pub rotate: String,
    /// How often the approver polls `GET /v1/approvals`.
    #[arg(long, default_value_t = 20)]
    pub poll_ms: u64,
    /// A request not answered in this many seconds counts as a failure.
    #[arg(long, default_value_t = 60)]
    pub request_timeout: u64,
    /// Keep the run directory (logs, proof log, record) and say where.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Class {
    Plain,
    /// The `402` probe of a paid x402 exchange.
    Challenge,
    Paid,
    Held,
    Denied,
    Malformed,
}

impl Class {
    pub(crate) const ALL: [Class; 6] = [
        Class::Plain,
        Class::Challenge,
        Class::Paid,
        Class::Held,
        Class::Denied,
        Class::Malformed,
    ];

    /// What the class is, for the report, and the answer it expects.
    pub(crate) fn describe(self) -> (&'static str, &'static str) {
        match self {
            Class::Plain => ("plain GET, no payment", "200"),
            Class::Challenge => ("x402 probe (answered 402)", "402 + PAYMENT-REQUIRED"),
            Class::Paid => ("paid, $0.001", "200 ALLOWED + receipt"),
            Class::Held => ("held ($0.75), then approved", "200 ALLOWED + receipt"),
            Class::Denied => ("denied by the policy", "403 DENIED, the rule"),
            Class::Malformed => ("malformed payment header", "4xx"),
        }
    }
}

/// One request that carried a payment, as sent and answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Sent {
    pub class: Class,
    pub variant: String,
    pub session: String,
    /// SHA-256 hex of the decoded payment (Purser's `payment_digest`); none for headers
    /// that do not decode.
    pub digest: Option<String>,
    pub amount_atomic: u64,
    /// Milliseconds since the start of the run.
    pub t_ms: u64,
    /// 0: no answer (transport error or timeout).
    pub status: u16,
    pub decision: Option<String>,
    pub trace: Option<String>,
    pub rule: Option<String>,
    pub code: Option<String>,
    pub ok: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ClassStats {
    pub sent: u64,
    pub unexpected: u64,
    pub statuses: BTreeMap<String, u64>,
    /// Malformed: the `code` of each answer; denied: the rule.
    pub codes: BTreeMap<String, u64>,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ReloadEvent {
    pub t_s: f64,
    /// `api` or `sighup`.
    pub via: String,
    pub generation: u64,
    /// SHA-256 of the file text written before the reload.
    pub digest: String,
    /// API: the status and the digest Purser answered.
    pub status: Option<u16>,
    pub answered_digest: Option<String>,
    pub error: Option<String>,
}

/// What the driver sent and saw (`run.json` in the run directory).
#[derive(Serialize, Deserialize)]
pub(crate) struct RunFile {
    pub started_unix_ms: u64,
    pub duration_s: u64,
    pub traffic_s: f64,
    pub rate: f64,
    pub conns: usize,
    pub agent: String,
    pub requests: u64,
    pub reconnects: u64,
    pub classes: BTreeMap<Class, ClassStats>,
    pub payments: Vec<Sent>,
    pub samples: Vec<Sample>,
    pub reloads: Vec<ReloadEvent>,
    pub base_policy_digest: String,
    /// Every hold the approver answered.
    pub approvals: Vec<Answered>,
    pub pending_holds_at_end: usize,
    pub errors: Vec<String>,
}

/// The whole soak: stage, traffic, stop, checks, report. Fails when a check fails.
pub(crate) fn soak(args: SoakArgs) -> Result<(), Error> {
    if args.duration < 10 || args.rate <= 0.0 || args.conns == 0 {
        return Err("--duration must be at least 10, --rate and --conns positive".into());
    }
    let policy = args.policy.to_string_lossy().into_owned();
    purser_command(&args.purser, &["policy", "check", &policy])?;
    let machine = Machine::now(&["src"]);
    if machine.busy {
        eprintln!("==> warning: cargo/rustc was running when the soak started");
    }
    let mut dir = RunDir::new("soak", args.keep)?;
    let policy_copy = dir.path.join("policy.yaml");
    let copy_policy =
        |_stub| Ok(std::fs::copy(&args.policy, &policy_copy).map(|_| policy_copy.clone())?);
    // Every refusal is written (no per-agent summaries): check 3 matches each answer's
    // trace id to its own decision line. Reload outcomes (purser::app for SIGHUP,
    // purser::admin for the API) at INFO, the rest at WARN: a panic or an error shows, a
    // line per request does not.
    let extra = [
        "--trace-rotate-size",
        &args.rotate,
        "--trace-refusals-per-minute",
        "0",
    ];
    let rust_log = "warn,purser::app=info,purser::admin=info";
    let mut stage = Stage::start(&args.purser, &dir.path, copy_policy, &extra, rust_log)?;
    eprintln!(
        "==> soak: {}s at {} operations/s over {} connections (Purser pid {}, run dir {})",
        args.duration,
        args.rate,
        args.conns,
        stage.purser.child.id(),
        dir.path.display()
    );
    let driven = drive::drive(&args, &stage, &policy_copy);
    let exit = stage.stop(Duration::from_secs(30));
    eprintln!("==> purser exited with status {exit:?}");
    let (run, sessions, record) = driven?;
    std::fs::write(dir.path.join("run.json"), serde_json::to_vec(&run)?)?;
    let notes = [
        format!(
            "{} CPUs shared by the driver (1 thread), the stub (1 thread) and Purser; release build; commit {}; load average before: {}.{}",
            machine.cpus,
            machine.commit,
            machine.loadavg,
            if machine.busy { " **Warning:** cargo/rustc was running when the soak started." } else { "" }
        ),
        format!(
            "Policy: {} (reloaded as numbered generations); proof log rotated at {}; stub: the kit's merchant, recording.",
            args.policy.display(),
            args.rotate
        ),
    ];
    let inputs = report::Inputs {
        run: &run,
        sessions: &sessions,
        record: &record,
        purser: &args.purser,
        purser_log: &std::fs::read_to_string(&stage.log).unwrap_or_default(),
        trace: &stage.trace,
        purser_exit: exit,
        notes: &notes,
    };
    let (text, passed) = report::report(&inputs)?;
    print!("{text}");
    write_report("soak", &text)?;
    if !passed {
        dir.keep = true;
        return Err("some checks failed (see the report)".into());
    }
    Ok(())
}
