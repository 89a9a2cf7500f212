//! [`Embedded`]: the default store, in this process's memory and rebuilt from the proof
//! log on start. It owns the ledger's books, the session table, the replay set, the
//! unknown payments, the hold registry and the open transactions.
//!
//! Every operation is done by the time it returns, so each [`Op`] is ready at once: the
//! decision path pays a virtual call per operation and nothing else.

use super::interface::{Judge, KeyScreen, OpenedHold, Screened, Store};
use super::op::Op;
use super::replay::{unix_now, ReplaySet};
use super::restore::Recovered;
use super::session::{Session, TransitionError};
use super::session_table::{SessionFigures, SessionRefused, Sessions};
use super::transactions::{SettledPayment, Transactions};
use super::unknown::{
    Claim, RetryIdentity, RetryInFlight, UnknownDetails, UnknownSet, UnknownView,
};
use crate::holds::{DecideError, HoldLimits, HoldOutcome, HoldRefused, HoldView, Holds};
use crate::ledger::{BudgetView, Ledger, Outcome, ReservationId, ReserveRequest, UnknownPayment};
use crate::policy::rules::Phase;
use crate::policy::{MemoryLimits, PhasePolicy};
use rust_decimal::Decimal;
use std::sync::Arc;

/// The in-memory store.
pub struct Embedded {
    ledger: Arc<Ledger>,
    sessions: Sessions,
    replay: ReplaySet,
    unknowns: UnknownSet,
    holds: Holds,
    transactions: Transactions,
}

impl Default for Embedded {
    fn default() -> Self {
        let ledger = Arc::new(Ledger::new());
        let books = ledger.clone();
        Embedded {
            // A session with money reserved or unknown is never forgotten for room.
            sessions: Sessions::with_stakes(Box::new(move |session, agent| {
                let account = books.view(session, agent).session;
                !account.reserved.is_zero() || !account.unknown.is_zero()
            })),
            ledger,
            replay: ReplaySet::default(),
            unknowns: UnknownSet::default(),
            holds: Holds::default(),
            transactions: Transactions::default(),
        }
    }
}

impl Embedded {
    pub fn new() -> Self {
        Embedded::default()
    }
}

