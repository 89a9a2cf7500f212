//! [`Postgres`]: the fleet store (`purser run --store postgres://...`). Every replica
//! pointed at the same database shares one state, and the fleet behaves as one Purser:
//! budgets reserved atomically across replicas, one replay set, phases, unknown payments,
//! open transactions, holds (decided on any replica, released on the one holding them)
//! and a copy of every replica's proof log.
//!
//! * [`settings`]: the URL, TLS, replica id and time limits; [`link`]: the pool, time
//!   limits and whether the store is reachable; [`migrate`]: the schema
//!   (`migrations/*.sql`, plain SQL).
//! * [`batch`]: reservations and replay-key claims, batched; [`writes`]: plain writes,
//!   queued and applied in order; [`money`]: budgets and the decision.
//! * [`challenges`] (remembered 402 challenges, shared), [`sessions`] (phases), [`unknowns`], [`steps`] (open transactions), [`holds`] with
//!   [`hold_json`] and [`listen`] (LISTEN/NOTIFY), [`sweeper`] (leases), [`audit`] (the
//!   proof log's copy) and [`verify`] (`purser traces verify --store`).
//!
//! What each replica keeps to itself: the lock a decision holds on its session, decision
//! counts, frequency windows and the request a hold keeps open. Each also keeps the 402
//! challenges it saw, and adopts those the fleet shared when a payment answers none.
//! Reads (requests without a payment) never touch the store.

pub mod audit;
mod batch;
mod challenges;
mod hold_json;
mod holds;
mod link;
mod listen;
mod migrate;
mod money;
mod sessions;
pub mod settings;
mod steps;
mod sweeper;
mod unknowns;
pub mod verify;
mod writes;

pub use settings::{FleetSettings, StoreSetupError};

use super::interface::{Judge, KeyScreen, OpenedHold, Screened, SharedChallenge, Store};
use super::op::Op;
use super::restore::Recovered;
use super::session::{Session, TransitionError};
use super::session_table::{SessionFigures, SessionRefused, Sessions};
use super::transactions::SettledPayment;
use super::unknown::{Claim, RetryIdentity, RetryInFlight, UnknownDetails, UnknownView};
use crate::holds::{DecideError, HoldLimits, HoldOutcome, HoldRefused, HoldView, Holds};
use crate::ledger::{BudgetView, Outcome, ReservationId, ReserveRequest, UnknownPayment};
use crate::policy::rules::Phase;
use crate::policy::{MemoryLimits, PhasePolicy};
use crate::trace::filter::TraceFilter;
use crate::trace::{TraceLog, TraceRecord};
use batch::{Batchers, ClaimItem};
use link::{random_id, Link};
use money::PaidCache;
use rust_decimal::Decimal;
use std::sync::Arc;
use writes::{Write, Writes};

/// The fleet store.
pub struct Postgres {
    link: Arc<Link>,
    writes: Arc<Writes>,
    batchers: Batchers,
    sessions: Sessions,
    limits: parking_lot::Mutex<MemoryLimits>,
    holds: Arc<Holds>,
    paid: PaidCache,
    peeks: unknowns::Peeks,
    views: money::Views,
}

impl Postgres {
    /// Connects, brings the schema up to date, registers this replica and starts its
    /// background tasks (writer, batchers, hold listener, lease sweeper, proof-log copy).
    /// Lines the sweeper writes go to `trace`.
    pub async fn connect(
        settings: &FleetSettings,
        limits: MemoryLimits,
        trace: &TraceLog,
    ) -> Result<Postgres, StoreSetupError> {
        let link = Arc::new(Link::new(settings)?);
        match prepare(&link, trace).await {
            Ok(()) => {}
            // Down or slow now: start all the same (reads need no store; payments are
            // refused until it answers), and keep trying.
            Err(error) if error.maybe_done() => {
                tracing::error!(store = %link.url, %error, "fleet store unreachable at start; serving reads and refusing payments (ledger_unavailable) until it answers");
                link.note::<()>(&Err(error));
                let (link, trace) = (link.clone(), trace.clone());
                tokio::spawn(async move {
                    while prepare(&link, &trace).await.is_err() {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    tracing::info!(store = %link.url, "fleet store reached; schema ready");
                });
            }
            Err(error) => {
                return Err(StoreSetupError::Database {
                    url: link.url.clone(),
                    reason: error.to_string(),
                })
            }
        }
        let writes = Arc::new(Writes::start(link.clone()));
        let batchers = Batchers::start(link.clone(), writes.clone());
        let holds = Arc::new(Holds::default());
        listen::start(link.clone(), holds.clone());
        sweeper::start(link.clone(), trace.clone());
        audit::start(link.clone(), trace);
        tracing::info!(store = %link.url, replica = %link.replica, instance = link.instance, "fleet store ready");
        Ok(Postgres {
            link,
            writes,
            batchers,
            sessions: Sessions::default(),
            limits: parking_lot::Mutex::new(limits),
            holds,
            paid: PaidCache::default(),
            peeks: unknowns::Peeks::default(),
            views: money::Views::default(),
        })
    }

    /// This replica's name in the store.
    pub fn replica(&self) -> &str {
        &self.link.replica
    }
}

/// Brings the schema up to date and registers this process (taking over what an earlier
/// process of the same replica left).
async fn prepare(link: &Link, trace: &TraceLog) -> Result<(), link::StoreError> {
    migrate::migrate(link).await?;
    sweeper::register(link, trace).await
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Committed => "committed",
        Outcome::Released => "released",
        Outcome::Unknown => "unknown",
    }
}

