//! Leases and the sweeper. Each process registers in `purser_instances` and renews its
//! lease a few times per lease period. Every replica also sweeps: a process whose lease
//! expired (killed, frozen, cut off) has its reservations turned into `unknown` payments
//! that stay counted until someone reconciles them, and its pending holds denied
//! (`purser_sweep`). One replica sweeps each dead process (`FOR UPDATE SKIP LOCKED`),
//! and writes one `settlement` line per payment into its own proof log.
//!
//! A reservation of a process swept too early (it was only cut off) is not lost: its late
//! settlement reconciles the unknown payment (`purser_settle`).

use super::link::{Link, StoreError};
use super::writes::Writes;
use crate::policy::SessionId;
use crate::trace::{Kind, Outcome, TraceLog, TraceRecord};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers this process, and sweeps at once what an earlier process of the same
/// replica left (it is gone: this one replaces it).
pub(super) async fn register(link: &Link, trace: &TraceLog) -> Result<(), StoreError> {
    let lease = lease_ms(link);
    link.execute(
        "INSERT INTO purser_instances (instance, replica, lease_until) \
         VALUES ($1, $2, now() + $3 * INTERVAL '1 millisecond')",
        &[&link.instance, &link.replica, &lease],
    )
    .await?;
    let earlier = link
        .rows(
            "SELECT instance FROM purser_instances WHERE replica = $1 AND instance <> $2",
            &[&link.replica, &link.instance],
        )
        .await?;
    for row in earlier {
        let instance: i64 = row
            .try_get(0)
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        let why = format!(
            "replica {} restarted while this payment was in flight; its outcome is unknown",
            link.replica
        );
        sweep_one(link, trace, instance, &why).await?;
    }
    Ok(())
}

fn lease_ms(link: &Link) -> f64 {
    link.lease.as_millis() as f64
}

/// Renews this process's lease and sweeps expired ones, a few times per lease period.
///
/// A sweeper sweeps only once it has itself renewed without a break for a whole lease:
/// after the store was frozen or unreachable, every lease looks expired, and the living
/// replicas must first get the chance to renew theirs.
pub(super) fn start(link: Arc<Link>, trace: TraceLog) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval((link.lease / 4).max(Duration::from_millis(100)));
        let mut renewing_since = Instant::now();
        let mut broken = false;
        loop {
            every.tick().await;
            if let Err(error) = renew(&link).await {
                tracing::debug!(%error, "lease not renewed this round");
                broken = true;
                continue;
            }
            if std::mem::take(&mut broken) {
                renewing_since = Instant::now();
            }
            if renewing_since.elapsed() < link.lease {
                continue;
            }
            if let Err(error) = sweep(&link, &trace).await {
                tracing::debug!(%error, "sweep not done this round");
            }
            if let Err(error) = tidy(&link).await {
                tracing::debug!(%error, "store housekeeping not done this round");
            }
        }
    });
}

async fn renew(link: &Link) -> Result<(), StoreError> {
    let lease = lease_ms(link);
    let renewed = link
        .execute(
            "UPDATE purser_instances SET lease_until = now() + $2 * INTERVAL '1 millisecond' \
              WHERE instance = $1",
            &[&link.instance, &lease],
        )
        .await?;
    if renewed == 0 {
        // Swept as dead while cut off: what it had in flight is unknown now, and will be
        // reconciled by the settlements still to come. It carries on under a new lease.
        tracing::warn!(replica = %link.replica, "this replica's lease had expired and was swept; registering again");
        link.execute(
            "INSERT INTO purser_instances (instance, replica, lease_until) \
             VALUES ($1, $2, now() + $3 * INTERVAL '1 millisecond') ON CONFLICT DO NOTHING",
            &[&link.instance, &link.replica, &lease],
        )
        .await?;
    }
    Ok(())
}

