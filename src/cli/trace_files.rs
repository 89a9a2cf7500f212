//! `purser traces verify` and `purser traces show`: read the proof log from disk, no
//! running Purser needed. `show` prints the same table as `traces tail`; a line it cannot
//! read as a [`TraceRecord`] is left out (`verify` names such lines).

use super::traces;
use crate::trace::filter::{self as trace_filter, TraceFilter};
use crate::trace::{log_files, verify_files, Kind, TraceRecord, Verdict};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    /// Log files in chain order. A single live file brings its rotated predecessors
    /// (`FILE.MICROS`) along.
    #[arg(required_unless_present = "store")]
    files: Vec<PathBuf>,
    /// Check every replica's chain in the fleet store's copy of the proof log instead.
    #[arg(long, value_name = "postgres://USER@HOST/DB")]
    store: Option<String>,
}

#[derive(Args, Debug)]
pub(super) struct ShowArgs {
    /// The proof log (its rotated predecessors are read too).
    #[arg(long, default_value = "traces/purser-trace.jsonl")]
    file: PathBuf,
    /// Only this session (`AGENT.SESSION`).
    #[arg(long)]
    session: Option<String>,
    /// Only this decision, any case (ALLOWED, DENIED, PENDING_APPROVAL), or the lines
    /// of one trace id (`tr_...`: the decision and the lines that refer to it).
    #[arg(long, value_name = "DECISION|TRACE", value_parser = decision_or_trace)]
    decision: Option<DecisionOrTrace>,
    /// Only this kind, any case: decision, settlement, hold, phase, resolution,
    /// compensation, summary.
    #[arg(long, value_parser = trace_filter::kind)]
    kind: Option<Kind>,
    /// At most this many lines, the latest.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: usize,
}

/// What `traces show --decision` was given.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DecisionOrTrace {
    Decision(Verdict),
    Trace(String),
}

/// A decision in any case, or a trace id; anything else names both forms.
fn decision_or_trace(text: &str) -> Result<DecisionOrTrace, String> {
    let text = text.trim();
    if text.starts_with(TRACE_ID_PREFIX) {
        return Ok(DecisionOrTrace::Trace(text.to_string()));
    }
    trace_filter::decision(text)
        .map(DecisionOrTrace::Decision)
        .map_err(|unknown| format!("{unknown}, or a trace id ({TRACE_ID_PREFIX}...)"))
}

/// How every trace id starts.
const TRACE_ID_PREFIX: &str = "tr_";

pub(super) fn verify(args: VerifyArgs) -> ExitCode {
    if let Some(url) = &args.store {
        return super::fleet::verify_store(url);
    }
    let files = match args.files.as_slice() {
        [single] => log_files(single),
        many => many.to_vec(),
    };
    if files.is_empty() {
        eprintln!("purser: no trace log at {}", args.files[0].display());
        return ExitCode::FAILURE;
    }
    match verify_files(&files) {
        Ok(report) => {
            println!(
                "ok: {} lines in {} file(s) chain correctly; last hash {}",
                report.lines,
                files.len(),
                report.last_hash
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("purser: {error}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn show(args: ShowArgs) -> ExitCode {
    let (filter, trace) = match args.decision {
        Some(DecisionOrTrace::Trace(id)) => (TraceFilter::default(), Some(id)),
        Some(DecisionOrTrace::Decision(decision)) => (
            TraceFilter {
                decision: Some(decision),
                ..TraceFilter::default()
            },
            None,
        ),
        None => (TraceFilter::default(), None),
    };
    let filter = TraceFilter {
        session: args.session,
        kind: args.kind,
        ..filter
    };
    let mut lines: Vec<TraceRecord> = Vec::new();
    for path in log_files(&args.file) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        lines.extend(
            text.lines()
                .filter_map(|line| TraceRecord::from_line(line).ok())
                .filter(|line| filter.matches(line))
                .filter(|line| trace.as_deref().is_none_or(|id| line.belongs_to(id))),
        );
    }
    let skip = lines.len().saturating_sub(args.lines);
    match lines[skip..].is_empty() {
        true => println!("no trace lines match"),
        false => print!("{}", traces::table(&lines[skip..]).render()),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_takes_a_decision_in_any_case_or_a_trace_id() {
        assert_eq!(
            decision_or_trace("pending_approval"),
            Ok(DecisionOrTrace::Decision(Verdict::PendingApproval))
        );
        assert_eq!(
            decision_or_trace("tr_0a"),
            Ok(DecisionOrTrace::Trace("tr_0a".into()))
        );
        let refused = decision_or_trace("maybe").unwrap_err();
        assert!(
            refused.contains("ALLOWED, DENIED, PENDING_APPROVAL"),
            "{refused}"
        );
        assert!(refused.contains("trace id (tr_...)"), "{refused}");
    }
}
