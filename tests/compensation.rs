//! Compensation through the official x402 SDK: a paid step followed by a failing step in
//! one transaction makes exactly one refund request, traced; a refund still pending when
//! Purser dies is resumed after the restart.

mod support;

use support::origin::Origin;
use support::python::{agent, paid_server, Facilitator};
use support::{Purser, TempDir};

fn policy(refund_port: u16) -> String {
    format!(
        r#"
agents:
  agent: {{ token: t0ken }}
  intruder: {{ token: other }}
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 5.00
compensation:
  enabled: true
  default_action: refund
  endpoint: http://127.0.0.1:{refund_port}/refunds
  credit_budget: true
"#
    )
}

fn proxy(purser: &Purser) -> String {
    purser.proxy_url(Some(("agent.tx", "t0ken")))
}

fn compensation_lines(purser: &Purser) -> Vec<serde_json::Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|l| l["kind"] == "compensation")
        .collect()
}

fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn a_failed_step_refunds_the_paid_step_of_its_transaction() {
    let dir = TempDir::new("compensation");
    let refunds = Origin::plain_blocking();
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "50000"]);
    let purser = Purser::start(&policy(refunds.port()), None);
    let step = |path: &str| {
        agent(
            &server.url("http", path),
            &proxy(&purser),
            None,
            &["--header", "X-Purser-Transaction: order-7"],
        )
        .remove(0)
    };
    let paid = step("/paid/data");
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(facilitator.settlements().len(), 1);
    // Another agent naming the same transaction cannot fail it: transactions are per agent.
    let intruder = support::http_status(&[
        "-x",
        &purser.proxy_url(Some(("intruder", "other"))),
        "-H",
        "X-Purser-Transaction: order-7",
        &server.url("http", "/fail"),
    ]);
    assert_eq!(intruder, "500");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        refunds.requests().is_empty(),
        "another agent's failure refunds nothing of this agent's transaction"
    );
    let failed = step("/fail");
    assert_eq!(failed.status, 500);
    assert!(
        wait_for(|| !refunds.requests().is_empty()),
        "a refund request arrives"
    );
    assert!(wait_for(|| compensation_lines(&purser)
        .iter()
        .any(|l| l["outcome"] == "requested")));
    let received = refunds.requests();
    assert_eq!(received.len(), 1, "exactly one refund request");
    assert_eq!(received[0].path, "/refunds");
    let body: serde_json::Value = serde_json::from_slice(&received[0].body_prefix).unwrap();
    let settlement = &facilitator.settlements()[0];
    assert_eq!(body["amount"], "50000");
    assert_eq!(body["pay_to"], "0x2096000000000000000000000000000000000287");
    assert_eq!(body["payer"], settlement["payer"]);
    assert_eq!(body["tx_hash"], settlement["transaction"]);
    assert_eq!(body["transaction"], "order-7");
    assert_eq!(body["network"], "eip155:84532");
    assert!(body["trace_id"].as_str().unwrap().starts_with("tr_"));
    // The header never reaches the merchant, and the budget was credited back.
    let lines = compensation_lines(&purser);
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "pending").count(),
        1
    );
    assert_eq!(lines.last().unwrap()["compensation"]["loss_usd"], "0.05");
    let (_, session) = purser.admin("GET", "/v1/sessions/agent.tx", None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&session).unwrap()["spent"],
        "0"
    );
}

#[test]
fn a_pending_refund_resumes_after_a_restart() {
    let dir = TempDir::new("compensation-restart");
    let refund_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "50000"]);
    let mut purser = Purser::start(&policy(refund_port), None);
    let step = |purser: &Purser, path: &str| {
        agent(
            &server.url("http", path),
            &proxy(purser),
            None,
            &["--header", "X-Purser-Transaction: order-8"],
        )
        .remove(0)
    };
    assert_eq!(step(&purser, "/paid/data").status, 200);
    assert_eq!(step(&purser, "/fail").status, 500);
    // The refund endpoint is down: the refund stays pending while Purser retries.
    assert!(wait_for(|| compensation_lines(&purser)
        .iter()
        .any(|l| l["outcome"] == "pending")));
    purser.kill();
    assert!(!compensation_lines(&purser)
        .iter()
        .any(|l| l["outcome"] == "requested"));
    let refunds = Origin::plain_blocking_on(refund_port);
    purser.restart();
    assert!(
        wait_for(|| !refunds.requests().is_empty()),
        "the refund resumes after the restart"
    );
    assert!(wait_for(|| compensation_lines(&purser)
        .iter()
        .any(|l| l["outcome"] == "requested")));
    assert_eq!(refunds.requests().len(), 1);
}

#[test]
fn the_transaction_header_never_reaches_the_merchant() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(&policy(9), None);
    let output = support::curl(&[
        "-s",
        "-x",
        &proxy(&purser),
        "-H",
        "X-Purser-Transaction: order-9",
        "-H",
        "X-Purser-Phase: DECIDE",
        &format!("http://127.0.0.1:{}/step", origin.port()),
    ]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok");
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("x-purser-transaction"));
    assert!(!seen[0].headers.contains_key("x-purser-phase"));
}
