//! The governance engine: what happens to a request that carries a payment, and to the
//! answer that comes back. It knows no wire format: it returns a typed [`Gate`], and
//! keeps what must outlive a request in the [`crate::store`].
//!
//! [`Engine`] is the facade the proxy and the admin API call. Behind it:
//!
//! * [`pricing`]: parse the payment, match it to its challenge, price it; `mpp` does
//!   the same for MPP credentials (bound to their challenge by id and digest) and reads
//!   their receipts; [`Paid`] is either payment as the rest of the engine sees it.
//! * [`evaluate`]: the decision, a pure function of the payment's facts and the policy;
//!   `judge` runs it inside the store's critical section for the session and books it.
//! * `decide`: the decision path, from the request's headers to the [`Gate`]; `refuse`
//!   for payments refused before any rule; `retry` for the retry of a payment whose
//!   outcome is unknown; `hold` for payments waiting for a human; `phases` for phase
//!   changes.
//! * [`gate`]: what the proxy is told to do: forward (with a [`Ticket`]), or a typed
//!   [`Refusal`] it renders.
//! * `chain_watch`: on a timer, unknown EVM payments resolved from their chain (the
//!   policy's `chains`), through the [`crate::chain_rpc`] client it is given.
//! * [`settle`]: what an answer says about a payment; reconciling unknown outcomes;
//!   `upto`: what a payment that signed a maximum commits.
//! * [`compensation`]: refunds for transactions that failed after paying.
//! * [`recovery`]: reading the proof log back into the store on start.
//! * [`listing`]: pending holds as the approver sees them, with their budgets.
//! * [`challenges`]: remembered 402 challenges; `records` and `events`: the proof-log
//!   lines and the webhook events the engine writes.
//!
//! Reads (no payment header) always pass. A payment is forwarded only after the decision
//! to forward it is on disk and its amount is reserved in the store.

pub mod cases;
mod chain_watch;
pub mod challenges;
pub mod compensation;
mod context;
mod decide;
pub mod evaluate;
mod events;
pub mod facts;
pub mod gate;
mod hold;
mod judge;
pub mod listing;
mod mpp;
mod paid;
mod phases;
pub mod pricing;
mod records;
pub mod recovery;
mod refuse;
mod retry;
pub mod settle;
mod ticket;
mod upto;

pub use facts::{RequestFacts, TRANSACTION_HEADER};
pub use gate::{Gate, Refusal, RefusalHeader, RefusalStatus};
pub use paid::Paid;
pub use phases::PhaseChangeError;
pub use ticket::Ticket;

use crate::detect::mcp::mpp_forms::MppCallAnswer;
use crate::detect::mcp::x402_forms::CallAnswer;
use crate::detect::mcp::MetaPayment;
use crate::detect::{Protocol, Undecidable};
use crate::holds::notify::Notifier;
use crate::holds::{DecideError, HoldOutcome, HoldView};
use crate::ledger::{BudgetView, UnknownPayment};
use crate::outbound::SharedOutbound;
use crate::policy::rules::Phase;
use crate::policy::{Policy, PolicyStore, SessionId};
use crate::store::{Session, SessionFigures, SharedStore, UnknownView};
use crate::telemetry::metrics::Metrics;
use crate::trace::figures::TraceFigures;
use crate::trace::{TraceError, TraceLog};
use challenges::{ChallengeFigures, ChallengeStore};
use compensation::{Compensator, RefundContext};
use context::Shared;
use http::{HeaderMap, StatusCode};
use recovery::{RecoveryError, RecoveryReport};
use settle::{ResolveError, Resolved};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The engine: the decision path, settlement and the operator's actions, over a store.
pub struct Engine {
    shared: Arc<Shared>,
    /// Remembered 402 challenges, bounded in bytes per agent and overall.
    challenges: ChallengeStore,
    /// Transactions and refunds, when the runtime has them.
    compensator: Option<Compensator>,
}

/// Why an operator's rollback was not done.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("compensation is not running")]
    NotRunning,
    #[error("the policy has compensation.enabled: false")]
    Disabled,
    #[error("no open transaction `{0}` with settled payments")]
    UnknownTransaction(String),
}

impl Engine {
    /// An engine over `store`. Webhook events go through `notifier`, when given.
    pub fn new(
        policy: Arc<PolicyStore>,
        store: SharedStore,
        trace: TraceLog,
        metrics: Arc<Metrics>,
        notifier: Option<Notifier>,
    ) -> Self {
        Engine {
            shared: Arc::new(Shared::new(policy, store, trace, metrics, notifier)),
            challenges: ChallengeStore::default(),
            compensator: None,
        }
    }

