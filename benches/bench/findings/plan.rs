//! The findings workload, planned from a seed (see the module above): each run's
//! payments, phase moves and failure, and `findings-plan`, which prints it.

use super::PlanArgs;
use purser_kit::stats::{usd, SplitMix64, Sum};
use purser_kit::Error;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// USDC has 6 decimals: 10,000 atomic units are $0.01.
const CENT: u64 = 10_000;
/// Data sources and the merchant's price of one snapshot, in atomic units.
const SOURCES: [(&str, u64); 5] = [
    ("market", 2 * CENT),
    ("reviews", 3 * CENT),
    ("pricing", 5 * CENT),
    ("compliance", 4 * CENT),
    ("news", CENT),
];

/// What a payment is, from the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    /// The first read of a source the run needs. Necessary.
    NeededRead,
    /// A source the run already bought, read again. Unnecessary.
    DuplicateRead,
    /// A run stuck re-reading one source. Unnecessary.
    LoopRead,
    /// A purchase-grade call while still exploring. Unnecessary.
    EarlyPurchase,
    /// A read after the run declared DECIDE. Unnecessary.
    LateRead,
    /// A step of the committed transaction. Necessary.
    Step,
    /// A step above the approval threshold. Necessary.
    Premium,
}

impl Kind {
    pub(super) fn necessary(self) -> bool {
        matches!(self, Kind::NeededRead | Kind::Step | Kind::Premium)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum FailureKind {
    /// The failing step answers 500 (not settled); Purser sees it in the transaction.
    StepAnswers5xx,
    /// The step settles, then the agent rolls the transaction back (admin API).
    AgentRollback,
}

/// One planned payment and, after `run`, what happened to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PaymentRecord {
    pub run: u32,
    /// Unique within the run; the nonce is derived from (seed, run, seq).
    pub seq: u32,
    pub kind: Kind,
    /// Path and query on the stub.
    pub path: String,
    pub amount_atomic: u64,
    /// Sent with the run's `X-Purser-Transaction`.
    pub in_transaction: bool,
    /// This step answers 500 (`fail=1`).
    pub fails: bool,
    /// The run this payment belongs to fails.
    pub failed_run: bool,
    pub nonce: String,
    /// SHA-256 hex of the payment JSON sent (Purser's `payment_digest`).
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Outcome {
    pub probe_status: Option<u16>,
    /// Whether the paid request was sent (the payment was attempted).
    pub paid_sent: bool,
    pub status: Option<u16>,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub trace_id: Option<String>,
    pub error: Option<String>,
}

/// One run, as planned and as it went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct RunRecord {
    pub run: u32,
    pub session: String,
    pub transaction: String,
    pub failure: Option<FailureKind>,
    /// Phase requests: (phase, status).
    #[serde(default)]
    pub phase_moves: Vec<(String, u16)>,
    /// The rollback call: (status, body).
    #[serde(default)]
    pub rollback: Option<(u16, String)>,
    #[serde(default)]
    pub errors: Vec<String>,
}

pub(super) enum Action {
    Pay(Box<PaymentRecord>),
    Phase(&'static str),
    Rollback,
}

struct Planner {
    seed: u64,
    run: u32,
    seq: u32,
}

impl Planner {
    fn payment(&mut self, kind: Kind, amount_atomic: u64, in_transaction: bool) -> PaymentRecord {
        let seq = self.seq;
        self.seq += 1;
        PaymentRecord {
            run: self.run,
            seq,
            kind,
            path: String::new(),
            amount_atomic,
            in_transaction,
            fails: false,
            failed_run: false,
            nonce: format!("0x{:016x}{:016x}{:032x}", self.seed, self.run, seq),
            digest: String::new(),
            outcome: None,
        }
    }

    fn read(&mut self, kind: Kind, source: usize) -> PaymentRecord {
        let (name, price) = SOURCES[source];
        let mut p = self.payment(kind, price, false);
        p.path = format!("/research/{name}?price={price}&run={}&seq={}", p.run, p.seq);
        p
    }

