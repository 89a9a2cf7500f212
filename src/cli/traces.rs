//! `purser traces tail`: the latest proof-log lines, optionally followed live; and the
//! trace table that `traces tail` and `traces show` both print.
//!
//! Following polls `GET /v1/traces` every second and prints the lines not seen yet
//! (by `trace_id`), until Ctrl-C. A few failed polls in a row end it with the error.
//!
//! Lines are read into the proof log's own [`TraceRecord`]; one the API sends that this
//! version cannot read is left out of the table (`--json` prints the API's JSON as is).

use super::admin_client::{array, encode, AdminClient, AdminError};
use super::format;
use super::tables::{print_json, Table};
use crate::trace::filter as trace_filter;
use crate::trace::{Kind, TraceRecord, Verdict, Vocabulary};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// Time between polls when following.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Lines asked for on each poll when following.
const POLL_LIMIT: usize = 1000;
/// Failed polls in a row that end `--follow`.
const MAX_FAILED_POLLS: u32 = 5;

#[derive(Args, Debug)]
pub struct TailArgs {
    /// How many of the latest lines to show.
    #[arg(short = 'n', long = "lines", default_value_t = 20)]
    lines: usize,
    /// Only this session (`AGENT.SESSION`).
    #[arg(long)]
    session: Option<String>,
    /// Only this decision, any case: ALLOWED, DENIED, PENDING_APPROVAL.
    #[arg(long, value_parser = trace_filter::decision)]
    decision: Option<Verdict>,
    /// Only this kind, any case: decision, settlement, hold, phase, resolution,
    /// compensation, summary.
    #[arg(long, value_parser = trace_filter::kind)]
    kind: Option<Kind>,
    /// Keep polling every second and print new lines until Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// Print the API's JSON instead (one line per trace when following).
    #[arg(long)]
    json: bool,
}

pub async fn tail(client: &AdminClient, args: TailArgs) -> Result<(), AdminError> {
    if args.follow {
        return follow(client, &args).await;
    }
    let answer = client.get(&query(&args, args.lines)).await?;
    if args.json {
        print_json(&answer);
        return Ok(());
    }
    let lines = records(array(&answer, "traces")?);
    match lines.is_empty() {
        true => println!("no trace lines match"),
        false => print!("{}", table(&lines).render()),
    }
    Ok(())
}

/// The API's trace lines as records; a line this version cannot read is left out.
fn records(lines: &[Value]) -> Vec<TraceRecord> {
    lines
        .iter()
        .filter_map(|line| TraceRecord::deserialize(line).ok())
        .collect()
}

fn query(args: &TailArgs, limit: usize) -> String {
    let mut query = format!("/v1/traces?limit={limit}");
    let filters = [
        ("session", args.session.as_deref()),
        ("decision", args.decision.map(Vocabulary::as_str)),
        ("kind", args.kind.map(Vocabulary::as_str)),
    ];
    for (key, value) in filters {
        if let Some(value) = value {
            query.push_str(&format!("&{key}={}", encode(value)));
        }
    }
    query
}

/// Trace lines as a table: one row per line, amounts and approvers spelled the same
/// whichever command prints them.
pub(super) fn table(lines: &[TraceRecord]) -> Table {
    let mut table = Table::new(&[
        "TIME",
        "KIND",
        "SESSION",
        "DECISION/OUTCOME",
        "RULE",
        "AMOUNT",
        "APPROVAL",
        "TRACE ID",
    ])
    .right(&[5]);
    for line in lines {
        table.row(row(line));
    }
    table
}

fn row(line: &TraceRecord) -> Vec<String> {
    let verdict = match (line.decision, line.outcome) {
        (Some(decision), _) => decision.to_string(),
        (None, Some(outcome)) => outcome.to_string(),
        (None, None) => format::NONE.to_string(),
    };
    vec![
        format::clock(line.time.parse().ok()),
        line.kind.to_string(),
        cell(&line.session),
        verdict,
        line.rule
            .as_ref()
            .map_or_else(|| format::NONE.to_string(), ToString::to_string),
        payment_amount(line),
        approver(line),
        cell(&line.trace_id),
    ]
}

/// Text as it is, or `-` when empty.
fn cell(text: &str) -> String {
    match text {
        "" => format::NONE.to_string(),
        text => text.to_string(),
    }
}

/// A payment's amount: `0.60 USDC (0.60 USD)` from a line's `amount`, `asset_symbol` and
/// `amount_usd`; `0.60 USD` when only the USD value is known.
fn payment_amount(line: &TraceRecord) -> String {
    let in_usd = line
        .amount_usd
        .map(|usd| format!("{} USD", format::usd(Some(usd))));
    let Some(amount) = line.amount else {
        return in_usd.unwrap_or_else(|| format::NONE.to_string());
    };
    let in_asset = match line.asset_symbol.as_deref().filter(|s| !s.is_empty()) {
        Some(symbol) => format!("{} {symbol}", format::usd(Some(amount))),
        None => format::usd(Some(amount)),
    };
    match in_usd {
        Some(in_usd) => format!("{in_asset} ({in_usd})"),
        None => in_asset,
    }
}

/// Who ended a hold: `by NAME at TIME` from a line's `approval`, or `-`.
fn approver(line: &TraceRecord) -> String {
    let Some(approval) = &line.approval else {
        return format::NONE.to_string();
    };
    match approval.at.parse() {
        Ok(at) => format!("by {} at {}", approval.by, format::clock(Some(at))),
        Err(_) => format!("by {}", approval.by),
    }
}