    /// Adds the refund task (needs a runtime and a client for the refund endpoint).
    pub fn with_compensator(mut self, client: SharedOutbound) -> Self {
        let shared = &self.shared;
        self.compensator = Some(Compensator::start(RefundContext {
            policy: shared.policy.clone(),
            client,
            trace: shared.trace.clone(),
            store: shared.store.clone(),
        }));
        self
    }

    /// Starts chain reconciliation (needs a runtime): unknown EVM payments are looked up
    /// on their chain through `rpc`, where the policy's `chains.rpc` names a node.
    pub fn with_chain_rpc(self, rpc: crate::chain_rpc::SharedChainRpc) -> Self {
        chain_watch::start(self.shared.clone(), rpc);
        self
    }

    // The data path.

    /// Whether a request needs the engine at all: it carries a payment, a payment
    /// credential or a control header, in any spelling ([`crate::detect::inspects`]).
    /// Reads without any of these pass without touching any session state.
    pub fn inspects(headers: &HeaderMap) -> bool {
        crate::detect::inspects(headers)
    }

    /// Looks at a request before it goes upstream: phase header, payment headers, the
    /// decision (waiting out a hold if the payment is held). Strips Purser's own request
    /// headers.
    ///
    /// `body` is the payment an MCP tool call carries in its `params._meta`, read from
    /// the body beforehand ([`crate::detect::mcp::read_paid_call`]): it is priced and
    /// decided exactly as a payment header.
    pub async fn on_request(
        &self,
        facts: &RequestFacts,
        headers: &mut HeaderMap,
        body: Option<&MetaPayment>,
    ) -> Gate {
        decide::on_request(&self.shared, &self.challenges, facts, headers, body).await
    }

    /// Refuses a request whose payment cannot be decided, with a decision line.
    pub async fn refuse_undecidable(
        &self,
        facts: &RequestFacts,
        undecidable: Undecidable,
    ) -> Refusal {
        refuse::refuse_undecidable(&self.shared, facts, undecidable).await
    }

    /// Remembers a 402 challenge the upstream sent this session.
    pub async fn on_challenge(&self, facts: &RequestFacts, challenge: crate::x402::Challenge) {
        let policy = self.shared.policy.current();
        let session_id = facts.identity.session_id();
        let agent = &facts.identity.agent;
        let Ok(session) = self
            .shared
            .store
            .session(&session_id, agent, &policy.limits)
            .await
        else {
            return; // refused: its payments are answered 429 anyway
        };
        session.lock().counts.challenges += 1;
        let offers = challenge.accepts.len();
        let resource = facts.resource_key();
        self.challenges.remember(
            agent,
            &session_id,
            &resource,
            &challenge,
            &policy.x402,
            &policy.assets,
        );
        tracing::debug!(%resource, offers, "402 challenge remembered");
        if self.shared.store.shares_challenges() {
            let form = self.challenges.shared_x402(agent, &session_id, &resource);
            self.share_challenges(agent, &session_id, form).await;
        }
    }

    /// Remembers the MPP challenges (`WWW-Authenticate: Payment`) of a 402 the upstream
    /// sent this session: a credential must answer one of them.
    pub async fn on_mpp_challenges(&self, facts: &RequestFacts, found: &[crate::mpp::Challenge]) {
        let policy = self.shared.policy.current();
        let session_id = facts.identity.session_id();
        let agent = &facts.identity.agent;
        let Ok(session) = self
            .shared
            .store
            .session(&session_id, agent, &policy.limits)
            .await
        else {
            return; // refused: its payments are answered 429 anyway
        };
        session.lock().counts.challenges += 1;
        let resource = facts.resource_key();
        let kept = self
            .challenges
            .remember_mpp(agent, &session_id, &resource, found, &policy.x402);
        tracing::debug!(%resource, kept, "MPP challenges remembered");
        if self.shared.store.shares_challenges() {
            let ids = found.iter().map(|challenge| challenge.id.as_str());
            let forms = self
                .challenges
                .shared_mpp(agent, &session_id, &resource, ids);
            self.share_challenges(agent, &session_id, forms).await;
        }
    }

    /// Hands remembered challenges (store key, shared form) to a fleet's store, so the
    /// paid retry may come through another replica.
    async fn share_challenges(
        &self,
        agent: &str,
        session_id: &str,
        forms: impl IntoIterator<Item = (String, String)>,
    ) {
        for (key, form) in forms {
            self.shared
                .store
                .share_challenge(agent, session_id, &key, &form)
                .await;
        }
    }

