//! The soak's checks (see the module above), one function each: the five of the issue
//! and two more (every class answered as expected, every reload took effect).

use super::report::Inputs;
use super::{Class, ReloadEvent, RunFile, Sent};
use purser_kit::merchant::{Record, Seen};
use purser_kit::process::Sample;
use purser_kit::proof_log::{decimal_of, verify, LogView};
use purser_kit::stats::{median, mib, percentile, usd};
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

/// Why a payment is not accounted for, if it is not: the problem and an example.
fn unaccounted(
    p: &Sent,
    log: &LogView,
    stub: &HashMap<&str, Vec<&Seen>>,
) -> Option<(&'static str, String)> {
    let digest = p.digest.as_deref();
    let short = digest.map_or("-", |d| &d[..12.min(d.len())]);
    let (class, variant, t_ms, status, trace) = (p.class, &p.variant, p.t_ms, p.status, &p.trace);
    let who =
        format!("{class:?} {variant} t={t_ms}ms status {status} trace {trace:?} digest {short}");
    let Some(trace) = p.trace.as_deref() else {
        return Some(("answer without X-Purser-Trace", who));
    };
    let Some(line) = log.decision(trace) else {
        return Some(("no decision line for the answer's trace id", who));
    };
    if digest.is_some() && line.digest.as_deref() != digest {
        return Some(("decision line with another payment_digest", who));
    }
    let want = match p.class {
        Class::Paid => "ALLOWED",
        Class::Held => "PENDING_APPROVAL",
        _ => "DENIED",
    };
    if line.decision != want {
        let (decision, rule) = (&line.decision, &line.rule);
        return Some((
            "unexpected decision in the log",
            format!("{who}: {decision} by {rule:?}"),
        ));
    }
    let holds = log.holds.get(trace).map(Vec::as_slice).unwrap_or(&[]);
    if p.class == Class::Held && holds != ["ALLOWED"] {
        return Some((
            "held payment without one approving hold line",
            format!("{who}: {holds:?}"),
        ));
    }
    let settled_at_stub = stub
        .get(digest.unwrap_or_default())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !matches!(p.class, Class::Paid | Class::Held) {
        let settled = digest.is_some() && !settled_at_stub.is_empty();
        return settled.then_some(("a refused payment reached the stub and settled", who));
    }
    let logged = log.settlements.get(trace).map(Vec::as_slice).unwrap_or(&[]);
    match (settled_at_stub, logged) {
        ([seen], [(outcome, Some(tx))])
            if outcome == "committed"
                && seen.id.as_ref() == Some(tx)
                && seen.amount.parse() == Ok(u128::from(p.amount_atomic)) =>
        {
            None
        }
        ([], _) => Some(("paid, but the stub never settled it", who)),
        ([_, _, ..], _) => Some(("settled more than once at the stub", who)),
        (stub, _) => {
            let stub: Vec<(&Option<String>, &str)> =
                stub.iter().map(|s| (&s.id, s.amount.as_str())).collect();
            let example = format!("{who}: log {logged:?}, stub {stub:?}");
            Some((
                "settlement line missing or not matching the stub's receipt",
                example,
            ))
        }
    }
}

