//! `purser traces verify` and `purser traces show`: read the proof log from disk, no
//! running Purser needed.

use crate::engine::recovery::log_files;
use crate::trace::verify_files;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Log files in chain order. A single live file brings its rotated predecessors
    /// (`FILE.MICROS`) along.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The proof log (its rotated predecessors are read too).
    #[arg(long, default_value = "traces/purser-trace.jsonl")]
    file: PathBuf,
    /// Only this session (`AGENT.SESSION`).
    #[arg(long)]
    session: Option<String>,
    /// Only this decision (ALLOWED, DENIED, PENDING_APPROVAL) or trace id.
    #[arg(long)]
    decision: Option<String>,
    /// At most this many lines, the latest.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: usize,
}

pub fn verify(args: VerifyArgs) -> ExitCode {
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

pub fn show(args: ShowArgs) -> ExitCode {
    let mut rows: Vec<[String; 8]> = Vec::new();
    for path in log_files(&args.file) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let field = |name: &str| {
                value
                    .get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            if args
                .session
                .as_ref()
                .is_some_and(|s| *s != field("session"))
            {
                continue;
            }
            if let Some(wanted) = &args.decision {
                let matches = [
                    field("decision"),
                    field("trace_id"),
                    field("decision_trace_id"),
                ]
                .contains(wanted);
                if !matches {
                    continue;
                }
            }
            let outcome = if field("decision").is_empty() {
                field("outcome")
            } else {
                field("decision")
            };
            let approver = value
                .pointer("/approval/by")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            rows.push([
                field("time")
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " "),
                field("kind"),
                field("session"),
                outcome,
                field("rule"),
                field("amount_usd"),
                approver,
                field("trace_id"),
            ]);
        }
    }
    let skip = rows.len().saturating_sub(args.lines);
    let header = [
        "TIME",
        "KIND",
        "SESSION",
        "DECISION/OUTCOME",
        "RULE",
        "USD",
        "BY",
        "TRACE",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows[skip..] {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |cells: Vec<&str>| {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(header.to_vec());
    for row in &rows[skip..] {
        print(row.iter().map(String::as_str).collect());
    }
    ExitCode::SUCCESS
}
