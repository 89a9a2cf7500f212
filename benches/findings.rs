//! The governance findings, reproduced (issue #7, part 6), driven by `benches/findings.sh`.
//!
//! A published design claims that phases, transactions, budget gates and proof traces,
//! compared with a flat session limit and plain logging, cut unnecessary spend from 12%
//! to 92%, recover 95% (from 0%) of failed workflows, approve a single call in under
//! 45 ms and make the audit trail 100% (from 40%) complete. This bench runs one seeded
//! workload through Purser twice, once under a flat session limit and once under the
//! governed policy, and measures the same four figures from the facilitator stub's record
//! (`benches/paid_upstream.rs --record`) and Purser's proof log.
//!
//! Subcommands:
//!
//! * `plan --seed S --runs N`: prints the workload (one JSON line per run) and its totals;
//!   nothing is sent. The same seed always gives the same plan, and run `r`'s plan does
//!   not depend on how many runs there are.
//! * `run`: sends the workload through Purser (`--proxy`, `--admin`) to the stub
//!   (`--stub`), approves every hold like a human at the console, waits until the refunds
//!   Purser requests have arrived, and writes what happened to `--out` (JSON).
//! * `report --flat DIR --governed DIR --purser BIN`: reads each directory's
//!   `workload.json` (from `run`), `record.json` (the stub's `GET /__record`) and
//!   `trace.jsonl` (Purser's proof log, checked with `purser traces verify`), and prints
//!   the Markdown report with the four figures beside the claimed ones.
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
//! # Definitions (amounts in USD, `rust_decimal`, from the stub's record)
//!
//! * A payment is *attempted* when its paid request was sent, *settled* when the stub's
//!   record has a settlement with its digest, and *refund-requested* when it settled, the
//!   stub received a refund request naming its receipt transaction, and Purser's log
//!   has a `compensation` line with outcome `requested` for its decision.
//! * *Unnecessary* payments, known from the plan: duplicate reads and loop reads of a
//!   source the run already bought, purchases made while exploring, reads after the run
//!   declared DECIDE, and every paid step of a failed run's transaction (wasted unless
//!   refunded; the step that answers 500 is left out: it can never settle).
//!   *Unnecessary spend settled* counts those that settled and were not refund-requested.
//!   **Reduction** = 1 − unnecessary spend settled ÷ unnecessary spend attempted.
//! * *Necessary* payments: the first read of each needed source and every step of the
//!   transaction (the premium one and the failing one included). **Necessary pass rate** =
//!   necessary spend that reached the merchant (settled, or the failing step's 500) ÷
//!   necessary spend attempted.
//! * **Failure recovery** = refund-requested spend ÷ settled spend, over the paid steps of
//!   failed runs' transactions. The report also gives it over all settled spend of failed
//!   runs (exploration reads included, which no transaction covers).
//! * **Approval latency**: from the approve call returning (the human's clock) to the held
//!   request reaching the stub (the stub's stamp); both are wall-clock nanoseconds on the
//!   same host. A request that arrives before the approve answer is read counts as 0 and
//!   is counted.
//! * **Audit completeness** = settled payments in the stub's record that have a decision
//!   line authorizing them (ALLOWED, or PENDING_APPROVAL with an approving `hold` line),
//!   matched by `payment_digest`, in a proof log that `purser traces verify` accepts ÷ all
//!   settled payments. The report also gives the stricter share that also has a
//!   `committed` settlement line carrying the stub's receipt transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, PROXY_AUTHORIZATION};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Sender = SendRequest<Full<Bytes>>;

const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
/// USDC has 6 decimals: 10,000 atomic units are $0.01.
const CENT: u64 = 10_000;
/// Data sources and the merchant's price of one snapshot, in atomic units.
const SOURCES: [(&str, u64); 5] = [
    ("market", 2 * CENT),
    ("reviews", 3 * CENT),
    ("pricing", 5 * CENT),
    ("compliance", 4 * CENT),
    ("news", CENT),
];

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Plan(PlanArgs),
    Run(RunArgs),
    Report(ReportArgs),
}

#[derive(Args)]
struct PlanArgs {
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    runs: u32,
    /// Print every run's plan, not only the totals.
    #[arg(long)]
    verbose: bool,
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    runs: u32,
    /// Runs in flight at once (each run's own steps are sequential).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Purser's proxy listener.
    #[arg(long)]
    proxy: SocketAddr,
    /// Purser's admin listener.
    #[arg(long)]
    admin: SocketAddr,
    /// The stub merchant and facilitator (`paid_upstream --record`).
    #[arg(long)]
    stub: SocketAddr,
    #[arg(long, default_value = "analyst")]
    agent: String,
    #[arg(long, default_value = "analyst-token")]
    token: String,
    /// A name for this pass (`flat`, `governed`).
    #[arg(long)]
    label: String,
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
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct ReportArgs {
    /// Directory of the flat-limit pass: workload.json, record.json, trace.jsonl.
    #[arg(long)]
    flat: PathBuf,
    /// Directory of the governed pass.
    #[arg(long)]
    governed: PathBuf,
    /// The purser binary (for `purser traces verify`).
    #[arg(long)]
    purser: PathBuf,
    /// Policy files, as named in the report.
    #[arg(long, default_value = "benches/findings-flat-policy.yaml")]
    flat_policy: String,
    #[arg(long, default_value = "policies/governed.yaml")]
    governed_policy: String,
    /// Lines to print under the title (machine, commit, load).
    #[arg(long)]
    note: Vec<String>,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(args) => plan_command(&args),
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run_command(args))
        }
        Command::Report(args) => report_command(&args),
    }
}

