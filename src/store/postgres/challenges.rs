//! Remembered 402 challenges, shared by the fleet (`purser_challenges`): the paid retry
//! of a 402 one replica passed back may come through another. Sharing waits a moment at
//! most, so a slow store never holds a 402 back for long; a store that is down, or slow,
//! leaves the challenge with the replica that saw it (a payment through another replica
//! is then refused as unquoted, never let through unpriced).

use super::link::Link;
use crate::store::SharedChallenge;
use std::time::Duration;

/// How long a 402 waits for its challenge to be shared at most.
const SHARE_WAIT: Duration = Duration::from_millis(100);
/// Shared challenges kept per agent (its oldest go first).
const KEPT_PER_AGENT: i32 = 1_000;

/// Shares one challenge; whether the store took it is logged, not returned.
pub(super) async fn share(link: &Link, agent: &str, session: &str, key: &str, form: &str) {
    if link.unavailable().is_some() {
        return;
    }
    let shared = tokio::time::timeout(
        SHARE_WAIT,
        link.execute(
            "SELECT purser_share_challenge($1, $2, $3, $4, $5)",
            &[&agent, &session, &key, &form, &KEPT_PER_AGENT],
        ),
    )
    .await;
    match shared {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "a 402 challenge was not shared with the fleet; only this replica can price its payment")
        }
        Err(_) => {
            tracing::warn!("the fleet store did not take a 402 challenge in time; only this replica can price its payment")
        }
    }
}

/// The challenges the fleet shared for `session` within `ttl`, newest first.
pub(super) async fn shared(
    link: &Link,
    agent: &str,
    session: &str,
    ttl: Duration,
    limit: usize,
) -> Vec<SharedChallenge> {
    if link.unavailable().is_some() {
        return Vec::new();
    }
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = link
        .rows(
            "SELECT key, form, (extract(epoch FROM now() - seen) * 1000)::BIGINT \
               FROM purser_challenges \
              WHERE agent = $1 AND session = $2 \
                AND seen > now() - make_interval(secs => $3::BIGINT / 1000.0) \
              ORDER BY seen DESC LIMIT $4",
            &[&agent, &session, &ttl_ms, &limit],
        )
        .await
        .unwrap_or_default();
    rows.iter()
        .filter_map(|row| {
            let age: i64 = row.try_get(2).ok()?;
            Some(SharedChallenge {
                key: row.try_get(0).ok()?,
                form: row.try_get(1).ok()?,
                age: Duration::from_millis(u64::try_from(age).unwrap_or(0)),
            })
        })
        .collect()
}
