//! What every replica shares besides money: a phase moved through one replica holds on
//! the others, a payment forwarded by one is a replay on every other, and any replica
//! shows the fleet's proof log, whose chains `purser traces verify --store` checks.

use super::{decision, facilitator, pay, rule, wait_for, Fleet};
use purser_kit::client::Conn;
use std::ffi::OsStr;

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
budget:
  session_limit: 1.00
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phase_moved_on_one_replica_holds_on_another_and_replays_cross_replicas() {
    let Some(fleet) = Fleet::start("shared", POLICY, 3, &[]) else {
        return;
    };
    let (merchant, address) = facilitator();
    let url = format!("http://{address}/paid");
    let (a, b, c) = (&fleet.replicas[0], &fleet.replicas[1], &fleet.replicas[2]);
    let mut on_b = Conn::new(b.proxy);
    let early = pay(&mut on_b, "s1", &url, 1, 10_000).await;
    assert_eq!(decision(&early), "DENIED", "EXPLORE does not pay");

    // The phase moves through A's admin API; B's next decision reads it from the store.
    a.set_phase("agent.s1", "DECIDE");
    a.set_phase("agent.s1", "COMMIT");
    let (status, body) = c.admin("GET", "/v1/sessions/agent.s1", None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"phase\":\"COMMIT\""),
        "C sees the phase: {body}"
    );
    let paid = pay(&mut on_b, "s1", &url, 2, 10_000).await;
    assert_eq!(decision(&paid), "ALLOWED", "{}", paid.excerpt());

    // The same payment through A: a replay, whichever replica forwarded it first.
    let mut on_a = Conn::new(a.proxy);
    let replayed = pay(&mut on_a, "s1", &url, 2, 10_000).await;
    assert_eq!(decision(&replayed), "DENIED");
    assert_eq!(
        rule(&replayed),
        "replayed_payment",
        "{}",
        replayed.excerpt()
    );
    assert_eq!(
        merchant.record().settlements.len(),
        1,
        "one payment settled"
    );

    // Any replica shows the fleet's lines: C never decided anything for agent.s1.
    assert!(
        wait_for(|| {
            let (_, body) = c.admin("GET", "/v1/traces?session=agent.s1&kind=decision", None);
            body.matches("\"kind\":\"decision\"").count() >= 3
        }),
        "C's /v1/traces shows the decisions A and B made"
    );

    // Every replica's chain in the store checks.
    let verified = crate::support::purser_cli(&[
        OsStr::new("traces"),
        OsStr::new("verify"),
        OsStr::new("--store"),
        OsStr::new(&fleet.url),
    ]);
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        out.contains("replica r0") && out.contains("replica r1"),
        "{out}"
    );

    // A line altered in the store is named.
    fleet.query(
        "UPDATE purser_trace_lines SET line = replace(line, 'DENIED', 'ALLOWED') \
          WHERE replica = 'r1' AND seq = 1",
    );
    let tampered = crate::support::purser_cli(&[
        OsStr::new("traces"),
        OsStr::new("verify"),
        OsStr::new("--store"),
        OsStr::new(&fleet.url),
    ]);
    let out = String::from_utf8_lossy(&tampered.stdout);
    assert!(!tampered.status.success(), "{out}");
    assert!(out.contains("BROKEN: replica r1 line 1"), "{out}");
}

const UNKNOWN_POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
budget:
  agent_limit: 1.00
"#;

