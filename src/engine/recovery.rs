//! Crash recovery: rebuild budgets, phases, frequency windows, known recipients and the
//! replay set from the proof log, so a restart never resets a budget.
//!
//! A payment allowed but never settled in the log comes back `unknown` and stays counted
//! as spent until someone reconciles it; a payment held when Purser stopped never left,
//! so it is dropped.

use super::compensation::RefundJob;
use crate::ledger::{Outcome, UnknownPayment};
use crate::policy::{Phase, SessionId};
use crate::store::replay::forget_after;
use crate::store::{RecentPayment, Recovered, UnknownDetails};
use crate::trace::{self, Kind, TraceRecord, Verdict};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
    phases: HashMap<SessionId, Phase>,
    recent: HashMap<SessionId, Vec<(jiff::Timestamp, RecentPayment)>>,
    /// Replay keys, each with when it may be forgotten (the line's time plus the
    /// retention: the log does not keep each payment's `validBefore`).
    keys: Vec<(String, u64)>,
    forgotten: Vec<String>,
    report: RecoveryReport,
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
        .map(|(session, phase)| (session.to_string(), session.agent().to_string(), phase))
        .collect();
    let now = jiff::Timestamp::now();
    let instant_now = Instant::now();
    for (session, payments) in replay.recent.drain() {
        let agent = session.agent().to_string();
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
        state.recent.push((session.into(), agent, kept));
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
            .and_then(|text| TraceRecord::from_line(text.trim_end()).ok());
        match line {
            Some(line) => replay_line(line, replay),
            None => replay.report.unreadable_lines += 1,
        }
    }
    Ok(())
}

fn replay_line(line: TraceRecord, replay: &mut Replay) {
    match line.kind {
        Kind::Decision => replay_decision(line, replay),
        Kind::Hold => {
            let Some(decision) = line.decision_trace_id.as_deref() else {
                return;
            };
            if line.decision == Some(Verdict::Allowed) {
                if let Some(open) = replay.open.get_mut(decision) {
                    open.held = false;
                }
            } else if let Some(open) = replay.open.remove(decision) {
                replay.forgotten.extend(open.keys);
            }
        }
        Kind::Settlement => replay_settlement(line, replay),
        Kind::Resolution => {
            if let Some(decision) = line.decision_trace_id {
                let committed = line.outcome == Some(trace::Outcome::Committed);
                replay.resolutions.push((decision, committed));
            }
        }
        Kind::Compensation => replay_compensation(line, replay),
        Kind::Phase => {
            if let Some(phase) = line.phase {
                replay.phases.insert(line.session, phase);
            }
        }
        Kind::Summary => {}
    }
}

/// A forwarded payment's answer: committed and unknown stay counted, released does not.
fn replay_settlement(line: TraceRecord, replay: &mut Replay) {
    let Some(decision) = line.decision_trace_id else {
        return;
    };
    let Some(open) = replay.open.remove(&decision) else {
        return;
    };
    let outcome = match line.outcome {
        Some(trace::Outcome::Committed) => Outcome::Committed,
        Some(trace::Outcome::Unknown) => Outcome::Unknown,
        _ => Outcome::Released,
    };
    match outcome {
        Outcome::Committed => replay.report.committed += 1,
        Outcome::Released => replay.report.released += 1,
        Outcome::Unknown => replay.report.unknown += 1,
    }
    if outcome == Outcome::Unknown {
        let mut details = open.details;
        details.since = line.time;
        details.why = line.reason;
        details.upstream_status = line.upstream_status;
        replay.unknown.push((decision.clone(), details));
    }
    let mut payment = open.payment;
    // An `upto` payment commits what was charged, which its settlement line carries; a
    // line can lower what its decision reserved, never raise it.
    if let (Outcome::Committed, Some(charged)) = (outcome, line.amount_usd.filter(|a| payable(*a)))
    {
        payment.amount = payment.amount.min(charged);
    }
    if outcome != Outcome::Released {
        replay.settled.push((decision, payment, outcome));
    }
}

/// Refunds queued but never finished are resumed; finished ones that credited the budget
/// credit it again.
fn replay_compensation(line: TraceRecord, replay: &mut Replay) {
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
    match line.outcome {
        Some(trace::Outcome::Pending) => {
            if let Some(job) = details.get("job") {
                replay.refunds.insert(id, job.clone());
            }
        }
        Some(outcome) => {
            replay.refunds.remove(&id);
            let credited = details.get("credited").and_then(|c| c.as_bool()) == Some(true);
            let amount = line.amount_usd.filter(|a| payable(*a));
            if let (true, trace::Outcome::Requested, Some(amount)) = (credited, outcome, amount) {
                replay
                    .credits
                    .push((line.session.to_string(), line.agent, amount));
            }
        }
        None => {}
    }
}

