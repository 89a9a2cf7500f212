//! Crash recovery: rebuild budgets, phases, frequency windows, known recipients and the
//! replay set from the proof log, so a restart never resets a budget.
//!
//! A payment allowed but never settled in the log comes back `unknown` and stays counted
//! as spent until someone reconciles it; a payment held when Purser stopped never left,
//! so it is dropped.

use super::compensation::RefundJob;
use crate::ledger::{Outcome, UnknownPayment};
use crate::policy::values::parse_phase;
use crate::store::replay::forget_after;
use crate::store::{RecentPayment, Recovered, UnknownDetails};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Payments older than this do not count towards frequency windows after a restart.
const RECENT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What recovery found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecoveryReport {
    pub files: usize,
    pub lines: u64,
    pub unreadable_lines: u64,
    pub committed: u64,
    pub unknown: u64,
    pub released: u64,
    pub dropped_holds: u64,
    pub sessions: usize,
    pub replay_keys: usize,
    pub refunds_resumed: u64,
}

/// Why recovery could not run.
#[derive(Debug, thiserror::Error)]
#[error("cannot replay the proof log {path}: {source}")]
pub struct RecoveryError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default)]
    session: Cow<'a, str>,
    #[serde(borrow, default)]
    agent: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Cow<'a, str>,
    #[serde(borrow, default)]
    decision: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    decision_trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    amount_usd: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pay_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    replay_keys: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    tier: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    host: Option<Cow<'a, str>>,
    #[serde(default)]
    compensation: Option<serde_json::Value>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payment_digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resource_digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    retry_of: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(default)]
    upstream_status: Option<u16>,
}

struct OpenPayment {
    payment: UnknownPayment,
    keys: Vec<String>,
    held: bool,
    /// What the unknown set keeps, should its outcome be (or stay) unknown.
    details: UnknownDetails,
}

#[derive(Default)]
struct Replay {
    open: HashMap<String, OpenPayment>,
    settled: Vec<(String, UnknownPayment, Outcome)>,
    /// Settled as unknown: what the unknown set keeps for each, by decision trace id.
    unknown: Vec<(String, UnknownDetails)>,
    resolutions: Vec<(String, bool)>,
    credits: Vec<(String, String, Decimal)>,
    refunds: HashMap<String, serde_json::Value>,
    phases: HashMap<String, (String, crate::policy::rules::Phase)>,
    recent: HashMap<String, Vec<(jiff::Timestamp, RecentPayment)>>,
    /// Replay keys, each with when it may be forgotten (the line's time plus the
    /// retention: the log does not keep each payment's `validBefore`).
    keys: Vec<(String, u64)>,
    forgotten: Vec<String>,
    report: RecoveryReport,
}

/// The log's files in chain order: rotated ones (`NAME.MICROS`) oldest first, then NAME.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u64, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let file = entry.file_name();
                let Some(file) = file.to_str() else { continue };
                let stamp = file
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(stamp) = stamp {
                    rotated.push((stamp, entry.path()));
                }
            }
        }
    }
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// What the proof log says: the state to rebuild, the refunds to resume, and what was
/// found. The report's `replay_keys` and `sessions` are the store's to count once it is
/// rebuilt.
pub struct Recovery {
    pub state: Recovered,
    pub refunds: Vec<RefundJob>,
    pub report: RecoveryReport,
}

/// Reads the proof log's files, oldest first.
pub fn read(files: &[PathBuf]) -> Result<Recovery, RecoveryError> {
    let mut replay = Replay::default();
    for path in files {
        replay_file(path, &mut replay)?;
        replay.report.files += 1;
    }
    Ok(into_recovery(replay))
}

