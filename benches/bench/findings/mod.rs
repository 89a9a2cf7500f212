//! The governance findings, reproduced (issue #7, part 6).
//!
//! A published design claims that phases, transactions, budget gates and proof traces,
//! compared with a flat session limit and plain logging, cut unnecessary spend from 12%
//! to 92%, recover 95% (from 0%) of failed workflows, approve a single call in under
//! 45 ms and make the audit trail 100% (from 40%) complete. This bench runs one seeded
//! workload through Purser twice, once under a flat session limit and once under the
//! governed policy, and measures the same four figures from the facilitator stub's record
//! (`purser_kit::merchant`) and Purser's proof log.
//!
//! `bench findings` does it all (the findings section of `benches/run`): for each pass, a
//! fresh stub merchant and facilitator (recording, in process) and a fresh Purser (own
//! proof log and CA, the policy with `compensation.endpoint` pointed at the stub, checked
//! and its own cases run), the workload sent through Purser with every hold approved
//! like a human at the console, a wait for the refunds Purser requests, and Purser
//! stopped (`SIGTERM` flushes its log). The report verifies both proof logs (`purser
//! traces verify`), computes the four figures beside the claimed ones, prints them and
//! writes them to `benches/results/findings-DATE.md`. `bench findings-plan --seed S
//! --runs N` prints the workload and its totals; nothing is sent. The same seed always
//! gives the same plan, and run `r`'s plan does not depend on how many runs there are.
//!
//! # The workload
//!
//! Every run is one agent session (`analyst.rN`), planned from the seed with splitmix64:
//!
//! 1. EXPLORE: 2–5 paid reads of distinct data sources (`/research/{market,reviews,
//!    pricing,compliance,news}`, $0.01–$0.05 each: the merchant's prices). Some runs also
//!    re-read a source they already bought (40% of runs, 1–3 duplicate reads), get stuck
//!    re-reading one source (5%, a loop of 20–60 reads), or buy a purchase-grade item while
//!    still exploring (25%, $0.10–$0.30, an item the run does not end up using).
//! 2. A plain request with `X-Purser-Phase: DECIDE`. Some runs (35%) keep paying for 1–3
//!    reads after this point, either while deciding or among the committed steps.
//! 3. A plain request with `X-Purser-Phase: COMMIT`, then 2–4 purchases
//!    (`/purchase/rN/stepI`, $0.10–$0.30) in one `X-Purser-Transaction: wf-SEED-N`;
//!    30% of runs make one premium purchase ($0.60–$0.95, above the governed policy's
//!    $0.50 per-call threshold) among them.
//! 4. 20% of runs fail at a later step (not the first): half of them because that step
//!    answers `500` (the merchant does not settle it; Purser sees the 5xx in the
//!    transaction), half because the agent finds the step's result unusable after paying
//!    and calls `POST /v1/transactions/{id}/rollback`. The run stops there.
//!
//! Every paid call is an x402 v2 exchange: a `GET` that answers `402` with a
//! `PAYMENT-REQUIRED` challenge, then the same `GET` with a `PAYMENT-SIGNATURE` for
//! exactly the challenge's amount, with a nonce derived from (seed, run, payment).
//! A human thread polls `GET /v1/approvals` and approves every hold it sees after
//! `--think-ms` (a rubber stamp: it does not use what the workload knows).
//!
//! # Definitions
//!
//! What each figure counts (attempted, settled, refund-requested, unnecessary and
//! necessary spend, the reduction, the recovery, the approval latency, the audit
//! completeness) is defined once, in [`report::DEFINITIONS`], which every report prints.

mod figures;
mod plan;
mod report;
mod run;

use crate::stage::{cargo_busy, write_report, Machine, Stage};
use clap::Args;
use purser_kit::merchant::Record;
use purser_kit::process::{purser_command, RunDir};
use purser_kit::Error;
use run::WorkloadFile;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use plan::plan_command;

#[derive(Args)]
pub(crate) struct PlanArgs {
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    runs: u32,
    /// Print every run's plan, not only the totals.
    #[arg(long)]
    verbose: bool,
}

