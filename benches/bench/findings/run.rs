//! One pass of the findings workload through Purser: the runs in flight, each paying
//! through x402 exchanges and moving its phases, and the human approving every hold.

use super::plan::{plan_run, Action, Outcome, PaymentRecord, RunRecord};
use super::FindingsArgs;
use http::header::HeaderValue;
use http::{Method, StatusCode};
use purser_kit::admin::{console, Admin, Answered};
use purser_kit::client::{basic, Answer, Conn};
use purser_kit::merchant::{unix_ns, Merchant};
use purser_kit::x402::{Pay, FAR_FUTURE};
use purser_kit::Error;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a pass sends its traffic, and as whom.
pub(super) struct Target {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub stub: SocketAddr,
    pub agent: String,
    pub token: String,
}

/// What one pass sent and saw (`workload.json`).
#[derive(Serialize, Deserialize)]
pub(super) struct WorkloadFile {
    pub label: String,
    pub seed: u64,
    pub runs: u32,
    pub concurrency: usize,
    pub think_ms: u64,
    pub started_unix_ns: u64,
    pub finished_unix_ns: u64,
    /// How the wait for refunds ended.
    pub quiescence: String,
    pub run_records: Vec<RunRecord>,
    pub payments: Vec<PaymentRecord>,
    /// Every hold the human approved, as listed, and the approve call's times.
    pub approvals: Vec<Answered>,
}

const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// One run's agent: its session's credentials and keep-alive connection to Purser.
struct Agent<'a> {
    target: &'a Target,
    conn: Conn,
    auth: HeaderValue,
}

impl Agent<'_> {
    /// A `GET` of the stub's `path` through Purser, with `extra` headers.
    async fn send(&mut self, path: &str, extra: &[(&str, &str)]) -> Result<Answer, Error> {
        let url = format!("http://{}{path}", self.target.stub);
        self.conn
            .get_through(&url, &self.auth, extra, ANSWER_WITHIN)
            .await
    }

    /// One paid call: the 402, then the payment an x402 client signs for the challenge's
    /// first offer (the plan's nonce, a signature derived from run and payment). Why it
    /// went wrong, if it did, is the outcome's `error`.
    async fn pay(&mut self, record: &mut PaymentRecord, transaction: &str) -> Outcome {
        let mut outcome = Outcome::default();
        let mut extra = Vec::new();
        if record.in_transaction {
            extra.push(("x-purser-transaction", transaction));
        }
        let challenge = match self.send(&record.path, &extra).await {
            Ok(answer) => {
                outcome.probe_status = Some(answer.status.as_u16());
                let Some(challenge) = answer.challenge() else {
                    let status = answer.status;
                    outcome.error = Some(format!("probe answered {status} without a challenge"));
                    return outcome;
                };
                challenge
            }
            Err(e) => {
                outcome.error = Some(format!("probe: {e}"));
                return outcome;
            }
        };
        let offer = challenge.accepts[0].clone();
        if offer.amount != record.amount_atomic.to_string() {
            let (asked, planned) = (&offer.amount, record.amount_atomic);
            outcome.error = Some(format!("challenge asks {asked}, the plan says {planned}"));
            return outcome;
        }
        let tag = format!("{:08x}{:08x}", record.run, record.seq);
        let payment = Pay::offer(offer)
            .nonce(record.nonce.clone())
            .signature(format!("0x{tag}{}", "ab".repeat(65 - tag.len() / 2)))
            .valid_before(FAR_FUTURE)
            .resource(challenge.resource);
        let (header, digest) = payment.header_and_digest();
        record.digest = digest;
        extra.push(("payment-signature", &header));
        outcome.paid_sent = true;
        match self.send(&record.path, &extra).await {
            Ok(answer) => {
                outcome.status = Some(answer.status.as_u16());
                outcome.decision = answer.header("x-purser-decision");
                outcome.trace_id = answer.header("x-purser-trace");
                if answer.status == StatusCode::FORBIDDEN {
                    outcome.rule = answer.json()["rule"].as_str().map(str::to_string);
                }
            }
            Err(e) => outcome.error = Some(format!("paid request: {e}")),
        }
        outcome
    }
}

