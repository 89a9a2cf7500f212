//! The findings report: the four figures of each pass ([`super::figures`]) beside the
//! claimed ones, the details behind them, and the definitions.

use super::figures::{measure, Figures, Waste};
use super::{FindingsArgs, Pass};
use crate::md::table;
use crate::row;
use purser_kit::stats::{self, pct, Sum};
use purser_kit::Error;
use rust_decimal::Decimal;
use std::fmt::Write as _;

fn fmt_pct(p: Option<Decimal>) -> String {
    p.map_or_else(|| "n/a".to_string(), |p| format!("{p}%"))
}

/// The nearest-rank quantile, NaN when there is nothing to rank.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    stats::percentile(sorted, q).unwrap_or(f64::NAN)
}

/// `p50 / p90 / p99 / max` of sorted milliseconds.
fn quantiles_ms(ms: &[f64]) -> String {
    let max = ms.last().copied().unwrap_or(f64::NAN);
    let q = |q| percentile(ms, q);
    format!("{:.2} / {:.2} / {:.2} / {max:.2}", q(0.5), q(0.9), q(0.99))
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
    if (flat_wl.seed, flat_wl.runs) != (gov_wl.seed, gov_wl.runs) {
        return Err(format!(
            "the passes ran different workloads: flat seed {} runs {}, governed seed {} runs {}",
            flat_wl.seed, flat_wl.runs, gov_wl.seed, gov_wl.runs
        )
        .into());
    }
    let flat = measure(flat, &args.purser)?;
    let gov = measure(governed, &args.purser)?;
    let mut w = String::new();
    writeln!(w, "# Governance findings, reproduced\n")?;
    writeln!(
        w,
        "Workload: **{} agent runs, seed {}**, {} runs in flight, human think time {} ms \
         (`bench findings`). Flat pass: `{}`; governed pass: `{}`.\n",
        gov_wl.runs,
        gov_wl.seed,
        gov_wl.concurrency,
        gov_wl.think_ms,
        args.flat_policy.display(),
        args.governed_policy.display()
    )?;
    for note in notes {
        writeln!(w, "* {note}")?;
    }
    writeln!(w, "\n## The four figures\n\n{}", four_figures(&flat, &gov))?;
    writeln!(w, "## Unnecessary spend by kind\n\n{}", spend(&flat, &gov))?;
    writeln!(
        w,
        "## Failed workflows\n\n{}",
        failed_workflows(&flat, &gov)
    )?;
    writeln!(w, "## Approvals\n\n{}", approvals(&flat, &gov))?;
    writeln!(w, "## Audit trail\n\n{}", audit(&flat, &gov))?;
    writeln!(w, "## What this does and does not show\n\n{CAVEATS}\n")?;
    writeln!(w, "## Definitions\n\n{DEFINITIONS}")?;
    Ok(w)
}

/// The claimed figures beside both passes' measured ones, and the governed pass's targets.
fn four_figures(flat: &Figures, gov: &Figures) -> String {
    let g_lat = gov.latency_ms();
    let latency_ok = !g_lat.is_empty() && percentile(&g_lat, 0.5) <= 2.0;
    let p99_note = if latency_ok && percentile(&g_lat, 0.99) > 2.0 {
        "; p99 above 2 ms"
    } else {
        ""
    };
    let necessary = |f: &Figures| fmt_pct(pct(f.necessary_through.usd, f.necessary_attempted.usd));
    let rows = [
        row![
            "unnecessary-spend reduction",
            "12% → 92%",
            fmt_pct(flat.reduction()),
            format!("**{}**", fmt_pct(gov.reduction())),
            format!(
                "≥ 95% ({})",
                met(gov.reduction().is_some_and(|r| r >= Decimal::from(95)))
            )
        ],
        row![
            "workflow-failure recovery",
            "0% → 95%",
            fmt_pct(flat.recovery()),
            format!("**{}**", fmt_pct(gov.recovery())),
            format!(
                "100% of settled spend in failed transactions refund-requested ({})",
                met(gov.recovery() == Some(Decimal::ONE_HUNDRED))
            )
        ],
        row![
            "single-call approval latency",
            "under 45 ms",
            latency_cell(flat),
            format!("**{}**", latency_cell(gov)),
            format!("≤ 2 ms median ({}{p99_note})", met(latency_ok))
        ],
        row![
            "audit-trail completeness",
            "40% → 100%",
            fmt_pct(flat.audit()),
            format!("**{}**", fmt_pct(gov.audit())),
            format!(
                "100%, log verifies ({})",
                met(gov.audit() == Some(Decimal::ONE_HUNDRED) && gov.log.verified)
            )
        ],
        row![
            "*necessary-spend pass rate* (not claimed)",
            "–",
            necessary(flat),
            format!("**{}**", necessary(gov)),
            "100%"
        ],
    ];
    let header = "metric | claimed (flat → governed) | measured flat | measured governed | target (governed)";
    table(header, "llrrl", rows)
}