// ================================================================== the plan

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, and the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    /// An independent stream per run: run r's plan does not depend on the others.
    fn for_run(seed: u64, run: u32) -> SplitMix64 {
        let mut rng = SplitMix64(seed ^ (u64::from(run) + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (modulo bias below 2^-50 for these ranges).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64 - 1) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// What a payment is, from the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// The first read of a source the run needs. Necessary.
    NeededRead,
    /// A source the run already bought, read again. Unnecessary.
    DuplicateRead,
    /// A run stuck re-reading one source. Unnecessary.
    LoopRead,
    /// A purchase-grade call while still exploring. Unnecessary.
    EarlyPurchase,
    /// A read after the run declared DECIDE. Unnecessary.
    LateRead,
    /// A step of the committed transaction. Necessary.
    Step,
    /// A step above the approval threshold. Necessary.
    Premium,
}

impl Kind {
    fn necessary(self) -> bool {
        matches!(self, Kind::NeededRead | Kind::Step | Kind::Premium)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FailureKind {
    /// The failing step answers 500 (not settled); Purser sees it in the transaction.
    StepAnswers5xx,
    /// The step settles, then the agent rolls the transaction back (admin API).
    AgentRollback,
}

/// One planned payment and, after `run`, what happened to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PaymentRecord {
    run: u32,
    /// Unique within the run; the nonce is derived from (seed, run, seq).
    seq: u32,
    kind: Kind,
    /// Path and query on the stub.
    path: String,
    amount_atomic: u64,
    /// Sent with the run's `X-Purser-Transaction`.
    in_transaction: bool,
    /// This step answers 500 (`fail=1`).
    fails: bool,
    /// The run this payment belongs to fails.
    failed_run: bool,
    nonce: String,
    /// SHA-256 hex of the payment JSON sent (Purser's `payment_digest`).
    #[serde(default)]
    digest: String,
    #[serde(default)]
    outcome: Option<Outcome>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Outcome {
    probe_status: Option<u16>,
    /// Whether the paid request was sent (the payment was attempted).
    paid_sent: bool,
    status: Option<u16>,
    decision: Option<String>,
    rule: Option<String>,
    trace_id: Option<String>,
    error: Option<String>,
}

/// One run, as planned and as it went.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRecord {
    run: u32,
    session: String,
    transaction: String,
    failure: Option<FailureKind>,
    /// Phase requests: (phase, status).
    #[serde(default)]
    phase_moves: Vec<(String, u16)>,
    /// The rollback call: (status, body).
    #[serde(default)]
    rollback: Option<(u16, String)>,
    #[serde(default)]
    errors: Vec<String>,
}

enum Action {
    Pay(Box<PaymentRecord>),
    Phase(&'static str),
    Rollback,
}

struct Planner {
    seed: u64,
    run: u32,
    seq: u32,
}

impl Planner {
    fn payment(&mut self, kind: Kind, amount_atomic: u64, in_transaction: bool) -> PaymentRecord {
        let seq = self.seq;
        self.seq += 1;
        PaymentRecord {
            run: self.run,
            seq,
            kind,
            path: String::new(),
            amount_atomic,
            in_transaction,
            fails: false,
            failed_run: false,
            nonce: format!("0x{:016x}{:016x}{:032x}", self.seed, self.run, seq),
            digest: String::new(),
            outcome: None,
        }
    }

    fn read(&mut self, kind: Kind, source: usize) -> PaymentRecord {
        let (name, price) = SOURCES[source];
        let mut p = self.payment(kind, price, false);
        p.path = format!("/research/{name}?price={price}&run={}&seq={}", p.run, p.seq);
        p
    }

    fn purchase(&mut self, kind: Kind, label: &str, amount: u64, in_tx: bool) -> PaymentRecord {
        let mut p = self.payment(kind, amount, in_tx);
        p.path = format!("/purchase/r{}/{label}?price={amount}", p.run);
        p
    }
}

fn session_name(run: u32) -> String {
    format!("r{run}")
}

/// The plan of run `run` of workload `seed`.
fn plan_run(seed: u64, run: u32) -> (RunRecord, Vec<Action>) {
    let mut rng = SplitMix64::for_run(seed, run);
    let mut p = Planner { seed, run, seq: 0 };
    // Exploration: distinct needed sources, then the waste inserted among them.
    let need = rng.range(2, 5) as usize;
    let mut order: Vec<usize> = (0..SOURCES.len()).collect();
    rng.shuffle(&mut order);
    let needed = order[..need].to_vec();
    let mut explore: Vec<(usize, PaymentRecord)> = needed
        .iter()
        .map(|&s| (s, p.read(Kind::NeededRead, s)))
        .collect();
    let first_read = |explore: &[(usize, PaymentRecord)], source: usize| {
        explore
            .iter()
            .position(|(s, r)| *s == source && r.kind == Kind::NeededRead)
            .expect("needed sources are read")
    };
    if rng.chance(40) {
        for _ in 0..rng.range(1, 3) {
            let source = needed[rng.index(need)];
            let after = first_read(&explore, source) + 1;
            let at = rng.range(after as u64, explore.len() as u64) as usize;
            explore.insert(at, (source, p.read(Kind::DuplicateRead, source)));
        }
    }
    if rng.chance(5) {
        let source = needed[rng.index(need)];
        let after = first_read(&explore, source) + 1;
        let at = rng.range(after as u64, explore.len() as u64) as usize;
        for i in 0..rng.range(20, 60) as usize {
            explore.insert(at + i, (source, p.read(Kind::LoopRead, source)));
        }
    }
    if rng.chance(25) {
        let amount = rng.range(10, 30) * CENT;
        let at = rng.range(0, explore.len() as u64) as usize;
        explore.insert(
            at,
            (
                usize::MAX,
                p.purchase(Kind::EarlyPurchase, "early", amount, false),
            ),
        );
    }
    // Reads after deciding: while deciding, or among the committed steps.
    let late: Vec<(bool, PaymentRecord)> = if rng.chance(35) {
        (0..rng.range(1, 3))
            .map(|_| {
                let source = rng.index(SOURCES.len());
                let in_commit = rng.chance(50);
                (in_commit, p.read(Kind::LateRead, source))
            })
            .collect()
    } else {
        Vec::new()
    };
    // The committed transaction.
    let steps = rng.range(2, 4);
    let mut commit: Vec<PaymentRecord> = (0..steps)
        .map(|i| {
            let amount = rng.range(10, 30) * CENT;
            p.purchase(Kind::Step, &format!("step{i}"), amount, true)
        })
        .collect();
    if rng.chance(30) {
        let amount = rng.range(60, 95) * CENT;
        let at = rng.range(0, commit.len() as u64) as usize;
        commit.insert(at, p.purchase(Kind::Premium, "premium", amount, true));
    }
    let failure = rng.chance(20).then(|| {
        let at = rng.range(1, commit.len() as u64 - 1) as usize;
        let kind = if rng.chance(50) {
            FailureKind::StepAnswers5xx
        } else {
            FailureKind::AgentRollback
        };
        (at, kind)
    });
    let failing_seq = failure.map(|(at, _)| commit[at].seq);
    let mut commit_actions: Vec<PaymentRecord> = commit;
    let mut decide_reads = Vec::new();
    for (in_commit, read) in late {
        if in_commit {
            let at = rng.range(0, commit_actions.len() as u64) as usize;
            commit_actions.insert(at, read);
        } else {
            decide_reads.push(read);
        }
    }
    // The run stops at its failing step.
    if let (Some(seq), Some((_, kind))) = (failing_seq, failure) {
        let at = commit_actions
            .iter()
            .position(|r| r.seq == seq)
            .expect("the failing step is planned");
        commit_actions.truncate(at + 1);
        if kind == FailureKind::StepAnswers5xx {
            let step = &mut commit_actions[at];
            step.fails = true;
            step.path.push_str("&fail=1");
        }
    }
    let mut actions: Vec<Action> = explore
        .into_iter()
        .map(|(_, r)| Action::Pay(Box::new(r)))
        .collect();
    actions.push(Action::Phase("DECIDE"));
    actions.extend(decide_reads.into_iter().map(|r| Action::Pay(Box::new(r))));
    actions.push(Action::Phase("COMMIT"));
    actions.extend(commit_actions.into_iter().map(|r| Action::Pay(Box::new(r))));
    if matches!(failure, Some((_, FailureKind::AgentRollback))) {
        actions.push(Action::Rollback);
    }
    if failure.is_some() {
        for action in &mut actions {
            if let Action::Pay(r) = action {
                r.failed_run = true;
            }
        }
    }
    let record = RunRecord {
        run,
        session: session_name(run),
        transaction: format!("wf-{seed:x}-{run}"),
        failure: failure.map(|(_, k)| k),
        phase_moves: Vec::new(),
        rollback: None,
        errors: Vec::new(),
    };
    (record, actions)
}

fn usd(atomic: u64) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(atomic), 6)
}

fn plan_command(args: &PlanArgs) -> Result<(), Error> {
    let mut totals: BTreeMap<Kind, (u64, Decimal)> = BTreeMap::new();
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    for run in 0..args.runs {
        let (record, actions) = plan_run(args.seed, run);
        let mut line = Vec::new();
        for action in &actions {
            match action {
                Action::Pay(r) => {
                    let t = totals.entry(r.kind).or_default();
                    t.0 += 1;
                    t.1 += usd(r.amount_atomic);
                    line.push(format!(
                        "{:?}:{}{}",
                        r.kind,
                        usd(r.amount_atomic),
                        if r.fails { "!" } else { "" }
                    ));
                }
                Action::Phase(p) => line.push(format!("->{p}")),
                Action::Rollback => line.push("ROLLBACK".to_string()),
            }
        }
        if let Some(kind) = record.failure {
            *failures.entry(format!("{kind:?}")).or_default() += 1;
        }
        if args.verbose {
            println!(
                "{}",
                json!({"run": run, "failure": record.failure, "actions": line})
            );
        }
    }
    println!("seed {} runs {}", args.seed, args.runs);
    for (kind, (count, amount)) in &totals {
        println!("  {kind:?}: {count} payments, ${amount:.2}");
    }
    println!("  failed runs: {failures:?}");
    Ok(())
}

// ================================================================== the run

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn basic(user: &str, token: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("valid header")
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One keep-alive HTTP/1.1 connection that reconnects after it breaks (the request that
/// broke it is not retried).
struct Conn {
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Error> {
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected");
        let result = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Error>(Answer {
                status,
                headers: parts.headers,
                body,
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// A call to the admin API (origin form).
    async fn admin(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Error> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        self.send(req).await
    }
}

struct RunContext {
    proxy: SocketAddr,
    admin: SocketAddr,
    stub: SocketAddr,
    agent: String,
    token: String,
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A request through the proxy, absolute form.
fn proxied(
    ctx: &RunContext,
    auth: &HeaderValue,
    path: &str,
    extra: &[(&'static str, String)],
) -> Result<Request<Full<Bytes>>, Error> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{}{path}", ctx.stub))
        .header(HOST, ctx.stub.to_string())
        .header(PROXY_AUTHORIZATION, auth.clone());
    for (name, value) in extra {
        builder = builder.header(*name, value.as_str());
    }
    Ok(builder.body(Full::new(Bytes::new()))?)
}

/// The payment an x402 client would sign for the challenge's first offer.
fn payment_for(challenge: &Value, nonce: &str, seq_tag: &str) -> Result<String, Error> {
    let offer = challenge["accepts"]
        .get(0)
        .ok_or("challenge without accepts[0]")?;
    let signature = format!("0x{seq_tag}{}", "ab".repeat(65 - seq_tag.len() / 2));
    let payment = json!({
        "x402Version": 2,
        "payload": {
            "authorization": {
                "from": PAYER, "to": offer["payTo"], "value": offer["amount"],
                "validAfter": "0", "validBefore": "4102444800", "nonce": nonce,
            },
            "signature": signature,
        },
        "accepted": offer,
        "resource": challenge["resource"],
    });
    Ok(payment.to_string())
}

/// One paid call: the 402, then the payment.
async fn pay(
    ctx: &RunContext,
    conn: &mut Conn,
    auth: &HeaderValue,
    record: &mut PaymentRecord,
    transaction: &str,
) {
    let mut outcome = Outcome::default();
    let mut extra = Vec::new();
    if record.in_transaction {
        extra.push(("x-purser-transaction", transaction.to_string()));
    }
    let probe = match proxied(ctx, auth, &record.path, &extra) {
        Ok(req) => conn.send(req).await,
        Err(e) => Err(e),
    };
    let challenge = match probe {
        Ok(answer) => {
            outcome.probe_status = Some(answer.status.as_u16());
            let decoded = answer
                .headers
                .get("payment-required")
                .and_then(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v.as_bytes())
                        .ok()
                })
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            match (answer.status, decoded) {
                (StatusCode::PAYMENT_REQUIRED, Some(challenge)) => Some(challenge),
                (status, _) => {
                    outcome.error = Some(format!("probe answered {status} without a challenge"));
                    None
                }
            }
        }
        Err(e) => {
            outcome.error = Some(format!("probe: {e}"));
            None
        }
    };
    let Some(challenge) = challenge else {
        record.outcome = Some(outcome);
        return;
    };
    let asked = challenge["accepts"][0]["amount"]
        .as_str()
        .unwrap_or_default();
    if asked != record.amount_atomic.to_string() {
        outcome.error = Some(format!(
            "challenge asks {asked}, the plan says {}",
            record.amount_atomic
        ));
        record.outcome = Some(outcome);
        return;
    }
    let tag = format!("{:08x}{:08x}", record.run, record.seq);
    let payment = match payment_for(&challenge, &record.nonce, &tag) {
        Ok(p) => p,
        Err(e) => {
            outcome.error = Some(e.to_string());
            record.outcome = Some(outcome);
            return;
        }
    };
    record.digest = Sha256::digest(payment.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    extra.push((
        "payment-signature",
        base64::engine::general_purpose::STANDARD.encode(&payment),
    ));
    outcome.paid_sent = true;
    let paid = match proxied(ctx, auth, &record.path, &extra) {
        Ok(req) => conn.send(req).await,
        Err(e) => Err(e),
    };
    match paid {
        Ok(answer) => {
            outcome.status = Some(answer.status.as_u16());
            outcome.decision = header_str(&answer.headers, "x-purser-decision");
            outcome.trace_id = header_str(&answer.headers, "x-purser-trace");
            if answer.status == StatusCode::FORBIDDEN {
                let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                outcome.rule = body["rule"].as_str().map(str::to_string);
            }
        }
        Err(e) => outcome.error = Some(format!("paid request: {e}")),
    }
    record.outcome = Some(outcome);
}

async fn execute_run(
    ctx: &RunContext,
    mut record: RunRecord,
    actions: Vec<Action>,
) -> (RunRecord, Vec<PaymentRecord>) {
    let auth = basic(&format!("{}.{}", ctx.agent, record.session), &ctx.token);
    let mut conn = Conn::new(ctx.proxy);
    let mut payments = Vec::new();
    for action in actions {
        match action {
            Action::Pay(mut payment) => {
                pay(ctx, &mut conn, &auth, &mut payment, &record.transaction).await;
                if let Some(e) = payment.outcome.as_ref().and_then(|o| o.error.clone()) {
                    record.errors.push(format!("payment {}: {e}", payment.seq));
                }
                payments.push(*payment);
            }
            Action::Phase(phase) => {
                let path = format!("/plan/r{}/{}", record.run, phase.to_ascii_lowercase());
                let sent =
                    match proxied(ctx, &auth, &path, &[("x-purser-phase", phase.to_string())]) {
                        Ok(req) => conn.send(req).await,
                        Err(e) => Err(e),
                    };
                match sent {
                    Ok(answer) => record
                        .phase_moves
                        .push((phase.to_string(), answer.status.as_u16())),
                    Err(e) => record.errors.push(format!("phase {phase}: {e}")),
                }
            }
            Action::Rollback => {
                let mut admin = Conn::new(ctx.admin);
                let path = format!("/v1/transactions/{}/rollback", record.transaction);
                match admin.admin(Method::POST, &path, None).await {
                    Ok(answer) => {
                        record.rollback = Some((
                            answer.status.as_u16(),
                            String::from_utf8_lossy(&answer.body).into_owned(),
                        ))
                    }
                    Err(e) => record.errors.push(format!("rollback: {e}")),
                }
            }
        }
    }
    (record, payments)
}

/// One approval, as the human made it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ApprovalRecord {
    hold_id: String,
    session: String,
    path: String,
    digest: String,
    trace_id: String,
    amount_usd: String,
    rules: Value,
    listed_unix_ns: u64,
    approve_sent_unix_ns: u64,
    approve_returned_unix_ns: u64,
    status: u16,
}

/// The human at the console: polls the holds and approves each one after `think`.
/// Runs on its own thread, so its clock readings are not delayed by the runs.
fn human(
    admin: SocketAddr,
    think: Duration,
    poll: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Vec<ApprovalRecord>, String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let mut conn = Conn::new(admin);
            let mut done: HashSet<String> = HashSet::new();
            let mut approvals = Vec::new();
            loop {
                let stopping = stop.load(Ordering::Acquire);
                let listed = conn
                    .admin(Method::GET, "/v1/approvals", None)
                    .await
                    .map_err(|e| format!("GET /v1/approvals: {e}"))?;
                let body: Value = serde_json::from_slice(&listed.body).unwrap_or_default();
                let holds = body["approvals"].as_array().cloned().unwrap_or_default();
                let fresh: Vec<Value> = holds
                    .into_iter()
                    .filter(|h| !done.contains(h["id"].as_str().unwrap_or_default()))
                    .collect();
                if fresh.is_empty() && stopping {
                    return Ok(approvals);
                }
                for hold in fresh {
                    let id = hold["id"].as_str().unwrap_or_default().to_string();
                    let listed_unix_ns = unix_ns();
                    tokio::time::sleep(think).await;
                    let digest = hold["digest"].as_str().unwrap_or_default().to_string();
                    let sent = unix_ns();
                    let answer = conn
                        .admin(
                            Method::POST,
                            &format!("/v1/approvals/{id}/approve"),
                            Some(json!({"by": "findings-human", "digest": digest})),
                        )
                        .await
                        .map_err(|e| format!("approve {id}: {e}"))?;
                    let returned = unix_ns();
                    let field = |k: &str| hold[k].as_str().unwrap_or_default().to_string();
                    approvals.push(ApprovalRecord {
                        hold_id: id.clone(),
                        session: field("session"),
                        path: field("path"),
                        digest,
                        trace_id: field("trace_id"),
                        amount_usd: field("amount_usd"),
                        rules: hold["rules"].clone(),
                        listed_unix_ns,
                        approve_sent_unix_ns: sent,
                        approve_returned_unix_ns: returned,
                        status: answer.status.as_u16(),
                    });
                    done.insert(id);
                }
                tokio::time::sleep(poll).await;
            }
        })
    })
}

#[derive(Serialize, Deserialize)]
struct WorkloadFile {
    label: String,
    seed: u64,
    runs: u32,
    concurrency: usize,
    think_ms: u64,
    started_unix_ns: u64,
    finished_unix_ns: u64,
    /// How the wait for refunds ended.
    quiescence: String,
    run_records: Vec<RunRecord>,
    payments: Vec<PaymentRecord>,
    approvals: Vec<ApprovalRecord>,
}

async fn stub_record(stub: SocketAddr) -> Result<Value, Error> {
    let mut conn = Conn::new(stub);
    let answer = conn.admin(Method::GET, "/__record", None).await?;
    if answer.status != StatusCode::OK {
        return Err(format!("GET /__record answered {}", answer.status).into());
    }
    Ok(serde_json::from_slice(&answer.body)?)
}

async fn run_command(args: RunArgs) -> Result<(), Error> {
    let ctx = Arc::new(RunContext {
        proxy: args.proxy,
        admin: args.admin,
        stub: args.stub,
        agent: args.agent.clone(),
        token: args.token.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let human = human(
        args.admin,
        Duration::from_millis(args.think_ms),
        Duration::from_millis(args.poll_ms),
        stop.clone(),
    );
    let started_unix_ns = unix_ns();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    type Results = Vec<Option<(RunRecord, Vec<PaymentRecord>)>>;
    let results: Arc<Mutex<Results>> = Arc::new(Mutex::new((0..args.runs).map(|_| None).collect()));
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (ctx, next, results) = (ctx.clone(), next.clone(), results.clone());
            let (seed, runs) = (args.seed, args.runs);
            tokio::spawn(async move {
                loop {
                    let run = next.fetch_add(1, Ordering::Relaxed);
                    if run >= runs as usize {
                        return;
                    }
                    let (record, actions) = plan_run(seed, run as u32);
                    let done = execute_run(&ctx, record, actions).await;
                    results.lock().unwrap()[run] = Some(done);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    let approvals = human
        .join()
        .map_err(|_| "the human thread panicked")?
        .map_err(|e| format!("human: {e}"))?;
    let mut run_records = Vec::new();
    let mut payments = Vec::new();
    for (run, result) in results.lock().unwrap().drain(..).enumerate() {
        let (record, p) = result.ok_or_else(|| format!("run {run} did not finish"))?;
        run_records.push(record);
        payments.extend(p);
    }
    // Wait for the refunds Purser owes: one per settled step of a failed transaction.
    let expected = payments
        .iter()
        .filter(|p| p.failed_run && p.in_transaction)
        .filter(|p| p.outcome.as_ref().and_then(|o| o.status) == Some(200))
        .count();
    let waited = Instant::now();
    let mut last = (usize::MAX, Instant::now());
    let quiescence = loop {
        let record = stub_record(args.stub).await?;
        let refunds = record["refunds"].as_array().map_or(0, Vec::len);
        if refunds >= expected {
            tokio::time::sleep(Duration::from_millis(300)).await;
            break format!(
                "{refunds} refund requests for {expected} settled steps of failed transactions"
            );
        }
        if refunds != last.0 {
            last = (refunds, Instant::now());
        } else if last.1.elapsed() >= Duration::from_millis(args.settle_ms) {
            break format!(
                "{refunds} refund requests for {expected} settled steps of failed transactions (no change for {} ms)",
                args.settle_ms
            );
        }
        if waited.elapsed() > Duration::from_secs(120) {
            break format!("gave up after 120 s: {refunds} refund requests of {expected}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let errors: usize = run_records.iter().map(|r| r.errors.len()).sum();
    eprintln!(
        "findings[{}]: {} runs, {} payments in {:.1}s; {} approvals; {errors} errors; {quiescence}",
        args.label,
        args.runs,
        payments.len(),
        elapsed.as_secs_f64(),
        approvals.len()
    );
    for record in run_records.iter().filter(|r| !r.errors.is_empty()).take(5) {
        eprintln!(
            "findings[{}]: run {}: {:?}",
            args.label, record.run, record.errors
        );
    }
    let file = WorkloadFile {
        label: args.label,
        seed: args.seed,
        runs: args.runs,
        concurrency: args.concurrency,
        think_ms: args.think_ms,
        started_unix_ns,
        finished_unix_ns: unix_ns(),
        quiescence,
        run_records,
        payments,
        approvals,
    };
    std::fs::write(&args.out, serde_json::to_vec(&file)?)?;
    Ok(())
}

// ================================================================== the report

/// What the stub's record says.
struct StubView {
    /// digest → (receipt transaction, amount atomic, arrival)
    settled: HashMap<String, (String, u64, u64)>,
    duplicate_digests: usize,
    /// digest → arrival (the failing steps)
    failed: HashMap<String, u64>,
    refused: usize,
    /// receipt transaction hash → refund requests naming it
    refunds_by_tx: HashMap<String, usize>,
    refunds: usize,
}

fn stub_view(record: &Value) -> StubView {
    let list = |k: &str| record[k].as_array().cloned().unwrap_or_default();
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut settled = HashMap::new();
    let mut duplicate_digests = 0;
    let settlements = list("settlements");
    for s in &settlements {
        let entry = (
            text(s, "id"),
            text(s, "amount").parse().unwrap_or(0),
            s["received_unix_ns"].as_u64().unwrap_or(0),
        );
        if settled.insert(text(s, "digest"), entry).is_some() {
            duplicate_digests += 1;
        }
    }
    let failed = list("failures")
        .iter()
        .map(|f| {
            (
                text(f, "digest"),
                f["received_unix_ns"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let refunds = list("refunds");
    let mut refunds_by_tx: HashMap<String, usize> = HashMap::new();
    for r in &refunds {
        *refunds_by_tx
            .entry(text(&r["body"], "tx_hash"))
            .or_default() += 1;
    }
    StubView {
        settled,
        duplicate_digests,
        failed,
        refused: list("refused").len(),
        refunds_by_tx,
        refunds: refunds.len(),
    }
}

/// What Purser's proof log says.
#[derive(Default)]
struct LogView {
    verified: bool,
    verify_output: String,
    lines: usize,
    kinds: BTreeMap<String, usize>,
    policy_digests: HashSet<String>,
    /// payment digest → [(trace id, decision)]
    decisions: HashMap<String, Vec<(String, String)>>,
    /// decision trace ids whose hold was approved
    approved_holds: HashSet<String>,
    /// decision trace id → (outcome, receipt transaction)
    settlements: HashMap<String, (String, String)>,
    /// decision trace ids with a `requested` compensation line
    refunds_requested: HashSet<String>,
}

fn log_view(dir: &Path, purser: &Path) -> Result<LogView, Error> {
    let path = dir.join("trace.jsonl");
    let verify = std::process::Command::new(purser)
        .arg("traces")
        .arg("verify")
        .arg(&path)
        .output()?;
    let mut view = LogView {
        verified: verify.status.success(),
        verify_output: format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout).trim(),
            String::from_utf8_lossy(&verify.stderr).trim()
        ),
        ..LogView::default()
    };
    let text = std::fs::read_to_string(&path)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        view.lines += 1;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        *view.kinds.entry(field("kind")).or_default() += 1;
        if let Some(d) = v["policy_digest"].as_str() {
            view.policy_digests.insert(d.to_string());
        }
        match v["kind"].as_str().unwrap_or_default() {
            "decision" => {
                if let Some(digest) = v["payment_digest"].as_str() {
                    view.decisions
                        .entry(digest.to_string())
                        .or_default()
                        .push((field("trace_id"), field("decision")));
                }
            }
            "hold" if v["decision"] == "ALLOWED" => {
                view.approved_holds.insert(field("decision_trace_id"));
            }
            "settlement" => {
                view.settlements.insert(
                    field("decision_trace_id"),
                    (field("outcome"), field("transaction")),
                );
            }
            "compensation" if v["outcome"] == "requested" => {
                view.refunds_requested.insert(field("decision_trace_id"));
            }
            _ => {}
        }
    }
    Ok(view)
}

impl LogView {
    /// The decision line that let this payment go out, if any.
    fn authorizing(&self, digest: &str) -> Option<&str> {
        self.decisions
            .get(digest)?
            .iter()
            .find_map(|(trace, decision)| {
                let ok = decision == "ALLOWED"
                    || (decision == "PENDING_APPROVAL" && self.approved_holds.contains(trace));
                ok.then_some(trace.as_str())
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Waste {
    DuplicateRead,
    LoopRead,
    EarlyPurchase,
    LateRead,
    FailedWorkflow,
}

impl Waste {
    const ALL: [Waste; 5] = [
        Waste::DuplicateRead,
        Waste::LoopRead,
        Waste::EarlyPurchase,
        Waste::LateRead,
        Waste::FailedWorkflow,
    ];

    fn of(p: &PaymentRecord) -> Option<Waste> {
        match p.kind {
            Kind::DuplicateRead => Some(Waste::DuplicateRead),
            Kind::LoopRead => Some(Waste::LoopRead),
            Kind::EarlyPurchase => Some(Waste::EarlyPurchase),
            Kind::LateRead => Some(Waste::LateRead),
            Kind::Step | Kind::Premium if p.failed_run && p.in_transaction && !p.fails => {
                Some(Waste::FailedWorkflow)
            }
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Waste::DuplicateRead => "duplicate read of a source already bought",
            Waste::LoopRead => "runaway loop re-reading one source",
            Waste::EarlyPurchase => "purchase while still exploring",
            Waste::LateRead => "read after the run declared DECIDE",
            Waste::FailedWorkflow => "paid step of a failed transaction, not refunded",
        }
    }
}

/// A count and an amount.
#[derive(Clone, Copy, Default)]
struct Sum {
    n: u64,
    usd: Decimal,
}

impl Sum {
    fn add(&mut self, atomic: u64) {
        self.n += 1;
        self.usd += usd(atomic);
    }
}

fn pct(part: Decimal, whole: Decimal) -> Option<Decimal> {
    (!whole.is_zero()).then(|| (part / whole * Decimal::ONE_HUNDRED).round_dp(1))
}

fn fmt_pct(p: Option<Decimal>) -> String {
    p.map_or_else(|| "n/a".to_string(), |p| format!("{p}%"))
}

fn fmt_sum(s: Sum) -> String {
    format!("{} (${:.2})", s.n, s.usd)
}

/// Everything measured in one pass.
struct Figures {
    label: String,
    waste_attempted: BTreeMap<Waste, Sum>,
    waste_settled: BTreeMap<Waste, Sum>,
    necessary_attempted: Sum,
    necessary_through: Sum,
    failed_runs: usize,
    failed_by_kind: BTreeMap<String, usize>,
    failed_tx_settled: Sum,
    failed_tx_recovered: Sum,
    failed_tx_stub_refunds: Sum,
    failed_tx_log_requested: Sum,
    failed_all_settled: Sum,
    /// approve returned → arrival at the stub, ns (negative: arrived first)
    latencies_ns: Vec<i128>,
    /// approve sent → arrival
    sent_to_arrival_ns: Vec<i128>,
    approvals: usize,
    approvals_unjoined: usize,
    holds_by_rule: BTreeMap<String, usize>,
    audit_settled: usize,
    audit_decision: usize,
    audit_complete: usize,
    log: LogView,
    stub: StubView,
    denied_by_rule: BTreeMap<String, Sum>,
    checks: Vec<String>,
    total_settled: Sum,
    rollbacks: BTreeMap<u16, usize>,
    phase_moves: BTreeMap<(String, u16), usize>,
    quiescence: String,
    errors: usize,
}

fn measure(dir: &Path, purser: &Path) -> Result<(WorkloadFile, Figures), Error> {
    let workload: WorkloadFile =
        serde_json::from_slice(&std::fs::read(dir.join("workload.json"))?)?;
    let record: Value = serde_json::from_slice(&std::fs::read(dir.join("record.json"))?)?;
    let stub = stub_view(&record);
    let log = log_view(dir, purser)?;
    let mut f = Figures {
        label: workload.label.clone(),
        waste_attempted: BTreeMap::new(),
        waste_settled: BTreeMap::new(),
        necessary_attempted: Sum::default(),
        necessary_through: Sum::default(),
        failed_runs: 0,
        failed_by_kind: BTreeMap::new(),
        failed_tx_settled: Sum::default(),
        failed_tx_recovered: Sum::default(),
        failed_tx_stub_refunds: Sum::default(),
        failed_tx_log_requested: Sum::default(),
        failed_all_settled: Sum::default(),
        latencies_ns: Vec::new(),
        sent_to_arrival_ns: Vec::new(),
        approvals: workload.approvals.len(),
        approvals_unjoined: 0,
        holds_by_rule: BTreeMap::new(),
        audit_settled: 0,
        audit_decision: 0,
        audit_complete: 0,
        log,
        stub,
        denied_by_rule: BTreeMap::new(),
        checks: Vec::new(),
        total_settled: Sum::default(),
        rollbacks: BTreeMap::new(),
        phase_moves: BTreeMap::new(),
        quiescence: workload.quiescence.clone(),
        errors: 0,
    };
    for run in &workload.run_records {
        f.errors += run.errors.len();
        if let Some(kind) = run.failure {
            f.failed_runs += 1;
            *f.failed_by_kind.entry(format!("{kind:?}")).or_default() += 1;
        }
        if let Some((status, _)) = &run.rollback {
            *f.rollbacks.entry(*status).or_default() += 1;
        }
        for (phase, status) in &run.phase_moves {
            *f.phase_moves.entry((phase.clone(), *status)).or_default() += 1;
        }
    }
    let (mut mismatches, mut unattempted) = (0, 0);
    let mut planned_digests = HashSet::new();
    for p in &workload.payments {
        let Some(outcome) = p.outcome.as_ref().filter(|o| o.paid_sent) else {
            unattempted += 1;
            continue;
        };
        planned_digests.insert(p.digest.as_str());
        let settled = f.stub.settled.get(&p.digest);
        let reached = settled.is_some() || f.stub.failed.contains_key(&p.digest);
        let decision_trace = f.log.authorizing(&p.digest);
        let stub_refund = settled.is_some_and(|(tx, _, _)| f.stub.refunds_by_tx.contains_key(tx));
        let log_refund = decision_trace.is_some_and(|t| f.log.refunds_requested.contains(t));
        let recovered = stub_refund && log_refund;
        // The agent's view and the facilitator's must agree.
        let agent_ok = outcome.status == Some(200);
        if agent_ok != settled.is_some() {
            mismatches += 1;
        }
        if outcome.status == Some(403) {
            let rule = outcome.rule.clone().unwrap_or_else(|| "?".to_string());
            f.denied_by_rule
                .entry(rule)
                .or_default()
                .add(p.amount_atomic);
        }
        if settled.is_some() {
            f.total_settled.add(p.amount_atomic);
        }
        if let Some(waste) = Waste::of(p) {
            f.waste_attempted
                .entry(waste)
                .or_default()
                .add(p.amount_atomic);
            if settled.is_some() && !recovered {
                f.waste_settled
                    .entry(waste)
                    .or_default()
                    .add(p.amount_atomic);
            }
        }
        if p.kind.necessary() {
            f.necessary_attempted.add(p.amount_atomic);
            if reached {
                f.necessary_through.add(p.amount_atomic);
            }
        }
        if p.failed_run && settled.is_some() {
            f.failed_all_settled.add(p.amount_atomic);
            if p.in_transaction {
                f.failed_tx_settled.add(p.amount_atomic);
                if recovered {
                    f.failed_tx_recovered.add(p.amount_atomic);
                }
                if stub_refund {
                    f.failed_tx_stub_refunds.add(p.amount_atomic);
                }
                if log_refund {
                    f.failed_tx_log_requested.add(p.amount_atomic);
                }
            }
        }
    }
    if mismatches > 0 {
        f.checks.push(format!(
            "**{mismatches} payments where the agent's 200 and the stub's settlement disagree**"
        ));
    }
    if unattempted > 0 {
        f.checks.push(format!(
            "{unattempted} planned payments were not attempted (probe failed; see errors)"
        ));
    }
    let foreign = f
        .stub
        .settled
        .keys()
        .filter(|d| !planned_digests.contains(d.as_str()))
        .count();
    if foreign > 0 {
        f.checks.push(format!(
            "**{foreign} settlements in the stub's record the workload did not send**"
        ));
    }
    if f.stub.duplicate_digests > 0 || f.stub.refused > 0 {
        f.checks.push(format!(
            "**the stub settled {} payment digests twice and refused {} payments**",
            f.stub.duplicate_digests, f.stub.refused
        ));
    }
    let refunded_txs: usize = f.stub.refunds_by_tx.values().filter(|n| **n > 1).count();
    if refunded_txs > 0 {
        f.checks.push(format!(
            "{refunded_txs} receipt transactions got more than one refund request"
        ));
    }
    // Approvals: joined to the stub's arrival by payment digest.
    for a in &workload.approvals {
        for rule in a.rules.as_array().into_iter().flatten() {
            *f.holds_by_rule
                .entry(rule.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        let arrival = f
            .stub
            .settled
            .get(&a.digest)
            .map(|s| s.2)
            .or_else(|| f.stub.failed.get(&a.digest).copied());
        match (arrival, a.status) {
            (Some(at), 200) => {
                f.latencies_ns
                    .push(i128::from(at) - i128::from(a.approve_returned_unix_ns));
                f.sent_to_arrival_ns
                    .push(i128::from(at) - i128::from(a.approve_sent_unix_ns));
            }
            _ => f.approvals_unjoined += 1,
        }
    }
    // Audit: every settlement in the stub's record against the verified log.
    for (digest, (tx, _, _)) in &f.stub.settled {
        f.audit_settled += 1;
        if !f.log.verified {
            continue;
        }
        if let Some(trace) = f.log.authorizing(digest) {
            f.audit_decision += 1;
            if f.log
                .settlements
                .get(trace)
                .is_some_and(|(outcome, t)| outcome == "committed" && t == tx)
            {
                f.audit_complete += 1;
            }
        }
    }
    f.audit_settled += f.stub.duplicate_digests;
    Ok((workload, f))
}

impl Figures {
    fn waste_totals(&self) -> (Sum, Sum) {
        let total = |m: &BTreeMap<Waste, Sum>| {
            m.values().fold(Sum::default(), |a, s| Sum {
                n: a.n + s.n,
                usd: a.usd + s.usd,
            })
        };
        (total(&self.waste_attempted), total(&self.waste_settled))
    }

    fn reduction(&self) -> Option<Decimal> {
        let (attempted, settled) = self.waste_totals();
        pct(attempted.usd - settled.usd, attempted.usd)
    }

    fn recovery(&self) -> Option<Decimal> {
        pct(self.failed_tx_recovered.usd, self.failed_tx_settled.usd)
    }

    fn audit(&self) -> Option<Decimal> {
        pct(
            Decimal::from(self.audit_decision),
            Decimal::from(self.audit_settled),
        )
    }

    fn latency_ms(&self) -> Vec<f64> {
        let mut ms: Vec<f64> = self
            .latencies_ns
            .iter()
            .map(|ns| (*ns).max(0) as f64 / 1e6)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn latency_cell(f: &Figures) -> String {
    let ms = f.latency_ms();
    if ms.is_empty() {
        return if f.approvals == 0 {
            "n/a: nothing was held".to_string()
        } else {
            format!("n/a: {} approvals, none joined", f.approvals)
        };
    }
    format!(
        "{:.2} ms median (p99 {:.2}, max {:.2}; n = {})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.len()
    )
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn report_command(args: &ReportArgs) -> Result<(), Error> {
    let (flat_wl, flat) = measure(&args.flat, &args.purser)?;
    let (gov_wl, gov) = measure(&args.governed, &args.purser)?;
    if (flat_wl.seed, flat_wl.runs) != (gov_wl.seed, gov_wl.runs) {
        return Err(format!(
            "the passes ran different workloads: flat seed {} runs {}, governed seed {} runs {}",
            flat_wl.seed, flat_wl.runs, gov_wl.seed, gov_wl.runs
        )
        .into());
    }
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "# Governance findings, reproduced")?;
    writeln!(w)?;
    writeln!(
        w,
        "Workload: **{} agent runs, seed {}**, {} runs in flight, human think time {} ms \
         (`benches/findings.rs`). Flat pass: `{}`; governed pass: `{}`.",
        gov_wl.runs,
        gov_wl.seed,
        gov_wl.concurrency,
        gov_wl.think_ms,
        args.flat_policy,
        args.governed_policy
    )?;
    if !args.note.is_empty() {
        writeln!(w)?;
    }
    for note in &args.note {
        writeln!(w, "* {note}")?;
    }
    writeln!(w)?;
    // ---- the four figures
    let g_lat = gov.latency_ms();
    let g_p50 = percentile(&g_lat, 0.5);
    let g_p99 = percentile(&g_lat, 0.99);
    let reduction_ok = gov.reduction().is_some_and(|r| r >= Decimal::from(95));
    let recovery_ok = gov.recovery() == Some(Decimal::ONE_HUNDRED);
    let latency_ok = !g_lat.is_empty() && g_p50 <= 2.0;
    let audit_ok = gov.audit() == Some(Decimal::ONE_HUNDRED) && gov.log.verified;
    writeln!(w, "## The four figures")?;
    writeln!(w)?;
    writeln!(w, "| metric | claimed (flat → governed) | measured flat | measured governed | target (governed) |")?;
    writeln!(w, "|---|---|---:|---:|---|")?;
    writeln!(
        w,
        "| unnecessary-spend reduction | 12% → 92% | {} | **{}** | ≥ 95% ({}) |",
        fmt_pct(flat.reduction()),
        fmt_pct(gov.reduction()),
        met(reduction_ok)
    )?;
    writeln!(
        w,
        "| workflow-failure recovery | 0% → 95% | {} | **{}** | 100% of settled spend in failed transactions refund-requested ({}) |",
        fmt_pct(flat.recovery()),
        fmt_pct(gov.recovery()),
        met(recovery_ok)
    )?;
    writeln!(
        w,
        "| single-call approval latency | under 45 ms | {} | **{}** | ≤ 2 ms median ({}{}) |",
        latency_cell(&flat),
        latency_cell(&gov),
        met(latency_ok),
        if latency_ok && g_p99 > 2.0 {
            "; p99 above 2 ms"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "| audit-trail completeness | 40% → 100% | {} | **{}** | 100%, log verifies ({}) |",
        fmt_pct(flat.audit()),
        fmt_pct(gov.audit()),
        met(audit_ok)
    )?;
    writeln!(
        w,
        "| *necessary-spend pass rate* (not claimed) | – | {} | **{}** | 100% |",
        fmt_pct(pct(
            flat.necessary_through.usd,
            flat.necessary_attempted.usd
        )),
        fmt_pct(pct(gov.necessary_through.usd, gov.necessary_attempted.usd)),
    )?;
    writeln!(w)?;
    // ---- details
    writeln!(w, "## Unnecessary spend by kind")?;
    writeln!(w)?;
    writeln!(w, "Payments (USD). *Attempted* is the same workload in both passes; *settled* counts what the stub settled and was not refund-requested.")?;
    writeln!(w)?;
    writeln!(
        w,
        "| kind | attempted | settled, flat | settled, governed |"
    )?;
    writeln!(w, "|---|---:|---:|---:|")?;
    for waste in Waste::ALL {
        let get = |f: &Figures, m: fn(&Figures) -> &BTreeMap<Waste, Sum>| {
            m(f).get(&waste).copied().unwrap_or_default()
        };
        writeln!(
            w,
            "| {} | {} | {} | {} |",
            waste.label(),
            fmt_sum(get(&gov, |f| &f.waste_attempted)),
            fmt_sum(get(&flat, |f| &f.waste_settled)),
            fmt_sum(get(&gov, |f| &f.waste_settled)),
        )?;
    }
    let (ga, gs) = gov.waste_totals();
    let (fa, fs) = flat.waste_totals();
    writeln!(
        w,
        "| **all** | {} | {} | {} |",
        fmt_sum(ga),
        fmt_sum(fs),
        fmt_sum(gs)
    )?;
    if fa.usd != ga.usd {
        writeln!(w, "\n**The passes attempted different unnecessary spend: flat {}, governed {}** (errors during a run?).", fmt_sum(fa), fmt_sum(ga))?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "| pass | necessary attempted | necessary reached the merchant | all settled |"
    )?;
    writeln!(w, "|---|---:|---:|---:|")?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "| {} | {} | {} | {} |",
            f.label,
            fmt_sum(f.necessary_attempted),
            fmt_sum(f.necessary_through),
            fmt_sum(f.total_settled)
        )?;
    }
    writeln!(w)?;
    writeln!(w, "Payments refused (`403`), by the rule that decided:")?;
    writeln!(w)?;
    writeln!(w, "| pass | rule | refused |")?;
    writeln!(w, "|---|---|---:|")?;
    for f in [&flat, &gov] {
        if f.denied_by_rule.is_empty() {
            writeln!(w, "| {} | – | 0 |", f.label)?;
        }
        for (rule, sum) in &f.denied_by_rule {
            writeln!(w, "| {} | `{rule}` | {} |", f.label, fmt_sum(*sum))?;
        }
    }
    writeln!(w)?;
    writeln!(w, "## Failed workflows")?;
    writeln!(w)?;
    writeln!(w, "| pass | failed runs | settled steps of their transactions | refund-requested (stub received it and the log says `requested`) | stub received a refund | log `requested` | recovery over all settled spend of failed runs (reads included) |")?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|")?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "| {} | {} {:?} | {} | {} | {} | {} | {} of {} |",
            f.label,
            f.failed_runs,
            f.failed_by_kind,
            fmt_sum(f.failed_tx_settled),
            fmt_sum(f.failed_tx_recovered),
            fmt_sum(f.failed_tx_stub_refunds),
            fmt_sum(f.failed_tx_log_requested),
            fmt_pct(pct(f.failed_tx_recovered.usd, f.failed_all_settled.usd)),
            fmt_sum(f.failed_all_settled),
        )?;
    }
    writeln!(w)?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "* {}: rollback calls answered {:?} (status: count); stub received {} refund requests; {}.",
            f.label, f.rollbacks, f.stub.refunds, f.quiescence
        )?;
    }
    writeln!(w)?;
    writeln!(w, "## Approvals")?;
    writeln!(w)?;
    writeln!(w, "| pass | holds approved | held by | approve returned → request at the stub: p50 / p90 / p99 / max (ms) | arrived before the approve answer was read | approve sent → request at the stub, p50 (ms) |")?;
    writeln!(w, "|---|---:|---|---|---:|---:|")?;
    for f in [&flat, &gov] {
        let ms = f.latency_ms();
        let mut sent: Vec<f64> = f
            .sent_to_arrival_ns
            .iter()
            .map(|n| *n as f64 / 1e6)
            .collect();
        sent.sort_by(f64::total_cmp);
        let negatives = f.latencies_ns.iter().filter(|n| **n < 0).count();
        let cell = if ms.is_empty() {
            "–".to_string()
        } else {
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                percentile(&ms, 0.5),
                percentile(&ms, 0.9),
                percentile(&ms, 0.99),
                ms.last().copied().unwrap_or(f64::NAN)
            )
        };
        writeln!(
            w,
            "| {} | {}{} | {:?} | {} | {} | {} |",
            f.label,
            f.approvals,
            if f.approvals_unjoined > 0 {
                format!(" ({} not found at the stub)", f.approvals_unjoined)
            } else {
                String::new()
            },
            f.holds_by_rule,
            cell,
            negatives,
            if sent.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2}", percentile(&sent, 0.5))
            }
        )?;
    }
    writeln!(w)?;
    writeln!(w, "## Audit trail")?;
    writeln!(w)?;
    writeln!(w, "| pass | `purser traces verify` | log lines by kind | settled at the stub | with an authorizing decision line | … and a `committed` settlement line with the stub's transaction |")?;
    writeln!(w, "|---|---|---|---:|---:|---:|")?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "| {} | {} | {:?} | {} | {} | {} ({}) |",
            f.label,
            if f.log.verified {
                format!("ok ({})", f.log.verify_output.replace('|', "/"))
            } else {
                format!("**FAILED**: {}", f.log.verify_output.replace('|', "/"))
            },
            f.log.kinds,
            f.audit_settled,
            f.audit_decision,
            f.audit_complete,
            fmt_pct(pct(
                Decimal::from(f.audit_complete),
                Decimal::from(f.audit_settled)
            )),
        )?;
    }
    writeln!(w)?;
    for f in [&flat, &gov] {
        let digests: Vec<&str> = f
            .log
            .policy_digests
            .iter()
            .map(|d| &d[..d.len().min(12)])
            .collect();
        writeln!(
            w,
            "* {}: {} phase requests answered {:?}; policy digest(s) in the log {:?}; {} workload errors.",
            f.label,
            f.phase_moves.values().sum::<usize>(),
            f.phase_moves,
            digests,
            f.errors
        )?;
    }
    let checks: Vec<String> = [&flat, &gov]
        .iter()
        .flat_map(|f| f.checks.iter().map(move |c| format!("{}: {c}", f.label)))
        .collect();
    writeln!(w)?;
    if checks.is_empty() {
        writeln!(w, "Cross-checks: the agent's answers, the stub's record and the proof log agree in both passes (every 200 is a settlement and every settlement a payment the workload sent; no digest settled twice; no payment refused by the stub).")?;
    } else {
        writeln!(w, "Cross-checks that failed:")?;
        writeln!(w)?;
        for c in checks {
            writeln!(w, "* {c}")?;
        }
    }
    writeln!(w)?;
    writeln!(w, "## What this does and does not show")?;
    writeln!(w)?;
    writeln!(w, "{CAVEATS}")?;
    writeln!(w)?;
    writeln!(w, "## Definitions")?;
    writeln!(w)?;
    writeln!(w, "{DEFINITIONS}")?;
    print!("{out}");
    if let Some(path) = &args.out {
        std::fs::write(path, &out)?;
    }
    Ok(())
}

const DEFINITIONS: &str = "\
* **Workload** (`findings plan --seed S --runs N` prints it): each run is one session \
(`analyst.rN`). EXPLORE: 2–5 paid reads of distinct sources ($0.01–$0.05); 40% of runs \
re-read 1–3 sources already bought, 5% loop 20–60 times on one, 25% buy a $0.10–$0.30 item \
while exploring. `X-Purser-Phase: DECIDE`; 35% of runs then pay for 1–3 more reads (while \
deciding or among the steps). `X-Purser-Phase: COMMIT`; 2–4 purchases of $0.10–$0.30 in one \
`X-Purser-Transaction`, 30% with a premium purchase of $0.60–$0.95. 20% of runs fail at a \
step after the first: half because the step answers 500 (not settled), half by the agent \
calling `POST /v1/transactions/{id}/rollback` after the step settled. Every paid call is \
a 402 challenge then a v2 `PAYMENT-SIGNATURE` for its exact amount. The human approves \
every hold it is shown.
* **Settled**: in the stub's record (matched by the SHA-256 of the decoded payment, which \
is Purser's `payment_digest`). **Refund-requested**: settled, the stub received a refund \
request naming its receipt transaction, and the proof log has a `compensation` line \
`requested` for its decision.
* **Unnecessary**, known from the plan: duplicate and loop reads, purchases while \
exploring, reads after DECIDE, and the paid steps of a failed run's transaction (unless \
refund-requested; the step that answers 500 is left out, it cannot settle). \
**Reduction** = 1 − unnecessary spend settled and not refund-requested ÷ unnecessary \
spend attempted (sent with a payment).
* **Necessary**: the first read of each needed source and every step of the transaction. \
**Pass rate** = necessary spend that reached the merchant (settled, or the designed 500) \
÷ necessary spend attempted.
* **Failure recovery** = refund-requested ÷ settled spend over the paid steps of failed \
runs' transactions.
* **Approval latency**: the approve call returning (`POST /v1/approvals/{id}/approve`, read \
by the human thread) to the held request reaching the stub, both wall-clock ns on this \
host; a request that arrived before the answer was read counts as 0.
* **Audit completeness** = settled payments with an authorizing decision line (ALLOWED, or \
PENDING_APPROVAL with an approving `hold` line) in a proof log that `purser traces \
verify` accepts ÷ settled payments in the stub's record.
* The flat pass differs only in the policy: no phases (payments allowed from EXPLORE), a \
$3.00 session limit and nothing else (no gates, no threshold, no rules, compensation \
off). Purser still writes its proof log: that is not a policy setting, so the flat \
pass's audit figure is Purser's, not plain logging's.";

const CAVEATS: &str = "\
* The governed policy is written for this workload's shape: research only while exploring, \
purchases only in COMMIT, one snapshot per data source (one tool and one frequency rule \
per source, since Purser has no condition for \"this resource was already paid for in \
this session\"), refunds for failed transactions. The reduction measures how completely \
Purser enforces such a policy on the wire, not how a generic policy would do on waste it \
was not written for. Waste that looks like necessary spend on the wire (an extra purchase \
of the right kind in COMMIT) is not in the workload: no policy could tell it apart.
* The simulated human approves every hold, so approvals never block waste; it only \
times them. The latency is Purser's part only: the human's think time and polling are \
before the approve call.
* Refund-requested is not refunded: the stub acknowledges every request; whether money \
comes back is the merchant's business. The flat pass requests none (no compensation).
* The flat pass still runs through Purser, whose proof log is always written and \
verifies; its audit figure is therefore not the \"plain logging\" baseline of the claim, \
which this bench cannot reproduce without a logger that loses lines.
* Latency is wall-clock time across two processes on one host (the human thread, the \
stub); a request that arrives before the approve answer is read counts as 0 and is listed.";