/// One run's actions in order: its payments, phase moves and rollback.
async fn execute_run(
    target: &Target,
    mut record: RunRecord,
    actions: Vec<Action>,
) -> (RunRecord, Vec<PaymentRecord>) {
    let (agent, token) = (&target.agent, &target.token);
    let auth = basic(&format!("{agent}.{}:{token}", record.session));
    let mut agent = Agent {
        target,
        conn: Conn::new(target.proxy),
        auth,
    };
    let mut payments = Vec::new();
    for action in actions {
        match action {
            Action::Pay(mut payment) => {
                let outcome = agent.pay(&mut payment, &record.transaction).await;
                if let Some(e) = &outcome.error {
                    record.errors.push(format!("payment {}: {e}", payment.seq));
                }
                payment.outcome = Some(outcome);
                payments.push(*payment);
            }
            Action::Phase(phase) => {
                let path = format!("/plan/r{}/{}", record.run, phase.to_ascii_lowercase());
                match agent.send(&path, &[("x-purser-phase", phase)]).await {
                    Ok(answer) => {
                        let moved = (phase.to_string(), answer.status.as_u16());
                        record.phase_moves.push(moved);
                    }
                    Err(e) => record.errors.push(format!("phase {phase}: {e}")),
                }
            }
            Action::Rollback => {
                let path = format!("/v1/transactions/{}/rollback", record.transaction);
                match Admin::new(target.admin)
                    .call(Method::POST, &path, None)
                    .await
                {
                    Ok(answer) => {
                        let body = String::from_utf8_lossy(&answer.body).into_owned();
                        record.rollback = Some((answer.status.as_u16(), body));
                    }
                    Err(e) => record.errors.push(format!("rollback: {e}")),
                }
            }
        }
    }
    (record, payments)
}

/// The human at the console: approves every hold it is shown, `think` after seeing it.
/// Runs on its own thread, so its clock readings are not delayed by the runs.
fn human(
    admin: SocketAddr,
    think: Duration,
    poll: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Vec<Answered>, String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let approve = |hold: &Value| {
            let digest = hold["digest"].as_str().unwrap_or_default();
            ("approve", json!({"by": "findings-human", "digest": digest}))
        };
        let (answered, errors) = runtime.block_on(console(admin, poll, think, &stop, approve));
        match errors.first() {
            Some(e) => Err(e.clone()),
            None => Ok(answered),
        }
    })
}

/// Waits for the refunds Purser owes (one per settled step of a failed transaction): how
/// the wait ended.
async fn await_refunds(merchant: &Merchant, payments: &[PaymentRecord], settle_ms: u64) -> String {
    let expected = payments
        .iter()
        .filter(|p| p.failed_run && p.in_transaction)
        .filter(|p| p.outcome.as_ref().and_then(|o| o.status) == Some(200))
        .count();
    let waited = Instant::now();
    let mut last = (usize::MAX, Instant::now());
    loop {
        let refunds = merchant.record().refunds.len();
        let said = format!(
            "{refunds} refund requests for {expected} settled steps of failed transactions"
        );
        if refunds >= expected {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return said;
        }
        if refunds != last.0 {
            last = (refunds, Instant::now());
        } else if last.1.elapsed() >= Duration::from_millis(settle_ms) {
            return format!("{said} (no change for {settle_ms} ms)");
        }
        if waited.elapsed() > Duration::from_secs(120) {
            return format!("gave up after 120 s: {refunds} refund requests of {expected}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The workload's runs through Purser, `--concurrency` at a time, on one thread.
pub(super) fn run(
    args: &FindingsArgs,
    target: Target,
    label: &str,
    merchant: &Merchant,
) -> Result<WorkloadFile, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let think = Duration::from_millis(args.think_ms);
    let human = human(
        target.admin,
        think,
        Duration::from_millis(args.poll_ms),
        stop.clone(),
    );
    let started_unix_ns = unix_ns();
    let started = Instant::now();
    let target = Arc::new(target);
    type Results = Vec<Option<(RunRecord, Vec<PaymentRecord>)>>;
    let results: Arc<Mutex<Results>> = Arc::new(Mutex::new((0..args.runs).map(|_| None).collect()));
    runtime.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..args.concurrency.max(1))
            .map(|_| {
                let (target, next, results) = (target.clone(), next.clone(), results.clone());
                let (seed, runs) = (args.seed, args.runs);
                tokio::spawn(async move {
                    loop {
                        let run = next.fetch_add(1, Ordering::Relaxed);
                        if run >= runs as usize {
                            return;
                        }
                        let (record, actions) = plan_run(seed, run as u32);
                        let done = execute_run(&target, record, actions).await;
                        results.lock().unwrap()[run] = Some(done);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await?;
        }
        Ok::<_, Error>(())
    })?;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    let approvals = human.join().map_err(|_| "the human thread panicked")?;
    let approvals = approvals.map_err(|e| format!("human: {e}"))?;
    let mut run_records = Vec::new();
    let mut payments = Vec::new();
    for (run, result) in results.lock().unwrap().drain(..).enumerate() {
        let (record, p) = result.ok_or_else(|| format!("run {run} did not finish"))?;
        run_records.push(record);
        payments.extend(p);
    }
    let quiescence = runtime.block_on(await_refunds(merchant, &payments, args.settle_ms));
    let errors: usize = run_records.iter().map(|r| r.errors.len()).sum();
    eprintln!(
        "findings[{label}]: {} runs, {} payments in {:.1}s; {} approvals; {errors} errors; {quiescence}",
        args.runs,
        payments.len(),
        elapsed.as_secs_f64(),
        approvals.len()
    );
    for record in run_records.iter().filter(|r| !r.errors.is_empty()).take(5) {
        eprintln!("findings[{label}]: run {}: {:?}", record.run, record.errors);
    }
    Ok(WorkloadFile {
        label: label.to_string(),
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
    })
}
