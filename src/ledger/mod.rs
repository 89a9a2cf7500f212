//! Budgets per session, per agent and for the fleet: reservations before a payment
//! leaves, then commit, release or `unknown` at settlement.
//!
//! One lock guards every account. A reservation checks and books all three levels inside
//! it, so no interleaving of concurrent payments can take any level past its limit; the
//! critical section is a few map look-ups and decimal additions, far shorter than the
//! network round trip each payment makes anyway.

use crate::policy::Limits;
use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, MutexGuard};
use rust_decimal::Decimal;
use std::sync::Arc;

/// Money booked against one account, in USD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// Settled with a successful receipt.
    pub committed: Decimal,
    /// Left Purser with no known outcome; counted as spent until reconciled.
    pub unknown: Decimal,
    /// Reserved by payments in flight (or held).
    pub reserved: Decimal,
}

impl Account {
    /// What counts against the limit as spent.
    pub fn spent(&self) -> Decimal {
        self.committed + self.unknown
    }

    /// Spent plus reserved.
    pub fn exposure(&self) -> Decimal {
        self.spent() + self.reserved
    }
}

/// A budget level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Session,
    Agent,
    Fleet,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Session => "session",
            Level::Agent => "agent",
            Level::Fleet => "fleet",
        }
    }
}

/// The three accounts a payment touches, and the ratio that decides gates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetView {
    pub session: Account,
    pub agent: Account,
    pub fleet: Account,
}

/// Why a reservation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{level:?} budget: {exposure} spent or reserved + {amount} would exceed the cap {cap} (limit {limit})", level = self.level.as_str())]
pub struct OverBudget {
    pub level: Level,
    pub limit: Decimal,
    pub cap: Decimal,
    pub exposure: Decimal,
    pub amount: Decimal,
}

/// A booked reservation.
pub type ReservationId = u64;

/// An open reservation. The names are shared with the books (a reference count, not a
/// copy), so booking one allocates only the recipient.
#[derive(Clone, Debug)]
struct Reservation {
    session: Arc<str>,
    agent: Arc<str>,
    amount: Decimal,
    pay_to: String,
}

struct SessionBook {
    name: Arc<str>,
    account: Account,
}

struct AgentBook {
    name: Arc<str>,
    account: Account,
    /// payTo addresses this agent has paid with a successful receipt.
    paid_recipients: HashSet<String>,
}

/// A payment whose outcome is not known, kept for reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnknownPayment {
    pub session: String,
    pub agent: String,
    pub amount: Decimal,
    pub pay_to: String,
}

#[derive(Default)]
struct Books {
    /// Unknown outcomes by the decision's trace id.
    unknowns: HashMap<String, UnknownPayment>,
    fleet: Account,
    agents: HashMap<String, AgentBook>,
    sessions: HashMap<String, SessionBook>,
    reservations: HashMap<ReservationId, Reservation>,
    next_id: ReservationId,
}

/// How a settled reservation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Committed,
    Released,
    Unknown,
}

/// What a reservation needs to know.
#[derive(Clone, Copy, Debug)]
pub struct ReserveRequest<'a> {
    pub session: &'a str,
    pub agent: &'a str,
    pub pay_to: &'a str,
    pub amount: Decimal,
    pub limits: Limits,
    /// The halt gate, as a ratio of each limit; reservations never pass it (nor 1.0).
    pub halt_ratio: Option<Decimal>,
}