    /// Settles a forwarded payment from its answer, and adds Purser's headers. An MPP
    /// payment is settled by MPP's `Payment-Receipt` alone, an x402 one by x402's receipt
    /// headers: only the protocol that was paid counts.
    pub async fn on_response(
        &self,
        facts: &RequestFacts,
        ticket: Ticket,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) {
        let compensator = self.compensator.as_ref();
        if ticket.protocol != Protocol::Mpp {
            settle::on_response(&self.shared, compensator, facts, ticket, status, headers).await;
            return;
        }
        let answer = mpp::read_answer(status, headers);
        settle::answer_headers(&ticket, headers);
        settle::on_answer(&self.shared, compensator, facts, ticket, status, answer).await;
    }

    /// Purser's headers on the answer to an allowed payment whose settlement waits for
    /// the answer's body (an MCP tool call's receipt is in its JSON-RPC response).
    pub fn answer_headers(&self, ticket: &Ticket, headers: &mut HeaderMap) {
        settle::answer_headers(ticket, headers);
    }

    /// Settles a paid MCP tool call from its JSON-RPC response (`Err`: why the answer
    /// could not be read), as [`Engine::on_response`] settles a payment from its
    /// headers ([`settle::read_call_answer`]).
    pub async fn on_call_answer(
        &self,
        facts: &RequestFacts,
        ticket: Ticket,
        status: StatusCode,
        answer: Result<CallAnswer, String>,
    ) {
        let compensator = self.compensator.as_ref();
        let settlement = settle::read_call_answer(answer);
        settle::on_answer(&self.shared, compensator, facts, ticket, status, settlement).await;
    }

    /// Settles a paid MCP tool call's MPP payment from its JSON-RPC response
    /// (`org.paymentauth/receipt`, or fresh `-32042` challenges), as
    /// [`Engine::on_call_answer`] settles an x402 one.
    pub async fn on_mpp_call_answer(
        &self,
        facts: &RequestFacts,
        ticket: Ticket,
        status: StatusCode,
        answer: Result<MppCallAnswer, String>,
    ) {
        let compensator = self.compensator.as_ref();
        let reserved = ticket.settled.amount_atomic.clone();
        let settlement = mpp::read_call_answer(answer, &reserved);
        settle::on_answer(&self.shared, compensator, facts, ticket, status, settlement).await;
    }

    /// Settles a payment whose upstream exchange failed. If the request was never sent,
    /// nothing was paid; otherwise the outcome is unknown and stays counted as spent.
    pub fn on_upstream_failure(&self, facts: &RequestFacts, ticket: Ticket, request_sent: bool) {
        settle::on_upstream_failure(&self.shared, facts, ticket, request_sent);
    }

    /// A step of a transaction failed (5xx, or Purser could not get an answer): every
    /// payment that settled in the transaction is compensated, newest first.
    pub async fn transaction_failed(&self, facts: &RequestFacts, status: StatusCode) {
        if let Some(compensator) = &self.compensator {
            compensator.transaction_failed(facts, status).await;
        }
    }

    // Start, upkeep and shutdown.

    /// Rebuilds the store from the proof log's files, oldest first.
    pub fn recover(&self, files: &[PathBuf]) -> Result<RecoveryReport, RecoveryError> {
        let recovery::Recovery {
            state,
            refunds,
            mut report,
        } = recovery::read(files)?;
        let store = &self.shared.store;
        store.restore(state, &self.shared.policy.current().limits);
        if let Some(compensator) = &self.compensator {
            for job in refunds {
                report.refunds_resumed += 1;
                compensator.resume(job);
            }
        }
        report.replay_keys = store.replay_key_count();
        report.sessions = store.session_figures().tracked as usize;
        Ok(report)
    }

    /// Forgets replay keys of payments that can no longer settle. Returns how many.
    pub fn forget_expired_replay_keys(&self) -> usize {
        let now = crate::store::replay::unix_now();
        self.shared.store.forget_expired_replay_keys(now)
    }

    /// Forgets sessions idle past `limits.session_idle` (their spend stays in the
    /// budgets). Returns how many.
    pub fn expire_idle_sessions(&self) -> usize {
        let limits = self.shared.policy.current().limits;
        self.shared.store.expire_idle_sessions(&limits)
    }

    /// Decides every pending hold with `outcome` (shutdown). Returns how many.
    pub async fn resolve_all_holds(&self, outcome: HoldOutcome) -> usize {
        self.shared.store.resolve_all_holds(outcome).await
    }

