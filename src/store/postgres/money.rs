//! Budgets on the fleet store: the accounts a payment is measured against, recipient
//! trust, and the decision itself.
//!
//! A decision is one round trip (`purser_decide`): the payment's replay keys are screened
//! (a replay, or a key of an unknown payment, stops it there), the reservation is booked
//! atomically at session, agent and fleet level and the keys are claimed with it, and the
//! store answers with the session's phase and the accounts as they stood just before it.
//! The judge then decides on exactly what an in-memory lock would have shown it, and a
//! payment it does not let through has its reservation released and its keys forgotten.
//! Meanwhile what a refused payment booked counts for a moment: a concurrent payment may
//! see a fuller budget, never an emptier one, and a copy of it sent within that moment
//! through another replica is refused as a replay (through the same replica, the next
//! decision waits for the keys to be forgotten).

use super::batch::{undo_booking, Batchers, ReserveItem, Reserved};
use super::link::{random_id, Link, StoreError};
use super::writes::{Write, Writes};
use crate::ledger::{Account, BudgetView, Level, OverBudget, ReservationId, ReserveRequest};
use crate::policy::rules::Phase;
use crate::store::interface::{Judge, KeyScreen, Screened};
use crate::store::session::Session;
use dashmap::{DashMap, DashSet};
use rust_decimal::Decimal;

/// The last view read of each session, shown while the store cannot be asked.
#[derive(Default)]
pub(crate) struct Views {
    known: DashMap<String, BudgetView>,
}

impl Views {
    /// The last view read of `session`, for when the store is down (zeros if none).
    pub(super) fn last_known(&self, session: &str) -> BudgetView {
        self.known
            .get(session)
            .map(|view| *view)
            .unwrap_or_default()
    }

    /// Notes a view read from the store.
    pub(super) fn read(&self, session: &str, view: BudgetView) {
        if self.known.len() > 100_000 {
            self.known.clear();
        }
        self.known.insert(session.to_string(), view);
    }
}

/// Recipients each agent is known to have paid (a cache: it only ever grows).
#[derive(Default)]
pub(crate) struct PaidCache {
    known: DashSet<(String, String)>,
}

impl PaidCache {
    /// Whether this replica has seen `agent` pay `pay_to`.
    pub(super) fn knows(&self, agent: &str, pay_to: &str) -> bool {
        self.known
            .contains(&(agent.to_string(), pay_to.to_string()))
    }
}

/// The accounts of `session`, its `agent` and the fleet, once this process's earlier
/// writes are in. `None` when the store cannot say.
pub(super) async fn budget(
    link: &Link,
    writes: &Writes,
    session: &str,
    agent: &str,
) -> Result<BudgetView, StoreError> {
    writes.caught_up(link.timeout).await?;
    let rows = link
        .rows(
            "SELECT f.committed, f.unknown, f.reserved, \
                    coalesce(a.committed, 0), coalesce(a.unknown, 0), coalesce(a.reserved, 0), \
                    coalesce(s.committed, 0), coalesce(s.unknown, 0), coalesce(s.reserved, 0) \
               FROM purser_fleet f \
               LEFT JOIN purser_agents a ON a.agent = $2 \
               LEFT JOIN purser_sessions s ON s.session = $1 \
              WHERE f.id = 1",
            &[&session, &agent],
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Refused("purser_fleet has no row".into()))?;
    let number = |index| -> Result<Decimal, StoreError> {
        row.try_get(index)
            .map_err(|e: tokio_postgres::Error| StoreError::Refused(e.to_string()))
    };
    let account = |first: usize| -> Result<Account, StoreError> {
        Ok(Account {
            committed: number(first)?,
            unknown: number(first + 1)?,
            reserved: number(first + 2)?,
        })
    };
    Ok(BudgetView {
        fleet: account(0)?,
        agent: account(3)?,
        session: account(6)?,
    })
}

/// Whether `agent` has paid `pay_to` with a successful receipt. A store that cannot say
/// makes the recipient `unknown`, the strictest trust.
pub(super) async fn has_paid(link: &Link, cache: &PaidCache, agent: &str, pay_to: &str) -> bool {
    let key = (agent.to_string(), pay_to.to_string());
    if cache.known.contains(&key) {
        return true;
    }
    let paid = link
        .rows(
            "SELECT 1 FROM purser_paid WHERE agent = $1 AND pay_to = $2",
            &[&agent, &pay_to],
        )
        .await
        .is_ok_and(|rows| !rows.is_empty());
    if paid {
        if cache.known.len() > 100_000 {
            cache.known.clear();
        }
        cache.known.insert(key);
    }
    paid
}

