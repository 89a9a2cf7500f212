//! Faults: a replica killed while its payment is upstream loses no money and unlocks
//! nothing (its reservation stays counted, then becomes `unknown`); a store that is
//! killed or frozen refuses payments with `ledger_unavailable` while reads flow, and
//! the fleet recovers by itself once the store is back, settlements included: a decision
//! is on disk before its payment leaves, and a settlement the crash took back is applied
//! again, even with no traffic after it.

use super::{decision, pay, rule, wait_for, Fleet};
use crate::merchant::Merchant;
use purser_kit::client::{basic, Conn};
use std::time::Duration;

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  agent_limit: 1.00
"#;

/// A read through `replica`: no payment, so the store is never asked.
async fn read(proxy: std::net::SocketAddr, url: &str) -> u16 {
    let mut conn = Conn::new(proxy);
    let answer = conn
        .get_through(
            url,
            &basic("agent.reader:t0ken"),
            &[],
            Duration::from_secs(30),
        )
        .await
        .expect("an answer");
    answer.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_payment_leaves_its_reservation_counted_then_unknown() {
    let Some(mut fleet) = Fleet::start("killed", POLICY, 2, &["--store-lease", "2"]) else {
        return;
    };
    let merchant = Merchant::start();
    merchant.hold(true);
    let url = merchant.url("/hold");
    let doomed = fleet.replicas[1].proxy;
    let in_flight = tokio::spawn(async move {
        let mut conn = Conn::new(doomed);
        let _ = conn
            .get_through(
                &url,
                &basic("agent.s1:t0ken"),
                &[(
                    "payment-signature",
                    &crate::support::crafted(1, 400_000).header(),
                )],
                Duration::from_secs(30),
            )
            .await;
    });
    assert!(
        wait_for(|| merchant.waiting() == 1),
        "the payment is upstream"
    );
    fleet.replicas[1].kill();
    let _ = in_flight.await;
    merchant.hold(false);

    // Still counted: reserved while the lease lives, unknown once another replica swept it.
    let exposure = "SELECT committed + unknown + reserved FROM purser_agents WHERE agent = 'agent'";
    assert_eq!(fleet.number(exposure), 0.4);
    assert!(
        wait_for(|| fleet.number("SELECT unknown FROM purser_agents WHERE agent = 'agent'") == 0.4),
        "the dead replica's reservation becomes unknown"
    );
    assert_eq!(fleet.number(exposure), 0.4, "never released");
    let survivor = &fleet.replicas[0];
    let (status, body) = survivor.admin("GET", "/v1/payments?outcome=unknown", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rs_"), "listed for an operator: {body}");
    // The sweeper commits, then queues its line to the trace writer.
    assert!(
        wait_for(|| survivor
            .trace_lines()
            .iter()
            .any(|line| line["kind"] == "settlement"
                && line["outcome"] == "unknown"
                && line["reason"].as_str().is_some_and(|r| r.contains("r1")))),
        "the sweep is traced"
    );

    // The survivor goes on: $0.60 left of the agent's $1.00, and not a cent more.
    let merchant_url = merchant.url("/settled");
    let mut conn = Conn::new(survivor.proxy);
    let fits = pay(&mut conn, "s2", &merchant_url, 2, 600_000).await;
    assert_eq!(decision(&fits), "ALLOWED", "{}", fits.excerpt());
    let over = pay(&mut conn, "s2", &merchant_url, 3, 10_000).await;
    assert_eq!(rule(&over), "budget_limit", "{}", over.excerpt());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_killed_or_frozen_refuses_payments_while_reads_flow_then_recovers() {
    // A short time limit: a frozen store refuses payments after a second.
    let Some(mut fleet) = Fleet::start("faults", POLICY, 2, &["--store-timeout", "1"]) else {
        return;
    };
    // What only an asynchronous commit wrote stays in the server's memory, where the kill
    // takes it back: a decision must be on disk before its payment leaves, whatever the
    // timing.
    fleet.store.freeze_wal_writer();
    let merchant = Merchant::start();
    let paid = merchant.url("/settled");
    let plain = merchant.url("/ok");
    let proxy = fleet.replicas[0].proxy;
    let mut conn = Conn::new(proxy);
    assert_eq!(
        decision(&pay(&mut conn, "s1", &paid, 1, 10_000).await),
        "ALLOWED"
    );

    // A payment upstream when the store dies: its settlement waits for the store.
    merchant.hold(true);
    let held_url = merchant.url("/hold");
    let upstream = tokio::spawn(async move {
        let mut conn = Conn::new(proxy);
        pay(&mut conn, "s2", &held_url, 2, 20_000).await
    });
    assert!(wait_for(|| merchant.waiting() == 1));

    fleet.store.kill();
    let refused = pay(&mut conn, "s1", &paid, 3, 10_000).await;
    assert_eq!(
        rule(&refused),
        "ledger_unavailable",
        "{}",
        refused.excerpt()
    );
    assert_eq!(read(proxy, &plain).await, 200, "reads flow");
    merchant.hold(false);
    let answer = upstream.await.expect("the upstream payment");
    assert_eq!(
        decision(&answer),
        "ALLOWED",
        "it had left; its answer comes back"
    );

    fleet.store.restart();
    // Both decisions survived the crash, the held payment's and the first one's (whose
    // settlement, committed without waiting for the disk, the crash may have taken back:
    // then it is still reserved): every payment that left is counted.
    let exposure = "SELECT coalesce(sum(committed + reserved + unknown), 0) FROM purser_agents";
    assert_eq!(
        fleet.number(exposure),
        0.03,
        "the decision of a payment that left is durable"
    );
    let mut n = 10;
    assert!(
        wait_for(|| {
            n += 1;
            let answer = futures_block(pay_once(proxy, &paid, n));
            answer == "ALLOWED"
        }),
        "payments flow again once the store is back"
    );
    // The held payment's answer had no receipt: unknown, written once the store was back.
    let unknown = "SELECT unknown FROM purser_agents WHERE agent = 'agent'";
    assert!(
        wait_for(|| fleet.number(unknown) == 0.02),
        "the settlement queued while the store was down is written: unknown is {}",
        fleet.number(unknown)
    );
    // The first payment's settlement is applied again after the restart, and the payment
    // that went through once the store was back settles: $0.01 each.
    let committed = "SELECT committed FROM purser_agents WHERE agent = 'agent'";
    assert!(
        wait_for(|| fleet.number(committed) == 0.02),
        "the settlement the crash took back is redone: committed is {}",
        fleet.number(committed)
    );

    // Frozen: nothing answers, payments are refused once the time limit passes.
    fleet.store.pause();
    let frozen = pay(&mut conn, "s3", &paid, 100, 10_000).await;
    assert_eq!(
        rule(&frozen),
        "ledger_unavailable",
        "{}\n{}",
        frozen.excerpt(),
        fleet.replicas[0].stderr()
    );
    assert_eq!(
        read(proxy, &plain).await,
        200,
        "reads flow while the store is frozen"
    );
    fleet.store.resume();
    let mut n = 200;
    assert!(
        wait_for(|| {
            n += 1;
            futures_block(pay_once(proxy, &paid, n)) == "ALLOWED"
        }),
        "payments flow again once the store thaws"
    );
    let exposure = fleet.number("SELECT committed + unknown + reserved FROM purser_fleet");
    assert!(exposure <= 1.0, "never over the budget: {exposure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_a_store_crash_took_back_is_redone_without_more_traffic() {
    // A synchronous commit elsewhere (a lease renewal) may flush the settlement before
    // the crash; then nothing was taken back, and the scenario is run again.
    for attempt in 0..5 {
        let Some(fleet) = settlement_lost_in_a_crash(attempt).await else {
            continue;
        };
        let committed = "SELECT coalesce(sum(committed), 0) FROM purser_agents";
        let reserved = "SELECT coalesce(sum(reserved), 0) FROM purser_agents";
        // No payment follows: the replica notices the restart by itself and applies its
        // latest writes again.
        assert!(
            wait_for(|| fleet.number(committed) == 0.01 && fleet.number(reserved) == 0.0),
            "the settlement is redone: committed {}, reserved {}",
            fleet.number(committed),
            fleet.number(reserved)
        );
        assert!(
            fleet.replicas[0]
                .stderr()
                .contains("the fleet store restarted; applying this replica's latest writes again"),
            "the redo is logged"
        );
        return;
    }
    panic!("in 5 attempts, the store's crash never took a settlement back");
}

/// One replica settles a payment, the store crashes (its WAL writer frozen, so the
/// settlement, committed without waiting for the disk, is not on disk) and restarts. The
/// fleet when the crash took the settlement back (the payment is reserved again, its
/// decision was flushed), `None` when something flushed it first. The replica is stopped
/// across the crash, so it cannot redo the settlement before this looks.
async fn settlement_lost_in_a_crash(attempt: usize) -> Option<Fleet> {
    let mut fleet = Fleet::start(&format!("redo{attempt}"), POLICY, 1, &[])?;
    fleet.store.freeze_wal_writer();
    let merchant = Merchant::start();
    let mut conn = Conn::new(fleet.replicas[0].proxy);
    let paid = pay(&mut conn, "s1", &merchant.url("/settled"), 1, 10_000).await;
    assert_eq!(decision(&paid), "ALLOWED", "{}", paid.excerpt());
    let committed = "SELECT coalesce(sum(committed), 0) FROM purser_agents";
    assert!(
        wait_for(|| fleet.number(committed) == 0.01),
        "the settlement is applied"
    );
    let replica = fleet.replicas[0].pid().to_string();
    signal(&replica, "STOP");
    fleet.store.kill();
    fleet.store.restart();
    let reserved = fleet.number("SELECT coalesce(sum(reserved), 0) FROM purser_agents");
    signal(&replica, "CONT");
    (reserved == 0.01).then_some(fleet)
}

fn signal(pid: &str, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_that_cannot_be_flushed_is_refused_and_its_booking_given_back() {
    let Some(fleet) = Fleet::start("noflush", POLICY, 1, &[]) else {
        return;
    };
    // As if Purser's role could not write the flush's log record.
    fleet.query(
        "CREATE OR REPLACE FUNCTION purser_flush() RETURNS VOID LANGUAGE plpgsql \
         AS $$ BEGIN RAISE EXCEPTION 'flush refused by the test'; END $$",
    );
    let merchant = Merchant::start();
    let mut conn = Conn::new(fleet.replicas[0].proxy);
    let refused = pay(&mut conn, "s1", &merchant.url("/settled"), 1, 10_000).await;
    assert_eq!(
        rule(&refused),
        "ledger_unavailable",
        "{}",
        refused.excerpt()
    );
    assert!(merchant.requests().is_empty(), "the payment never left");
    // The decision committed before the flush failed: its booking is given back.
    assert!(
        wait_for(|| {
            fleet.number("SELECT count(*) FROM purser_reservations") == 0.0
                && fleet.number("SELECT coalesce(sum(reserved), 0) FROM purser_agents") == 0.0
        }),
        "the booking is given back"
    );
    let stderr = fleet.replicas[0].stderr();
    assert!(stderr.contains("not flushed to disk"), "{stderr}");
}

async fn pay_once(proxy: std::net::SocketAddr, url: &str, n: u64) -> String {
    let mut conn = Conn::new(proxy);
    decision(&pay(&mut conn, "retry", url, n, 10_000).await)
}

/// Runs a future to completion from synchronous code inside the test's runtime.
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}
