//! Holds across the fleet. The held request waits on the replica it reached, in that
//! replica's registry (`crate::holds::Holds`, whose receiver the engine awaits); the
//! hold itself is a row of `purser_holds` that every replica lists. Whoever decides it
//! first in the store wins (`purser_decide_hold`); the store then notifies the holding
//! replica (`listen`), which releases its request. The approval is checked against the
//! held payment's digest in the store, and the holder forwards the payment it holds.

use super::hold_json::{outcome_from, outcome_json, view_from};
use super::link::{Link, StoreError};
use super::writes::{Write, Writes};
use crate::holds::{DecideError, HoldLimits, HoldOutcome, HoldRefused, HoldView, Holds};
use crate::store::interface::OpenedHold;
use serde_json::Value;
use std::sync::Arc;

/// Pending holds listed at most (the admin API's and console's view of the fleet).
const LISTED: i64 = 10_000;

/// What `purser_decide_hold` said.
enum Decided {
    /// Decided now, by this call. The holding process and the hold.
    Now(i64, Value),
    /// Decided before, with this outcome.
    Already(HoldOutcome),
    Unknown,
    /// The digest given is not the held payment's (the hold's view).
    Mismatch(Value),
}

async fn decide_in_store(
    link: &Link,
    id: &str,
    outcome: &HoldOutcome,
    digest: Option<&str>,
) -> Result<Decided, StoreError> {
    let outcome = outcome_json(outcome).to_string();
    let rows = link
        .rows(
            "SELECT r_status, r_instance, r_view::TEXT, r_outcome::TEXT \
               FROM purser_decide_hold($1, $2::TEXT::JSONB, $3)",
            &[&id, &outcome, &digest],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(Decided::Unknown);
    };
    let json = |index: usize| -> Value {
        row.try_get::<_, Option<String>>(index)
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null)
    };
    let instance: Option<i64> = row.try_get(1).unwrap_or(None);
    let status: String = row.try_get(0).unwrap_or_default();
    Ok(match (status.as_str(), instance) {
        ("decided", Some(instance)) => Decided::Now(instance, json(2)),
        ("already", _) => Decided::Already(outcome_from(&json(3))),
        ("mismatch", _) => Decided::Mismatch(json(2)),
        _ => Decided::Unknown,
    })
}

/// Whether a hold for `session` would fit now, fleet-wide.
pub(super) async fn room(
    link: &Link,
    session: &str,
    limits: HoldLimits,
) -> Result<(), HoldRefused> {
    let rows = link
        .rows(
            "SELECT count(*), count(*) FILTER (WHERE session = $1) \
               FROM purser_holds WHERE state = 'pending'",
            &[&session],
        )
        .await
        .map_err(|e| HoldRefused::Unavailable(e.to_string()))?;
    let count = |index| -> usize {
        rows.first()
            .and_then(|row| row.try_get::<_, i64>(index).ok())
            .unwrap_or(0)
            .max(0) as usize
    };
    if count(0) >= limits.total {
        return Err(HoldRefused::AllFull {
            limit: limits.total,
        });
    }
    if count(1) >= limits.per_session {
        return Err(HoldRefused::SessionFull {
            session: session.to_string(),
            limit: limits.per_session,
        });
    }
    Ok(())
}

/// Registers a hold here and in the store, within the fleet-wide bounds.
pub(super) async fn open(
    link: &Link,
    local: &Holds,
    view: HoldView,
    limits: HoldLimits,
) -> Result<OpenedHold, HoldRefused> {
    let unbounded = HoldLimits {
        per_session: usize::MAX,
        total: usize::MAX,
    };
    let session = view.session.clone();
    let digest = view.digest.clone();
    let mut stored = serde_json::to_value(&view).unwrap_or(Value::Null);
    let (id, outcome) = local.open(view, unbounded)?;
    stored["id"] = Value::String(id.clone());
    let json = stored.to_string();
    let per_session = i32::try_from(limits.per_session).unwrap_or(i32::MAX);
    let total = i32::try_from(limits.total).unwrap_or(i32::MAX);
    let refused = link
        .rows(
            "SELECT purser_open_hold($1, $2, $3, $4, $5, $6::TEXT::JSONB, $7, $8)",
            &[
                &id,
                &link.instance,
                &link.replica,
                &session,
                &digest,
                &json,
                &per_session,
                &total,
            ],
        )
        .await
        .map(|rows| {
            rows.first()
                .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
        });
    let refusal = match refused {
        Ok(None) => return Ok((id, outcome)),
        Ok(Some(bound)) if bound == "session" => HoldRefused::SessionFull {
            session,
            limit: limits.per_session,
        },
        Ok(Some(_)) => HoldRefused::AllFull {
            limit: limits.total,
        },
        Err(error) => HoldRefused::Unavailable(error.to_string()),
    };
    local.resolve(&id, HoldOutcome::ShuttingDown);
    Err(refusal)
}

