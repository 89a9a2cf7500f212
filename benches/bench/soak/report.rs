//! The soak's Markdown report: the checks ([`super::checks`]), the requests per class,
//! Purser's resources over the run, and the proof log.

use super::checks::{self, rss_window};
use super::{Class, RunFile};
use crate::md::table;
use crate::row;
use purser_kit::merchant::Record;
use purser_kit::process::Sample;
use purser_kit::proof_log::LogView;
use purser_kit::stats::{median, mib};
use purser_kit::Error;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// What the report reads.
pub(super) struct Inputs<'a> {
    pub run: &'a RunFile,
    /// `GET /v1/sessions` at the end.
    pub sessions: &'a Value,
    /// The stub's record.
    pub record: &'a Record,
    /// The purser binary (for `purser traces verify`).
    pub purser: &'a Path,
    /// Purser's stderr log.
    pub purser_log: &'a str,
    /// The live proof log (rotated predecessors `FILE.N` are read too).
    pub trace: &'a Path,
    /// Purser's exit status after SIGTERM; `None` when it had to be killed.
    pub purser_exit: Option<i32>,
    /// Lines under the title.
    pub notes: &'a [String],
}

/// The checks over what the run saw, Purser's logs and the stub's record, as Markdown,
/// and whether all passed.
pub(super) fn report(args: &Inputs<'_>) -> Result<(String, bool), Error> {
    let run = args.run;
    let log = LogView::read(args.trace)?;
    let checks = checks::all(args, &log)?;
    let (d, w) = (run.traffic_s, rss_window(run));
    let alive: Vec<&Sample> = run.samples.iter().filter(|s| s.alive).collect();
    let unexpected: u64 = run.classes.values().map(|c| c.unexpected).sum();
    let passed = checks.iter().all(|c| c.passed);
    let mut out = String::new();
    let started = jiff::Timestamp::from_millisecond(run.started_unix_ms as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "# Purser soak, {started}\n");
    for n in args.notes {
        let _ = writeln!(out, "{n}  ");
    }
    let payments_per_s = run.payments.len() as f64 / run.traffic_s;
    let _ = writeln!(
        out,
        "\n{:.0} s of mixed traffic, {} requests ({:.0} req/s, {:.0} with a payment) over {} keep-alive connections (one session each) at a target of {} operations/s; policy reloaded through the admin API every {} s and by SIGHUP halfway between ({} reloads); VmRSS sampled every {} s.\n",
        run.traffic_s,
        run.requests,
        run.requests as f64 / run.traffic_s,
        payments_per_s,
        run.conns,
        run.rate,
        run.reloads.first().map_or(0.0, |r| r.t_s * 2.0).round(),
        run.reloads.len(),
        run.samples
            .get(1)
            .map_or(0.0, |s| (s.t_s - run.samples[0].t_s).round()),
    );
    let _ = writeln!(
        out,
        "**Result: {}**\n",
        if passed { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(out, "## Checks\n");
    // The five checks of the issue are numbered; the two more, `+`.
    let numbered = |i: usize| {
        if i < 5 {
            (i + 1).to_string()
        } else {
            "+".to_string()
        }
    };
    let verdict = |passed: bool| if passed { "**PASS**" } else { "**FAIL**" };
    let rows = checks.iter().enumerate();
    let rows = rows.map(|(i, c)| row![numbered(i), c.name, verdict(c.passed), c.detail]);
    out += &table("# | check | result | detail", "llll", rows);
    let _ = writeln!(out, "\n## Requests per class\n");
    let joined = |counts: &BTreeMap<String, u64>, quote: &str| {
        let counts = counts
            .iter()
            .map(|(k, v)| format!("{quote}{k}{quote}: {v}"));
        counts.collect::<Vec<_>>().join(", ")
    };
    let per_s = |n: u64| format!("{:.1}", n as f64 / run.traffic_s);
    let mut rows: Vec<Vec<String>> = Class::ALL
        .into_iter()
        .filter_map(|class| Some((class, run.classes.get(&class)?)))
        .map(|(class, s)| {
            let codes = Some(joined(&s.codes, "`")).filter(|c| !c.is_empty());
            let (statuses, (label, expected)) = (joined(&s.statuses, ""), class.describe());
            let codes = codes.unwrap_or_else(|| "-".to_string());
            row![
                label,
                s.sent,
                per_s(s.sent),
                statuses,
                expected,
                s.unexpected,
                codes
            ]
        })
        .collect();
    rows.push(row![
        "**all**",
        run.requests,
        per_s(run.requests),
        "",
        "",
        unexpected,
        ""
    ]);
    let header = "class | sent | per s | statuses | expected | unexpected | rules / codes";
    out += &table(header, "lrrllrl", rows);
    let _ = writeln!(out, "\n## Purser's resources\n");
    type Field = fn(&Sample) -> f64;
    let fields: [(&str, Field, bool); 3] = [
        ("VmRSS (MiB)", |s| s.rss_kb as f64, true),
        ("threads", |s| s.threads as f64, false),
        ("open descriptors", |s| s.fds as f64, false),
    ];
    let rows = fields
        .into_iter()
        .filter(|_| !alive.is_empty())
        .map(|(name, get, is_kb)| {
            let mut values: Vec<f64> = alive.iter().map(|s| get(s)).collect();
            let (first, last) = (values[0], values[values.len() - 1]);
            let fmt = |v: f64| if is_kb { mib(v) } else { format!("{v:.0}") };
            // Sorted by the median: then the first value is the least and the last the most.
            let median = median(&mut values).unwrap_or(0.0);
            let (min, max) = (values[0], values[values.len() - 1]);
            row![name, fmt(first), fmt(min), fmt(median), fmt(max), fmt(last)]
        });
    let every = run
        .samples
        .get(1)
        .map_or(0.0, |s| (s.t_s - run.samples[0].t_s).round());
    let header = format!("sampled every {every} s | first | min | median | max | last");
    out += &table(&header, "lrrrrr", rows);
    let per_minute: Vec<String> = alive
        .iter()
        .filter(|s| (s.t_s.round() as u64) % 60 == 0 || s.t_s + 0.5 >= d)
        .map(|s| format!("{:.0} s: {}", s.t_s, mib(s.rss_kb as f64)))
        .collect();
    let _ = writeln!(
        out,
        "\nVmRSS (MiB) at each minute: {}.",
        per_minute.join(", ")
    );
    let _ = writeln!(
        out,
        "\nProof log: {} lines in {} file(s), {:.1} MiB ({}); {} policy digests in decision lines.",
        log.lines,
        log.files,
        log.bytes as f64 / 1048576.0,
        log.kinds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        log.decision_policies.len()
    );
    let _ = writeln!(
        out,
        "\nRSS rule: W = {w:.0} s (60 s, or a fifth of the run when it is shorter than 180 s); PASS when the median VmRSS of the samples in the last W seconds is within ±10% of the median of the samples in [W, 2W), the minute after warm-up. Accounting: a payment is accounted for when the decision line with the answer's `X-Purser-Trace` carries its SHA-256 as `payment_digest` and the expected decision (held: PENDING_APPROVAL and one approving `hold` line); paid and held ones also need exactly one `committed` settlement line with the stub's receipt transaction. Amounts are compared as `rust_decimal` values."
    );
    Ok((out, passed))
}