#[derive(Args)]
pub(crate) struct FindingsArgs {
    /// The purser binary.
    #[arg(long, default_value = "target/release/purser")]
    purser: PathBuf,
    /// Agent runs, and the seed of their plan.
    #[arg(long, default_value_t = 200)]
    runs: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Runs in flight at once (each run's own steps are sequential).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long the human looks at a hold before approving it.
    #[arg(long, default_value_t = 5)]
    think_ms: u64,
    /// How often the human polls the approvals list.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// After the runs: how long the refund count must stay unchanged before giving up
    /// waiting for the refunds still expected.
    #[arg(long, default_value_t = 3000)]
    settle_ms: u64,
    #[arg(long, default_value = "analyst")]
    agent: String,
    #[arg(long, default_value = "analyst-token")]
    token: String,
    #[arg(long, default_value = "benches/findings-flat-policy.yaml")]
    flat_policy: PathBuf,
    #[arg(long, default_value = "policies/governed.yaml")]
    governed_policy: PathBuf,
    /// Keep each pass's directory (logs, record, workload, proof log) and say where.
    #[arg(long)]
    keep: bool,
}

/// What one pass left: the workload as sent, the stub's record and the proof log.
pub(crate) struct Pass {
    workload: WorkloadFile,
    record: Record,
    trace: PathBuf,
    /// cargo or rustc was running when it started.
    busy: bool,
}

/// `src` with `compensation.endpoint` pointed at the stub, written to `dest`, checked,
/// and its own cases (`NAME.cases.yaml` beside it) run against it.
fn prepare_policy(purser: &Path, src: &Path, dest: &Path, stub: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(src)?;
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.split_once("endpoint:") {
            Some((indent, _)) if indent.trim().is_empty() => {
                changed += 1;
                format!("{indent}endpoint: http://{stub}/refunds")
            }
            _ => line.to_string(),
        })
        .collect();
    if changed > 1 {
        return Err(format!(
            "rewriting compensation.endpoint of {} changed {changed} lines",
            src.display()
        )
        .into());
    }
    std::fs::write(dest, lines.join("\n") + "\n")?;
    let dest_text = dest.to_string_lossy();
    purser_command(purser, &["policy", "check", &dest_text])?;
    let cases = src.with_extension("cases.yaml");
    if cases.exists() {
        purser_command(
            purser,
            &["policy", "test", &dest_text, &cases.to_string_lossy()],
        )?;
    }
    Ok(())
}

/// One pass: stub + Purser + workload, in `dir`.
fn pass(args: &FindingsArgs, label: &str, policy: &Path, dir: &Path) -> Result<Pass, Error> {
    let policy_copy = dir.join("policy.yaml");
    let write_policy = |stub: std::net::SocketAddr| {
        prepare_policy(&args.purser, policy, &policy_copy, &stub.to_string())?;
        Ok(policy_copy.clone())
    };
    let mut stage = Stage::start(&args.purser, dir, write_policy, &[], "warn")?;
    let busy = cargo_busy();
    eprintln!(
        "==> {label}: {} runs, seed {}, policy {}",
        args.runs,
        args.seed,
        policy.display()
    );
    let target = run::Target {
        proxy: stage.purser.proxy,
        admin: stage.purser.admin,
        stub: stage.stub,
        agent: args.agent.clone(),
        token: args.token.clone(),
    };
    let workload = run::run(args, target, label, &stage.merchant);
    stage.stop(Duration::from_secs(10));
    let (workload, record) = (workload?, stage.merchant.record());
    std::fs::write(dir.join("workload.json"), serde_json::to_vec(&workload)?)?;
    std::fs::write(dir.join("record.json"), serde_json::to_vec(&record)?)?;
    Ok(Pass {
        workload,
        record,
        trace: stage.trace,
        busy,
    })
}

/// Both passes and the report.
pub(crate) fn findings(args: FindingsArgs) -> Result<(), Error> {
    if args.runs == 0 || args.concurrency == 0 {
        return Err("--runs and --concurrency must be positive".into());
    }
    let started = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let machine = Machine::now(&["src", "benches", "policies"]);
    let dir = RunDir::new("findings", args.keep)?;
    let flat = pass(&args, "flat", &args.flat_policy, &dir.path.join("flat"))?;
    let governed = pass(
        &args,
        "governed",
        &args.governed_policy,
        &dir.path.join("governed"),
    )?;
    let mut notes = vec![
        format!(
            "Run {started} on {} CPUs ({}) shared by the workload, the stub and Purser; load average before: {}; commit {}.",
            machine.cpus, machine.cpu, machine.loadavg, machine.commit
        ),
        format!(
            "The governed pass ran `{}` with only `compensation.endpoint` rewritten to the stub; its cases passed against that copy.",
            args.governed_policy.display()
        ),
        format!(
            "Reproduce: `cargo build --release --bin purser --example bench && target/release/examples/bench findings --runs {} --seed {} --concurrency {} --think-ms {}`.",
            args.runs, args.seed, args.concurrency, args.think_ms
        ),
    ];
    let busy: Vec<&str> = [(flat.busy, "flat"), (governed.busy, "governed")]
        .into_iter()
        .filter_map(|(busy, label)| busy.then_some(label))
        .collect();
    if !busy.is_empty() {
        notes.push(format!(
            "**Warning:** cargo/rustc was running during the {} pass(es); the latency figures are noisy.",
            busy.join(" and ")
        ));
    }
    let text = report::report(&flat, &governed, &args, &notes)?;
    print!("{text}");
    write_report("findings", &text)?;
    Ok(())
}