/// Each replica screens a payment's keys in the same round trip as its reservation. A
/// payment refused by a rule gives its keys back, so it can be sent again once the rule
/// allows it; a payment whose outcome is unknown can be retried, once, through any
/// replica, and a copy of it from another session is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_payments_can_be_sent_again_and_unknown_ones_retried_through_another_replica() {
    let Some(fleet) = Fleet::start("screen", UNKNOWN_POLICY, 2, &[]) else {
        return;
    };
    let merchant = crate::merchant::Merchant::start();
    let (a, b) = (&fleet.replicas[0], &fleet.replicas[1]);
    let mut on_a = Conn::new(a.proxy);
    let mut on_b = Conn::new(b.proxy);

    // Refused in EXPLORE, then the same signed payment once the session is in COMMIT.
    let settled = merchant.url("/settled");
    let early = pay(&mut on_a, "s1", &settled, 1, 10_000).await;
    assert_eq!(rule(&early), "phase", "{}", early.excerpt());
    a.set_phase("agent.s1", "DECIDE");
    a.set_phase("agent.s1", "COMMIT");
    let again = pay(&mut on_a, "s1", &settled, 1, 10_000).await;
    assert_eq!(decision(&again), "ALLOWED", "{}", again.excerpt());

    // An answer with no receipt: the outcome is unknown, and the amount stays counted.
    let silent = merchant.url("/ok");
    let first = pay(&mut on_a, "s1", &silent, 2, 20_000).await;
    assert_eq!(decision(&first), "ALLOWED", "{}", first.excerpt());
    let unknown = "SELECT unknown FROM purser_agents WHERE agent = 'agent'";
    assert!(
        wait_for(|| fleet.number(unknown) == 0.02),
        "the payment without a receipt is unknown in the store"
    );

    // The same payment from another session, through B: a replay of the unknown one.
    b.set_phase("agent.s2", "DECIDE");
    b.set_phase("agent.s2", "COMMIT");
    let copy = pay(&mut on_b, "s2", &silent, 2, 20_000).await;
    assert_eq!(rule(&copy), "replayed_payment", "{}", copy.excerpt());
    let reason = copy.json()["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("is not its retry"), "{}", copy.excerpt());

    // Its retry, through B: judged as the retry, and settled this time.
    let elsewhere = pay(&mut on_b, "s1", &settled, 2, 20_000).await;
    assert_eq!(
        rule(&elsewhere),
        "replayed_payment",
        "a retry asks for the same resource"
    );
    let retry = pay(&mut on_b, "s1", &silent, 2, 20_000).await;
    assert_eq!(decision(&retry), "ALLOWED", "{}", retry.excerpt());
    let lines = super::all_lines(&fleet);
    assert!(
        lines
            .iter()
            .any(|line| line["kind"] == "decision" && line["retry_of"].is_string()),
        "B's decision line names the payment it retries"
    );
}

const QUOTED_POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  agent_limit: 1.00
x402:
  require_challenge: true
"#;

/// Behind a load balancer the 402 and its paid retry may go through different replicas:
/// the challenge one replica passed back is shared, so another can price the payment
/// against it. A payment that answers no challenge any replica saw is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_challenge_seen_on_one_replica_prices_the_payment_on_another() {
    let Some(fleet) = Fleet::start("quoted", QUOTED_POLICY, 2, &[]) else {
        return;
    };
    let (merchant, address) = facilitator();
    let (a, b) = (&fleet.replicas[0], &fleet.replicas[1]);
    let url = format!("http://{address}/paid?price=10000");
    let mut on_a = Conn::new(a.proxy);
    let asked = on_a
        .get_through(
            &url,
            &super::credentials("s1"),
            &[],
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("the 402 through A");
    assert_eq!(asked.status.as_u16(), 402, "{}", asked.excerpt());
    // A's 402 waits only briefly for its challenge to be shared: under load the row can
    // land after the answer, so B's payment waits for it.
    assert!(
        wait_for(|| fleet.number("SELECT count(*) FROM purser_challenges") >= 1.0),
        "A never shared the challenge it passed back"
    );

    let mut on_b = Conn::new(b.proxy);
    let paid = pay(&mut on_b, "s1", &url, 1, 10_000).await;
    assert_eq!(decision(&paid), "ALLOWED", "{}", paid.excerpt());
    assert_eq!(merchant.record().settlements.len(), 1, "settled once");

    // No replica saw a 402 for this resource: unpriceable, refused.
    let other = format!("http://{address}/other?price=10000");
    let unquoted = pay(&mut on_b, "s1", &other, 2, 10_000).await;
    assert_eq!(
        rule(&unquoted),
        "unquoted_payment",
        "{}",
        unquoted.excerpt()
    );
    assert_eq!(
        merchant.record().settlements.len(),
        1,
        "nothing more settled"
    );
}