    /// Leaves the store cleanly (shutdown): a shared store takes what is still queued.
    pub async fn close_store(&self) {
        self.shared.store.close().await;
    }

    /// Waits until every proof-log line written so far is on disk.
    pub async fn flush_trace(&self) -> Result<(), TraceError> {
        self.shared.trace.flush().await
    }

    // What the admin API reads and does.

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.shared.policy.current()
    }

    /// The proof log's live file.
    pub fn trace_path(&self) -> &Path {
        self.shared.trace.path()
    }

    /// The fleet's latest proof-log lines matching `filter`, when the store keeps every
    /// replica's (`None`: read this process's own file).
    pub async fn fleet_traces(
        &self,
        filter: &crate::trace::filter::TraceFilter,
        limit: usize,
    ) -> Option<Result<Vec<crate::trace::TraceRecord>, String>> {
        self.shared.store.fleet_traces(filter, limit).await
    }

    /// The proof log's figures, for `/metrics`.
    pub fn trace_figures(&self) -> &TraceFigures {
        self.shared.trace.figures()
    }

    /// Remembered challenges' figures, for `/metrics`.
    pub fn challenge_figures(&self) -> ChallengeFigures {
        self.challenges.figures()
    }

    /// Challenges remembered for one session.
    pub fn challenges_for(&self, agent: &str, session: &str) -> usize {
        self.challenges.count_for(agent, session)
    }

    /// Sessions' figures, for `/metrics`.
    pub fn session_figures(&self) -> SessionFigures {
        self.shared.store.session_figures()
    }

    /// The ids of the sessions tracked, sorted.
    pub async fn session_ids(&self) -> Vec<String> {
        self.shared.store.session_ids().await
    }

    /// A session, if it is tracked.
    pub async fn session(&self, id: &str) -> Option<Session> {
        self.shared.store.find_session(id).await
    }

    /// The budgets a payment by `agent` in `session` is measured against.
    pub async fn budget(&self, session: &str, agent: &str) -> BudgetView {
        self.shared.store.budget(session, agent).await
    }

    /// Sets a session's phase (creating the session if it is new). Returns the phase it
    /// left.
    pub async fn set_phase(
        &self,
        session: &SessionId,
        phase: Phase,
    ) -> Result<Phase, PhaseChangeError> {
        phases::set_phase(&self.shared, session, phase).await
    }

    /// Starts a session over in EXPLORE, forgetting its challenges. Returns the phase it
    /// left, or `None` for a session not tracked.
    pub async fn reset_session(&self, session: &SessionId) -> Option<Phase> {
        let from = phases::reset(&self.shared, session).await?;
        self.challenges.forget_session(session.agent(), session);
        Some(from)
    }

    /// Pending holds, oldest first, each with the budgets it would leave if approved.
    pub async fn list_approvals(&self) -> Vec<listing::HoldListing> {
        let policy = self.shared.policy.current();
        listing::list(self.shared.store.as_ref(), &policy).await
    }

    /// A person's decision on a hold; `digest`, when given, must be the held payment's.
    pub async fn decide_hold(
        &self,
        id: &str,
        outcome: HoldOutcome,
        digest: Option<&str>,
    ) -> Result<HoldView, DecideError> {
        self.shared.store.decide_hold(id, outcome, digest).await
    }

    /// Unknown payments with what an operator needs to reconcile them, oldest first.
    pub async fn unknown_payments(&self) -> Vec<(UnknownPayment, UnknownView)> {
        self.shared.store.unknown_payments().await
    }

    /// Reconciles an unknown payment: committed (it settled) or released (it did not).
    /// The `resolution` line is on disk before the budget changes.
    pub async fn resolve_unknown(
        &self,
        decision_trace: &str,
        committed: bool,
        by: &str,
        why: &str,
    ) -> Result<Resolved, ResolveError> {
        settle::resolve_unknown(&self.shared, decision_trace, committed, by, why).await
    }

    /// An operator's rollback of `transaction`, for every agent that has it open.
    /// Returns how many refunds were requested.
    pub async fn rollback(&self, transaction: &str) -> Result<usize, RollbackError> {
        let compensator = self.compensator.as_ref().ok_or(RollbackError::NotRunning)?;
        if !self.shared.policy.current().compensation.enabled {
            return Err(RollbackError::Disabled);
        }
        compensator
            .rollback(transaction, "rolled back through the admin API")
            .await
            .ok_or_else(|| RollbackError::UnknownTransaction(transaction.to_string()))
    }
}
