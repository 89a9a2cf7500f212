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
