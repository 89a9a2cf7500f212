//! The soak's run on one thread: the connections sending the mix ([`super::traffic`]),
//! the approver at the console, the sampler of Purser's resources and the reloader of
//! its policy.

use super::traffic;
use super::{Class, ClassStats, ReloadEvent, RunFile, Sent, SoakArgs};
use crate::stage::Stage;
use http::Method;
use purser_kit::admin::{console, Admin, Answered};
use purser_kit::merchant::Record;
use purser_kit::process::{sample, signal, Sample};
use purser_kit::x402::sha256_hex;
use purser_kit::Error;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) struct Ctx {
    pub args: SoakArgs,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub stub: SocketAddr,
    pub pid: u32,
    pub policy: PathBuf,
    pub run: u64,
    pub start: Instant,
    pub end: Instant,
    pub stop: AtomicBool,
    pub next_op: AtomicU64,
    pub next_payment: AtomicU64,
    pub next_path: AtomicU64,
    /// Digests of held payments sent and not yet approved.
    pub held_digests: Mutex<HashSet<String>>,
    /// What the connections sent and saw, all together.
    pub tally: Mutex<Tally>,
}

impl Ctx {
    pub(super) fn t_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// What the connections sent and saw.
#[derive(Default)]
pub(super) struct Tally {
    pub requests: u64,
    pub classes: BTreeMap<Class, ClassStats>,
    pub payments: Vec<Sent>,
    pub reconnects: u64,
}

impl Tally {
    pub(super) fn count(
        &mut self,
        class: Class,
        status: u16,
        code: Option<&str>,
        problem: Option<String>,
    ) {
        self.requests += 1;
        let stats = self.classes.entry(class).or_default();
        stats.sent += 1;
        let key = match status {
            0 => "no answer".to_string(),
            status => status.to_string(),
        };
        *stats.statuses.entry(key).or_default() += 1;
        if let Some(code) = code {
            *stats.codes.entry(code.to_string()).or_default() += 1;
        }
        if let Some(problem) = problem {
            stats.unexpected += 1;
            if stats.examples.len() < 5 {
                stats.examples.push(problem);
            }
        }
    }
}

/// The human at the console: approves every hold whose digest the driver sent as a held
/// payment, denies (and reports) any other. What it answered, and failed listings.
async fn approver(ctx: Arc<Ctx>, stop: Arc<AtomicBool>) -> (Vec<Answered>, Vec<String>) {
    let poll = Duration::from_millis(ctx.args.poll_ms);
    let verdict = |hold: &Value| {
        let digest = hold["digest"].as_str().unwrap_or_default();
        match ctx.held_digests.lock().unwrap().remove(digest) {
            true => ("approve", json!({"by": "soak-approver", "digest": digest})),
            false => {
                let reason = "not a payment the soak held";
                ("deny", json!({"by": "soak-approver", "reason": reason}))
            }
        }
    };
    console(ctx.admin, poll, Duration::ZERO, &stop, verdict).await
}

/// Samples Purser's resources every `--sample-every` seconds, and prints progress at
/// the first sample of each minute.
async fn sampler(ctx: Arc<Ctx>) -> Vec<Sample> {
    let every = Duration::from_secs(ctx.args.sample_every.max(1));
    let mut samples: Vec<Sample> = Vec::new();
    let mut at = ctx.start;
    loop {
        let s = sample(ctx.pid, ctx.start.elapsed().as_secs_f64());
        let minute = |s: &Sample| (s.t_s / 60.0) as u64;
        if samples.last().is_some_and(|last| minute(last) < minute(&s)) {
            let ops = ctx.next_op.load(Ordering::Relaxed);
            let payments = ctx.next_payment.load(Ordering::Relaxed);
            let (t, rss, alive) = (s.t_s, s.rss_kb as f64 / 1024.0, s.alive);
            eprintln!(
                "soak: t={t:.0}s ops={ops} payments={payments} rss={rss:.1} MiB alive={alive}"
            );
        }
        samples.push(s);
        at += every;
        if at > ctx.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
    }
    // The last sample, at the end of the traffic.
    tokio::time::sleep_until(ctx.end.into()).await;
    if samples
        .last()
        .is_some_and(|s| s.t_s + 0.5 < ctx.args.duration as f64)
    {
        samples.push(sample(ctx.pid, ctx.start.elapsed().as_secs_f64()));
    }
    samples
}

/// Writes generation `n` of the policy file (atomically) and returns its digest.
fn write_generation(path: &Path, base: &str, generation: u64) -> Result<String, Error> {
    let text = format!("{base}\n# soak generation {generation}\n");
    let tmp = path.with_extension(format!("gen{generation}.tmp"));
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, path)?;
    Ok(sha256_hex(text.as_bytes()))
}