/// Unnecessary spend by kind, necessary spend, and what the policy refused.
fn spend(flat: &Figures, gov: &Figures) -> String {
    let mut w = "Payments (USD). *Attempted* is the same workload in both passes; *settled* \
        counts what the stub settled and was not refund-requested.\n\n"
        .to_string();
    let of = |sums: &std::collections::BTreeMap<Waste, Sum>, waste| {
        sums.get(&waste).copied().unwrap_or_default()
    };
    let mut rows: Vec<Vec<String>> = Waste::ALL
        .into_iter()
        .map(|waste| {
            row![
                waste.label(),
                of(&gov.waste_attempted, waste),
                of(&flat.waste_settled, waste),
                of(&gov.waste_settled, waste)
            ]
        })
        .collect();
    let ((fa, fs), (ga, gs)) = (flat.waste_totals(), gov.waste_totals());
    rows.push(row!["**all**", ga, fs, gs]);
    let header = "kind | attempted | settled, flat | settled, governed";
    w += &table(header, "lrrr", rows);
    if fa.usd != ga.usd {
        let _ = writeln!(w, "\n**The passes attempted different unnecessary spend: flat {fa}, governed {ga}** (errors during a run?).");
    }
    let passes = [flat, gov];
    let header = "pass | necessary attempted | necessary reached the merchant | all settled";
    let rows = passes.map(|f| {
        row![
            f.label,
            f.necessary_attempted,
            f.necessary_through,
            f.total_settled
        ]
    });
    w += &format!("\n{}\n", table(header, "lrrr", rows));
    w += "Payments refused (`403`), by the rule that decided:\n\n";
    let mut refused = Vec::new();
    for f in passes {
        if f.denied_by_rule.is_empty() {
            refused.push(row![f.label, "–", 0]);
        }
        for (rule, sum) in &f.denied_by_rule {
            refused.push(row![f.label, format!("`{rule}`"), sum]);
        }
    }
    w + &table("pass | rule | refused", "llr", refused)
}

fn failed_workflows(flat: &Figures, gov: &Figures) -> String {
    let header = "pass | failed runs | settled steps of their transactions | refund-requested (stub received it and the log says `requested`) | stub received a refund | log `requested` | recovery over all settled spend of failed runs (reads included)";
    let rows = [flat, gov].map(|f| {
        row![
            f.label,
            format!("{} {:?}", f.failed_runs, f.failed_by_kind),
            f.failed_tx_settled,
            f.failed_tx_recovered,
            f.failed_tx_stub_refunds,
            f.failed_tx_log_requested,
            format!(
                "{} of {}",
                fmt_pct(pct(f.failed_tx_recovered.usd, f.failed_all_settled.usd)),
                f.failed_all_settled
            )
        ]
    });
    let mut w = table(header, "llrrrrr", rows) + "\n";
    for f in [flat, gov] {
        let _ = writeln!(
            w,
            "* {}: rollback calls answered {:?} (status: count); stub received {} refund requests; {}.",
            f.label, f.rollbacks, f.stub_refunds, f.quiescence
        );
    }
    w
}

fn approvals(flat: &Figures, gov: &Figures) -> String {
    let header = "pass | holds approved | held by | approve returned → request at the stub: p50 / p90 / p99 / max (ms) | arrived before the approve answer was read | approve sent → request at the stub, p50 (ms)";
    let rows = [flat, gov].map(|f| {
        let ms = f.latency_ms();
        let mut sent: Vec<f64> = f
            .sent_to_arrival_ns
            .iter()
            .map(|n| *n as f64 / 1e6)
            .collect();
        sent.sort_by(f64::total_cmp);
        let unjoined = match f.approvals_unjoined {
            0 => String::new(),
            n => format!(" ({n} not found at the stub)"),
        };
        row![
            f.label,
            format!("{}{unjoined}", f.approvals),
            format!("{:?}", f.holds_by_rule),
            if ms.is_empty() {
                "–".to_string()
            } else {
                quantiles_ms(&ms)
            },
            f.latencies_ns.iter().filter(|n| **n < 0).count(),
            if sent.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2}", percentile(&sent, 0.5))
            }
        ]
    });
    table(header, "lrllrr", rows)
}

fn audit(flat: &Figures, gov: &Figures) -> String {
    let header = "pass | `purser traces verify` | log lines by kind | settled at the stub | with an authorizing decision line | … and a `committed` settlement line with the stub's transaction";
    let rows = [flat, gov].map(|f| {
        let verify = match f.log.verified {
            true => format!("ok ({})", f.log.verify_output),
            false => format!("**FAILED**: {}", f.log.verify_output),
        };
        let complete = pct(
            Decimal::from(f.audit_complete),
            Decimal::from(f.audit_settled),
        );
        row![
            f.label,
            verify,
            format!("{:?}", f.log.view.kinds),
            f.audit_settled,
            f.audit_decision,
            format!("{} ({})", f.audit_complete, fmt_pct(complete))
        ]
    });
    let mut w = table(header, "lllrrr", rows) + "\n";
    for f in [flat, gov] {
        let digests: Vec<&str> = f
            .log
            .view
            .policies
            .iter()
            .map(|d| &d[..d.len().min(12)])
            .collect();
        let _ = writeln!(
            w,
            "* {}: {} phase requests answered {:?}; policy digest(s) in the log {digests:?}; {} workload errors.",
            f.label,
            f.phase_moves.values().sum::<usize>(),
            f.phase_moves,
            f.errors
        );
    }
    let checks: Vec<String> = [flat, gov]
        .iter()
        .flat_map(|f| f.checks.iter().map(move |c| format!("* {}: {c}", f.label)))
        .collect();
    if checks.is_empty() {
        w + "\nCross-checks: the agent's answers, the stub's record and the proof log agree in both \
             passes (every 200 is a settlement and every settlement a payment the workload sent; no \
             digest settled twice; no payment refused by the stub).\n"
    } else {
        w + "\nCross-checks that failed:\n\n" + &checks.join("\n") + "\n"
    }
}

/// What the figures mean; the module documentation above refers here.
pub(super) const DEFINITIONS: &str = "\
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
