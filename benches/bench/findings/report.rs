//! The findings report: the four figures of each pass ([`super::figures`]) beside the
//! claimed ones, the details behind them, and the definitions.

use super::figures::{measure, Figures, Waste};
use super::{FindingsArgs, Pass};
use purser_kit::stats::{self, pct, Sum};
use purser_kit::Error;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;
fn fmt_pct(p: Option<Decimal>) -> String {
    p.map_or_else(|| "n/a".to_string(), |p| format!("{p}%"))
}

/// The nearest-rank quantile, NaN when there is nothing to rank.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    stats::percentile(sorted, q).unwrap_or(f64::NAN)
}

fn latency_cell(f: &Figures) -> String {
    let ms = f.latency_ms();
    if ms.is_empty() {
        return if f.approvals == 0 {
            "n/a: nothing was held".to_string()
        } else {
            format!("n/a: {} approvals, none joined", f.approvals)
        };
    }
    format!(
        "{:.2} ms median (p99 {:.2}, max {:.2}; n = {})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.len()
    )
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

/// The report: the four figures of both passes beside the claimed ones, the details and
/// the definitions, as Markdown.
pub(super) fn report(
    flat: &Pass,
    governed: &Pass,
    args: &FindingsArgs,
    notes: &[String],
) -> Result<String, Error> {
    let (flat_wl, gov_wl) = (&flat.workload, &governed.workload);
    let flat = measure(flat, &args.purser)?;
    let gov = measure(governed, &args.purser)?;
    if (flat_wl.seed, flat_wl.runs) != (gov_wl.seed, gov_wl.runs) {
        return Err(format!(
            "the passes ran different workloads: flat seed {} runs {}, governed seed {} runs {}",
            flat_wl.seed, flat_wl.runs, gov_wl.seed, gov_wl.runs
        )
        .into());
    }
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "# Governance findings, reproduced")?;
    writeln!(w)?;
    writeln!(
        w,
        "Workload: **{} agent runs, seed {}**, {} runs in flight, human think time {} ms \
         (`bench findings`). Flat pass: `{}`; governed pass: `{}`.",
        gov_wl.runs,
        gov_wl.seed,
        gov_wl.concurrency,
        gov_wl.think_ms,
        args.flat_policy.display(),
        args.governed_policy.display()
    )?;
    if !notes.is_empty() {
        writeln!(w)?;
    }
    for note in notes {
        writeln!(w, "* {note}")?;
    }
    writeln!(w)?;
    // ---- the four figures
    let g_lat = gov.latency_ms();
    let g_p50 = percentile(&g_lat, 0.5);
    let g_p99 = percentile(&g_lat, 0.99);
    let reduction_ok = gov.reduction().is_some_and(|r| r >= Decimal::from(95));
    let recovery_ok = gov.recovery() == Some(Decimal::ONE_HUNDRED);
    let latency_ok = !g_lat.is_empty() && g_p50 <= 2.0;
    let audit_ok = gov.audit() == Some(Decimal::ONE_HUNDRED) && gov.log.verified;
    writeln!(w, "## The four figures")?;
    writeln!(w)?;
    writeln!(w, "| metric | claimed (flat → governed) | measured flat | measured governed | target (governed) |")?;
    writeln!(w, "|---|---|---:|---:|---|")?;
    writeln!(
        w,
        "| unnecessary-spend reduction | 12% → 92% | {} | **{}** | ≥ 95% ({}) |",
        fmt_pct(flat.reduction()),
        fmt_pct(gov.reduction()),
        met(reduction_ok)
    )?;
    writeln!(
        w,
        "| workflow-failure recovery | 0% → 95% | {} | **{}** | 100% of settled spend in failed transactions refund-requested ({}) |",
        fmt_pct(flat.recovery()),
        fmt_pct(gov.recovery()),
        met(recovery_ok)
    )?;
    writeln!(
        w,
        "| single-call approval latency | under 45 ms | {} | **{}** | ≤ 2 ms median ({}{}) |",
        latency_cell(&flat),
        latency_cell(&gov),
        met(latency_ok),
        if latency_ok && g_p99 > 2.0 {
            "; p99 above 2 ms"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "| audit-trail completeness | 40% → 100% | {} | **{}** | 100%, log verifies ({}) |",
        fmt_pct(flat.audit()),
        fmt_pct(gov.audit()),
        met(audit_ok)
    )?;
    writeln!(
        w,
        "| *necessary-spend pass rate* (not claimed) | – | {} | **{}** | 100% |",
        fmt_pct(pct(
            flat.necessary_through.usd,
            flat.necessary_attempted.usd
        )),
        fmt_pct(pct(gov.necessary_through.usd, gov.necessary_attempted.usd)),
    )?;
    writeln!(w)?;
    // ---- details
    writeln!(w, "## Unnecessary spend by kind")?;
    writeln!(w)?;
    writeln!(w, "Payments (USD). *Attempted* is the same workload in both passes; *settled* counts what the stub settled and was not refund-requested.")?;
    writeln!(w)?;
    writeln!(
        w,
        "| kind | attempted | settled, flat | settled, governed |"
    )?;
    writeln!(w, "|---|---:|---:|---:|")?;
    for waste in Waste::ALL {
        let get = |f: &Figures, m: fn(&Figures) -> &BTreeMap<Waste, Sum>| {
            m(f).get(&waste).copied().unwrap_or_default()
        };
        writeln!(
            w,
            "| {} | {} | {} | {} |",
            waste.label(),
            get(&gov, |f| &f.waste_attempted),
            get(&flat, |f| &f.waste_settled),
            get(&gov, |f| &f.waste_settled),
        )?;
    }
    let (ga, gs) = gov.waste_totals();
    let (fa, fs) = flat.waste_totals();
    writeln!(w, "| **all** | {} | {} | {} |", ga, fs, gs)?;
    if fa.usd != ga.usd {
        writeln!(w, "\n**The passes attempted different unnecessary spend: flat {}, governed {}** (errors during a run?).", fa, ga)?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "| pass | necessary attempted | necessary reached the merchant | all settled |"
    )?;
    writeln!(w, "|---|---:|---:|---:|")?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "| {} | {} | {} | {} |",
            f.label, f.necessary_attempted, f.necessary_through, f.total_settled
        )?;
    }
    writeln!(w)?;
    writeln!(w, "Payments refused (`403`), by the rule that decided:")?;
    writeln!(w)?;
    writeln!(w, "| pass | rule | refused |")?;
    writeln!(w, "|---|---|---:|")?;
    for f in [&flat, &gov] {
        if f.denied_by_rule.is_empty() {
            writeln!(w, "| {} | – | 0 |", f.label)?;
        }
        for (rule, sum) in &f.denied_by_rule {
            writeln!(w, "| {} | `{rule}` | {} |", f.label, sum)?;
        }
    }
    writeln!(w)?;
    writeln!(w, "## Failed workflows")?;
    writeln!(w)?;
    writeln!(w, "| pass | failed runs | settled steps of their transactions | refund-requested (stub received it and the log says `requested`) | stub received a refund | log `requested` | recovery over all settled spend of failed runs (reads included) |")?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|")?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "| {} | {} {:?} | {} | {} | {} | {} | {} of {} |",
            f.label,
            f.failed_runs,
            f.failed_by_kind,
            f.failed_tx_settled,
            f.failed_tx_recovered,
            f.failed_tx_stub_refunds,
            f.failed_tx_log_requested,
            fmt_pct(pct(f.failed_tx_recovered.usd, f.failed_all_settled.usd)),
            f.failed_all_settled,
        )?;
    }
    writeln!(w)?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "* {}: rollback calls answered {:?} (status: count); stub received {} refund requests; {}.",
            f.label, f.rollbacks, f.stub.refunds, f.quiescence
        )?;
    }
    writeln!(w)?;
    writeln!(w, "## Approvals")?;
    writeln!(w)?;
    writeln!(w, "| pass | holds approved | held by | approve returned → request at the stub: p50 / p90 / p99 / max (ms) | arrived before the approve answer was read | approve sent → request at the stub, p50 (ms) |")?;
    writeln!(w, "|---|---:|---|---|---:|---:|")?;
    for f in [&flat, &gov] {
        let ms = f.latency_ms();
        let mut sent: Vec<f64> = f
            .sent_to_arrival_ns
            .iter()
            .map(|n| *n as f64 / 1e6)
            .collect();
        sent.sort_by(f64::total_cmp);
        let negatives = f.latencies_ns.iter().filter(|n| **n < 0).count();
        let cell = if ms.is_empty() {
            "–".to_string()
        } else {
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                percentile(&ms, 0.5),
                percentile(&ms, 0.9),
                percentile(&ms, 0.99),
                ms.last().copied().unwrap_or(f64::NAN)
            )
        };
        writeln!(
            w,
            "| {} | {}{} | {:?} | {} | {} | {} |",
            f.label,
            f.approvals,
            if f.approvals_unjoined > 0 {
                format!(" ({} not found at the stub)", f.approvals_unjoined)
            } else {
                String::new()
            },
            f.holds_by_rule,
            cell,
            negatives,
            if sent.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2}", percentile(&sent, 0.5))
            }
        )?;
    }
    writeln!(w)?;
    writeln!(w, "## Audit trail")?;
    writeln!(w)?;
    writeln!(w, "| pass | `purser traces verify` | log lines by kind | settled at the stub | with an authorizing decision line | … and a `committed` settlement line with the stub's transaction |")?;
    writeln!(w, "|---|---|---|---:|---:|---:|")?;
    for f in [&flat, &gov] {
        writeln!(
            w,
            "| {} | {} | {:?} | {} | {} | {} ({}) |",
            f.label,
            if f.log.verified {
                format!("ok ({})", f.log.verify_output.replace('|', "/"))
            } else {
                format!("**FAILED**: {}", f.log.verify_output.replace('|', "/"))
            },
            f.log.view.kinds,
            f.audit_settled,
            f.audit_decision,
            f.audit_complete,
            fmt_pct(pct(
                Decimal::from(f.audit_complete),
                Decimal::from(f.audit_settled)
            )),
        )?;
    }
    writeln!(w)?;
    for f in [&flat, &gov] {
        let digests: Vec<&str> = f
            .log
            .view
            .policies
            .iter()
            .map(|d| &d[..d.len().min(12)])
            .collect();
        writeln!(
            w,
            "* {}: {} phase requests answered {:?}; policy digest(s) in the log {:?}; {} workload errors.",
            f.label,
            f.phase_moves.values().sum::<usize>(),
            f.phase_moves,
            digests,
            f.errors
        )?;
    }
    let checks: Vec<String> = [&flat, &gov]
        .iter()
        .flat_map(|f| f.checks.iter().map(move |c| format!("{}: {c}", f.label)))
        .collect();
    writeln!(w)?;
    if checks.is_empty() {
        writeln!(w, "Cross-checks: the agent's answers, the stub's record and the proof log agree in both passes (every 200 is a settlement and every settlement a payment the workload sent; no digest settled twice; no payment refused by the stub).")?;
    } else {
        writeln!(w, "Cross-checks that failed:")?;
        writeln!(w)?;
        for c in checks {
            writeln!(w, "* {c}")?;
        }
    }
    writeln!(w)?;
    writeln!(w, "## What this does and does not show")?;
    writeln!(w)?;
    writeln!(w, "{CAVEATS}")?;
    writeln!(w)?;
    writeln!(w, "## Definitions")?;
    writeln!(w)?;
    writeln!(w, "{DEFINITIONS}")?;
    Ok(out)
}