/// 3. Every payment accounted for in the proof log, and at the stub.
fn accounting(run: &RunFile, record: &Record, log: &LogView) -> Check {
    let stub = record.settled_by_digest();
    let mut problems = Problems::default();
    let mut accounted: BTreeMap<Class, (u64, u64)> = BTreeMap::new();
    for p in &run.payments {
        let entry = accounted.entry(p.class).or_default();
        entry.0 += 1;
        match unaccounted(p, log, &stub) {
            Some((what, example)) => problems.add(what, example, 1),
            None => entry.1 += 1,
        }
    }
    let answered: HashSet<&str> = run
        .payments
        .iter()
        .filter_map(|p| p.trace.as_deref())
        .collect();
    let expected: HashSet<&str> = run
        .payments
        .iter()
        .filter(|p| matches!(p.class, Class::Paid | Class::Held))
        .filter_map(|p| p.digest.as_deref())
        .collect();
    let extra_decisions = log.decisions.iter().map(|d| d.trace_id.as_str());
    let extra_decisions: Vec<&str> = extra_decisions.filter(|t| !answered.contains(t)).collect();
    let stub_extra: Vec<&str> = stub
        .keys()
        .copied()
        .filter(|d| !expected.contains(d))
        .collect();
    let refused = record
        .refused
        .first()
        .map(|r| serde_json::to_string(r).unwrap_or_default());
    let (_, bad_amounts) = record.settled_atomic();
    let more = [
        (
            "decision line no request of the driver accounts for",
            extra_decisions.first().map(|t| t.to_string()),
            extra_decisions.len(),
        ),
        (
            "the stub settled a payment the driver did not expect to settle",
            stub_extra.first().map(|d| d.to_string()),
            stub_extra.len(),
        ),
        ("the stub refused payments", refused, record.refused.len()),
        (
            "stub settlements with unreadable amounts",
            Some(String::new()),
            bad_amounts as usize,
        ),
    ];
    for (what, example, n) in more.into_iter().filter(|m| m.2 > 0) {
        problems.add(what, example.unwrap_or_default(), n as u64);
    }
    let sent = run.payments.len() as u64;
    let ok: u64 = accounted.values().map(|a| a.1).sum();
    let by_class = accounted
        .iter()
        .map(|(c, (n, ok))| format!("{c:?} {ok}/{n}").to_lowercase());
    let by_class = by_class.collect::<Vec<_>>().join(", ");
    let (decisions, settlements) = (log.count("decision"), log.count("settlement"));
    let (stub_settled, expected) = (record.settlements.len(), expected.len());
    let mut detail = format!(
        "{ok} of {sent} payments sent have their decision line (trace id + digest) with the expected decision ({by_class}); {decisions} decision lines in the log, {settlements} settlement lines; the stub settled {stub_settled} payments, {expected} expected"
    );
    for (what, (n, examples)) in &problems.0 {
        let _ = write!(detail, "; **{n} × {what}** (e.g. {})", examples.join(" | "));
    }
    Check {
        name: "every payment accounted for in the log",
        passed: problems.0.is_empty() && ok == sent && log.unparsable == 0,
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
    let stub_usd = usd(record.settled_atomic().0);
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
    let answered = run.approvals.iter();
    let approved: Vec<_> = answered
        .clone()
        .filter(|a| a.verb == "approve" && a.status.is_ok())
        .collect();
    let failed: Vec<&String> = answered
        .clone()
        .filter_map(|a| a.status.as_ref().err())
        .collect();
    let denied: Vec<String> = answered
        .filter(|a| a.verb == "deny")
        .map(|a| format!("unexpected hold {}", a.hold))
        .collect();
    // Hold listed → approve call answered.
    let mut ms: Vec<f64> = approved
        .iter()
        .map(|a| (a.returned_unix_ns - a.listed_unix_ns) as f64 / 1e6)
        .collect();
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (
        percentile(&ms, 0.5).unwrap_or(0.0),
        percentile(&ms, 0.99).unwrap_or(0.0),
    );
    let (n_approved, n_failed, n_denied) = (approved.len(), failed.len(), denied.len());
    let (pending, reconnects) = (run.pending_holds_at_end, run.reconnects);
    let mut detail = format!(
        "{unexpected} unexpected answers; {n_approved} holds approved (approve call p50 {p50:.1} ms, p99 {p99:.1} ms), {n_failed} failed admin calls, {n_denied} unexpected holds, {pending} still pending at the end; {reconnects} reconnects"
    );
    for (class, stats) in &run.classes {
        if !stats.examples.is_empty() {
            let _ = write!(detail, "; {class:?}: {}", stats.examples.join(" | "));
        }
    }
    let examples = denied.iter().chain(failed).take(5).chain(&run.errors);
    for e in examples {
        let _ = write!(detail, "; {e}");
    }
    Check {
        name: "every class got its expected answers",
        passed: unexpected == 0
            && n_failed == 0
            && n_denied == 0
            && pending == 0
            && run.errors.is_empty(),
        detail,
    }
}

/// Every reload took effect.
fn reloads(run: &RunFile, purser_log: &str, log: &LogView) -> Check {
    let via = |how: &str| {
        run.reloads
            .iter()
            .filter(|r| r.via == how)
            .collect::<Vec<_>>()
    };
    let (api, hup) = (via("api"), via("sighup"));
    let answered = |r: &ReloadEvent| {
        r.status == Some(200) && r.answered_digest.as_deref() == Some(r.digest.as_str())
    };
    let api_ok = api.iter().filter(|r| answered(r)).count();
    let hup_sent = hup.iter().filter(|r| r.error.is_none()).count();
    let logged = |pattern: &str| purser_log.lines().filter(|l| l.contains(pattern)).count();
    let logged_api = logged("policy reloaded through the admin API");
    let logged_hup = purser_log
        .lines()
        .filter(|l| l.contains("policy reloaded") && !l.contains("admin API"))
        .count();
    let failed_reloads = logged("policy reload failed");
    let generations = run
        .reloads
        .iter()
        .map(|r| (r.generation, r.digest.as_str()));
    let generations: Vec<(u64, &str)> = std::iter::once((0, run.base_policy_digest.as_str()))
        .chain(generations)
        .collect();
    let unseen = generations
        .iter()
        .filter(|(_, d)| !log.decision_policies.contains_key(*d));
    let unseen: Vec<u64> = unseen.map(|(g, _)| *g).collect();
    let errors = run
        .reloads
        .iter()
        .filter_map(|r| Some(format!("gen {}: {}", r.generation, r.error.as_ref()?)));
    let errors: String = errors.map(|e| format!("; {e}")).collect();
    let missing = match unseen.is_empty() {
        true => String::new(),
        false => format!(" (missing: {unseen:?})"),
    };
    let (n_api, n_hup, n_gen) = (api.len(), hup.len(), generations.len());
    let seen = n_gen - unseen.len();
    Check {
        name: "every reload took effect",
        passed: api_ok == n_api
            && hup_sent == n_hup
            && logged_hup == n_hup
            && logged_api == n_api
            && failed_reloads == 0
            && unseen.is_empty(),
        detail: format!(
            "{api_ok}/{n_api} admin reloads answered 200 with the new file's digest; {hup_sent}/{n_hup} SIGHUPs sent, {logged_hup} `policy reloaded` lines logged for them ({logged_api} for the API), {failed_reloads} failed reloads; {seen} of {n_gen} policy generations appear in decision lines{missing}{errors}"
        ),
    }
}