    fn purchase(&mut self, kind: Kind, label: &str, amount: u64, in_tx: bool) -> PaymentRecord {
        let mut p = self.payment(kind, amount, in_tx);
        p.path = format!("/purchase/r{}/{label}?price={amount}", p.run);
        p
    }
}

pub(super) fn session_name(run: u32) -> String {
    format!("r{run}")
}

/// The plan of run `run` of workload `seed`.
pub(super) fn plan_run(seed: u64, run: u32) -> (RunRecord, Vec<Action>) {
    let mut rng = SplitMix64::stream(seed, u64::from(run));
    let mut p = Planner { seed, run, seq: 0 };
    // Exploration: distinct needed sources, then the waste inserted among them.
    let need = rng.range(2, 5) as usize;
    let mut order: Vec<usize> = (0..SOURCES.len()).collect();
    rng.shuffle(&mut order);
    let needed = order[..need].to_vec();
    let mut explore: Vec<(usize, PaymentRecord)> = needed
        .iter()
        .map(|&s| (s, p.read(Kind::NeededRead, s)))
        .collect();
    let first_read = |explore: &[(usize, PaymentRecord)], source: usize| {
        explore
            .iter()
            .position(|(s, r)| *s == source && r.kind == Kind::NeededRead)
            .expect("needed sources are read")
    };
    if rng.chance(40) {
        for _ in 0..rng.range(1, 3) {
            let source = needed[rng.index(need)];
            let after = first_read(&explore, source) + 1;
            let at = rng.range(after as u64, explore.len() as u64) as usize;
            explore.insert(at, (source, p.read(Kind::DuplicateRead, source)));
        }
    }
    if rng.chance(5) {
        let source = needed[rng.index(need)];
        let after = first_read(&explore, source) + 1;
        let at = rng.range(after as u64, explore.len() as u64) as usize;
        for i in 0..rng.range(20, 60) as usize {
            explore.insert(at + i, (source, p.read(Kind::LoopRead, source)));
        }
    }
    if rng.chance(25) {
        let amount = rng.range(10, 30) * CENT;
        let at = rng.range(0, explore.len() as u64) as usize;
        explore.insert(
            at,
            (
                usize::MAX,
                p.purchase(Kind::EarlyPurchase, "early", amount, false),
            ),
        );
    }
    // Reads after deciding: while deciding, or among the committed steps.
    let late: Vec<(bool, PaymentRecord)> = if rng.chance(35) {
        (0..rng.range(1, 3))
            .map(|_| {
                let source = rng.index(SOURCES.len());
                let in_commit = rng.chance(50);
                (in_commit, p.read(Kind::LateRead, source))
            })
            .collect()
    } else {
        Vec::new()
    };
    // The committed transaction.
    let steps = rng.range(2, 4);
    let mut commit: Vec<PaymentRecord> = (0..steps)
        .map(|i| {
            let amount = rng.range(10, 30) * CENT;
            p.purchase(Kind::Step, &format!("step{i}"), amount, true)
        })
        .collect();
    if rng.chance(30) {
        let amount = rng.range(60, 95) * CENT;
        let at = rng.range(0, commit.len() as u64) as usize;
        commit.insert(at, p.purchase(Kind::Premium, "premium", amount, true));
    }
    let failure = rng.chance(20).then(|| {
        let at = rng.range(1, commit.len() as u64 - 1) as usize;
        let kind = if rng.chance(50) {
            FailureKind::StepAnswers5xx
        } else {
            FailureKind::AgentRollback
        };
        (at, kind)
    });
    let failing_seq = failure.map(|(at, _)| commit[at].seq);
    let mut commit_actions: Vec<PaymentRecord> = commit;
    let mut decide_reads = Vec::new();
    for (in_commit, read) in late {
        if in_commit {
            let at = rng.range(0, commit_actions.len() as u64) as usize;
            commit_actions.insert(at, read);
        } else {
            decide_reads.push(read);
        }
    }
    // The run stops at its failing step.
    if let (Some(seq), Some((_, kind))) = (failing_seq, failure) {
        let at = commit_actions
            .iter()
            .position(|r| r.seq == seq)
            .expect("the failing step is planned");
        commit_actions.truncate(at + 1);
        if kind == FailureKind::StepAnswers5xx {
            let step = &mut commit_actions[at];
            step.fails = true;
            step.path.push_str("&fail=1");
        }
    }
    let mut actions: Vec<Action> = explore
        .into_iter()
        .map(|(_, r)| Action::Pay(Box::new(r)))
        .collect();
    actions.push(Action::Phase("DECIDE"));
    actions.extend(decide_reads.into_iter().map(|r| Action::Pay(Box::new(r))));
    actions.push(Action::Phase("COMMIT"));
    actions.extend(commit_actions.into_iter().map(|r| Action::Pay(Box::new(r))));
    if matches!(failure, Some((_, FailureKind::AgentRollback))) {
        actions.push(Action::Rollback);
    }
    if failure.is_some() {
        for action in &mut actions {
            if let Action::Pay(r) = action {
                r.failed_run = true;
            }
        }
    }
    let record = RunRecord {
        run,
        session: session_name(run),
        transaction: format!("wf-{seed:x}-{run}"),
        failure: failure.map(|(_, k)| k),
        phase_moves: Vec::new(),
        rollback: None,
        errors: Vec::new(),
    };
    (record, actions)
}

/// `findings-plan`: the workload's totals by kind of payment (and with `--verbose` every
/// run's actions, a JSON line each); nothing is sent.
pub(crate) fn plan_command(args: &PlanArgs) -> Result<(), Error> {
    let mut totals: BTreeMap<Kind, Sum> = BTreeMap::new();
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    for run in 0..args.runs {
        let (record, actions) = plan_run(args.seed, run);
        let line: Vec<String> = actions
            .iter()
            .map(|action| match action {
                Action::Pay(r) => {
                    totals.entry(r.kind).or_default().add(r.amount_atomic);
                    let (kind, amount) = (r.kind, usd(u128::from(r.amount_atomic)));
                    format!("{kind:?}:{amount}{}", if r.fails { "!" } else { "" })
                }
                Action::Phase(p) => format!("->{p}"),
                Action::Rollback => "ROLLBACK".to_string(),
            })
            .collect();
        if let Some(kind) = record.failure {
            *failures.entry(format!("{kind:?}")).or_default() += 1;
        }
        if args.verbose {
            let failure = record.failure;
            println!(
                "{}",
                json!({"run": run, "failure": failure, "actions": line})
            );
        }
    }
    println!("seed {} runs {}", args.seed, args.runs);
    for (kind, sum) in &totals {
        println!("  {kind:?}: {} payments, ${:.2}", sum.n, sum.usd);
    }
    println!("  failed runs: {failures:?}");
    Ok(())
}
