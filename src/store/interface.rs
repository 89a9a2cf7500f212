//! The store's interface: everything the engine keeps that a fleet of Purser instances
//! would have to share, as one object-safe trait.
//!
//! Reads, and writes whose answer decides something (a reservation, a replay check, a
//! claim), return an [`Op`] to await: ready at once for the embedded store, a round trip
//! for a shared one. Plain writes return nothing: the embedded store applies them at
//! once; a networked store must queue them in order, so that a later read from the same
//! process sees them. Writes are what guards call from `Drop`, where nothing can be
//! awaited.

use super::op::Op;
use super::restore::Recovered;
use super::session::{Session, SessionState, TransitionError};
use super::session_table::{SessionFigures, SessionRefused};
use super::transactions::SettledPayment;
use super::unknown::{Claim, RetryIdentity, RetryInFlight, UnknownDetails, UnknownView};
use crate::holds::{DecideError, HoldLimits, HoldOutcome, HoldRefused, HoldView};
use crate::ledger::{
    BudgetView, Outcome, OverBudget, ReservationId, ReserveRequest, UnknownPayment,
};
use crate::policy::rules::Phase;
use crate::policy::{MemoryLimits, PhasePolicy};
use crate::trace::filter::TraceFilter;
use crate::trace::TraceRecord;
use rust_decimal::Decimal;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A payment's replay keys, for a store that screens and claims them in the same step
/// as the reservation ([`Store::screens_keys`]): one round trip to a shared store instead
/// of three.
#[derive(Clone, Copy)]
pub struct KeyScreen<'a> {
    pub keys: &'a [String],
    /// Until when the keys are remembered (Unix seconds).
    pub until: u64,
    pub now: u64,
}

/// A 402 challenge some replica of the fleet remembered: the engine's key for it, its
/// shared form (the engine's own text), and how long ago it was seen.
#[derive(Clone, Debug)]
pub struct SharedChallenge {
    pub key: String,
    pub form: String,
    pub age: std::time::Duration,
}

/// What a decision run in the store came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screened {
    /// The judge ran, or the store could not run it (the judge then has no result);
    /// `keys_claimed`: the keys screened were claimed with the booking.
    Judged { keys_claimed: bool },
    /// The key at this index is remembered already (a replay, or a racing copy): the
    /// judge did not run and nothing was booked.
    Replayed(usize),
    /// A key belongs to a payment whose outcome is unknown: the payment may be its retry
    /// ([`Store::claim_retry`] says). The judge did not run and nothing was booked.
    SharesUnknownKey,
}

/// The store as the engine holds it.
pub type SharedStore = Arc<dyn Store>;

/// A hold that was opened: its id, and where its outcome will arrive.
pub type OpenedHold = (String, oneshot::Receiver<HoldOutcome>);

/// One decision's critical section. The store runs it with the session's state and its
/// budgets held still: a session's phase and frequency windows cannot change under a
/// decision, and the reservation is booked atomically with it.
pub trait Judge: Send {
    /// Decides from `session` and `budget`. `book` reserves the request's amount at every
    /// level (or says which level it would pass); call it at most once.
    fn judge(
        &mut self,
        session: &mut SessionState,
        budget: BudgetView,
        book: &mut dyn FnMut() -> Result<ReservationId, OverBudget>,
    );
}