impl Store for Postgres {
    fn budget(&self, session: &str, agent: &str) -> Op<'_, BudgetView> {
        let (session, agent) = (session.to_string(), agent.to_string());
        if self.link.unavailable().is_some() {
            // Known down: the last view read, at once, rather than a wait for nothing.
            return Op::ready(self.views.last_known(&session));
        }
        Op::pending(async move {
            match money::budget(&self.link, &self.writes, &session, &agent).await {
                Ok(view) => {
                    self.views.read(&session, view);
                    view
                }
                Err(_) => self.views.last_known(&session),
            }
        })
    }

    fn has_paid(&self, agent: &str, pay_to: &str) -> Op<'_, bool> {
        if self.link.unavailable().is_some() {
            // Known down: the reservation that follows refuses the payment anyway.
            return Op::ready(self.paid.knows(agent, pay_to));
        }
        let (agent, pay_to) = (agent.to_string(), pay_to.to_string());
        Op::pending(async move { money::has_paid(&self.link, &self.paid, &agent, &pay_to).await })
    }

    fn settle(&self, reservation: ReservationId, outcome: Outcome) {
        self.writes.push(Write::Settle {
            id: reservation as i64,
            outcome: outcome_name(outcome),
            unknown: None,
        });
    }

    fn settle_unknown(
        &self,
        reservation: ReservationId,
        decision_trace: &str,
        details: UnknownDetails,
    ) {
        self.writes.push(Write::Settle {
            id: reservation as i64,
            outcome: "unknown",
            unknown: Some(unknowns::details_json(decision_trace, &details)),
        });
    }

    fn credit(&self, session: &str, agent: &str, amount: Decimal) {
        money::credit(&self.writes, session, agent, amount);
    }

    fn session(
        &self,
        id: &str,
        agent: &str,
        limits: &MemoryLimits,
    ) -> Op<'_, Result<Session, SessionRefused>> {
        *self.limits.lock() = *limits;
        Op::ready(self.sessions.get_or_create(id, agent, limits))
    }

    fn find_session(&self, id: &str) -> Op<'_, Option<Session>> {
        let id = id.to_string();
        let limits = *self.limits.lock();
        Op::pending(async move { sessions::find(&self.link, &self.sessions, &limits, &id).await })
    }

    fn session_ids(&self) -> Op<'_, Vec<String>> {
        Op::pending(sessions::ids(&self.link, &self.sessions))
    }

    fn decide_in<'a>(
        &'a self,
        session: &'a Session,
        request: ReserveRequest<'a>,
        screen: Option<KeyScreen<'a>>,
        judge: &'a mut dyn Judge,
    ) -> Op<'a, Screened> {
        Op::pending(money::decide_in(
            &self.batchers,
            &self.views,
            session,
            request,
            screen,
            judge,
        ))
    }

    fn screens_keys(&self) -> bool {
        true
    }

    fn advance_phase(
        &self,
        session: &Session,
        to: Phase,
        rules: &PhasePolicy,
    ) -> Op<'_, Result<Phase, TransitionError>> {
        let (session, rules) = (session.clone(), *rules);
        Op::pending(async move {
            match sessions::advance(&self.link, &session, to, &rules).await {
                Ok(moved) => moved,
                Err(error) => Err(TransitionError::Unavailable {
                    from: session.lock().phase,
                    reason: error.to_string(),
                }),
            }
        })
    }

    fn reset_phase(&self, session: &Session) -> Op<'_, Phase> {
        let session = session.clone();
        Op::pending(async move {
            match sessions::reset(&self.link, &session).await {
                Ok(from) => from,
                Err(error) => {
                    tracing::error!(session = %session.id(), %error, "session not reset: the fleet store did not answer");
                    session.lock().phase
                }
            }
        })
    }

    fn expire_idle_sessions(&self, limits: &MemoryLimits) -> usize {
        self.sessions.expire_idle(limits)
    }

    fn session_figures(&self) -> SessionFigures {
        self.sessions.figures()
    }

    fn first_seen_replay_key(&self, keys: &[String], now: u64) -> Op<'_, Option<usize>> {
        if let Some(seen) = self.peeks.take(keys) {
            return Op::ready(keys.iter().position(|key| seen.contains(key)));
        }
        if self.link.unavailable().is_some() {
            return Op::ready(None); // the claim that follows is the check that counts
        }
        let keys = keys.to_vec();
        Op::pending(async move {
            let now = now as i64;
            let rows = self
                .link
                .rows(
                    "SELECT key FROM purser_replay_keys WHERE key = ANY($1) AND until >= $2",
                    &[&keys, &now],
                )
                .await
                .ok()?;
            let seen: Vec<String> = rows.iter().filter_map(|row| row.try_get(0).ok()).collect();
            keys.iter().position(|key| seen.contains(key))
        })
    }

    fn claim_replay_keys(&self, keys: &[String], until: u64, now: u64) -> Op<'_, bool> {
        if keys.is_empty() {
            return Op::ready(true);
        }
        let item = ClaimItem {
            claim: random_id(),
            keys: keys.to_vec(),
            until: i64::try_from(until).unwrap_or(i64::MAX),
            now: now as i64,
        };
        Op::pending(async move { self.batchers.claim(item).await.unwrap_or(false) })
    }

    fn forget_replay_keys(&self, keys: &[String]) {
        self.writes.push(Write::ForgetKeys {
            keys: keys.to_vec(),
        });
    }

    fn forget_expired_replay_keys(&self, _now: u64) -> usize {
        0 // the sweeper forgets them in the store
    }

    fn replay_key_count(&self) -> usize {
        0 // kept in the store, counted there
    }

    fn claim_retry(
        &self,
        keys: &[String],
        identity: &(dyn Fn() -> RetryIdentity + Sync),
    ) -> Op<'_, Claim> {
        if self.link.unavailable().is_some() {
            // Known down: the reservation that follows refuses the payment at once.
            return Op::ready(Claim::Unrelated);
        }
        let keys = keys.to_vec();
        // Asked now: the closure is borrowed only for this call.
        let identity = identity();
        Op::pending(async move {
            unknowns::claim_retry(&self.link, &self.writes, &self.peeks, &keys, identity).await
        })
    }

    fn release_retry(&self, original: &str) {
        self.writes.push(Write::ReleaseRetry {
            id: original.to_string(),
        });
    }

    fn unknown_payment(&self, decision_trace: &str) -> Op<'_, Option<UnknownPayment>> {
        let id = decision_trace.to_string();
        Op::pending(async move {
            unknowns::payment(&self.link, &self.writes, &id)
                .await
                .ok()
                .flatten()
        })
    }

    fn unknown_payments(&self) -> Op<'_, Vec<(UnknownPayment, UnknownView)>> {
        Op::pending(async move {
            unknowns::list(&self.link, &self.writes)
                .await
                .unwrap_or_default()
        })
    }

    fn take_unknown(
        &self,
        decision_trace: &str,
        by_retry: bool,
    ) -> Op<'_, Result<Option<UnknownDetails>, RetryInFlight>> {
        let id = decision_trace.to_string();
        Op::pending(async move {
            unknowns::take(&self.link, &self.writes, &id, by_retry)
                .await
                .unwrap_or(Ok(None))
        })
    }

    fn remember_unknown(&self, decision_trace: &str, _details: UnknownDetails) {
        self.writes.push(Write::Unresolving {
            id: decision_trace.to_string(),
        });
    }

    fn resolve_unknown(
        &self,
        decision_trace: &str,
        committed: bool,
    ) -> Op<'_, Option<UnknownPayment>> {
        let id = decision_trace.to_string();
        Op::pending(async move {
            unknowns::resolve(&self.link, &id, committed)
                .await
                .ok()
                .flatten()
        })
    }

    fn hold_room(&self, session: &str, limits: HoldLimits) -> Op<'_, Result<(), HoldRefused>> {
        let session = session.to_string();
        Op::pending(async move { holds::room(&self.link, &session, limits).await })
    }

    fn open_hold(
        &self,
        view: HoldView,
        limits: HoldLimits,
    ) -> Op<'_, Result<OpenedHold, HoldRefused>> {
        Op::pending(holds::open(&self.link, &self.holds, view, limits))
    }

    fn resolve_hold(&self, id: &str, outcome: HoldOutcome) -> Op<'_, bool> {
        let id = id.to_string();
        Op::pending(async move {
            holds::resolve(&self.link, &self.writes, &self.holds, &id, outcome).await
        })
    }

    fn abandon_hold(&self, id: &str, outcome: HoldOutcome) {
        holds::abandon(&self.writes, &self.holds, id, outcome);
    }

    fn decide_hold(
        &self,
        id: &str,
        outcome: HoldOutcome,
        digest: Option<&str>,
    ) -> Op<'_, Result<HoldView, DecideError>> {
        let (id, digest) = (id.to_string(), digest.map(str::to_string));
        Op::pending(async move {
            holds::decide(&self.link, &self.holds, &id, outcome, digest.as_deref()).await
        })
    }

    fn pending_holds(&self) -> Op<'_, Vec<Arc<HoldView>>> {
        Op::pending(holds::pending(&self.link, &self.holds))
    }

    fn pending_hold_count(&self) -> usize {
        self.holds.len()
    }

    fn resolve_all_holds(&self, outcome: HoldOutcome) -> Op<'_, usize> {
        Op::pending(holds::resolve_all(
            &self.link,
            &self.writes,
            &self.holds,
            outcome,
        ))
    }

    fn record_step(&self, agent: &str, transaction: &str, payment: SettledPayment) {
        self.writes.push(Write::Step {
            id: random_id(),
            agent: agent.to_string(),
            transaction: transaction.to_string(),
            payment: serde_json::to_value(&payment).unwrap_or_default(),
        });
    }

    fn take_transaction(
        &self,
        agent: &str,
        transaction: &str,
    ) -> Op<'_, Option<Vec<SettledPayment>>> {
        let (agent, transaction) = (agent.to_string(), transaction.to_string());
        Op::pending(async move {
            match steps::take(&self.link, &self.writes, &agent, &transaction).await {
                Ok(steps) => steps,
                Err(error) => {
                    tracing::error!(%transaction, %error, "transaction not compensated: the fleet store did not answer");
                    None
                }
            }
        })
    }

    fn take_transaction_for_all_agents(
        &self,
        transaction: &str,
    ) -> Op<'_, Vec<Vec<SettledPayment>>> {
        let transaction = transaction.to_string();
        Op::pending(async move {
            steps::take_for_all_agents(&self.link, &self.writes, &transaction)
                .await
                .unwrap_or_default()
        })
    }

    fn shares_challenges(&self) -> bool {
        true
    }

    fn share_challenge(&self, agent: &str, session: &str, key: &str, form: &str) -> Op<'_, ()> {
        let (agent, session) = (agent.to_string(), session.to_string());
        let (key, form) = (key.to_string(), form.to_string());
        Op::pending(async move {
            challenges::share(&self.link, &agent, &session, &key, &form).await;
        })
    }

    fn shared_challenges(
        &self,
        agent: &str,
        session: &str,
        ttl: std::time::Duration,
        limit: usize,
    ) -> Op<'_, Vec<SharedChallenge>> {
        let (agent, session) = (agent.to_string(), session.to_string());
        Op::pending(
            async move { challenges::shared(&self.link, &agent, &session, ttl, limit).await },
        )
    }

    fn restore(&self, _recovered: Recovered, _limits: &MemoryLimits) {
        // The store is the truth: a replica rebuilds nothing from its own file.
    }

    fn fleet_traces(
        &self,
        filter: &TraceFilter,
        limit: usize,
    ) -> Op<'_, Option<Result<Vec<TraceRecord>, String>>> {
        let filter = filter.clone();
        Op::pending(async move {
            Some(
                audit::fleet_lines(&self.link, &filter, limit)
                    .await
                    .map_err(|e| e.to_string()),
            )
        })
    }

    fn unavailable(&self) -> Option<String> {
        self.link.unavailable()
    }

    fn close(&self) -> Op<'_, ()> {
        Op::pending(sweeper::leave(&self.link, &self.writes))
    }
}
