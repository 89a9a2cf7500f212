//! What one pass of the findings measured (definitions in the module above): the
//! stub's record and the proof log joined to the workload by payment digest.

use super::plan::{Kind, PaymentRecord};
use super::Pass;
use purser_kit::merchant::Seen;
use purser_kit::proof_log::{verify, LogView};
use purser_kit::stats::{pct, Sum};
use purser_kit::Error;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The proof log of a pass, checked with `purser traces verify`.
#[derive(Default)]
pub(super) struct Log {
    pub view: LogView,
    pub verified: bool,
    pub verify_output: String,
}

impl Log {
    fn read(trace: &Path, purser: &Path) -> Result<Log, Error> {
        let (verified, verify_output) = verify(purser, trace)?;
        let view = LogView::read(trace)?;
        if view.unparsable > 0 {
            let n = view.unparsable;
            return Err(format!("{}: {n} lines are not JSON", trace.display()).into());
        }
        Ok(Log {
            view,
            verified,
            verify_output,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Waste {
    DuplicateRead,
    LoopRead,
    EarlyPurchase,
    LateRead,
    FailedWorkflow,
}

impl Waste {
    pub(super) const ALL: [Waste; 5] = [
        Waste::DuplicateRead,
        Waste::LoopRead,
        Waste::EarlyPurchase,
        Waste::LateRead,
        Waste::FailedWorkflow,
    ];

    fn of(p: &PaymentRecord) -> Option<Waste> {
        match p.kind {
            Kind::DuplicateRead => Some(Waste::DuplicateRead),
            Kind::LoopRead => Some(Waste::LoopRead),
            Kind::EarlyPurchase => Some(Waste::EarlyPurchase),
            Kind::LateRead => Some(Waste::LateRead),
            Kind::Step | Kind::Premium if p.failed_run && p.in_transaction && !p.fails => {
                Some(Waste::FailedWorkflow)
            }
            _ => None,
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Waste::DuplicateRead => "duplicate read of a source already bought",
            Waste::LoopRead => "runaway loop re-reading one source",
            Waste::EarlyPurchase => "purchase while still exploring",
            Waste::LateRead => "read after the run declared DECIDE",
            Waste::FailedWorkflow => "paid step of a failed transaction, not refunded",
        }
    }
}

/// Everything measured in one pass.
#[derive(Default)]
pub(super) struct Figures {
    pub label: String,
    pub waste_attempted: BTreeMap<Waste, Sum>,
    pub waste_settled: BTreeMap<Waste, Sum>,
    pub necessary_attempted: Sum,
    pub necessary_through: Sum,
    pub failed_runs: usize,
    pub failed_by_kind: BTreeMap<String, usize>,
    pub failed_tx_settled: Sum,
    pub failed_tx_recovered: Sum,
    pub failed_tx_stub_refunds: Sum,
    pub failed_tx_log_requested: Sum,
    pub failed_all_settled: Sum,
    /// approve returned → arrival at the stub, ns (negative: arrived first)
    pub latencies_ns: Vec<i128>,
    /// approve sent → arrival
    pub sent_to_arrival_ns: Vec<i128>,
    pub approvals: usize,
    pub approvals_unjoined: usize,
    pub holds_by_rule: BTreeMap<String, usize>,
    pub audit_settled: usize,
    pub audit_decision: usize,
    pub audit_complete: usize,
    pub log: Log,
    /// Refund requests the stub received.
    pub stub_refunds: usize,
    pub denied_by_rule: BTreeMap<String, Sum>,
    pub checks: Vec<String>,
    pub total_settled: Sum,
    pub rollbacks: BTreeMap<u16, usize>,
    pub phase_moves: BTreeMap<(String, u16), usize>,
    pub quiescence: String,
    pub errors: usize,
}

/// Everything one pass measured, from what it sent, the stub's record and the proof log.
pub(super) fn measure(pass: &Pass, purser: &Path) -> Result<Figures, Error> {
    let (workload, record) = (&pass.workload, &pass.record);
    // The stub's record by payment digest: the (last) settlement, the failing steps' arrival.
    let by_digest = record.settled_by_digest();
    let settled: HashMap<&str, &Seen> = by_digest
        .iter()
        .map(|(d, s)| (*d, s[s.len() - 1]))
        .collect();
    let duplicate_digests: usize = by_digest.values().map(|s| s.len() - 1).sum();
    let failed: HashMap<&str, u64> = record
        .failures
        .iter()
        .map(|f| (f.digest.as_str(), f.received_unix_ns))
        .collect();
    let refunds_by_tx = record.refunds_by_tx();
    let refunded = |s: &Seen| refunds_by_tx.contains_key(s.id.as_deref().unwrap_or_default());
    let mut f = Figures {
        label: workload.label.clone(),
        approvals: workload.approvals.len(),
        quiescence: workload.quiescence.clone(),
        log: Log::read(&pass.trace, purser)?,
        stub_refunds: record.refunds.len(),
        ..Figures::default()
    };
    for run in &workload.run_records {
        f.errors += run.errors.len();
        if let Some(kind) = run.failure {
            f.failed_runs += 1;
            *f.failed_by_kind.entry(format!("{kind:?}")).or_default() += 1;
        }
        if let Some((status, _)) = &run.rollback {
            *f.rollbacks.entry(*status).or_default() += 1;
        }
        for (phase, status) in &run.phase_moves {
            *f.phase_moves.entry((phase.clone(), *status)).or_default() += 1;
        }
    }
    let (mut mismatches, mut unattempted) = (0, 0);
    let mut planned_digests = HashSet::new();
    for p in &workload.payments {
        let Some(outcome) = p.outcome.as_ref().filter(|o| o.paid_sent) else {
            unattempted += 1;
            continue;
        };
        planned_digests.insert(p.digest.as_str());
        let settlement = settled.get(p.digest.as_str());
        let reached = settlement.is_some() || failed.contains_key(p.digest.as_str());
        let decision_trace = f.log.view.authorizing(&p.digest);
        let stub_refund = settlement.is_some_and(|s| refunded(s));
        let log_refund = decision_trace.is_some_and(|t| f.log.view.refund_requested(t));
        let recovered = stub_refund && log_refund;
        // The agent's view and the facilitator's must agree.
        if (outcome.status == Some(200)) != settlement.is_some() {
            mismatches += 1;
        }
        if outcome.status == Some(403) {
            let rule = outcome.rule.clone().unwrap_or_else(|| "?".to_string());
            f.denied_by_rule
                .entry(rule)
                .or_default()
                .add(p.amount_atomic);
        }
        if settlement.is_some() {
            f.total_settled.add(p.amount_atomic);
        }
        if let Some(waste) = Waste::of(p) {
            f.waste_attempted
                .entry(waste)
                .or_default()
                .add(p.amount_atomic);
            if settlement.is_some() && !recovered {
                f.waste_settled
                    .entry(waste)
                    .or_default()
                    .add(p.amount_atomic);
            }
        }
        if p.kind.necessary() {
            f.necessary_attempted.add(p.amount_atomic);
            if reached {
                f.necessary_through.add(p.amount_atomic);
            }
        }
        if p.failed_run && settlement.is_some() {
            f.failed_all_settled.add(p.amount_atomic);
            if p.in_transaction {
                let failed_tx = [
                    (&mut f.failed_tx_settled, true),
                    (&mut f.failed_tx_recovered, recovered),
                    (&mut f.failed_tx_stub_refunds, stub_refund),
                    (&mut f.failed_tx_log_requested, log_refund),
                ];
                for (sum, counted) in failed_tx {
                    if counted {
                        sum.add(p.amount_atomic);
                    }
                }
            }
        }
    }
    let foreign = settled
        .keys()
        .filter(|d| !planned_digests.contains(*d))
        .count();
    let refunded_twice = refunds_by_tx.values().filter(|n| **n > 1).count();
    let checks = [
        (
            mismatches,
            "**{} payments where the agent's 200 and the stub's settlement disagree**",
        ),
        (
            unattempted,
            "{} planned payments were not attempted (probe failed; see errors)",
        ),
        (
            foreign,
            "**{} settlements in the stub's record the workload did not send**",
        ),
        (
            duplicate_digests,
            "**the stub settled {} payment digests twice**",
        ),
        (record.refused.len(), "**the stub refused {} payments**"),
        (
            refunded_twice,
            "{} receipt transactions got more than one refund request",
        ),
    ];
    for (n, text) in checks.into_iter().filter(|(n, _)| *n > 0) {
        f.checks.push(text.replace("{}", &n.to_string()));
    }
    // Approvals: joined to the stub's arrival by payment digest.
    for a in &workload.approvals {
        for rule in a.hold["rules"].as_array().into_iter().flatten() {
            let rule = rule.as_str().unwrap_or("?").to_string();
            *f.holds_by_rule.entry(rule).or_default() += 1;
        }
        let digest = a.hold["digest"].as_str().unwrap_or_default();
        let arrival = settled.get(digest).map(|s| s.received_unix_ns);
        match (arrival.or_else(|| failed.get(digest).copied()), &a.status) {
            (Some(at), Ok(_)) => {
                let at = i128::from(at);
                f.latencies_ns.push(at - i128::from(a.returned_unix_ns));
                f.sent_to_arrival_ns.push(at - i128::from(a.sent_unix_ns));
            }
            _ => f.approvals_unjoined += 1,
        }
    }
    // Audit: every settlement in the stub's record against the verified log.
    for (digest, s) in &settled {
        f.audit_settled += 1;
        let trace = f.log.view.authorizing(digest).filter(|_| f.log.verified);
        if let Some(trace) = trace {
            f.audit_decision += 1;
            let logged = f.log.view.settlements.get(trace).and_then(|s| s.last());
            if logged.is_some_and(|(outcome, tx)| outcome == "committed" && tx == &s.id) {
                f.audit_complete += 1;
            }
        }
    }
    f.audit_settled += duplicate_digests;
    Ok(f)
}

impl Figures {
    pub(super) fn waste_totals(&self) -> (Sum, Sum) {
        let total = |m: &BTreeMap<Waste, Sum>| m.values().fold(Sum::default(), |a, s| a.plus(*s));
        (total(&self.waste_attempted), total(&self.waste_settled))
    }

    pub(super) fn reduction(&self) -> Option<Decimal> {
        let (attempted, settled) = self.waste_totals();
        pct(attempted.usd - settled.usd, attempted.usd)
    }

    pub(super) fn recovery(&self) -> Option<Decimal> {
        pct(self.failed_tx_recovered.usd, self.failed_tx_settled.usd)
    }

    pub(super) fn audit(&self) -> Option<Decimal> {
        pct(
            Decimal::from(self.audit_decision),
            Decimal::from(self.audit_settled),
        )
    }

    pub(super) fn latency_ms(&self) -> Vec<f64> {
        let mut ms: Vec<f64> = self
            .latencies_ns
            .iter()
            .map(|ns| (*ns).max(0) as f64 / 1e6)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    }
}
