//! A fleet that behaves as one Purser (SPEC §8), through the real binary: replicas given
//! one PostgreSQL (`--store`), which each test starts for itself, share budgets, the
//! replay set, phases, holds and the proof log, and a store that dies or freezes refuses
//! payments (`ledger_unavailable`) without ever losing money or stalling reads.
//!
//! * `fleet/budget.rs`: concurrent payments on every replica against one agent budget;
//!   what the facilitator settled, the budget and the proof logs agree.
//! * `fleet/shared.rs`: phases and the replay set across replicas; the fleet's traces.
//! * `fleet/holds.rs`: a hold on one replica, listed and approved on another.
//! * `fleet/faults.rs`: a replica killed mid-payment, the store killed and paused.

mod support;

#[allow(dead_code)]
#[path = "support/merchant.rs"]
mod merchant;

#[path = "fleet/budget.rs"]
mod budget;
#[path = "fleet/faults.rs"]
mod faults;
#[path = "fleet/holds.rs"]
mod holds;
#[path = "fleet/shared.rs"]
mod shared;

use http::HeaderValue;
use purser_kit::client::{basic, Answer, Conn};
use purser_kit::merchant::Merchant;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::postgres::TestPostgres;
use support::{crafted, Purser, PurserOptions};

/// Replicas sharing one store, and the store.
pub(crate) struct Fleet {
    pub replicas: Vec<Purser>,
    pub store: TestPostgres,
    pub database: String,
    pub url: String,
}

impl Fleet {
    /// `count` replicas (`r0`, `r1`, ...) on `policy`, sharing a new database; `None`
    /// when PostgreSQL is missing outside CI (the test is skipped, loudly).
    pub(crate) fn start(name: &str, policy: &str, count: usize, extra: &[&str]) -> Option<Fleet> {
        let store = TestPostgres::start()?;
        let url = store.database(name);
        let replicas = (0..count)
            .map(|index| replica(policy, &url, &format!("r{index}"), extra))
            .collect();
        Some(Fleet {
            replicas,
            store,
            database: name.to_string(),
            url,
        })
    }

    /// Rows of `sql` against the fleet's database.
    pub(crate) fn query(&self, sql: &str) -> Vec<String> {
        self.store.query(&self.database, sql)
    }

    /// One number from the store.
    pub(crate) fn number(&self, sql: &str) -> f64 {
        self.query(sql)
            .first()
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no number from {sql}"))
    }
}

/// One replica named `id` on `url`.
pub(crate) fn replica(policy: &str, url: &str, id: &str, extra: &[&str]) -> Purser {
    let mut options = PurserOptions::new(policy);
    let mut args = vec!["--store", url, "--replica-id", id];
    if !extra.contains(&"--store-timeout") {
        // Generous: the test machine is busy, and a timeout would refuse a payment.
        args.extend(["--store-timeout", "10"]);
    }
    args.extend(extra);
    options.extra_args = args.iter().map(|arg| arg.to_string()).collect();
    Purser::start_with(options)
}

/// The kit's recording merchant and facilitator: every paid request settles, and the
/// record says what settled.
pub(crate) fn facilitator() -> (Arc<Merchant>, SocketAddr) {
    let merchant = Arc::new(Merchant::recording());
    let address = merchant.clone().spawn().expect("start the merchant");
    (merchant, address)
}

/// Proxy credentials of `agent.SESSION`.
pub(crate) fn credentials(session: &str) -> HeaderValue {
    basic(&format!("agent.{session}:t0ken"))
}

/// Sends payment number `n` of `amount` atomic USDC to `url` through `replica`.
pub(crate) async fn pay(conn: &mut Conn, session: &str, url: &str, n: u64, amount: u64) -> Answer {
    let payment = crafted(n, amount).header();
    conn.get_through(
        url,
        &credentials(session),
        &[("payment-signature", &payment)],
        Duration::from_secs(60),
    )
    .await
    .expect("an answer from Purser")
}

/// The decision header of an answer (`ALLOWED`, `DENIED`), or `-`.
pub(crate) fn decision(answer: &Answer) -> String {
    answer
        .header("x-purser-decision")
        .unwrap_or_else(|| "-".into())
}

/// The rule a refusal names.
pub(crate) fn rule(answer: &Answer) -> String {
    answer.json()["rule"].as_str().unwrap_or("").to_string()
}

/// Every replica's proof-log lines, parsed.
pub(crate) fn all_lines(fleet: &Fleet) -> Vec<Value> {
    fleet
        .replicas
        .iter()
        .flat_map(|replica| {
            support::log_files_text(replica)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

/// Waits (bounded) until `condition` holds; false if it never did.
pub(crate) fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}
