//! [`Link`]: this replica's connection to the fleet store, the pool behind it, and what
//! every operation shares: a time limit, an error that says whether the store is
//! unreachable or refused, and the fact that it is down (payments are then refused with
//! `ledger_unavailable`, reads never wait on it).

use super::settings::{redacted, Connection, FleetSettings, StoreSetupError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Connections one replica keeps to the store at most.
const POOL_SIZE: usize = 16;

/// Why a store operation did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// No answer within the time limit (the store is slow, paused or cut off).
    #[error("the fleet store did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or could not be made.
    #[error("the fleet store is unreachable: {0}")]
    Unreachable(String),
    /// The database answered with an error (a schema that does not match, a bug).
    #[error("the fleet store refused the operation: {0}")]
    Refused(String),
}

impl StoreError {
    /// Whether the store may have done the operation anyway (its answer was lost).
    pub(super) fn maybe_done(&self) -> bool {
        !matches!(self, StoreError::Refused(_))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) if !transient(db.code().code()) => StoreError::Refused(db.to_string()),
            Some(db) => StoreError::Unreachable(db.to_string()),
            None => StoreError::Unreachable(error.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => StoreError::Unreachable(other.to_string()),
        }
    }
}

/// SQLSTATEs that say "try again later": connection trouble, a server shutting down or
/// starting, out of resources, a serialization failure or deadlock.
fn transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01"
}

/// The connection to the store and this process's place in the fleet.
pub(crate) struct Link {
    pub pool: Pool,
    /// This process: random per start, so a restarted replica never inherits leases.
    pub instance: i64,
    /// The replica's name, as `--replica-id` gave it.
    pub replica: String,
    /// The longest one operation may take.
    pub timeout: Duration,
    /// How long this process's reservations outlive its last heartbeat.
    pub lease: Duration,
    /// The URL without its password, for messages.
    pub url: String,
    /// What a connection of its own (the hold listener) is made from.
    pub config: tokio_postgres::Config,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Why the store is unreachable, while it is.
    down: Mutex<Option<String>>,
}

impl Link {
    pub(super) fn new(settings: &FleetSettings) -> Result<Link, StoreSetupError> {
        let Connection { config, tls } =
            super::settings::connection(&settings.url, settings.timeout)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| StoreSetupError::Url(e.to_string()))?;
        Ok(Link {
            pool,
            instance: random_id(),
            replica: settings.replica.clone(),
            timeout: settings.timeout,
            lease: settings.lease,
            url: redacted(&settings.url),
            config,
            tls,
            down: Mutex::new(None),
        })
    }

    /// Why payments are refused right now, if the store is unreachable.
    pub(super) fn unavailable(&self) -> Option<String> {
        self.down.lock().clone()
    }

    /// Runs `op` within the time limit, noting whether the store answered.
    pub(super) async fn within<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        self.note(&result);
        result
    }

    /// Records whether the store answered: the first failure and the recovery are logged.
    pub(super) fn note<T>(&self, result: &Result<T, StoreError>) {
        let mut down = self.down.lock();
        match result {
            Ok(_) | Err(StoreError::Refused(_)) => {
                if down.take().is_some() {
                    tracing::info!(store = %self.url, "fleet store reachable again; payments flow");
                }
            }
            Err(error) => {
                if down.is_none() {
                    tracing::error!(store = %self.url, %error, "fleet store unreachable; payments are refused (ledger_unavailable) until it answers");
                }
                *down = Some(error.to_string());
            }
        }
    }

    /// One statement's rows, within the time limit.
    pub(super) async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.within(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, params).await?)
        })
        .await
    }

    /// One statement, for the rows it changed.
    pub(super) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.within(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.execute(&statement, params).await?)
        })
        .await
    }
}

/// A random positive 63-bit id (reservations, claims, credits, processes): unique
/// without asking the store, so an operation whose answer was lost can still be undone.
pub(super) fn random_id() -> i64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Without the OS RNG the clock and a counter still make ids differ.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = jiff::Timestamp::now().as_nanosecond() as u64;
        bytes = (now ^ n.rotate_left(40)).to_le_bytes();
    }
    (u64::from_le_bytes(bytes) >> 1).max(1) as i64
}
