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
use crate::trace::{self, Kind, ReplayView, Verdict};
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Payments older than this do not count towards frequency windows after a restart.
const RECENT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How much of the log is read at a time (a line longer than this grows the buffer).
const READ_CHUNK: usize = 1 << 20;

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
    for_each_line(file, READ_CHUNK, |line| {
        replay.report.lines += 1;
        // A crash mid-write can cut a line inside a multi-byte character; such a line is
        // unreadable like any other torn line, not a reason to refuse to start. (The line
        // is checked as UTF-8 once, which is cheaper than string by string; JSON allows
        // the `\r` or spaces a hand edit may leave at its end.)
        let view = std::str::from_utf8(line)
            .ok()
            .and_then(|text| ReplayView::from_line(text).ok());
        match view {
            Some(view) => replay_line(view, replay),
            None => replay.report.unreadable_lines += 1,
        }
    })
    .map_err(error)
}

/// Calls `each` with every line of `source` (without its newline; the last one may lack
/// it), parsed in place from a large buffer: a log of a million lines is read without
/// copying each line out first.
fn for_each_line(
    mut source: impl Read,
    chunk: usize,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; chunk.max(1)];
    // Bytes at the front of `buffer` that belong to a line not yet complete.
    let mut carried = 0;
    loop {
        if carried == buffer.len() {
            // One line longer than the buffer: make room for the rest of it.
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = match source.read(&mut buffer[carried..]) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if read == 0 {
            if carried > 0 {
                each(&buffer[..carried]);
            }
            return Ok(());
        }
        let filled = carried + read;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buffer[carried..filled]) {
            let end = carried + end;
            each(&buffer[start..end]);
            start = end + 1;
        }
        buffer.copy_within(start..filled, 0);
        carried = filled - start;
    }
}

fn replay_line(line: ReplayView<'_>, replay: &mut Replay) {
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
                replay.resolutions.push((decision.into_owned(), committed));
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
fn replay_settlement(line: ReplayView<'_>, replay: &mut Replay) {
    let Some(decision) = line.decision_trace_id else {
        return;
    };
    let Some((decision, open)) = replay.open.remove_entry(decision.as_ref()) else {
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
        details.since = line.time.into_owned();
        details.why = line.reason.map(Cow::into_owned);
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
fn replay_compensation(line: ReplayView<'_>, replay: &mut Replay) {
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
                    .push((line.session.to_string(), line.agent.into_owned(), amount));
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

fn replay_decision(line: ReplayView<'_>, replay: &mut Replay) {
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
    let keys: Vec<String> = line.replay_keys.into_iter().map(Cow::into_owned).collect();
    let time = line.time.parse::<jiff::Timestamp>().ok();
    let seen = time.map_or(0, |at| at.as_second().max(0) as u64);
    let until = forget_after(None, seen);
    replay
        .keys
        .extend(keys.iter().map(|key| (key.clone(), until)));
    let owned = |text: Option<Cow<'_, str>>| text.map(Cow::into_owned);
    let host = owned(line.host).unwrap_or_default();
    if let Some(at) = time {
        let recent = RecentPayment {
            at: Instant::now(),
            tier: owned(line.tier),
            tool: owned(line.tool),
            category: owned(line.category),
            host: host.clone(),
            port: 443,
        };
        replay
            .recent
            .entry(line.session.clone())
            .or_default()
            .push((at, recent));
    }
    let agent = line.agent.into_owned();
    let payment = UnknownPayment {
        session: line.session.to_string(),
        agent: agent.clone(),
        amount,
        pay_to: crate::x402::normalize_address(line.pay_to.as_deref().unwrap_or("")),
    };
    let details = UnknownDetails {
        session: line.session.into(),
        agent,
        since: line.time.into_owned(),
        method: owned(line.method).unwrap_or_default(),
        host,
        path: owned(line.path).unwrap_or_default(),
        payment_digest: owned(line.payment_digest),
        resource: owned(line.resource_digest),
        keys: keys.clone(),
        why: None,
        upstream_status: None,
        onchain: line.onchain,
    };
    replay.open.insert(
        line.trace_id.into_owned(),
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
    fn lines_are_found_across_reads_however_long_they_are() {
        let text = "one\n\nthree is longer than a read\r\nlast without newline";
        for chunk in [1, 2, 3, 7, 64, 1 << 20] {
            let mut lines = Vec::new();
            for_each_line(text.as_bytes(), chunk, |line| {
                lines.push(String::from_utf8(line.to_vec()).unwrap())
            })
            .unwrap();
            assert_eq!(
                lines,
                [
                    "one",
                    "",
                    "three is longer than a read\r",
                    "last without newline"
                ],
                "chunk {chunk}"
            );
        }
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
