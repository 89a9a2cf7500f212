//! The decision and the ledger, in process:
//! * `decision/20_rules_with_tiers`: one `evaluate()` on a 20-rule policy with 4 tiers.
//! * `ledger/reserve_commit_contended`: reserve + commit while a second thread does the
//!   same on the same accounts.
//!
//! Run: `cargo bench --bench decision`.

use criterion::{criterion_main, Criterion};
use purser::engine::evaluate::{evaluate, PaymentFacts, RecentPayment};
use purser::ledger::{BudgetView, Ledger, Outcome, ReserveRequest};
use purser::policy::rules::{Phase, Trust};
use purser::policy::{Limits, Policy};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 20 rules and 4 tiers.
const POLICY: &str = include_str!("decision-policy.yaml");

fn decision(c: &mut Criterion) {
    let policy = Policy::from_yaml(Path::new("bench.yaml"), POLICY).expect("bench policy");
    assert_eq!(policy.rules.len(), 20);
    let now = Instant::now();
    let recent: std::collections::VecDeque<RecentPayment> = (0..20)
        .map(|i| RecentPayment {
            at: now - Duration::from_secs(60 * i),
            tier: Some("autonomous".into()),
            tool: Some("pay_for_data".into()),
            category: Some("data".into()),
            host: "api.feeds.example".into(),
            port: 443,
        })
        .collect();
    let tool = policy.tool_for("api.feeds.example", 443, "/market/eurusd");
    let facts = PaymentFacts {
        phase: Phase::Commit,
        cost_usd: Decimal::from_str("0.05").unwrap(),
        tool: tool.map(|t| t.name.as_str()),
        category: policy.category_for(tool, "api.feeds.example", 443, "/market/eurusd"),
        host: "api.feeds.example",
        port: 443,
        trust: Trust::Verified,
        budget: BudgetView::default(),
        limits: policy.limits_for("agent"),
        minute_of_day: 10 * 60,
        now,
        recent: &recent,
    };
    c.bench_function("decision/20_rules_with_tiers", |b| {
        b.iter(|| black_box(evaluate(&policy, black_box(&facts))))
    });
}

fn ledger(c: &mut Criterion) {
    let ledger = Arc::new(Ledger::new());
    let limits = Limits {
        session: Some(Decimal::from(1_000_000_000u64)),
        agent: Some(Decimal::from(1_000_000_000u64)),
        fleet: Some(Decimal::from(1_000_000_000u64)),
        single_call_threshold: None,
    };
    let amount = Decimal::from_str("0.01").unwrap();
    let request = move |session: &'static str| ReserveRequest {
        session,
        agent: "agent",
        pay_to: "0x2096000000000000000000000000000000000287",
        amount,
        limits,
        halt_ratio: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rival = {
        let ledger = ledger.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(id) = ledger.reserve(request("agent.rival")) {
                    ledger.settle(id, Outcome::Committed);
                }
            }
        })
    };
    c.bench_function("ledger/reserve_commit_contended", |b| {
        b.iter(|| {
            let id = ledger
                .reserve(black_box(request("agent.bench")))
                .expect("room");
            black_box(ledger.settle(id, Outcome::Committed))
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = rival.join();
}

/// Both groups, configured from the command line. Written out rather than with
/// `criterion_group!`, whose `pub fn` cannot carry the doc comment the crate's lints ask for.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    decision(&mut criterion);
    ledger(&mut criterion);
}

criterion_main!(benches);
