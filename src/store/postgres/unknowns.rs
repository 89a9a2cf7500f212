//! Payments whose outcome is unknown, shared by the fleet (`purser_unknown`): the retry
//! of one is claimed in the store, so only one copy is in flight on any replica, and an
//! operator reconciles it on any replica.

use super::link::{Link, StoreError};
use super::writes::{Write, Writes};
use crate::ledger::UnknownPayment;
use crate::store::unknown::{Claim, RetryIdentity, RetryInFlight, UnknownDetails, UnknownView};
use dashmap::DashMap;
use rust_decimal::Decimal;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_postgres::Row;

/// Unknown payments listed at most.
const LISTED: i64 = 10_000;

const COLUMNS: &str = "id, session, agent, pay_to, amount, since, method, host, path, \
                       payment_digest, resource, why, upstream_status, retries, \
                       retry_instance IS NOT NULL, \
                       (SELECT coalesce(array_agg(key), '{}') FROM purser_unknown_keys k \
                         WHERE k.id = u.id), \
                       onchain::TEXT";

/// An unknown payment's details as `purser_settle` records them (`onchain` too, so any
/// replica's chain watch can reconcile it).
pub(super) fn details_json(decision_trace: &str, details: &UnknownDetails) -> serde_json::Value {
    json!({
        "id": decision_trace,
        "since": details.since,
        "method": details.method,
        "host": details.host,
        "path": details.path,
        "payment_digest": details.payment_digest,
        "resource": details.resource,
        "keys": details.keys,
        "why": details.why,
        "upstream_status": details.upstream_status,
        "onchain": details.onchain,
    })
}

fn payment_of(row: &Row) -> Option<(UnknownPayment, UnknownView)> {
    let id: String = row.try_get(0).ok()?;
    let payment = UnknownPayment {
        session: row.try_get(1).ok()?,
        agent: row.try_get(2).ok()?,
        pay_to: row.try_get(3).ok()?,
        amount: row.try_get::<_, Decimal>(4).ok()?,
    };
    let status: Option<i32> = row.try_get(12).ok()?;
    let view = UnknownView {
        id,
        details: UnknownDetails {
            session: payment.session.clone(),
            agent: payment.agent.clone(),
            since: row.try_get(5).ok()?,
            method: row.try_get(6).ok()?,
            host: row.try_get(7).ok()?,
            path: row.try_get(8).ok()?,
            payment_digest: row.try_get(9).ok()?,
            resource: row.try_get(10).ok()?,
            keys: row.try_get(15).ok()?,
            why: row.try_get(11).ok()?,
            upstream_status: status.and_then(|s| u16::try_from(s).ok()),
            // Facts the store cannot read back are facts the chain is not asked about:
            // the payment stays unknown until an operator resolves it.
            onchain: row
                .try_get::<_, Option<String>>(16)
                .ok()?
                .and_then(|text| serde_json::from_str(&text).ok()),
        },
        retries: row.try_get::<_, i32>(13).ok()?.max(0) as u32,
        retry_in_flight: row.try_get(14).ok()?,
    };
    Some((payment, view))
}

/// What one look at the replay set found for a payment's keys, kept for the replay check
/// that follows it in the same decision (one round trip instead of two).
#[derive(Default)]
pub(crate) struct Peeks {
    seen: DashMap<String, (Vec<String>, Instant)>,
}

/// How long a look stays good for the check that follows it.
const PEEK_FRESH: Duration = Duration::from_secs(2);

impl Peeks {
    fn key(keys: &[String]) -> String {
        keys.join("\n")
    }

    /// The keys of `keys` the replay set held when the retry check looked, if it just did.
    pub(super) fn take(&self, keys: &[String]) -> Option<Vec<String>> {
        let (_, (seen, at)) = self.seen.remove(&Peeks::key(keys))?;
        (at.elapsed() < PEEK_FRESH).then_some(seen)
    }

    fn keep(&self, keys: &[String], seen: Vec<String>) {
        // Looks nobody took (a payment refused in between) do not pile up.
        if self.seen.len() > 10_000 {
            self.seen.retain(|_, (_, at)| at.elapsed() < PEEK_FRESH);
        }
        self.seen.insert(Peeks::key(keys), (seen, Instant::now()));
    }
}