/// The ledger.
#[derive(Default)]
pub struct Ledger {
    books: Mutex<Books>,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// parking_lot's lock spins briefly before it parks, which suits a critical section
    /// this short: under contention a waiter usually gets the lock without a syscall.
    /// It does not poison; every mutation inside is a sequence of plain additions.
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock()
    }

    /// Reserves `amount` at every level atomically, or refuses naming the level.
    ///
    /// The reservation's strings are built before the lock is taken; inside it there are
    /// three hash look-ups and a few additions (a key is copied only on first sight).
    pub fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReservationId, OverBudget> {
        let pay_to = request.pay_to.to_string();
        let mut guard = self.books();
        let Books {
            fleet,
            agents,
            sessions,
            reservations,
            next_id,
            ..
        } = &mut *guard;
        let session = sessions
            .entry_ref(request.session)
            .or_insert_with(|| SessionBook {
                name: Arc::from(request.session),
                account: Account::default(),
            });
        let agent = agents
            .entry_ref(request.agent)
            .or_insert_with(|| AgentBook {
                name: Arc::from(request.agent),
                account: Account::default(),
                paid_recipients: HashSet::new(),
            });
        let levels = [
            (Level::Session, session.account, request.limits.session),
            (Level::Agent, agent.account, request.limits.agent),
            (Level::Fleet, *fleet, request.limits.fleet),
        ];
        for (level, account, limit) in levels {
            if let Some(limit) = limit {
                check_cap(level, account, limit, request.amount, request.halt_ratio)?;
            }
        }
        session.account.reserved += request.amount;
        agent.account.reserved += request.amount;
        fleet.reserved += request.amount;
        *next_id += 1;
        let reservation = Reservation {
            session: session.name.clone(),
            agent: agent.name.clone(),
            amount: request.amount,
            pay_to,
        };
        reservations.insert(*next_id, reservation);
        Ok(*next_id)
    }

    /// Ends a reservation. Returns its amount, or `None` if it was already settled.
    pub fn settle(&self, id: ReservationId, outcome: Outcome) -> Option<Decimal> {
        let reservation = {
            let mut guard = self.books();
            let Books {
                fleet,
                agents,
                sessions,
                reservations,
                ..
            } = &mut *guard;
            let reservation = reservations.remove(&id)?;
            let amount = reservation.amount;
            let apply = |account: &mut Account| {
                account.reserved -= amount;
                match outcome {
                    Outcome::Committed => account.committed += amount,
                    Outcome::Unknown => account.unknown += amount,
                    Outcome::Released => {}
                }
            };
            // A reservation's books exist as long as it does: books are never removed.
            if let Some(session) = sessions.get_mut(&*reservation.session) {
                apply(&mut session.account);
            }
            if let Some(agent) = agents.get_mut(&*reservation.agent) {
                apply(&mut agent.account);
                if outcome == Outcome::Committed {
                    agent
                        .paid_recipients
                        .get_or_insert_with(reservation.pay_to.as_str(), str::to_string);
                }
            }
            apply(fleet);
            reservation
        };
        // The reservation's strings are freed here, outside the lock.
        Some(reservation.amount)
    }

    /// Settles a reservation as `unknown` and keeps it, under its decision's trace id,
    /// for reconciliation.
    pub fn settle_unknown(&self, id: ReservationId, decision_trace: &str) -> Option<Decimal> {
        let reservation = self.books().reservations.get(&id).cloned()?;
        let amount = self.settle(id, Outcome::Unknown)?;
        let unknown = UnknownPayment {
            session: reservation.session.to_string(),
            agent: reservation.agent.to_string(),
            amount,
            pay_to: reservation.pay_to,
        };
        self.books()
            .unknowns
            .insert(decision_trace.to_string(), unknown);
        Some(amount)
    }

    /// Resolves an unknown payment: `committed` moves it to spent for good, otherwise it
    /// is given back. `None` when no unknown payment has that trace id.
    pub fn resolve_unknown(&self, decision_trace: &str, committed: bool) -> Option<UnknownPayment> {
        let mut guard = self.books();
        let books = &mut *guard;
        let unknown = books.unknowns.remove(decision_trace)?;
        let amount = unknown.amount;
        let apply = |account: &mut Account| {
            account.unknown -= amount;
            if committed {
                account.committed += amount;
            }
        };
        if let Some(session) = books.sessions.get_mut(unknown.session.as_str()) {
            apply(&mut session.account);
        }
        if let Some(agent) = books.agents.get_mut(unknown.agent.as_str()) {
            apply(&mut agent.account);
            if committed {
                agent.paid_recipients.insert(unknown.pay_to.clone());
            }
        }
        apply(&mut books.fleet);
        Some(unknown)
    }

    /// The unknown payment of that decision, if its outcome is still unknown.
    pub fn unknown_payment(&self, decision_trace: &str) -> Option<UnknownPayment> {
        self.books().unknowns.get(decision_trace).cloned()
    }

    /// Unknown payments by decision trace id.
    pub fn unknown_payments(&self) -> Vec<(String, UnknownPayment)> {
        let mut list: Vec<(String, UnknownPayment)> = self
            .books()
            .unknowns
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Books a payment settled before a restart (recovery from the proof log).
    pub fn restore(&self, decision_trace: &str, payment: UnknownPayment, outcome: Outcome) {
        let limits = Limits::default();
        let request = ReserveRequest {
            session: &payment.session,
            agent: &payment.agent,
            pay_to: &payment.pay_to,
            amount: payment.amount,
            limits,
            halt_ratio: None,
        };
        let Ok(id) = self.reserve(request) else {
            return;
        };
        match outcome {
            Outcome::Unknown => {
                self.settle_unknown(id, decision_trace);
            }
            other => {
                self.settle(id, other);
            }
        }
    }

    /// Gives `amount` back to the budget (a compensated payment, when the policy credits).
    pub fn credit(&self, session: &str, agent: &str, amount: Decimal) {
        let mut guard = self.books();
        let books = &mut *guard;
        if let Some(session) = books.sessions.get_mut(session) {
            session.account.committed -= amount;
        }
        if let Some(agent) = books.agents.get_mut(agent) {
            agent.account.committed -= amount;
        }
        books.fleet.committed -= amount;
    }

    /// The accounts a payment by `agent` in `session` is measured against.
    pub fn view(&self, session: &str, agent: &str) -> BudgetView {
        let books = self.books();
        BudgetView {
            session: books
                .sessions
                .get(session)
                .map(|s| s.account)
                .unwrap_or_default(),
            agent: books
                .agents
                .get(agent)
                .map(|a| a.account)
                .unwrap_or_default(),
            fleet: books.fleet,
        }
    }

    /// Whether `agent` has paid `pay_to` before (with a successful receipt).
    pub fn has_paid(&self, agent: &str, pay_to: &str) -> bool {
        self.books()
            .agents
            .get(agent)
            .is_some_and(|a| a.paid_recipients.contains(pay_to))
    }

    /// Reservations still open.
    pub fn open_reservations(&self) -> usize {
        self.books().reservations.len()
    }
}