/// The holder's own decision at the deadline: `true` when it won. Otherwise the outcome
/// that won (or a denial, when the store cannot say) is handed to the waiting request.
pub(super) async fn resolve(
    link: &Link,
    writes: &Writes,
    local: &Holds,
    id: &str,
    outcome: HoldOutcome,
) -> bool {
    match decide_in_store(link, id, &outcome, None).await {
        Ok(Decided::Now(..)) => {
            local.resolve(id, outcome);
            true
        }
        Ok(Decided::Already(won)) => {
            local.resolve(id, won);
            false
        }
        Ok(Decided::Unknown | Decided::Mismatch(_)) => {
            local.resolve(id, lost_denial("the fleet store no longer has the hold"));
            false
        }
        Err(error) => {
            // Nobody can know whether someone approved it meanwhile: denied, and the
            // store's row closed once it answers (unless a decision is already there).
            let denial = lost_denial(&format!(
                "the fleet store did not answer at the hold's deadline ({error})"
            ));
            writes.push(Write::CloseHold {
                id: id.to_string(),
                outcome: outcome_json(&denial),
            });
            local.resolve(id, denial);
            false
        }
    }
}

fn lost_denial(reason: &str) -> HoldOutcome {
    HoldOutcome::Denied {
        by: "purser".into(),
        reason: reason.to_string(),
    }
}

/// A hold whose request went away: decided here and, through the queue, in the store.
pub(super) fn abandon(writes: &Writes, local: &Holds, id: &str, outcome: HoldOutcome) {
    writes.push(Write::CloseHold {
        id: id.to_string(),
        outcome: outcome_json(&outcome),
    });
    local.resolve(id, outcome);
}

/// A person's decision, on any replica. A hold held here is released at once; one held
/// elsewhere is released there by the store's notification.
pub(super) async fn decide(
    link: &Link,
    local: &Holds,
    id: &str,
    outcome: HoldOutcome,
    digest: Option<&str>,
) -> Result<HoldView, DecideError> {
    let decided = decide_in_store(link, id, &outcome, digest)
        .await
        .map_err(|e| DecideError::Unavailable(e.to_string()))?;
    let unreadable = || DecideError::Unknown(id.to_string());
    match decided {
        Decided::Now(instance, view) => {
            let held_here = (instance == link.instance)
                .then(|| local.resolve(id, outcome))
                .flatten();
            held_here
                .or_else(|| view_from(&view))
                .ok_or_else(unreadable)
        }
        Decided::Already(won) => Err(DecideError::AlreadyDecided {
            id: id.to_string(),
            outcome: won.label().to_string(),
        }),
        Decided::Unknown => Err(DecideError::Unknown(id.to_string())),
        Decided::Mismatch(view) => Err(DecideError::DigestMismatch {
            id: id.to_string(),
            actual: view_from(&view).map(|v| v.digest).unwrap_or_default(),
            given: digest.unwrap_or_default().to_string(),
        }),
    }
}

/// Every pending hold of the fleet, oldest first; this replica's own when the store
/// cannot say.
pub(super) async fn pending(link: &Link, local: &Holds) -> Vec<Arc<HoldView>> {
    let rows = link
        .rows(
            "SELECT view::TEXT FROM purser_holds WHERE state = 'pending' \
              ORDER BY created, id LIMIT $1",
            &[&LISTED],
        )
        .await;
    match rows {
        Ok(rows) => rows
            .iter()
            .filter_map(|row| row.try_get::<_, String>(0).ok())
            .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
            .filter_map(|value| view_from(&value))
            .map(Arc::new)
            .collect(),
        Err(_) => local.list(),
    }
}

/// Decides every hold this replica holds (shutdown). Returns how many.
pub(super) async fn resolve_all(
    link: &Link,
    writes: &Writes,
    local: &Holds,
    outcome: HoldOutcome,
) -> usize {
    let mut count = 0;
    for hold in local.list() {
        if resolve(link, writes, local, &hold.id, outcome.clone()).await {
            count += 1;
        }
    }
    count
}

/// Delivers decisions the notifications may have missed (the listening connection was
/// down): every hold held here that the store says is decided.
pub(super) async fn catch_up(link: &Link, local: &Holds) -> Result<(), StoreError> {
    let ids: Vec<String> = local.list().iter().map(|hold| hold.id.clone()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows = link
        .rows(
            "SELECT id, outcome::TEXT FROM purser_holds WHERE id = ANY($1) AND state = 'decided'",
            &[&ids],
        )
        .await?;
    for row in rows {
        let id: String = row.try_get(0).unwrap_or_default();
        let outcome: Option<String> = row.try_get(1).unwrap_or(None);
        let value = outcome
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        local.resolve(&id, outcome_from(&value));
    }
    Ok(())
}