/// Runs one decision: reserve (and, with `screen`, screen and claim the keys), then
/// judge on what the store answered. A store that does not answer leaves the judge
/// unrun, and the payment is refused (`ledger_unavailable`).
pub(super) async fn decide_in(
    batchers: &Batchers,
    views: &Views,
    session: &Session,
    request: ReserveRequest<'_>,
    screen: Option<KeyScreen<'_>>,
    judge: &mut dyn Judge,
) -> Screened {
    let (link, writes) = (batchers.link(), batchers.writes());
    let unjudged = Screened::Judged {
        keys_claimed: false,
    };
    let id = random_id();
    let keys = match screen {
        // Keys this process forgot must be gone before they are screened: a payment
        // refused a moment ago may be sent again.
        Some(screen) => match writes.shaping_caught_up(link.timeout).await {
            Ok(()) => serde_json::to_string(screen.keys).ok(),
            Err(_) => return unjudged,
        },
        None => None,
    };
    let screened = keys.is_some();
    let item = ReserveItem {
        id,
        session: request.session.to_string(),
        agent: request.agent.to_string(),
        pay_to: request.pay_to.to_string(),
        amount: request.amount,
        caps: caps(&request),
        keys,
        until: screen.map_or(0, |s| i64::try_from(s.until).unwrap_or(i64::MAX)),
    };
    let Ok(reserved) = batchers.reserve(item).await else {
        return unjudged;
    };
    let Reserved {
        refused,
        seen,
        phase,
        accounts,
    } = reserved;
    match refused.as_deref() {
        Some("replayed") => {
            return Screened::Replayed(seen.and_then(|i| usize::try_from(i).ok()).unwrap_or(0))
        }
        Some("unknown_key") => return Screened::SharesUnknownKey,
        _ => {}
    }
    let view = view_of(accounts);
    let mut state = session.lock();
    if let Some(phase) = Phase::parse(&phase) {
        state.phase = phase;
    }
    let mut booked = false;
    let mut book = || match refused.as_deref() {
        None => {
            booked = true;
            Ok(id as ReservationId)
        }
        Some(level) => Err(over_budget(level, &request, &view)),
    };
    judge.judge(&mut state, view, &mut book);
    drop(state);
    views.read(
        request.session,
        after(view, booked.then_some(request.amount)),
    );
    if refused.is_none() && !booked {
        // Judged not to go (or held back by a rule): the room and the keys are given back.
        undo_booking(writes, id);
    }
    Screened::Judged {
        keys_claimed: screened && booked,
    }
}

/// The view once `booked` (if anything) is reserved at every level.
fn after(mut view: BudgetView, booked: Option<Decimal>) -> BudgetView {
    if let Some(amount) = booked {
        for account in [&mut view.session, &mut view.agent, &mut view.fleet] {
            account.reserved += amount;
        }
    }
    view
}

/// Session, agent and fleet caps: each limit times the halt ratio (never above 1).
fn caps(request: &ReserveRequest<'_>) -> [Option<Decimal>; 3] {
    let ratio = request
        .halt_ratio
        .map_or(Decimal::ONE, |halt| halt.min(Decimal::ONE));
    let limits = request.limits;
    [limits.session, limits.agent, limits.fleet].map(|limit| limit.map(|l| l * ratio))
}

fn view_of(accounts: [[Decimal; 3]; 3]) -> BudgetView {
    let account = |[committed, unknown, reserved]: [Decimal; 3]| Account {
        committed,
        unknown,
        reserved,
    };
    BudgetView {
        session: account(accounts[0]),
        agent: account(accounts[1]),
        fleet: account(accounts[2]),
    }
}

/// The refusal the in-memory ledger would have given for that level.
fn over_budget(level: &str, request: &ReserveRequest<'_>, view: &BudgetView) -> OverBudget {
    let (level, account, limit) = match level {
        "session" => (Level::Session, view.session, request.limits.session),
        "agent" => (Level::Agent, view.agent, request.limits.agent),
        _ => (Level::Fleet, view.fleet, request.limits.fleet),
    };
    let limit = limit.unwrap_or_default();
    let ratio = request
        .halt_ratio
        .map_or(Decimal::ONE, |halt| halt.min(Decimal::ONE));
    OverBudget {
        level,
        limit,
        cap: limit * ratio,
        exposure: account.exposure(),
        amount: request.amount,
    }
}

/// Queues a credit (a compensated payment, when the policy credits).
pub(super) fn credit(writes: &Writes, session: &str, agent: &str, amount: Decimal) {
    writes.push(Write::Credit {
        id: random_id(),
        session: session.to_string(),
        agent: agent.to_string(),
        amount,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Limits;

    #[test]
    fn caps_are_limits_times_the_halt_ratio_never_above_the_limit() {
        let request = ReserveRequest {
            session: "a.s",
            agent: "a",
            pay_to: "0x1",
            amount: Decimal::ONE,
            limits: Limits {
                session: Some(Decimal::from(10)),
                fleet: Some(Decimal::from(100)),
                ..Limits::default()
            },
            halt_ratio: Some(Decimal::new(9, 1)),
        };
        assert_eq!(
            caps(&request),
            [Some(Decimal::from(9)), None, Some(Decimal::from(90))]
        );
        let over = over_budget("fleet", &request, &BudgetView::default());
        assert_eq!((over.level, over.cap), (Level::Fleet, Decimal::from(90)));
    }
}