/// Whether a payment with `keys` is the retry of an unknown payment; claims the retry in
/// the store when it is. A store that cannot say lets the payment go on to the checks
/// that refuse it (its reservation, its replay keys) when the store is down. The same
/// look notes which keys the replay set holds, for the replay check that follows.
pub(super) async fn claim_retry(
    link: &Link,
    writes: &Writes,
    peeks: &Peeks,
    keys: &[String],
    copy: RetryIdentity,
) -> Claim {
    if writes.shaping_caught_up(link.timeout).await.is_err() {
        return Claim::Unrelated;
    }
    let now = jiff::Timestamp::now().as_second();
    let Ok(rows) = link
        .rows(
            "SELECT (SELECT coalesce(array_agg(key), '{}') FROM purser_replay_keys \
                      WHERE key = ANY($1) AND until >= $2), \
                    EXISTS (SELECT 1 FROM purser_unknown_keys WHERE key = ANY($1))",
            &[&keys, &now],
        )
        .await
    else {
        return Claim::Unrelated;
    };
    let Some(row) = rows.first() else {
        return Claim::Unrelated;
    };
    let seen: Vec<String> = row.try_get(0).unwrap_or_default();
    if !row.try_get::<_, bool>(1).unwrap_or(true) {
        peeks.keep(keys, seen);
        return Claim::Unrelated;
    }
    let sql = format!(
        "SELECT {COLUMNS}, resolving_instance IS NOT NULL FROM purser_unknown u \
          WHERE id IN (SELECT id FROM purser_unknown_keys WHERE key = ANY($1))"
    );
    let Ok(rows) = link.rows(&sql, &[&keys]).await else {
        return Claim::Unrelated;
    };
    let mut found: Vec<(UnknownView, bool)> = rows
        .iter()
        .filter_map(|row| {
            let (_, view) = payment_of(row)?;
            Some((view, row.try_get(17).ok()?))
        })
        .collect();
    found.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let (view, resolving) = match found.as_slice() {
        [] => return Claim::Unrelated,
        [one] => one,
        [first, ..] => {
            return Claim::Conflict {
                original: first.0.id.clone(),
                why: "it shares keys with more than one payment whose outcome is unknown",
            }
        }
    };
    let conflict = |why| Claim::Conflict {
        original: view.id.clone(),
        why,
    };
    if *resolving {
        return conflict("its original is being resolved");
    }
    let details = &view.details;
    if details.payment_digest.as_deref() != Some(copy.digest.as_str()) {
        return conflict("it is not a byte-identical copy of that payment");
    }
    if details.session != copy.session {
        return conflict("only the session that sent that payment may retry it");
    }
    if details.resource.as_deref() != Some(copy.resource.as_str()) {
        return conflict("a retry must ask for the same resource (method and URL)");
    }
    let claimed = link
        .execute(
            "UPDATE purser_unknown SET retry_instance = $2, retries = retries + 1 \
              WHERE id = $1 AND retry_instance IS NULL AND resolving_instance IS NULL",
            &[&view.id, &link.instance],
        )
        .await;
    match claimed {
        Ok(1) => Claim::Retry(view.id.clone()),
        Ok(_) => conflict("another copy of it is in flight; retries go one at a time"),
        // Its claim may have been made: let it go again, and refuse this copy.
        Err(_) => {
            writes.push(Write::ReleaseRetry {
                id: view.id.clone(),
            });
            conflict("the fleet store did not answer; send the retry again")
        }
    }
}

/// The unknown payment of that decision (or lease), if its outcome is still unknown.
pub(super) async fn payment(
    link: &Link,
    writes: &Writes,
    id: &str,
) -> Result<Option<UnknownPayment>, StoreError> {
    writes.caught_up(link.timeout).await?;
    let sql = format!("SELECT {COLUMNS} FROM purser_unknown u WHERE id = $1");
    let rows = link.rows(&sql, &[&id]).await?;
    Ok(rows
        .first()
        .and_then(payment_of)
        .map(|(payment, _)| payment))
}

/// Unknown payments, oldest first.
pub(super) async fn list(
    link: &Link,
    writes: &Writes,
) -> Result<Vec<(UnknownPayment, UnknownView)>, StoreError> {
    writes.caught_up(link.timeout).await?;
    let sql = format!("SELECT {COLUMNS} FROM purser_unknown u ORDER BY since, id LIMIT $1");
    let rows = link.rows(&sql, &[&LISTED]).await?;
    Ok(rows.iter().filter_map(payment_of).collect())
}

/// Marks an unknown payment as being resolved by this process, so no retry claims it
/// meanwhile; its details come back. A retry in flight blocks an operator, not itself.
pub(super) async fn take(
    link: &Link,
    writes: &Writes,
    id: &str,
    by_retry: bool,
) -> Result<Result<Option<UnknownDetails>, RetryInFlight>, StoreError> {
    writes.caught_up(link.timeout).await?;
    let taken = link
        .execute(
            "UPDATE purser_unknown SET resolving_instance = $2 \
              WHERE id = $1 AND resolving_instance IS NULL \
                AND (retry_instance IS NULL OR $3)",
            &[&id, &link.instance, &by_retry],
        )
        .await?;
    let sql = format!("SELECT {COLUMNS} FROM purser_unknown u WHERE id = $1");
    let rows = link.rows(&sql, &[&id]).await?;
    let Some((_, view)) = rows.first().and_then(payment_of) else {
        return Ok(Ok(None));
    };
    if taken == 1 {
        return Ok(Ok(Some(view.details)));
    }
    if view.retry_in_flight && !by_retry {
        return Ok(Err(RetryInFlight(id.to_string())));
    }
    Ok(Ok(None))
}

/// Resolves an unknown payment in the store (`purser_resolve_unknown`).
pub(super) async fn resolve(
    link: &Link,
    id: &str,
    committed: bool,
) -> Result<Option<UnknownPayment>, StoreError> {
    let rows = link
        .rows(
            "SELECT * FROM purser_resolve_unknown($1, $2)",
            &[&id, &committed],
        )
        .await?;
    Ok(rows.first().and_then(|row| {
        Some(UnknownPayment {
            session: row.try_get(0).ok()?,
            agent: row.try_get(1).ok()?,
            amount: row.try_get(2).ok()?,
            pay_to: row.try_get(3).ok()?,
        })
    }))
}