/// Prints the latest `--lines`, then every new line until Ctrl-C.
async fn follow(client: &AdminClient, args: &TailArgs) -> Result<(), AdminError> {
    let limit = POLL_LIMIT.max(args.lines);
    let path = query(args, limit);
    let mut printer = Printer::new(args.json, 2 * limit);
    let answer = client.get(&path).await?;
    let backlog = records(array(&answer, "traces")?);
    let (older, latest) = backlog.split_at(backlog.len().saturating_sub(args.lines));
    printer.mark_seen(older);
    printer.print(latest);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut failures = 0;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        match client.get(&path).await {
            Ok(answer) => {
                failures = 0;
                printer.print(&records(array(&answer, "traces")?));
            }
            Err(error) if failures + 1 < MAX_FAILED_POLLS => {
                failures += 1;
                eprintln!("purser: {error} (retrying)");
            }
            Err(error) => return Err(error),
        }
    }
}

/// Prints trace lines once each, keeping column widths steady across batches.
struct Printer {
    json: bool,
    header_done: bool,
    widths: Vec<usize>,
    seen: Seen,
}

impl Printer {
    fn new(json: bool, remembered: usize) -> Printer {
        Printer {
            json,
            header_done: false,
            widths: Vec::new(),
            seen: Seen::new(remembered),
        }
    }

    /// Remembers lines without printing them.
    fn mark_seen(&mut self, lines: &[TraceRecord]) {
        for line in lines {
            self.seen.insert(&line.trace_id);
        }
    }

    fn print(&mut self, lines: &[TraceRecord]) {
        let fresh: Vec<TraceRecord> = lines
            .iter()
            .filter(|line| self.seen.insert(&line.trace_id))
            .cloned()
            .collect();
        if self.json {
            for line in &fresh {
                match serde_json::to_string(line) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("purser: trace {} not printable: {error}", line.trace_id)
                    }
                }
            }
        } else if !fresh.is_empty() || !self.header_done {
            print!(
                "{}",
                table(&fresh).render_with(&mut self.widths, !self.header_done)
            );
            self.header_done = true;
        }
    }
}

/// The most recent trace ids, at most `capacity` of them.
struct Seen {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    fn new(capacity: usize) -> Seen {
        Seen {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// True when `id` was not seen yet.
    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decisions_and_settlements_share_a_column() {
        let lines = records(&[
            json!({"trace_id": "t-1", "kind": "decision", "time": "2025-06-01T12:00:00.5Z",
                   "session": "bot.s1", "decision": "DENIED", "rule": "pay-only-in-commit",
                   "amount_usd": "0.05"}),
            json!({"trace_id": "t-2", "kind": "settlement", "time": "2025-06-01T12:00:01Z",
                   "session": "bot.s1", "outcome": "committed", "amount_usd": "0.05"}),
            json!({"kind": "a line this version cannot read"}),
        ]);
        assert_eq!(lines.len(), 2);
        let text = table(&lines).render();
        assert!(
            text.contains("2025-06-01 12:00:00  decision    bot.s1   DENIED"),
            "{text}"
        );
        assert!(text.contains("settlement  bot.s1   committed"), "{text}");
        assert!(text.contains("0.05 USD  -         t-2"), "{text}");
    }

    #[test]
    fn filters_go_into_the_query() {
        let args = TailArgs {
            lines: 5,
            session: Some("bot.s 1".into()),
            decision: Some(Verdict::Denied),
            kind: None,
            follow: false,
            json: false,
        };
        assert_eq!(
            query(&args, 5),
            "/v1/traces?limit=5&session=bot.s%201&decision=DENIED"
        );
    }

    #[test]
    fn seen_ids_are_bounded() {
        let mut seen = Seen::new(10);
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        for n in 0..10 {
            seen.insert(&n.to_string());
        }
        assert!(seen.insert("a"), "the oldest id was forgotten");
        assert!(seen.order.len() <= 10 && seen.set.len() == seen.order.len());
    }

    #[test]
    fn payments_show_the_asset_and_usd() {
        let line = |value: Value| records(&[value]).remove(0);
        let paid = line(json!({"trace_id": "t", "kind": "decision", "amount": "0.6",
                               "asset_symbol": "USDC", "amount_usd": "0.600000"}));
        assert_eq!(payment_amount(&paid), "0.60 USDC (0.60 USD)");
        let usd = line(json!({"trace_id": "t", "kind": "settlement", "amount_usd": "0.05"}));
        assert_eq!(payment_amount(&usd), "0.05 USD");
        let asset = line(json!({"trace_id": "t", "kind": "decision", "amount": "0.000123"}));
        assert_eq!(payment_amount(&asset), "0.000123");
        assert_eq!(
            payment_amount(&line(json!({"trace_id": "t", "kind": "phase"}))),
            "-"
        );
    }

    #[test]
    fn approvers_read_by_name_at_time() {
        let hold = |at: &str| {
            records(&[json!({"trace_id": "t", "kind": "hold", "approval": {
                "at": at, "by": "ana", "hold_id": "h", "outcome": "approved", "waited_ms": 5}})])
            .remove(0)
        };
        assert_eq!(
            approver(&hold("2025-06-01T12:34:56.5Z")),
            "by ana at 2025-06-01 12:34:56"
        );
        assert_eq!(approver(&hold("soon")), "by ana");
        assert_eq!(approver(&TraceRecord::default()), "-");
    }

    #[test]
    fn the_printer_skips_lines_it_has_seen() {
        let line = |id: &str| TraceRecord {
            trace_id: id.into(),
            ..TraceRecord::default()
        };
        let mut printer = Printer::new(true, 10);
        printer.mark_seen(&[line("t-1")]);
        printer.print(&[line("t-1"), line("t-2")]);
        assert!(!printer.seen.insert("t-2"));
    }
}
