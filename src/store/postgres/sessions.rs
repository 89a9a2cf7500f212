//! Sessions on the fleet store. Each replica keeps its own handle per session (decision
//! counts, frequency windows, the lock a decision holds), and the phase lives in
//! `purser_sessions`: a phase moved on any replica is the one every replica's next
//! decision reads (`purser_decide` returns it), and the admin API reads it back too.

use super::link::{Link, StoreError};
use crate::policy::rules::Phase;
use crate::policy::{MemoryLimits, PhasePolicy};
use crate::store::session::{Session, TransitionError};
use crate::store::session_table::Sessions;

/// Sessions listed at most from the store.
const LISTED: i64 = 100_000;

/// Moves `session`'s phase forward in the store, under the row's lock; the handle follows.
pub(super) async fn advance(
    link: &Link,
    session: &Session,
    to: Phase,
    rules: &PhasePolicy,
) -> Result<Result<Phase, TransitionError>, StoreError> {
    let id = session.id().to_string();
    let agent = session.lock().agent.clone();
    link.within(async {
        let mut client = link.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "INSERT INTO purser_sessions (session, agent) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, &agent],
            )
            .await?;
        let row = transaction
            .query_one(
                "SELECT phase FROM purser_sessions WHERE session = $1 FOR UPDATE",
                &[&id],
            )
            .await?;
        let stored: String = row.try_get(0)?;
        let current = Phase::parse(&stored).unwrap_or(Phase::Explore);
        let moved = {
            let mut state = session.lock();
            state.phase = current;
            state.advance(to, rules)
        };
        if matches!(moved, Ok(from) if from != to) {
            transaction
                .execute(
                    "UPDATE purser_sessions SET phase = $2 WHERE session = $1",
                    &[&id, &to.as_str()],
                )
                .await?;
        }
        if let Err(error) = transaction.commit().await {
            session.lock().phase = current;
            return Err(error.into());
        }
        Ok(moved)
    })
    .await
}

/// Starts `session` over in EXPLORE everywhere; returns the phase it left.
pub(super) async fn reset(link: &Link, session: &Session) -> Result<Phase, StoreError> {
    let id = session.id().to_string();
    let rows = link
        .rows(
            "WITH old AS (SELECT phase FROM purser_sessions WHERE session = $1 FOR UPDATE) \
             UPDATE purser_sessions s SET phase = 'EXPLORE' FROM old \
              WHERE s.session = $1 RETURNING old.phase",
            &[&id],
        )
        .await?;
    let from = rows
        .first()
        .and_then(|row| row.try_get::<_, String>(0).ok())
        .and_then(|phase| Phase::parse(&phase))
        .unwrap_or(Phase::Explore);
    session.lock().reset();
    Ok(from)
}

/// The session, from this replica's table or, when another replica made it, from the
/// store; either way with the phase the store has now.
pub(super) async fn find(
    link: &Link,
    table: &Sessions,
    limits: &MemoryLimits,
    id: &str,
) -> Option<Session> {
    let stored = link
        .rows(
            "SELECT agent, phase FROM purser_sessions WHERE session = $1",
            &[&id],
        )
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|row| {
            let agent: String = row.try_get(0).ok()?;
            let phase: String = row.try_get(1).ok()?;
            Some((agent, Phase::parse(&phase)?))
        });
    let session = match (table.get(id), &stored) {
        (Some(session), _) => session,
        (None, Some((agent, _))) => table.get_or_create(id, agent, limits).ok()?,
        (None, None) => return None,
    };
    if let Some((_, phase)) = stored {
        session.lock().phase = phase;
    }
    Some(session)
}

/// Sessions the store has and this replica's, sorted.
pub(super) async fn ids(link: &Link, table: &Sessions) -> Vec<String> {
    let mut ids = table.ids();
    if let Ok(rows) = link
        .rows(
            "SELECT session FROM purser_sessions ORDER BY session LIMIT $1",
            &[&LISTED],
        )
        .await
    {
        ids.extend(
            rows.iter()
                .filter_map(|row| row.try_get::<_, String>(0).ok()),
        );
    }
    ids.sort();
    ids.dedup();
    ids
}