/// Bounded as live pricing bounds it: an amount no payment could have cannot be summed
/// into the ledger (a hostile or corrupt log must not overflow it).
fn payable(amount: Decimal) -> bool {
    !amount.is_sign_negative() && amount <= crate::x402::max_payment_usd()
}

fn replay_decision(line: TraceRecord, replay: &mut Replay) {
    let held = match line.decision {
        Some(Verdict::Allowed) => false,
        Some(Verdict::PendingApproval) => true,
        _ => return,
    };
    // A retry reserved nothing: its amount, keys and frequency were its original's.
    if line.retry_of.is_some() {
        return;
    }
    let Some(amount) = line.amount_usd.filter(|a| payable(*a)) else {
        return;
    };
    let keys = line.replay_keys;
    let time = line.time.parse::<jiff::Timestamp>().ok();
    let seen = time.map_or(0, |at| at.as_second().max(0) as u64);
    let until = forget_after(None, seen);
    replay
        .keys
        .extend(keys.iter().map(|key| (key.clone(), until)));
    if let Some(at) = time {
        let recent = RecentPayment {
            at: Instant::now(),
            tier: line.tier,
            tool: line.tool,
            category: line.category,
            host: line.host.clone().unwrap_or_default(),
            port: 443,
        };
        replay
            .recent
            .entry(line.session.clone())
            .or_default()
            .push((at, recent));
    }
    let payment = UnknownPayment {
        session: line.session.to_string(),
        agent: line.agent.clone(),
        amount,
        pay_to: crate::x402::normalize_address(line.pay_to.as_deref().unwrap_or("")),
    };
    let details = UnknownDetails {
        session: line.session.into(),
        agent: line.agent,
        since: line.time,
        method: line.method.unwrap_or_default(),
        host: line.host.unwrap_or_default(),
        path: line.path.unwrap_or_default(),
        payment_digest: line.payment_digest,
        resource: line.resource_digest,
        keys: keys.clone(),
        why: None,
        upstream_status: None,
        onchain: line.onchain,
    };
    replay.open.insert(
        line.trace_id,
        OpenPayment {
            payment,
            keys,
            held,
            details,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log written before trace records were typed (see `trace::record`'s tests).
    fn written_before() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/trace/testdata/lines-v0.1.0.jsonl")
    }

    #[test]
    fn a_log_written_before_typed_records_reads_back_into_the_same_state() {
        let Recovery {
            state,
            refunds,
            report,
        } = read(&[written_before()]).unwrap();
        assert_eq!((report.lines, report.unreadable_lines), (30, 0));
        assert_eq!(
            (report.committed, report.unknown, report.released),
            (2, 3, 1)
        );
        assert_eq!(report.dropped_holds, 0);
        let usd = |text: &str| text.parse::<Decimal>().unwrap();
        let mut settled: Vec<(String, Decimal, Outcome)> = state
            .settled
            .iter()
            .map(|(_, payment, outcome)| (payment.session.clone(), payment.amount, *outcome))
            .collect();
        settled.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            settled,
            [
                ("agent.hdr".into(), usd("0.01"), Outcome::Unknown),
                ("agent.hold".into(), usd("0.6"), Outcome::Unknown),
                ("agent.tx".into(), usd("0.05"), Outcome::Committed),
                ("agent.unk".into(), usd("0.25"), Outcome::Unknown),
                ("agent.v1".into(), usd("0.02"), Outcome::Committed),
            ]
        );
        assert!(
            state.unsettled.is_empty(),
            "every payment that left settled"
        );
        assert_eq!(
            state.resolutions.len(),
            1,
            "agent.hdr resolved as committed"
        );
        assert!(state.resolutions[0].1);
        assert_eq!(
            state.credits,
            [("agent.tx".to_string(), "agent".to_string(), usd("0.05"))]
        );
        assert!(
            refunds.is_empty(),
            "the refund was requested: nothing to resume"
        );
        let mut phases = state.phases.clone();
        phases.sort();
        assert_eq!(phases.len(), 6);
        assert!(phases
            .iter()
            .all(|(session, agent, phase)| session.starts_with("agent.")
                && agent == "agent"
                && *phase == Phase::Commit));
        assert_eq!(
            state.replay_keys.len(),
            12,
            "two keys for each payment that left"
        );
    }
}