impl Store for Embedded {
    fn budget(&self, session: &str, agent: &str) -> Op<'_, BudgetView> {
        Op::ready(self.ledger.view(session, agent))
    }

    fn has_paid(&self, agent: &str, pay_to: &str) -> Op<'_, bool> {
        Op::ready(self.ledger.has_paid(agent, pay_to))
    }

    fn settle(&self, reservation: ReservationId, outcome: Outcome) {
        self.ledger.settle(reservation, outcome);
    }

    fn settle_unknown(
        &self,
        reservation: ReservationId,
        decision_trace: &str,
        details: UnknownDetails,
    ) {
        if self
            .ledger
            .settle_unknown(reservation, decision_trace)
            .is_some()
        {
            self.unknowns.insert(decision_trace, details);
        }
    }

    fn credit(&self, session: &str, agent: &str, amount: Decimal) {
        self.ledger.credit(session, agent, amount);
    }

    fn session(
        &self,
        id: &str,
        agent: &str,
        limits: &MemoryLimits,
    ) -> Op<'_, Result<Session, SessionRefused>> {
        Op::ready(self.sessions.get_or_create(id, agent, limits))
    }

    fn find_session(&self, id: &str) -> Op<'_, Option<Session>> {
        Op::ready(self.sessions.get(id))
    }

    fn session_ids(&self) -> Op<'_, Vec<String>> {
        Op::ready(self.sessions.ids())
    }

    fn decide_in<'a>(
        &'a self,
        session: &'a Session,
        request: ReserveRequest<'a>,
        _screen: Option<KeyScreen<'a>>,
        judge: &'a mut dyn Judge,
    ) -> Op<'a, Screened> {
        let mut state = session.lock();
        let budget = self.ledger.view(request.session, request.agent);
        judge.judge(&mut state, budget, &mut || self.ledger.reserve(request));
        Op::ready(Screened::Judged {
            keys_claimed: false,
        })
    }

    fn advance_phase(
        &self,
        session: &Session,
        to: Phase,
        rules: &PhasePolicy,
    ) -> Op<'_, Result<Phase, TransitionError>> {
        Op::ready(session.lock().advance(to, rules))
    }

    fn reset_phase(&self, session: &Session) -> Op<'_, Phase> {
        let mut state = session.lock();
        let from = state.phase;
        state.reset();
        Op::ready(from)
    }

    fn expire_idle_sessions(&self, limits: &MemoryLimits) -> usize {
        self.sessions.expire_idle(limits)
    }

    fn session_figures(&self) -> SessionFigures {
        self.sessions.figures()
    }

    fn first_seen_replay_key(&self, keys: &[String], now: u64) -> Op<'_, Option<usize>> {
        Op::ready(keys.iter().position(|key| self.replay.contains(key, now)))
    }

    fn claim_replay_keys(&self, keys: &[String], until: u64, now: u64) -> Op<'_, bool> {
        Op::ready(
            keys.iter()
                .all(|key| self.replay.insert_fresh(key.clone(), until, now)),
        )
    }

    fn forget_replay_keys(&self, keys: &[String]) {
        for key in keys {
            self.replay.remove(key);
        }
    }

    fn forget_expired_replay_keys(&self, now: u64) -> usize {
        self.replay.forget_expired(now)
    }

    fn replay_key_count(&self) -> usize {
        self.replay.len()
    }

    fn claim_retry(
        &self,
        keys: &[String],
        identity: &(dyn Fn() -> RetryIdentity + Sync),
    ) -> Op<'_, Claim> {
        Op::ready(self.unknowns.claim(keys, identity))
    }

    fn release_retry(&self, original: &str) {
        self.unknowns.release_claim(original);
    }

    fn unknown_payment(&self, decision_trace: &str) -> Op<'_, Option<UnknownPayment>> {
        Op::ready(self.ledger.unknown_payment(decision_trace))
    }

    fn unknown_payments(&self) -> Op<'_, Vec<(UnknownPayment, UnknownView)>> {
        let mut list: Vec<_> = self
            .ledger
            .unknown_payments()
            .into_iter()
            .map(|(trace, payment)| {
                // Every unknown payment has details; should one not, it is still listed.
                let view = self.unknowns.view(&trace).unwrap_or_else(|| UnknownView {
                    id: trace,
                    details: UnknownDetails {
                        session: payment.session.clone(),
                        agent: payment.agent.clone(),
                        ..UnknownDetails::default()
                    },
                    retries: 0,
                    retry_in_flight: false,
                });
                (payment, view)
            })
            .collect();
        list.sort_by(|a, b| a.1.details.since.cmp(&b.1.details.since));
        Op::ready(list)
    }

    fn take_unknown(
        &self,
        decision_trace: &str,
        by_retry: bool,
    ) -> Op<'_, Result<Option<UnknownDetails>, RetryInFlight>> {
        Op::ready(self.unknowns.take(decision_trace, by_retry))
    }

    fn remember_unknown(&self, decision_trace: &str, details: UnknownDetails) {
        self.unknowns.insert(decision_trace, details);
    }

    fn resolve_unknown(
        &self,
        decision_trace: &str,
        committed: bool,
    ) -> Op<'_, Option<UnknownPayment>> {
        Op::ready(self.ledger.resolve_unknown(decision_trace, committed))
    }

    fn hold_room(&self, session: &str, limits: HoldLimits) -> Op<'_, Result<(), HoldRefused>> {
        Op::ready(self.holds.check_room(session, limits))
    }

    fn open_hold(
        &self,
        view: HoldView,
        limits: HoldLimits,
    ) -> Op<'_, Result<OpenedHold, HoldRefused>> {
        Op::ready(self.holds.open(view, limits))
    }

    fn resolve_hold(&self, id: &str, outcome: HoldOutcome) -> Op<'_, bool> {
        Op::ready(self.holds.resolve(id, outcome).is_some())
    }

    fn abandon_hold(&self, id: &str, outcome: HoldOutcome) {
        self.holds.resolve(id, outcome);
    }

    fn decide_hold(
        &self,
        id: &str,
        outcome: HoldOutcome,
        digest: Option<&str>,
    ) -> Op<'_, Result<HoldView, DecideError>> {
        Op::ready(self.holds.decide(id, outcome, digest))
    }

    fn pending_holds(&self) -> Op<'_, Vec<Arc<HoldView>>> {
        Op::ready(self.holds.list())
    }

    fn pending_hold_count(&self) -> usize {
        self.holds.len()
    }

    fn resolve_all_holds(&self, outcome: HoldOutcome) -> Op<'_, usize> {
        Op::ready(self.holds.resolve_all(outcome))
    }

    fn record_step(&self, agent: &str, transaction: &str, payment: SettledPayment) {
        self.transactions.record_step(agent, transaction, payment);
    }

    fn take_transaction(
        &self,
        agent: &str,
        transaction: &str,
    ) -> Op<'_, Option<Vec<SettledPayment>>> {
        Op::ready(self.transactions.take(agent, transaction))
    }

    fn take_transaction_for_all_agents(
        &self,
        transaction: &str,
    ) -> Op<'_, Vec<Vec<SettledPayment>>> {
        Op::ready(self.transactions.take_for_all_agents(transaction))
    }

    fn restore(&self, recovered: Recovered, limits: &MemoryLimits) {
        let Recovered {
            settled,
            unsettled,
            unknown,
            resolutions,
            credits,
            replay_keys,
            phases,
            recent,
        } = recovered;
        for (trace, payment, outcome) in settled {
            self.ledger.restore(&trace, payment, outcome);
        }
        for (trace, payment, details) in unsettled {
            self.unknowns.insert(&trace, details);
            self.ledger.restore(&trace, payment, Outcome::Unknown);
        }
        for (trace, details) in unknown {
            self.unknowns.insert(&trace, details);
        }
        for (trace, committed) in resolutions {
            self.ledger.resolve_unknown(&trace, committed);
            let _ = self.unknowns.take(&trace, true);
        }
        for (session, agent, amount) in credits {
            self.ledger.credit(&session, &agent, amount);
        }
        let now = unix_now();
        for (key, until) in replay_keys {
            if until >= now {
                self.replay.insert_fresh(key, until, now);
            }
        }
        for (session, agent, phase) in phases {
            // Refused when the caps are full of sessions worth more (and logged).
            if let Ok(state) = self.sessions.get_or_create(&session, &agent, limits) {
                state.lock().phase = phase;
            }
        }
        for (session, agent, payments) in recent {
            if let Ok(state) = self.sessions.get_or_create(&session, &agent, limits) {
                let mut locked = state.lock();
                for payment in payments {
                    locked.record_payment(payment);
                }
            }
        }
    }
}
