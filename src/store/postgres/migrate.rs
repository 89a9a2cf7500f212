//! The store's schema: versioned migrations in plain SQL (`migrations/NNNN_name.sql`),
//! applied in order when a replica starts. Each runs in its own transaction under an
//! advisory lock, so replicas starting together apply each exactly once; applied versions
//! are listed in `purser_schema`.

use super::link::{Link, StoreError};
use std::time::Duration;

/// Every migration, oldest first: version, name, SQL.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "fleet", include_str!("migrations/0001_fleet.sql")),
    (2, "audit", include_str!("migrations/0002_audit.sql")),
    (3, "decide", include_str!("migrations/0003_decide.sql")),
    (
        4,
        "challenges",
        include_str!("migrations/0004_challenges.sql"),
    ),
    (
        5,
        "drop_reserve",
        include_str!("migrations/0005_drop_reserve.sql"),
    ),
    (6, "flush", include_str!("migrations/0006_flush.sql")),
];

/// How long applying the schema may take (creating tables, not a payment's wait).
const MIGRATION_TIME: Duration = Duration::from_secs(60);

/// Brings the schema up to date. A schema newer than this Purser knows is refused.
pub(super) async fn migrate(link: &Link) -> Result<Vec<i32>, StoreError> {
    let work = async {
        let mut client = link.pool.get().await?;
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            let transaction = client.transaction().await?;
            transaction
                .batch_execute(
                    "SELECT pg_advisory_xact_lock(hashtext('purser_schema')); \
                     CREATE TABLE IF NOT EXISTS purser_schema ( \
                         version INTEGER PRIMARY KEY, \
                         name    TEXT NOT NULL, \
                         applied TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await?;
            let newest: Option<i32> = transaction
                .query_one("SELECT max(version) FROM purser_schema", &[])
                .await?
                .try_get(0)?;
            let latest = MIGRATIONS.last().map_or(0, |(v, _, _)| *v);
            if newest.is_some_and(|newest| newest > latest) {
                return Err(StoreError::Refused(format!(
                    "the store's schema is at version {}, newer than this Purser knows ({latest}): \
                     run the newer Purser, or point --store at another database",
                    newest.unwrap_or_default()
                )));
            }
            if newest.is_some_and(|newest| newest >= *version) {
                continue;
            }
            transaction.batch_execute(sql).await?;
            transaction
                .execute(
                    "INSERT INTO purser_schema (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
            transaction.commit().await?;
            tracing::info!(version, name, "fleet store schema migrated");
            applied.push(*version);
        }
        Ok(applied)
    };
    match tokio::time::timeout(MIGRATION_TIME, work).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout(MIGRATION_TIME)),
    }
}
