//! The soak's checks (see the module above), one function each: the five of the issue
//! and two more (every class answered as expected, every reload took effect).

use super::report::Inputs;
use super::{Class, ReloadEvent, RunFile};
use purser_kit::merchant::Record;
use purser_kit::process::Sample;
use purser_kit::proof_log::{decimal_of, verify, LogView};
use purser_kit::stats::{median, mib, usd};
use purser_kit::Error;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// One check's verdict.
pub(super) struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// Accounting failures: what, how many, a few examples.
#[derive(Default)]
struct Problems(BTreeMap<&'static str, (u64, Vec<String>)>);

impl Problems {
    fn add(&mut self, what: &'static str, example: String, n: u64) {
        let e = self.0.entry(what).or_default();
        e.0 += n;
        if e.1.len() < 3 {
            e.1.push(example);
        }
    }
}

/// Every check, in the report's order.
pub(super) fn all(args: &Inputs<'_>, log: &LogView) -> Result<Vec<Check>, Error> {
    Ok(vec![
        panics(args),
        rss(args.run),
        accounting(args.run, args.record, log),
        chain(args, log)?,
        ledger(args.run, args.sessions, args.record, log),
        traffic(args.run),
        reloads(args.run, args.purser_log, log),
    ])
}

/// The RSS window: W = 60 s, or a fifth of the run when it is shorter than 180 s.
pub(super) fn rss_window(run: &RunFile) -> f64 {
    if run.traffic_s >= 180.0 {
        60.0
    } else {
        run.traffic_s / 5.0
    }
}

/// The stub's settlements: Σ atomic units, and how many amounts were unreadable.
fn stub_total(record: &Record) -> (u128, u64) {
    let amounts = record.settlements.iter().map(|s| s.amount.parse::<u128>());
    amounts.fold((0, 0), |(sum, bad), a| match a {
        Ok(a) => (sum + a, bad),
        Err(_) => (sum, bad + 1),
    })
}

/// 1. Zero panics: none logged, alive at every sample, exit 0 after SIGTERM.
fn panics(args: &Inputs<'_>) -> Check {
    let run = args.run;
    let purser_log = args.purser_log;
    let panics: Vec<&str> = purser_log
        .lines()
        .filter(|l| l.contains("panicked"))
        .collect();
    let dead = run.samples.iter().filter(|s| !s.alive).count();
    let exit_ok = args.purser_exit == Some(0);
    Check {
        name: "zero panics",
        passed: panics.is_empty() && dead == 0 && exit_ok,
        detail: format!(
            "{} `panicked` lines in Purser's stderr log ({} lines){}; alive at {}/{} samples; exit status after SIGTERM: {}",
            panics.len(),
            purser_log.lines().count(),
            panics
                .first()
                .map(|l| format!(", first: `{}`", l.chars().take(200).collect::<String>()))
                .unwrap_or_default(),
            run.samples.len() - dead,
            run.samples.len(),
            args.purser_exit
                .map_or_else(|| "none (killed)".to_string(), |c| c.to_string())
        ),
    }
}

/// 2. RSS flat within 10% between the second window and the last.
fn rss(run: &RunFile) -> Check {
    let d = run.traffic_s;
    let w = rss_window(run);
    let alive: Vec<&Sample> = run.samples.iter().filter(|s| s.alive).collect();
    let mut baseline: Vec<f64> = alive
        .iter()
        .filter(|s| s.t_s >= w && s.t_s < 2.0 * w)
        .map(|s| s.rss_kb as f64)
        .collect();
    let mut last: Vec<f64> = alive
        .iter()
        .filter(|s| s.t_s > d - w)
        .map(|s| s.rss_kb as f64)
        .collect();
    let (nb, nl) = (baseline.len(), last.len());
    match (median(&mut baseline), median(&mut last)) {
        (Some(b), Some(l)) if b > 0.0 => {
            let change = (l - b) / b * 100.0;
            // Payments forwarded between the middles of the two windows: what the change
            // comes to per payment, if it is all theirs.
            let (from_ms, to_ms) = ((1.5 * w * 1e3) as u64, ((d - w / 2.0) * 1e3) as u64);
            let forwarded = run
                .payments
                .iter()
                .filter(|p| matches!(p.class, Class::Paid | Class::Held) && p.ok)
                .filter(|p| p.t_ms >= from_ms && p.t_ms < to_ms)
                .count();
            Check {
                name: "RSS flat within 10%",
                passed: change.abs() <= 10.0,
                detail: format!(
                    "median of the last {w:.0} s ({nl} samples) {} MiB vs median of [{w:.0} s, {:.0} s) ({nb} samples) {} MiB: {change:+.1}% (rule: |change| ≤ 10%); {forwarded} payments forwarded between the windows' middles, {:.0} bytes of change per payment",
                    mib(l),
                    2.0 * w,
                    mib(b),
                    (l - b) * 1024.0 / forwarded.max(1) as f64
                ),
            }
        }
        _ => Check {
            name: "RSS flat within 10%",
            passed: false,
            detail: format!(
                "not enough samples ({nb} in [{w:.0}, {:.0}) s, {nl} in the last {w:.0} s)",
                2.0 * w
            ),
        },
    }
}

/// 3. Every payment accounted for in the proof log, and at the stub.
fn accounting(run: &RunFile, record: &Record, log: &LogView) -> Check {
    let stub_settlements = &record.settlements;
    let mut stub_by_digest: HashMap<String, Vec<(String, u128)>> = HashMap::new();
    let (_, stub_bad_amounts) = stub_total(record);
    for s in stub_settlements {
        let amount = s.amount.parse::<u128>();
        let id = s.id.clone().unwrap_or_default();
        let entry = stub_by_digest.entry(s.digest.clone()).or_default();
        entry.push((id, *amount.as_ref().unwrap_or(&0)));
    }
    let mut problems = Problems::default();
    let mut flag = |what: &'static str, example: String| problems.add(what, example, 1);
    let mut matched_traces: HashSet<&str> = HashSet::new();
    let mut accounted: BTreeMap<Class, (u64, u64)> = BTreeMap::new();
    let mut expected_settled: HashSet<&str> = HashSet::new();
    for p in &run.payments {
        let entry = accounted.entry(p.class).or_default();
        entry.0 += 1;
        let who = format!(
            "{:?} {} t={}ms status {} trace {:?} digest {}",
            p.class,
            p.variant,
            p.t_ms,
            p.status,
            p.trace,
            p.digest.as_deref().map_or("-", |d| &d[..12.min(d.len())])
        );
        let Some(trace) = p.trace.as_deref() else {
            flag("answer without X-Purser-Trace", who);
            continue;
        };
        let Some(line) = log.decision(trace) else {
            flag("no decision line for the answer's trace id", who);
            continue;
        };
        matched_traces.insert(trace);
        if p.digest.is_some() && line.digest != p.digest {
            flag("decision line with another payment_digest", who.clone());
            continue;
        }
        let want = match p.class {
            Class::Paid => "ALLOWED",
            Class::Held => "PENDING_APPROVAL",
            _ => "DENIED",
        };
        if line.decision != want {
            flag(
                "unexpected decision in the log",
                format!("{who}: {} by {:?}", line.decision, line.rule),
            );
            continue;
        }
        if p.class == Class::Held {
            let holds = log.holds.get(trace).map(Vec::as_slice).unwrap_or(&[]);
            if holds != ["ALLOWED"] {
                flag(
                    "held payment without one approving hold line",
                    format!("{who}: {holds:?}"),
                );
                continue;
            }
        }
        if matches!(p.class, Class::Paid | Class::Held) {
            let digest = p.digest.as_deref().unwrap_or_default();
            expected_settled.insert(digest);
            let stub = stub_by_digest.get(digest).map(Vec::as_slice).unwrap_or(&[]);
            let settled = log.settlements.get(trace).map(Vec::as_slice).unwrap_or(&[]);
            match (stub, settled) {
                ([(tx, amount)], [(outcome, Some(logged_tx))])
                    if outcome == "committed"
                        && logged_tx == tx
                        && *amount == u128::from(p.amount_atomic) => {}
                ([], _) => {
                    flag("paid, but the stub never settled it", who);
                    continue;
                }
                ([_, _, ..], _) => {
                    flag("settled more than once at the stub", who);
                    continue;
                }
                _ => {
                    flag(
                        "settlement line missing or not matching the stub's receipt",
                        format!("{who}: log {settled:?}, stub {stub:?}"),
                    );
                    continue;
                }
            }
        } else if let Some(d) = &p.digest {
            if stub_by_digest.contains_key(d) {
                flag("a refused payment reached the stub and settled", who);
                continue;
            }
        }
        entry.1 += 1;
    }
    let extra_decisions: Vec<&String> = log
        .decisions
        .iter()
        .map(|d| &d.trace_id)
        .filter(|t| !matched_traces.contains(t.as_str()))
        .collect();
    if let Some(first) = extra_decisions.first() {
        problems.add(
            "decision line no request of the driver accounts for",
            first.to_string(),
            extra_decisions.len() as u64,
        );
    }
    let stub_extra: Vec<&String> = stub_by_digest
        .keys()
        .filter(|d| !expected_settled.contains(d.as_str()))
        .collect();
    if let Some(first) = stub_extra.first() {
        problems.add(
            "the stub settled a payment the driver did not expect to settle",
            first.to_string(),
            stub_extra.len() as u64,
        );
    }
    if let Some(first) = record.refused.first() {
        let example = serde_json::to_string(first).unwrap_or_default();
        problems.add(
            "the stub refused payments",
            example,
            record.refused.len() as u64,
        );
    }
    if stub_bad_amounts > 0 {
        problems.add(
            "stub settlements with unreadable amounts",
            String::new(),
            stub_bad_amounts,
        );
    }
    let sent_payments = run.payments.len() as u64;
    let ok_payments: u64 = accounted.values().map(|a| a.1).sum();
    let mut detail = format!(
        "{ok_payments} of {sent_payments} payments sent have their decision line (trace id + digest) with the expected decision ({}); {} decision lines in the log, {} settlement lines; the stub settled {} payments, {} expected",
        accounted
            .iter()
            .map(|(c, (n, ok))| format!("{c:?} {ok}/{n}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
        log.count("decision"),
        log.count("settlement"),
        stub_settlements.len(),
        expected_settled.len(),
    );
    for (what, (n, examples)) in &problems.0 {
        let _ = write!(detail, "; **{n} × {what}** (e.g. {})", examples.join(" | "));
    }
    Check {
        name: "every payment accounted for in the log",
        passed: problems.0.is_empty() && ok_payments == sent_payments && log.unparsable == 0,
        detail,
    }
}

/// 4. The chain verifies.
fn chain(args: &Inputs<'_>, log: &LogView) -> Result<Check, Error> {
    let (verified, verify_text) = verify(args.purser, args.trace)?;
    Ok(Check {
        name: "`purser traces verify`",
        passed: verified && log.lines > 0,
        detail: format!(
            "`{}` ({} file(s), {:.1} MiB)",
            verify_text,
            log.files,
            log.bytes as f64 / 1048576.0
        ),
    })
}

/// 5. The ledger equals the facilitator's record and the committed settlement lines.
fn ledger(run: &RunFile, sessions: &Value, record: &Record, log: &LogView) -> Check {
    let mut ledger_committed = Decimal::ZERO;
    let mut reserved = Decimal::ZERO;
    let mut unknown = Decimal::ZERO;
    let mut fleet: Option<Decimal> = None;
    let mut session_count = 0;
    let mut unreadable = 0;
    for s in sessions["sessions"].as_array().cloned().unwrap_or_default() {
        if s["agent"].as_str() != Some(run.agent.as_str()) {
            continue;
        }
        session_count += 1;
        match (
            decimal_of(&s["spent"]),
            decimal_of(&s["unknown"]),
            decimal_of(&s["reserved"]),
        ) {
            (Some(spent), Some(u), Some(r)) => {
                ledger_committed += spent - u;
                unknown += u;
                reserved += r;
            }
            _ => unreadable += 1,
        }
        if let Some(f) = decimal_of(&s["fleet_spent"]) {
            fleet = Some(f);
        }
    }
    let stub_usd = usd(stub_total(record).0);
    let stub_settlements = &record.settlements;
    let ledger_ok = ledger_committed == stub_usd
        && log.committed_usd == stub_usd
        && fleet.is_none_or(|f| f == stub_usd)
        && reserved.is_zero()
        && unknown.is_zero()
        && unreadable == 0
        && session_count > 0;
    Check {
        name: "ledger equals the facilitator stub's record",
        passed: ledger_ok,
        detail: format!(
            "ledger (Σ spent − unknown over {session_count} sessions of `{}`) ${} {} stub Σ of {} settlements ${} {} proof log Σ committed settlement lines ${}; fleet spent ${}; reserved ${}, unknown ${}{}",
            run.agent,
            ledger_committed.normalize(),
            if ledger_committed == stub_usd { "=" } else { "**≠**" },
            stub_settlements.len(),
            stub_usd.normalize(),
            if log.committed_usd == stub_usd { "=" } else { "**≠**" },
            log.committed_usd.normalize(),
            fleet.map_or_else(|| "?".to_string(), |f| f.normalize().to_string()),
            reserved.normalize(),
            unknown.normalize(),
            if unreadable > 0 { format!("; {unreadable} sessions unreadable") } else { String::new() }
        ),
    }
}

/// Every class got its expected answers; every hold was approved.
fn traffic(run: &RunFile) -> Check {
    let unexpected: u64 = run.classes.values().map(|c| c.unexpected).sum();
    let approvals = &run.approvals;
    let traffic_ok = unexpected == 0
        && approvals.approve_failed == 0
        && approvals.unexpected_holds == 0
        && run.pending_holds_at_end == 0
        && run.errors.is_empty();
    let mut detail = format!(
        "{unexpected} unexpected answers; {} holds approved (approve call p50 {:.1} ms, p99 {:.1} ms), {} failed admin calls, {} unexpected holds, {} still pending at the end; {} reconnects",
        approvals.approved,
        approvals.latency_ms_p50,
        approvals.latency_ms_p99,
        approvals.approve_failed,
        approvals.unexpected_holds,
        run.pending_holds_at_end,
        run.reconnects
    );
    for (class, stats) in &run.classes {
        if !stats.examples.is_empty() {
            let _ = write!(detail, "; {class:?}: {}", stats.examples.join(" | "));
        }
    }
    for e in approvals.examples.iter().chain(&run.errors) {
        let _ = write!(detail, "; {e}");
    }
    Check {
        name: "every class got its expected answers",
        passed: traffic_ok,
        detail,
    }
}

/// Every reload took effect.
fn reloads(run: &RunFile, purser_log: &str, log: &LogView) -> Check {
    let api: Vec<&ReloadEvent> = run.reloads.iter().filter(|r| r.via == "api").collect();
    let hup: Vec<&ReloadEvent> = run.reloads.iter().filter(|r| r.via == "sighup").collect();
    let api_ok = api
        .iter()
        .filter(|r| {
            r.status == Some(200) && r.answered_digest.as_deref() == Some(r.digest.as_str())
        })
        .count();
    let hup_sent = hup.iter().filter(|r| r.error.is_none()).count();
    let logged_hup = purser_log
        .lines()
        .filter(|l| l.contains("policy reloaded") && !l.contains("admin API"))
        .count();
    let logged_api = purser_log
        .lines()
        .filter(|l| l.contains("policy reloaded through the admin API"))
        .count();
    let failed_reloads = purser_log
        .lines()
        .filter(|l| l.contains("policy reload failed"))
        .count();
    let mut generations: Vec<(u64, &str)> = vec![(0, run.base_policy_digest.as_str())];
    generations.extend(
        run.reloads
            .iter()
            .map(|r| (r.generation, r.digest.as_str())),
    );
    let unseen: Vec<u64> = generations
        .iter()
        .filter(|(_, d)| !log.decision_policies.contains_key(*d))
        .map(|(g, _)| *g)
        .collect();
    let reload_errors: Vec<String> = run
        .reloads
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("gen {}: {e}", r.generation))
        })
        .collect();
    Check {
        name: "every reload took effect",
        passed: api_ok == api.len()
            && hup_sent == hup.len()
            && logged_hup == hup.len()
            && logged_api == api.len()
            && failed_reloads == 0
            && unseen.is_empty(),
        detail: format!(
            "{api_ok}/{} admin reloads answered 200 with the new file's digest; {hup_sent}/{} SIGHUPs sent, {logged_hup} `policy reloaded` lines logged for them ({logged_api} for the API), {failed_reloads} failed reloads; {} of {} policy generations appear in decision lines{}{}",
            api.len(),
            hup.len(),
            generations.len() - unseen.len(),
            generations.len(),
            if unseen.is_empty() { String::new() } else { format!(" (missing: {unseen:?})") },
            if reload_errors.is_empty() { String::new() } else { format!("; {}", reload_errors.join("; ")) }
        ),
    }
}