async fn reloader(ctx: Arc<Ctx>, base: String) -> Vec<ReloadEvent> {
    let half = Duration::from_secs_f64(ctx.args.reload_every as f64 / 2.0);
    let mut events = Vec::new();
    let mut admin = Admin::new(ctx.admin);
    for generation in 1u64.. {
        let at = ctx.start + half * generation as u32;
        if at + Duration::from_secs(1) >= ctx.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let via = if generation % 2 == 0 { "api" } else { "sighup" };
        let mut event = ReloadEvent {
            t_s: ctx.start.elapsed().as_secs_f64(),
            via: via.to_string(),
            generation,
            digest: String::new(),
            status: None,
            answered_digest: None,
            error: None,
        };
        match write_generation(&ctx.policy, &base, generation) {
            Ok(digest) => event.digest = digest,
            Err(e) => event.error = Some(format!("writing the policy: {e}")),
        }
        if event.error.is_none() && via == "api" {
            match admin.call(Method::POST, "/v1/policy/reload", None).await {
                Ok(a) => {
                    event.status = Some(a.status.as_u16());
                    event.answered_digest = a.json()["digest"].as_str().map(str::to_string);
                }
                Err(e) => event.error = Some(e.to_string()),
            }
        } else if event.error.is_none() {
            let pid = ctx.pid;
            let sent = tokio::task::spawn_blocking(move || signal(pid, "HUP")).await;
            event.error = match sent {
                Ok(result) => result.err(),
                Err(e) => Some(format!("kill -HUP: {e}")),
            };
        }
        events.push(event);
    }
    events
}

/// The traffic, on a runtime of one thread (Purser gets the rest of the box); then what
/// was sent and seen, Purser's sessions and the stub's record.
pub(super) fn drive(
    args: &SoakArgs,
    stage: &Stage,
    policy: &Path,
) -> Result<(RunFile, Value, Record), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = std::fs::read_to_string(policy)?;
    // Generation 0 is the file as Purser loaded it.
    let base_policy_digest = sha256_hex(base.as_bytes());
    let started_unix_ms = purser_kit::merchant::unix_ns() / 1_000_000;
    let start = Instant::now() + Duration::from_millis(100);
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        proxy: stage.purser.proxy,
        admin: stage.purser.admin,
        stub: stage.stub,
        pid: stage.purser.child.id(),
        policy: policy.to_path_buf(),
        run: (started_unix_ms << 16) ^ u64::from(std::process::id()),
        start,
        end: start + Duration::from_secs(args.duration),
        stop: AtomicBool::new(false),
        next_op: AtomicU64::new(0),
        next_payment: AtomicU64::new(0),
        next_path: AtomicU64::new(0),
        held_digests: Mutex::new(HashSet::new()),
        tally: Mutex::new(Tally::default()),
    });
    runtime.block_on(async move {
        let approver_stop = Arc::new(AtomicBool::new(false));
        let approver_task = tokio::spawn(approver(ctx.clone(), approver_stop.clone()));
        let sampler_task = tokio::spawn(sampler(ctx.clone()));
        let reloader_task = tokio::spawn(reloader(ctx.clone(), base.trim_end().to_string()));
        let workers: Vec<_> = (0..args.conns)
            .map(|i| tokio::spawn(traffic::worker(ctx.clone(), i)))
            .collect();
        let mut errors = Vec::new();
        for w in workers {
            if let Err(e) = w.await {
                errors.push(format!("a connection task failed: {e}"));
            }
        }
        let mut tally = std::mem::take(&mut *ctx.tally.lock().unwrap());
        let traffic_s = ctx.start.elapsed().as_secs_f64();
        ctx.stop.store(true, Ordering::Release);
        approver_stop.store(true, Ordering::Release);
        let (approvals, list_errors) = approver_task.await?;
        errors.extend(list_errors);
        let samples = sampler_task.await?;
        let reloads = reloader_task.await?;
        eprintln!(
            "soak: traffic done after {traffic_s:.1}s: {} requests, {} payments, {} holds answered",
            tally.requests,
            tally.payments.len(),
            approvals.len()
        );
        // Snapshots: what is still held, the ledger, the facilitator's record.
        let mut admin = Admin::new(ctx.admin);
        let pending_holds_at_end = admin.holds().await?.len();
        let sessions = admin.get_json("/v1/sessions").await.unwrap_or_else(|e| {
            errors.push(e.to_string());
            Value::Null
        });
        tally.payments.sort_by_key(|p| p.t_ms);
        let run = RunFile {
            started_unix_ms,
            duration_s: args.duration,
            traffic_s,
            rate: args.rate,
            conns: args.conns,
            agent: args.agent.clone(),
            requests: tally.requests,
            reconnects: tally.reconnects,
            classes: tally.classes,
            payments: tally.payments,
            samples,
            reloads,
            base_policy_digest,
            approvals,
            pending_holds_at_end,
            errors,
        };
        Ok((run, sessions, stage.merchant.record()))
    })
}