fn check_cap(
    level: Level,
    account: Account,
    limit: Decimal,
    amount: Decimal,
    halt: Option<Decimal>,
) -> Result<(), OverBudget> {
    let ratio_cap = halt.map_or(Decimal::ONE, |h| h.min(Decimal::ONE));
    let cap = limit * ratio_cap;
    if account.exposure() + amount > cap {
        return Err(OverBudget {
            level,
            limit,
            cap,
            exposure: account.exposure(),
            amount,
        });
    }
    Ok(())
}

/// `(spent + reserved + amount) / limit`, the ratio gates compare; the highest level's.
pub fn projected_ratio(
    view: &BudgetView,
    limits: &Limits,
    amount: Decimal,
) -> Option<(Level, Decimal)> {
    [
        (Level::Session, view.session, limits.session),
        (Level::Agent, view.agent, limits.agent),
        (Level::Fleet, view.fleet, limits.fleet),
    ]
    .into_iter()
    .filter_map(|(level, account, limit)| {
        let limit = limit?;
        let ratio = if limit.is_zero() {
            // A zero limit allows nothing: treat any payment as far past every gate.
            if amount.is_zero() {
                Decimal::ZERO
            } else {
                Decimal::from(1000)
            }
        } else {
            (account.exposure() + amount) / limit
        };
        Some((level, ratio))
    })
    .max_by(|a, b| a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::sync::Arc;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn limits(session: &str) -> Limits {
        Limits {
            session: Some(d(session)),
            ..Limits::default()
        }
    }

    fn request<'a>(session: &'a str, amount: &str, limits: Limits) -> ReserveRequest<'a> {
        ReserveRequest {
            session,
            agent: "bot",
            pay_to: "0xabc",
            amount: d(amount),
            limits,
            halt_ratio: None,
        }
    }

    #[test]
    fn reserve_commit_release_and_unknown_move_money_between_columns() {
        let ledger = Ledger::new();
        let a = ledger
            .reserve(request("s", "0.40", limits("1.00")))
            .unwrap();
        let b = ledger
            .reserve(request("s", "0.30", limits("1.00")))
            .unwrap();
        let c = ledger
            .reserve(request("s", "0.20", limits("1.00")))
            .unwrap();
        assert!(ledger
            .reserve(request("s", "0.20", limits("1.00")))
            .is_err());
        ledger.settle(a, Outcome::Committed);
        ledger.settle(b, Outcome::Released);
        ledger.settle(c, Outcome::Unknown);
        let view = ledger.view("s", "bot");
        assert_eq!(view.session.committed, d("0.40"));
        assert_eq!(view.session.unknown, d("0.20"));
        assert_eq!(view.session.reserved, d("0"));
        assert_eq!(view.fleet.spent(), d("0.60"));
        assert!(ledger.has_paid("bot", "0xabc"));
        assert_eq!(
            ledger.settle(a, Outcome::Committed),
            None,
            "settling twice is a no-op"
        );
    }

    #[test]
    fn halt_ratio_caps_reservations_below_the_limit() {
        let ledger = Ledger::new();
        let mut req = request("s", "0.95", limits("1.00"));
        req.halt_ratio = Some(d("0.90"));
        let err = ledger.reserve(req).unwrap_err();
        assert_eq!(err.level, Level::Session);
        assert_eq!(err.cap, d("0.90"));
    }

    #[test]
    fn concurrent_reservations_never_overspend() {
        let ledger = Arc::new(Ledger::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let mut granted = Vec::new();
                    for _ in 0..500 {
                        if let Ok(id) = ledger.reserve(request("s", "0.01", limits("1.00"))) {
                            granted.push(id);
                        }
                    }
                    for id in &granted {
                        ledger.settle(*id, Outcome::Committed);
                    }
                    granted.len()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 100);
        assert_eq!(ledger.view("s", "bot").session.committed, d("1.00"));
    }

    #[test]
    fn projected_ratio_takes_the_tightest_level() {
        let view = BudgetView::default();
        let limits = Limits {
            session: Some(d("10")),
            agent: Some(d("2")),
            ..Limits::default()
        };
        assert_eq!(
            projected_ratio(&view, &limits, d("1")),
            Some((Level::Agent, d("0.5")))
        );
    }
}
