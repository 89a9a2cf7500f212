//! One agent budget, three replicas, payments racing on all of them: no interleaving
//! overspends. What the facilitator settled, what the store counts and what the
//! replicas' proof logs say all agree.

use super::{all_lines, decision, facilitator, pay, rule, wait_for, Fleet};
use purser_kit::client::Conn;

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  agent_limit: 1.00
"#;

/// $0.01 in atomic USDC.
const CENT: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_on_three_replicas_never_overspend_one_agent_budget() {
    let Some(fleet) = Fleet::start("budget", POLICY, 3, &[]) else {
        return;
    };
    let (merchant, address) = facilitator();
    let url = format!("http://{address}/paid");
    // 3 replicas x 40 connections x 2 payments of $0.01: $2.40 tried against $1.00.
    let mut tasks = Vec::new();
    for (r, replica) in fleet.replicas.iter().enumerate() {
        for c in 0..40u64 {
            let (proxy, url) = (replica.proxy, url.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(proxy);
                let mut answers = Vec::new();
                for k in 0..2u64 {
                    let n = r as u64 * 10_000 + c * 10 + k;
                    let answer = pay(&mut conn, &format!("r{r}c{c}"), &url, n, CENT).await;
                    answers.push((decision(&answer), rule(&answer)));
                }
                answers
            }));
        }
    }
    let mut allowed = 0;
    for task in tasks {
        for (decision, rule) in task.await.expect("payments") {
            match decision.as_str() {
                "ALLOWED" => allowed += 1,
                _ => assert_eq!(rule, "budget_limit", "refused for the budget only"),
            }
        }
    }
    let record = merchant.record();
    let (settled_atomic, unreadable) = record.settled_atomic();
    assert_eq!(unreadable, 0);
    assert_eq!(
        record.settlements.len(),
        allowed,
        "every payment let through settled"
    );
    assert!(
        settled_atomic <= 100 * u128::from(CENT),
        "overspent: {settled_atomic}"
    );
    assert_eq!(
        allowed, 100,
        "the whole budget, and not a cent more, was spent"
    );

    // The store: all of it committed once the settlements are written, nothing reserved.
    assert!(
        wait_for(
            || fleet.number("SELECT reserved FROM purser_agents WHERE agent = 'agent'") == 0.0
        ),
        "reservations left"
    );
    let committed = fleet.number("SELECT committed FROM purser_agents WHERE agent = 'agent'");
    assert_eq!(committed, 1.0);
    assert_eq!(fleet.number("SELECT committed FROM purser_fleet"), 1.0);

    // The proof logs: one ALLOWED decision and one committed settlement per payment.
    let lines = all_lines(&fleet);
    let count = |kind: &str, field: &str, value: &str| {
        lines
            .iter()
            .filter(|line| line["kind"] == kind && line[field] == value)
            .count()
    };
    assert_eq!(count("decision", "decision", "ALLOWED"), allowed);
    assert!(
        wait_for(|| {
            let lines = all_lines(&fleet);
            lines
                .iter()
                .filter(|l| l["kind"] == "settlement" && l["outcome"] == "committed")
                .count()
                == allowed
        }),
        "a committed settlement line per payment"
    );
    let admin = fleet.replicas[2].admin("GET", "/v1/sessions/agent.r0c0", None);
    assert_eq!(admin.0, 200, "{}", admin.1);
    let view: serde_json::Value = serde_json::from_str(&admin.1).unwrap();
    assert_eq!(
        view["agent_spent"], "1",
        "any replica shows the fleet's agent budget: {view}"
    );
}