/// Budgets and reservations, sessions and phases, the replay set, unknown payments,
/// holds and open transactions.
pub trait Store: Send + Sync + 'static {
    // Budgets and reservations.

    /// The accounts a payment by `agent` in `session` is measured against.
    fn budget(&self, session: &str, agent: &str) -> Op<'_, BudgetView>;
    /// Whether `agent` has paid `pay_to` before, with a successful receipt.
    fn has_paid(&self, agent: &str, pay_to: &str) -> Op<'_, bool>;
    /// Ends a reservation as committed or released (a write).
    fn settle(&self, reservation: ReservationId, outcome: Outcome);
    /// Ends a reservation as `unknown`: counted as spent, kept under its decision's trace
    /// id with `details` until someone reconciles it (a write).
    fn settle_unknown(
        &self,
        reservation: ReservationId,
        decision_trace: &str,
        details: UnknownDetails,
    );
    /// Gives `amount` back to the budget: a compensated payment, when the policy credits
    /// (a write).
    fn credit(&self, session: &str, agent: &str, amount: Decimal);

    // Sessions and phases.

    /// The session, created in EXPLORE on first sight, within the caps.
    fn session(
        &self,
        id: &str,
        agent: &str,
        limits: &MemoryLimits,
    ) -> Op<'_, Result<Session, SessionRefused>>;
    /// The session, if it is tracked.
    fn find_session(&self, id: &str) -> Op<'_, Option<Session>>;
    /// The ids of the sessions tracked, sorted.
    fn session_ids(&self) -> Op<'_, Vec<String>>;
    /// Runs `judge` as one critical section with `request`'s accounts (see [`Judge`]).
    /// With `screen` (only when [`Store::screens_keys`]), the keys are checked against
    /// the replay set and the unknown payments first, and claimed with the booking.
    fn decide_in<'a>(
        &'a self,
        session: &'a Session,
        request: ReserveRequest<'a>,
        screen: Option<KeyScreen<'a>>,
        judge: &'a mut dyn Judge,
    ) -> Op<'a, Screened>;
    /// Whether [`Store::decide_in`] screens a payment's keys itself. The engine then asks
    /// it instead of looking first ([`Store::claim_retry`], [`Store::first_seen_replay_key`])
    /// and claiming after ([`Store::claim_replay_keys`]): a shared store saves two round
    /// trips per payment. The embedded store looks in memory and does not.
    fn screens_keys(&self) -> bool {
        false
    }
    /// Moves the session's phase forward; returns the phase it left.
    fn advance_phase(
        &self,
        session: &Session,
        to: Phase,
        rules: &PhasePolicy,
    ) -> Op<'_, Result<Phase, TransitionError>>;
    /// Starts the session over in EXPLORE; returns the phase it left.
    fn reset_phase(&self, session: &Session) -> Op<'_, Phase>;
    /// Forgets sessions idle past `limits.session_idle`; returns how many went.
    fn expire_idle_sessions(&self, limits: &MemoryLimits) -> usize;
    /// Session figures, for `/metrics`.
    fn session_figures(&self) -> SessionFigures;

    // The replay set.

    /// The index of the first of `keys` already remembered, if any.
    fn first_seen_replay_key(&self, keys: &[String], now: u64) -> Op<'_, Option<usize>>;
    /// Remembers `keys` until `until`; `false` when one of them is remembered already (a
    /// replay, or a racing copy: of two copies, one loses here).
    fn claim_replay_keys(&self, keys: &[String], until: u64, now: u64) -> Op<'_, bool>;
    /// Forgets keys of a payment that never left (a write).
    fn forget_replay_keys(&self, keys: &[String]);
    /// Forgets keys of payments that can no longer settle; returns how many.
    fn forget_expired_replay_keys(&self, now: u64) -> usize;
    /// Keys remembered.
    fn replay_key_count(&self) -> usize;

    // Payments whose outcome is unknown.

    /// Whether a payment with `keys` is the retry of an unknown payment (`identity` is
    /// asked only if a key matches); claims the retry if it is the only one in flight.
    fn claim_retry(
        &self,
        keys: &[String],
        identity: &(dyn Fn() -> RetryIdentity + Sync),
    ) -> Op<'_, Claim>;
    /// Ends a claim on a retry (a write).
    fn release_retry(&self, original: &str);
    /// The unknown payment of that decision, if its outcome is still unknown.
    fn unknown_payment(&self, decision_trace: &str) -> Op<'_, Option<UnknownPayment>>;
    /// Unknown payments with what an operator needs to reconcile them, oldest first.
    fn unknown_payments(&self) -> Op<'_, Vec<(UnknownPayment, UnknownView)>>;
    /// Takes the details of an unknown payment out, so no retry claims it while it is
    /// resolved. A retry in flight blocks an operator's resolution but not its own.
    fn take_unknown(
        &self,
        decision_trace: &str,
        by_retry: bool,
    ) -> Op<'_, Result<Option<UnknownDetails>, RetryInFlight>>;
    /// Puts details taken out back (a resolution that could not be written; a write).
    fn remember_unknown(&self, decision_trace: &str, details: UnknownDetails);
    /// Resolves an unknown payment: `committed` moves it to spent for good, otherwise it
    /// is given back. `None` when no unknown payment has that trace id.
    fn resolve_unknown(
        &self,
        decision_trace: &str,
        committed: bool,
    ) -> Op<'_, Option<UnknownPayment>>;

    // Holds.

    /// Whether a hold for `session` would fit now ([`Store::open_hold`] checks again).
    fn hold_room(&self, session: &str, limits: HoldLimits) -> Op<'_, Result<(), HoldRefused>>;
    /// Registers a hold; its receiver yields the outcome once someone decides.
    fn open_hold(
        &self,
        view: HoldView,
        limits: HoldLimits,
    ) -> Op<'_, Result<OpenedHold, HoldRefused>>;
    /// Decides a hold if nobody has yet; `false` when someone else did first.
    fn resolve_hold(&self, id: &str, outcome: HoldOutcome) -> Op<'_, bool>;
    /// Decides a hold whose request went away (a write).
    fn abandon_hold(&self, id: &str, outcome: HoldOutcome);
    /// A person's decision; `digest`, when given, must be the held payment's.
    fn decide_hold(
        &self,
        id: &str,
        outcome: HoldOutcome,
        digest: Option<&str>,
    ) -> Op<'_, Result<HoldView, DecideError>>;
    /// Pending holds, oldest first.
    fn pending_holds(&self) -> Op<'_, Vec<Arc<HoldView>>>;
    /// Pending holds, counted.
    fn pending_hold_count(&self) -> usize;
    /// Decides every pending hold with `outcome` (shutdown); returns how many.
    fn resolve_all_holds(&self, outcome: HoldOutcome) -> Op<'_, usize>;

    // Open transactions.

    /// Records a settled payment as a step of `agent`'s `transaction` (a write).
    fn record_step(&self, agent: &str, transaction: &str, payment: SettledPayment);
    /// Takes `agent`'s `transaction` out, its steps oldest first.
    fn take_transaction(
        &self,
        agent: &str,
        transaction: &str,
    ) -> Op<'_, Option<Vec<SettledPayment>>>;
    /// Takes the transaction `transaction` of every agent that has one.
    fn take_transaction_for_all_agents(
        &self,
        transaction: &str,
    ) -> Op<'_, Vec<Vec<SettledPayment>>>;

    // Remembered 402 challenges.

    /// Whether a fleet shares remembered challenges through this store. When not (the
    /// embedded store), the engine builds no shared forms and asks for none.
    fn shares_challenges(&self) -> bool {
        false
    }
    /// Shares a 402 challenge `session` got, under the engine's `key`, in its shared
    /// `form`: the paid retry may come through another replica. Waits briefly at most; a
    /// store that does not take it leaves the challenge with this replica alone. The
    /// embedded store has no fleet to tell.
    fn share_challenge(&self, _agent: &str, _session: &str, _key: &str, _form: &str) -> Op<'_, ()> {
        Op::ready(())
    }
    /// The challenges the fleet shared for `session` seen within `ttl`, newest first,
    /// at most `limit`.
    fn shared_challenges(
        &self,
        _agent: &str,
        _session: &str,
        _ttl: std::time::Duration,
        _limit: usize,
    ) -> Op<'_, Vec<SharedChallenge>> {
        Op::ready(Vec::new())
    }

    // Recovery.

    /// Rebuilds the state the proof log recorded (a store that keeps its own state
    /// durably has nothing to rebuild).
    fn restore(&self, recovered: Recovered, limits: &MemoryLimits);

    // The proof log.

    /// The fleet's latest proof-log lines matching `filter`, oldest first, for a store
    /// that keeps every replica's lines; `None` for a store that does not (each process
    /// then reads its own file).
    fn fleet_traces(
        &self,
        _filter: &TraceFilter,
        _limit: usize,
    ) -> Op<'_, Option<Result<Vec<TraceRecord>, String>>> {
        Op::ready(None)
    }

    // Health and shutdown.

    /// Writes everything still queued and leaves the fleet (shutdown, once in-flight
    /// requests have finished). Nothing to do for the embedded store.
    fn close(&self) -> Op<'_, ()> {
        Op::ready(())
    }

    /// Why payments are refused right now (`ledger_unavailable`): a shared store that
    /// cannot be reached says so here. The embedded store is always there.
    fn unavailable(&self) -> Option<String> {
        None
    }
}