fn into_recovery(mut replay: Replay) -> Recovery {
    let mut state = Recovered {
        settled: std::mem::take(&mut replay.settled),
        ..Recovered::default()
    };
    for (trace, open) in replay.open.drain() {
        if open.held {
            // A payment held when Purser stopped never left.
            replay.report.dropped_holds += 1;
            replay.forgotten.extend(open.keys);
            continue;
        }
        replay.report.unknown += 1;
        let mut details = open.details;
        details.why = Some("Purser stopped before the payment's answer was settled".into());
        state.unsettled.push((trace, open.payment, details));
    }
    state.unknown = std::mem::take(&mut replay.unknown);
    state.resolutions = std::mem::take(&mut replay.resolutions);
    state.credits = std::mem::take(&mut replay.credits);
    let forgotten: std::collections::HashSet<String> = replay.forgotten.drain(..).collect();
    state.replay_keys = replay
        .keys
        .drain(..)
        .filter(|(key, _)| !forgotten.contains(key))
        .collect();
    state.phases = replay
        .phases
        .drain()
        .map(|(session, (agent, phase))| (session, agent, phase))
        .collect();
    let now = jiff::Timestamp::now();
    let instant_now = Instant::now();
    for (session, payments) in replay.recent.drain() {
        let agent = session.split('.').next().unwrap_or("").to_string();
        let kept: Vec<RecentPayment> = payments
            .into_iter()
            .filter_map(|(at, mut payment)| {
                let age = now.duration_since(at).unsigned_abs();
                (age <= RECENT_WINDOW).then(|| {
                    payment.at = instant_now.checked_sub(age).unwrap_or(instant_now);
                    payment
                })
            })
            .collect();
        state.recent.push((session, agent, kept));
    }
    let refunds = replay
        .refunds
        .drain()
        .filter_map(|(_, job)| serde_json::from_value::<RefundJob>(job).ok())
        .collect();
    Recovery {
        state,
        refunds,
        report: replay.report,
    }
}

fn replay_file(path: &Path, replay: &mut Replay) -> Result<(), RecoveryError> {
    let error = |source| RecoveryError {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(error)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer).map_err(error)? == 0 {
            break;
        }
        replay.report.lines += 1;
        // A crash mid-write can cut a line inside a multi-byte character; such a line is
        // unreadable like any other torn line, not a reason to refuse to start.
        let line = std::str::from_utf8(&buffer)
            .ok()
            .and_then(|text| serde_json::from_str::<Line<'_>>(text.trim_end()).ok());
        match line {
            Some(line) => replay_line(line, replay),
            None => replay.report.unreadable_lines += 1,
        }
    }
    Ok(())
}

fn replay_line(line: Line<'_>, replay: &mut Replay) {
    match line.kind.as_ref() {
        "decision" => replay_decision(line, replay),
        "hold" => {
            let Some(decision) = line.decision_trace_id.as_deref() else {
                return;
            };
            let approved = line.decision.as_deref() == Some("ALLOWED");
            if approved {
                if let Some(open) = replay.open.get_mut(decision) {
                    open.held = false;
                }
            } else if let Some(open) = replay.open.remove(decision) {
                replay.forgotten.extend(open.keys);
            }
        }
        "settlement" => {
            let Some(decision) = line.decision_trace_id.as_deref() else {
                return;
            };
            let Some(open) = replay.open.remove(decision) else {
                return;
            };
            let outcome = match line.outcome.as_deref() {
                Some("committed") => Outcome::Committed,
                Some("unknown") => Outcome::Unknown,
                _ => Outcome::Released,
            };
            match outcome {
                Outcome::Committed => replay.report.committed += 1,
                Outcome::Released => replay.report.released += 1,
                Outcome::Unknown => replay.report.unknown += 1,
            }
            if outcome == Outcome::Unknown {
                let mut details = open.details;
                details.since = line.time.to_string();
                details.why = line.reason.as_deref().map(str::to_string);
                details.upstream_status = line.upstream_status;
                replay.unknown.push((decision.to_string(), details));
            }
            if outcome != Outcome::Released {
                replay
                    .settled
                    .push((decision.to_string(), open.payment, outcome));
            }
        }
        "resolution" => {
            if let Some(decision) = line.decision_trace_id.as_deref() {
                replay.resolutions.push((
                    decision.to_string(),
                    line.outcome.as_deref() == Some("committed"),
                ));
            }
        }
        "compensation" => replay_compensation(line, replay),
        "phase" => {
            if let Some(phase) = line.phase.as_deref().and_then(parse_phase) {
                replay
                    .phases
                    .insert(line.session.to_string(), (line.agent.to_string(), phase));
            }
        }
        _ => {}
    }
}

