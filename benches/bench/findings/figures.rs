//! What one pass of the findings measured (definitions in the module above): the
//! stub's record and the proof log joined to the workload by payment digest.

use super::plan::{Kind, PaymentRecord};
use super::Pass;
use purser_kit::merchant::Record;
use purser_kit::proof_log::{verify, LogView};
use purser_kit::stats::{pct, Sum};
use purser_kit::Error;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// What the stub's record says, by payment digest.
#[derive(Default)]
pub(super) struct StubView {
    /// digest → (receipt transaction, amount atomic, arrival)
    pub settled: HashMap<String, (String, u64, u64)>,
    pub duplicate_digests: usize,
    /// digest → arrival (the failing steps)
    pub failed: HashMap<String, u64>,
    pub refused: usize,
    /// receipt transaction hash → refund requests naming it
    pub refunds_by_tx: HashMap<String, usize>,
    pub refunds: usize,
}

fn stub_view(record: &Record) -> StubView {
    let mut settled = HashMap::new();
    let mut duplicate_digests = 0;
    for s in &record.settlements {
        let id = s.id.clone().unwrap_or_default();
        let entry = (id, s.amount.parse().unwrap_or(0), s.received_unix_ns);
        if settled.insert(s.digest.clone(), entry).is_some() {
            duplicate_digests += 1;
        }
    }
    let failed = record
        .failures
        .iter()
        .map(|f| (f.digest.clone(), f.received_unix_ns))
        .collect();
    let mut refunds_by_tx: HashMap<String, usize> = HashMap::new();
    for r in &record.refunds {
        let tx = r.body["tx_hash"].as_str().unwrap_or_default().to_string();
        *refunds_by_tx.entry(tx).or_default() += 1;
    }
    StubView {
        settled,
        duplicate_digests,
        failed,
        refused: record.refused.len(),
        refunds_by_tx,
        refunds: record.refunds.len(),
    }
}

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
            return Err(format!(
                "{}: {} lines are not JSON",
                trace.display(),
                view.unparsable
            )
            .into());
        }
        Ok(Log {
            view,
            verified,
            verify_output,
        })
    }

    /// The decision line that let this payment go out (ALLOWED, or PENDING_APPROVAL with
    /// an approving hold line), if any.
    fn authorizing(&self, digest: &str) -> Option<&str> {
        self.view.decisions.iter().find_map(|d| {
            let ok = d.digest.as_deref() == Some(digest)
                && (d.decision == "ALLOWED"
                    || (d.decision == "PENDING_APPROVAL" && self.view.approved(&d.trace_id)));
            ok.then_some(d.trace_id.as_str())
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
    pub stub: StubView,
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
    let workload = &pass.workload;
    let stub = stub_view(&pass.record);
    let log = Log::read(&pass.trace, purser)?;
    let mut f = Figures {
        label: workload.label.clone(),
        approvals: workload.approvals.len(),
        quiescence: workload.quiescence.clone(),
        log,
        stub,
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
        let settled = f.stub.settled.get(&p.digest);
        let reached = settled.is_some() || f.stub.failed.contains_key(&p.digest);
        let decision_trace = f.log.authorizing(&p.digest);
        let stub_refund = settled.is_some_and(|(tx, _, _)| f.stub.refunds_by_tx.contains_key(tx));
        let log_refund = decision_trace.is_some_and(|t| f.log.view.refund_requested(t));
        let recovered = stub_refund && log_refund;
        // The agent's view and the facilitator's must agree.
        let agent_ok = outcome.status == Some(200);
        if agent_ok != settled.is_some() {
            mismatches += 1;
        }
        if outcome.status == Some(403) {
            let rule = outcome.rule.clone().unwrap_or_else(|| "?".to_string());
            f.denied_by_rule
                .entry(rule)
                .or_default()
                .add(p.amount_atomic);
        }
        if settled.is_some() {
            f.total_settled.add(p.amount_atomic);
        }
        if let Some(waste) = Waste::of(p) {
            f.waste_attempted
                .entry(waste)
                .or_default()
                .add(p.amount_atomic);
            if settled.is_some() && !recovered {
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
        if p.failed_run && settled.is_some() {
            f.failed_all_settled.add(p.amount_atomic);
            if p.in_transaction {
                f.failed_tx_settled.add(p.amount_atomic);
                if recovered {
                    f.failed_tx_recovered.add(p.amount_atomic);
                }
                if stub_refund {
                    f.failed_tx_stub_refunds.add(p.amount_atomic);
                }
                if log_refund {
                    f.failed_tx_log_requested.add(p.amount_atomic);
                }
            }
        }
    }
    if mismatches > 0 {
        f.checks.push(format!(
            "**{mismatches} payments where the agent's 200 and the stub's settlement disagree**"
        ));
    }
    if unattempted > 0 {
        f.checks.push(format!(
            "{unattempted} planned payments were not attempted (probe failed; see errors)"
        ));
    }
    let foreign = f
        .stub
        .settled
        .keys()
        .filter(|d| !planned_digests.contains(d.as_str()))
        .count();
    if foreign > 0 {
        f.checks.push(format!(
            "**{foreign} settlements in the stub's record the workload did not send**"
        ));
    }
    if f.stub.duplicate_digests > 0 || f.stub.refused > 0 {
        f.checks.push(format!(
            "**the stub settled {} payment digests twice and refused {} payments**",
            f.stub.duplicate_digests, f.stub.refused
        ));
    }
    let refunded_txs: usize = f.stub.refunds_by_tx.values().filter(|n| **n > 1).count();
    if refunded_txs > 0 {
        f.checks.push(format!(
            "{refunded_txs} receipt transactions got more than one refund request"
        ));
    }
    // Approvals: joined to the stub's arrival by payment digest.
    for a in &workload.approvals {
        for rule in a.rules.as_array().into_iter().flatten() {
            *f.holds_by_rule
                .entry(rule.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        let arrival = f
            .stub
            .settled
            .get(&a.digest)
            .map(|s| s.2)
            .or_else(|| f.stub.failed.get(&a.digest).copied());
        match (arrival, a.status) {
            (Some(at), 200) => {
                f.latencies_ns
                    .push(i128::from(at) - i128::from(a.approve_returned_unix_ns));
                f.sent_to_arrival_ns
                    .push(i128::from(at) - i128::from(a.approve_sent_unix_ns));
            }
            _ => f.approvals_unjoined += 1,
        }
    }
    // Audit: every settlement in the stub's record against the verified log.
    for (digest, (tx, _, _)) in &f.stub.settled {
        f.audit_settled += 1;
        if !f.log.verified {
            continue;
        }
        if let Some(trace) = f.log.authorizing(digest) {
            f.audit_decision += 1;
            let settled = f.log.view.settlements.get(trace).and_then(|s| s.last());
            if settled.is_some_and(|(outcome, t)| outcome == "committed" && t.as_ref() == Some(tx))
            {
                f.audit_complete += 1;
            }
        }
    }
    f.audit_settled += f.stub.duplicate_digests;
    Ok(f)
}

impl Figures {
    pub(super) fn waste_totals(&self) -> (Sum, Sum) {
        let total = |m: &BTreeMap<Waste, Sum>| {
            m.values().fold(Sum::default(), |a, s| Sum {
                n: a.n + s.n,
                usd: a.usd + s.usd,
            })
        };
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