const DEFINITIONS: &str = "\
* **Workload** (`bench findings-plan --seed S --runs N` prints it): each run is one session \
(`analyst.rN`). EXPLORE: 2–5 paid reads of distinct sources ($0.01–$0.05); 40% of runs \
re-read 1–3 sources already bought, 5% loop 20–60 times on one, 25% buy a $0.10–$0.30 item \
while exploring. `X-Purser-Phase: DECIDE`; 35% of runs then pay for 1–3 more reads (while \
deciding or among the steps). `X-Purser-Phase: COMMIT`; 2–4 purchases of $0.10–$0.30 in one \
`X-Purser-Transaction`, 30% with a premium purchase of $0.60–$0.95. 20% of runs fail at a \
step after the first: half because the step answers 500 (not settled), half by the agent \
calling `POST /v1/transactions/{id}/rollback` after the step settled. Every paid call is \
a 402 challenge then a v2 `PAYMENT-SIGNATURE` for its exact amount. The human approves \
every hold it is shown.
* **Settled**: in the stub's record (matched by the SHA-256 of the decoded payment, which \
is Purser's `payment_digest`). **Refund-requested**: settled, the stub received a refund \
request naming its receipt transaction, and the proof log has a `compensation` line \
`requested` for its decision.
* **Unnecessary**, known from the plan: duplicate and loop reads, purchases while \
exploring, reads after DECIDE, and the paid steps of a failed run's transaction (unless \
refund-requested; the step that answers 500 is left out, it cannot settle). \
**Reduction** = 1 − unnecessary spend settled and not refund-requested ÷ unnecessary \
spend attempted (sent with a payment).
* **Necessary**: the first read of each needed source and every step of the transaction. \
**Pass rate** = necessary spend that reached the merchant (settled, or the designed 500) \
÷ necessary spend attempted.
* **Failure recovery** = refund-requested ÷ settled spend over the paid steps of failed \
runs' transactions.
* **Approval latency**: the approve call returning (`POST /v1/approvals/{id}/approve`, read \
by the human thread) to the held request reaching the stub, both wall-clock ns on this \
host; a request that arrived before the answer was read counts as 0.
* **Audit completeness** = settled payments with an authorizing decision line (ALLOWED, or \
PENDING_APPROVAL with an approving `hold` line) in a proof log that `purser traces \
verify` accepts ÷ settled payments in the stub's record.
* The flat pass differs only in the policy: no phases (payments allowed from EXPLORE), a \
$3.00 session limit and nothing else (no gates, no threshold, no rules, compensation \
off). Purser still writes its proof log: that is not a policy setting, so the flat \
pass's audit figure is Purser's, not plain logging's.";

const CAVEATS: &str = "\
* The governed policy is written for this workload's shape: research only while exploring, \
purchases only in COMMIT, one snapshot per data source (one tool and one frequency rule \
per source, since Purser has no condition for \"this resource was already paid for in \
this session\"), refunds for failed transactions. The reduction measures how completely \
Purser enforces such a policy on the wire, not how a generic policy would do on waste it \
was not written for. Waste that looks like necessary spend on the wire (an extra purchase \
of the right kind in COMMIT) is not in the workload: no policy could tell it apart.
* The simulated human approves every hold, so approvals never block waste; it only \
times them. The latency is Purser's part only: the human's think time and polling are \
before the approve call.
* Refund-requested is not refunded: the stub acknowledges every request; whether money \
comes back is the merchant's business. The flat pass requests none (no compensation).
* The flat pass still runs through Purser, whose proof log is always written and \
verifies; its audit figure is therefore not the \"plain logging\" baseline of the claim, \
which this bench cannot reproduce without a logger that loses lines.
* Latency is wall-clock time across two processes on one host (the human thread, the \
stub); a request that arrives before the approve answer is read counts as 0 and is listed.";