/// Sweeps every process whose lease expired, and reservations whose process is unknown.
async fn sweep(link: &Link, trace: &TraceLog) -> Result<(), StoreError> {
    let dead = link
        .rows(
            "SELECT instance, replica FROM purser_instances WHERE lease_until < now() \
             UNION \
             SELECT DISTINCT r.instance, r.replica FROM purser_reservations r \
              WHERE NOT EXISTS (SELECT 1 FROM purser_instances i WHERE i.instance = r.instance)",
            &[],
        )
        .await?;
    for row in dead {
        let instance: i64 = row
            .try_get(0)
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        let replica: String = row.try_get(1).unwrap_or_default();
        let why = format!(
            "replica {replica} stopped renewing its lease while this payment was in flight; \
             its outcome is unknown until reconciled"
        );
        sweep_one(link, trace, instance, &why).await?;
    }
    Ok(())
}

/// Sweeps one process, unless another replica is doing it right now.
async fn sweep_one(
    link: &Link,
    trace: &TraceLog,
    instance: i64,
    why: &str,
) -> Result<(), StoreError> {
    let swept = link
        .within(async {
            let mut client = link.pool.get().await?;
            let transaction = client.transaction().await?;
            let mine = transaction
                .query(
                    "SELECT 1 FROM purser_instances WHERE instance = $1 FOR UPDATE SKIP LOCKED",
                    &[&instance],
                )
                .await?;
            let gone = transaction
                .query(
                    "SELECT 1 FROM purser_instances WHERE instance = $1",
                    &[&instance],
                )
                .await?;
            // Locked by another sweeper (skipped), and still there: theirs to sweep.
            if mine.is_empty() && !gone.is_empty() {
                return Ok(Vec::new());
            }
            let rows = transaction
                .query("SELECT * FROM purser_sweep($1, $2)", &[&instance, &why])
                .await?;
            transaction.commit().await?;
            Ok(rows)
        })
        .await?;
    for row in swept {
        let id: String = row.try_get(0).unwrap_or_default();
        let session: String = row.try_get(1).unwrap_or_default();
        let agent: String = row.try_get(2).unwrap_or_default();
        let amount: Decimal = row.try_get(3).unwrap_or_default();
        let pay_to: String = row.try_get(4).unwrap_or_default();
        tracing::warn!(payment = %id, %session, usd = %amount, "reservation of a dead replica is now unknown (still counted)");
        trace.append(&TraceRecord {
            trace_id: format!("tr_sweep_{}", id.trim_start_matches("rs_")),
            kind: Kind::Settlement,
            time: jiff::Timestamp::now().to_string(),
            session: SessionId::parse(&session).unwrap_or_default(),
            agent,
            decision_trace_id: Some(id),
            outcome: Some(Outcome::Unknown),
            amount_usd: Some(amount),
            pay_to: Some(pay_to),
            reason: Some(why.to_string()),
            purser_version: Some(crate::VERSION.into()),
            ..TraceRecord::default()
        });
    }
    Ok(())
}

/// A clean exit: the queued writes are applied (settlements of the requests that just
/// finished), then this process leaves the fleet. Anything it still had reserved is
/// swept as unknown by the next sweep, as for a process that died.
pub(super) async fn leave(link: &Link, writes: &Writes) {
    let flushed = writes.caught_up(link.timeout * 3).await;
    if let Err(error) = &flushed {
        tracing::error!(%error, "stopping with writes the fleet store has not taken; this replica's reservations become unknown when its lease expires");
        return;
    }
    let left = link
        .execute(
            "UPDATE purser_instances SET lease_until = now() WHERE instance = $1",
            &[&link.instance],
        )
        .await;
    if let Err(error) = left {
        tracing::warn!(%error, "could not end this replica's lease; it expires by itself");
    }
}

/// Forgets what can no longer matter: replay keys of payments that can no longer settle,
/// holds decided a day ago.
async fn tidy(link: &Link) -> Result<(), StoreError> {
    let now = jiff::Timestamp::now().as_second();
    link.execute(
        "DELETE FROM purser_replay_keys WHERE key IN \
           (SELECT key FROM purser_replay_keys WHERE until < $1 LIMIT 10000 FOR UPDATE SKIP LOCKED)",
        &[&now],
    )
    .await?;
    link.execute(
        "DELETE FROM purser_holds WHERE id IN \
           (SELECT id FROM purser_holds WHERE state = 'decided' \
               AND decided < now() - INTERVAL '1 day' LIMIT 10000 FOR UPDATE SKIP LOCKED)",
        &[],
    )
    .await?;
    Ok(())
}
