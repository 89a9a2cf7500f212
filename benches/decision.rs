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

const POLICY: &str = r#"
budget:
  session_limit: 100.00
  agent_limit: 500.00
  fleet_limit: 5000.00
  single_call_threshold: 5.00
  graduated_gates: { warning: 0.6, restrict: 0.8, halt: 0.95 }
categories:
  data: ["*.data.example", "api.feeds.example/market/*"]
  inference: ["inference.example"]
  saas: ["*.saas.example"]
  gift-cards: ["*.giftcards.example"]
tools:
  pay_for_data: { endpoints: ["api.feeds.example/market/*"], category: data }
  search: { endpoints: ["search.example/paid/*"], category: data }
recipients:
  verified: ["0x2096000000000000000000000000000000000287"]
tiers:
  - { name: prohibited, conditions: { categories: [gift-cards] }, approval: blocked }
  - { name: autonomous, conditions: { max_amount: 1.00, recipient_trust: [verified, known], frequency: { max: 50, per: 1h } }, approval: none }
  - { name: supervised, conditions: { max_amount: 10.00 }, approval: notify_with_veto }
  - { name: collaborative, approval: explicit_human }
rules: |
  BLOCK pay_for_data WHEN phase IS NOT commit
  BLOCK * WHEN budget ABOVE 90%
  REQUIRE APPROVAL FOR * WHEN cost ABOVE 2.50
  FLAG * WHEN time OUTSIDE 09:00-17:00
  @r5 BLOCK search WHEN frequency ABOVE 100 PER 1h
  @r6 BLOCK category:inference WHEN phase IN (EXPLORE, DECIDE)
  @r7 REQUIRE APPROVAL FOR category:saas WHEN cost ABOVE 1 AND recipient IS unknown
  @r8 FLAG *.data.example WHEN cost ABOVE 0.75
  @r9 BLOCK * WHEN recipient IS unknown AND cost ABOVE 50
  @r10 SHADOW BLOCK category:data WHEN frequency ABOVE 30 PER 10m
  @r11 FLAG * WHEN tier IS supervised
  @r12 BLOCK api.blocked.example
  @r13 REQUIRE APPROVAL FOR * WHEN budget_ratio > 0.85 AND cost > 0.10
  @r14 FLAG category:data WHEN time WITHIN 00:00-06:00
  @r15 BLOCK * WHEN category IS gift-cards
  @r16 ALLOW category:data WHEN tier IS autonomous
  @r17 FLAG * WHEN frequency ABOVE 40 PER 1h
  @r18 BLOCK *.evil.example
  @r19 REQUIRE APPROVAL FOR inference.example WHEN cost >= 3
  @r20 FLAG * WHEN recipient IS NOT verified
"#;

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