/// Refunds queued but never finished are resumed; finished ones that credited the budget
/// credit it again.
fn replay_compensation(line: Line<'_>, replay: &mut Replay) {
    let Some(details) = line.compensation else {
        return;
    };
    let Some(id) = details
        .get("refund_id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
    else {
        return;
    };
    match line.outcome.as_deref() {
        Some("pending") => {
            if let Some(job) = details.get("job") {
                replay.refunds.insert(id, job.clone());
            }
        }
        Some(outcome) => {
            replay.refunds.remove(&id);
            let credited = details.get("credited").and_then(|c| c.as_bool()) == Some(true);
            let amount = line
                .amount_usd
                .as_deref()
                .and_then(|a| Decimal::from_str(a).ok())
                .filter(|a| !a.is_sign_negative() && *a <= crate::x402::max_payment_usd());
            if let (true, "requested", Some(amount)) = (credited, outcome, amount) {
                replay
                    .credits
                    .push((line.session.to_string(), line.agent.to_string(), amount));
            }
        }
        None => {}
    }
}

fn replay_decision(line: Line<'_>, replay: &mut Replay) {
    let held = match line.decision.as_deref() {
        Some("ALLOWED") => false,
        Some("PENDING_APPROVAL") => true,
        _ => return,
    };
    // A retry reserved nothing: its amount, keys and frequency were its original's.
    if line.retry_of.is_some() {
        return;
    }
    // Bounded as live pricing bounds it: an amount no payment could have cannot be
    // summed into the ledger (a hostile or corrupt log must not overflow it).
    let Some(amount) = line
        .amount_usd
        .as_deref()
        .and_then(|a| Decimal::from_str(a).ok())
        .filter(|a| !a.is_sign_negative() && *a <= crate::x402::max_payment_usd())
    else {
        return;
    };
    let keys: Vec<String> = line.replay_keys.iter().map(|k| k.to_string()).collect();
    let time = line.time.parse::<jiff::Timestamp>().ok();
    let seen = time.map_or(0, |at| at.as_second().max(0) as u64);
    let until = forget_after(None, seen);
    replay
        .keys
        .extend(keys.iter().map(|key| (key.clone(), until)));
    if let Some(at) = time {
        let recent = RecentPayment {
            at: Instant::now(),
            tier: line.tier.as_deref().map(str::to_string),
            tool: line.tool.as_deref().map(str::to_string),
            category: line.category.as_deref().map(str::to_string),
            host: line.host.as_deref().unwrap_or("").to_string(),
            port: 443,
        };
        replay
            .recent
            .entry(line.session.to_string())
            .or_default()
            .push((at, recent));
    }
    let payment = UnknownPayment {
        session: line.session.to_string(),
        agent: line.agent.to_string(),
        amount,
        pay_to: crate::x402::normalize_address(line.pay_to.as_deref().unwrap_or("")),
    };
    let text = |field: &Option<Cow<'_, str>>| field.as_deref().unwrap_or("").to_string();
    let details = UnknownDetails {
        session: line.session.to_string(),
        agent: line.agent.to_string(),
        since: line.time.to_string(),
        method: text(&line.method),
        host: text(&line.host),
        path: text(&line.path),
        payment_digest: line.payment_digest.as_deref().map(str::to_string),
        resource: line.resource_digest.as_deref().map(str::to_string),
        keys: keys.clone(),
        why: None,
        upstream_status: None,
    };
    replay.open.insert(
        line.trace_id.to_string(),
        OpenPayment {
            payment,
            keys,
            held,
            details,
        },
    );
}
