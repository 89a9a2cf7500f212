//! The data-path flow: a request with a payment in, a decision out; an answer in, a
//! settlement out.

use super::answer::{json_answer, refusal, RefusalBody};
use super::evaluate::{
    action_name, evaluate, phase_name, Evaluation, PaymentFacts, RecentPayment, Verdict,
};
use super::hold::OpenedHold;
use super::pricing::{self, PaymentHeader, PricedPayment, Refusal};
use super::session::{self, parse_phase, SessionState};
use super::Engine;
use crate::ledger::{Outcome, ReservationId, ReserveRequest};
use crate::policy::rules::Trust;
use crate::policy::{hex, normalize_address, Identity, Policy};
use crate::proxy::body::ProxyBody;
use crate::trace::{BudgetSnapshot, RuleOutcome, TraceRecord};
use crate::x402::{Challenge, ReplayKey};

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

const PHASE_HEADER: &str = "x-purser-phase";
/// Groups requests into a transaction for compensation (SPEC §3).
pub const TRANSACTION_HEADER: &str = "x-purser-transaction";

/// What the engine knows about a request.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub identity: Identity,
    pub method: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// `X-Purser-Transaction`, when the request is a step of one.
    pub transaction: Option<String>,
}

impl RequestFacts {
    /// The key challenges are remembered under: host, port and path (not the scheme: a
    /// v2 `resource.url` may name either).
    pub fn resource_key(&self) -> String {
        format!("{}:{}{}", self.host, self.port, self.path)
    }
}

/// A forwarded payment, to settle when its answer comes back.
#[derive(Debug)]
pub struct Ticket {
    pub trace_id: String,
    pub reservation: ReservationId,
    pub amount_usd: Decimal,
    pub gate: Option<&'static str>,
    pub version: u8,
    pub replay_keys: Vec<String>,
    /// What compensation needs if the payment settles.
    pub settled: Option<super::compensation::SettledPayment>,
    /// Set when this is the agent's retry of a payment whose outcome is unknown: the
    /// decision trace id of the original. Nothing new is reserved for it.
    pub retry_of: Option<String>,
}

/// What to do with a request.
pub enum Gate {
    /// Send it upstream (with a ticket if it carries an allowed payment).
    Forward(Option<Box<Ticket>>),
    /// Answer the agent instead.
    Answer(Response<ProxyBody>),
}

/// Where the decision left a request: settled at once, or waiting on a hold.
enum Decided {
    Done(Gate),
    Held(Arc<std::sync::Mutex<SessionState>>, Box<OpenedHold>),
}

impl Engine {
    /// Whether a request needs the engine at all: it carries a payment, a payment
    /// credential or a control header, in any spelling ([`crate::detect::inspects`]).
    /// Reads without any of these pass without touching any session state.
    pub fn inspects(headers: &HeaderMap) -> bool {
        crate::detect::inspects(headers)
    }

    /// Looks at a request before it goes upstream: phase header, payment headers, the
    /// decision. Strips Purser's own request headers.
    pub async fn on_request(&self, facts: &RequestFacts, headers: &mut HeaderMap) -> Gate {
        // The decision's working state (payment, evaluation, trace record) is kilobytes,
        // boxed so it is freed once decided: a payment held for minutes keeps only its hold.
        // Bound before the wait, so the future does not keep the whole `Decided` for it.
        let (state, hold) = match Box::pin(self.decide_request(facts, headers)).await {
            Decided::Done(gate) => return gate,
            Decided::Held(state, hold) => (state, hold),
        };
        self.await_hold(facts, &state, hold).await
    }

    async fn decide_request(&self, facts: &RequestFacts, headers: &mut HeaderMap) -> Decided {
        let policy = self.policy.current();
        let session_id = facts.identity.session_id();
        let state = self
            .sessions
            .get_or_create(&session_id, &facts.identity.agent, &policy.limits);
        crate::detect::strip_control_spellings(headers);
        headers.remove(TRANSACTION_HEADER);
        if let Some(answer) = self.apply_phase_header(&policy, &session_id, &state, headers) {
            return Decided::Done(Gate::Answer(answer));
        }
        let header = match payment_header(headers) {
            Ok(None) => return Decided::Done(Gate::Forward(None)),
            Ok(Some(found)) => found,
            Err(refusal) => {
                return Decided::Done(Gate::Answer(
                    self.refuse_unparsed(facts, &policy, refusal).await,
                ))
            }
        };
        let (kind, value) = header;
        let payment = match pricing::parse(kind, value.as_bytes()) {
            Ok(payment) => payment,
            Err(refusal) => {
                return Decided::Done(Gate::Answer(
                    self.refuse_unparsed(facts, &policy, refusal).await,
                ))
            }
        };
        let challenge = {
            let state = session::lock(&state);
            state
                .challenge_for(&facts.resource_key(), policy.x402.challenge_ttl)
                .map(|seen| seen.challenge.clone())
        };
        let priced = match pricing::price_payment(
            payment,
            challenge.as_ref(),
            &policy.assets,
            policy.x402.require_challenge,
        ) {
            Ok(priced) => priced,
            Err(refusal) => {
                return Decided::Done(Gate::Answer(
                    self.refuse_unparsed(facts, &policy, refusal).await,
                ))
            }
        };
        self.decide(facts, &policy, &state, priced).await
    }

    async fn decide(
        &self,
        facts: &RequestFacts,
        policy: &Arc<Policy>,
        state: &Arc<std::sync::Mutex<SessionState>>,
        priced: PricedPayment,
    ) -> Decided {
        let started = Instant::now();
        let replay_keys = replay_keys(&priced);
        if let Some(original) = replay_keys
            .iter()
            .find_map(|k| self.unknown_by_key.get(k).map(|t| t.clone()))
        {
            tracing::info!(session = %facts.identity, original = %original, "retry of a payment whose outcome is unknown; forwarding it without a new reservation");
            return Decided::Done(Gate::Forward(Some(Box::new(Ticket {
                trace_id: original.clone(),
                reservation: 0,
                amount_usd: priced.price.usd,
                gate: None,
                version: priced.payment.version,
                settled: None,
                replay_keys,
                retry_of: Some(original),
            }))));
        }
        let now = super::replay::unix_now();
        if priced.payment.valid_before.is_some_and(|until| until < now) {
            let refusal = Refusal {
                code: "expired_payment",
                message: "the payment's authorization expired (validBefore / deadline is past); \
                          it could not settle"
                    .to_string(),
            };
            return Decided::Done(Gate::Answer(
                self.refuse_priced(facts, policy, &priced, refusal).await,
            ));
        }
        if let Some(seen) = replay_keys
            .iter()
            .find(|key| self.seen_payments.contains(key, now))
        {
            let refusal = Refusal {
                code: "replayed_payment",
                message: format!(
                    "this payment was already seen ({})",
                    seen.split(':').next().unwrap_or("key")
                ),
            };
            return Decided::Done(Gate::Answer(
                self.refuse_priced(facts, policy, &priced, refusal).await,
            ));
        }
        let agent = facts.identity.agent.to_string();
        let session_id = facts.identity.session_id();
        let limits = policy.limits_for(&agent);
        let (mut evaluation, mut reservation, phase) =
            self.evaluate_and_reserve(facts, policy, state, &priced, &session_id, &agent);
        if let Some(id) = reservation {
            // Inserting is the check that counts: of two copies racing, one loses here.
            let until = super::replay::forget_after(priced.payment.valid_before, now);
            let fresh = replay_keys
                .iter()
                .all(|key| self.seen_payments.insert_fresh(key.clone(), until, now));
            if !fresh {
                self.ledger.settle(id, Outcome::Released);
                reservation = None;
                evaluation.verdict = Verdict::Denied;
                evaluation.rule = "replayed_payment".to_string();
                evaluation.reason = "this payment was already forwarded once".to_string();
            }
        }
        let trace_id = self.next_trace_id();
        // Room for the hold is checked before the decision is written, but the hold is
        // listed (and so can be approved) only once that line is on disk.
        if let (Verdict::PendingApproval, Some(id)) = (evaluation.verdict, reservation) {
            if let Err(refused) = self.holds.check_room(&session_id, hold_limits(policy)) {
                self.ledger.settle(id, Outcome::Released);
                self.forget_replay_keys(&replay_keys);
                reservation = None;
                evaluation.verdict = Verdict::Denied;
                evaluation.rule = "hold_limit".to_string();
                evaluation.reason = refused.to_string();
            }
        }
        self.notify_decision(facts, &priced, &evaluation, &trace_id);
        let view_after = self.ledger.view(&session_id, &agent);
        let mut record = decision_record(
            facts,
            policy,
            &priced,
            &evaluation,
            &trace_id,
            phase_name(phase),
        );
        record.replay_keys = replay_keys.clone();
        record.budget = Some(budget_snapshot(&evaluation, &limits, &view_after));
        self.metrics.decision(
            evaluation.verdict.as_str(),
            &evaluation.rule,
            started.elapsed(),
        );
        if let Err(error) = self.trace.append_durable(&record).await {
            tracing::error!(%error, "decision could not be made durable; refusing the payment");
            if let Some(id) = reservation {
                self.ledger.settle(id, Outcome::Released);
                self.forget_replay_keys(&replay_keys);
            }
            let body = serde_json::json!({"decision": "DENIED", "reason": format!("trace_unavailable: {error}"), "trace_id": trace_id});
            return Decided::Done(Gate::Answer(json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &body,
                Some(("DENIED", &trace_id)),
            )));
        }
        tracing::info!(session = %session_id, trace = %trace_id, decision = evaluation.verdict.as_str(), rule = %evaluation.rule, usd = %priced.price.usd, host = %facts.host, "payment decision");
        let gate = match (evaluation.verdict, reservation) {
            (Verdict::Allowed, Some(id)) => Gate::Forward(Some(Box::new(Ticket {
                settled: Some(settled_payment(facts, &priced, &trace_id)),
                trace_id,
                reservation: id,
                amount_usd: priced.price.usd,
                gate: evaluation
                    .gate
                    .filter(|_| evaluation.flagged || evaluation.gate.is_some())
                    .map(|g| g.as_str()),
                version: priced.payment.version,
                replay_keys,
                retry_of: None,
            }))),
            (Verdict::PendingApproval, Some(id)) => {
                match self.open_hold(
                    facts,
                    policy,
                    &priced,
                    &evaluation,
                    &trace_id,
                    id,
                    &replay_keys,
                ) {
                    Ok(hold) => return Decided::Held(state.clone(), Box::new(hold)),
                    Err(refused) => {
                        // Another hold took the last place since the check above.
                        self.ledger.settle(id, Outcome::Released);
                        self.forget_replay_keys(&replay_keys);
                        let reason = format!("hold_limit: {refused}");
                        Gate::Answer(refusal_answer(
                            &trace_id,
                            "hold_limit",
                            &reason,
                            &session_id,
                        ))
                    }
                }
            }
            _ => {
                let reason = format!("{}: {}", evaluation.rule, evaluation.reason);
                Gate::Answer(refusal(&RefusalBody {
                    decision: "DENIED",
                    rule: &evaluation.rule,
                    reason: &reason,
                    code: "denied",
                    trace_id: &trace_id,
                    session: &session_id,
                }))
            }
        };
        Decided::Done(gate)
    }

    /// Decides under the session lock (phase and frequency windows cannot change under
    /// the decision) and reserves if allowed.
    fn evaluate_and_reserve(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        state: &std::sync::Mutex<SessionState>,
        priced: &PricedPayment,
        session_id: &str,
        agent: &str,
    ) -> (
        Evaluation,
        Option<ReservationId>,
        crate::policy::rules::Phase,
    ) {
        let limits = policy.limits_for(agent);
        let pay_to = normalize_address(&priced.pay_to);
        let tool = policy.tool_for(&facts.host, facts.port, &facts.path);
        let category = policy.category_for(tool, &facts.host, facts.port, &facts.path);
        let trust = if policy.verified_recipients.contains(&pay_to) {
            Trust::Verified
        } else if self.ledger.has_paid(agent, &pay_to) {
            Trust::Known
        } else {
            Trust::Unknown
        };
        let mut session = session::lock(state);
        let now = Instant::now();
        let payment_facts = PaymentFacts {
            phase: session.phase,
            cost_usd: priced.price.usd,
            tool: tool.map(|t| t.name.as_str()),
            category,
            host: &facts.host,
            port: facts.port,
            trust,
            budget: self.ledger.view(session_id, agent),
            limits,
            minute_of_day: minute_of_day(policy),
            now,
            recent: &session.recent,
        };
        let mut evaluation = evaluate(policy, &payment_facts);
        let mut reservation = None;
        // A held payment keeps its amount reserved while it waits.
        if matches!(
            evaluation.verdict,
            Verdict::Allowed | Verdict::PendingApproval
        ) {
            let request = ReserveRequest {
                session: session_id,
                agent,
                pay_to: &pay_to,
                amount: priced.price.usd,
                limits,
                halt_ratio: policy.budget.gates.halt,
            };
            match self.ledger.reserve(request) {
                Ok(id) => reservation = Some(id),
                Err(over) => {
                    // Another payment took the room between the look and the booking.
                    evaluation.verdict = Verdict::Denied;
                    evaluation.rule = "budget_limit".to_string();
                    evaluation.reason = over.to_string();
                }
            }
        }
        match evaluation.verdict {
            Verdict::Allowed => {
                session.counts.allowed += 1;
                session.record_payment(RecentPayment {
                    at: now,
                    tier: evaluation.tier.clone(),
                    tool: tool.map(|t| t.name.clone()),
                    category: category.map(str::to_string),
                    host: facts.host.clone(),
                    port: facts.port,
                });
            }
            Verdict::Denied => session.counts.denied += 1,
            Verdict::PendingApproval => session.counts.pending_approval += 1,
        }
        (evaluation, reservation, session.phase)
    }

    /// `X-Purser-Phase`: always stripped; applied where the policy lets agents move their
    /// own session forward.
    fn apply_phase_header(
        &self,
        policy: &Policy,
        session_id: &str,
        state: &std::sync::Mutex<SessionState>,
        headers: &mut HeaderMap,
    ) -> Option<Response<ProxyBody>> {
        let value = headers.remove(PHASE_HEADER)?;
        if !policy.phases.agent_header {
            tracing::warn!("ignoring X-Purser-Phase: the policy does not let agents change phase");
            return None;
        }
        let text = value.to_str().unwrap_or("");
        let Some(target) = parse_phase(text) else {
            let body = serde_json::json!({"error": "bad_phase", "reason": format!("`{text}` is not a phase: EXPLORE, DECIDE or COMMIT"), "session": session_id});
            return Some(json_answer(StatusCode::BAD_REQUEST, &body, None));
        };
        let mut session = session::lock(state);
        match session.advance(target, &policy.phases) {
            Ok(from) => {
                if from != target {
                    tracing::info!(
                        from = phase_name(from),
                        to = phase_name(target),
                        "phase changed by the agent"
                    );
                    self.trace_phase(session_id, &session.agent, from, target, "agent");
                }
                None
            }
            Err(error) => {
                let body = serde_json::json!({"error": "invalid_transition", "reason": error.to_string(), "session": session_id, "phase": phase_name(session.phase)});
                Some(json_answer(StatusCode::CONFLICT, &body, None))
            }
        }
    }

    pub(super) async fn refuse_unparsed(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        refusal: Refusal,
    ) -> Response<ProxyBody> {
        let trace_id = self.next_trace_id();
        let mut record = base_record(facts, policy, &trace_id, "decision");
        record.decision = Some("DENIED");
        record.rule = Some(refusal.code.to_string());
        record.reason = Some(refusal.message.clone());
        self.finish_refusal(facts, record, refusal).await
    }

    async fn refuse_priced(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        priced: &PricedPayment,
        refusal: Refusal,
    ) -> Response<ProxyBody> {
        let trace_id = self.next_trace_id();
        let mut record = base_record(facts, policy, &trace_id, "decision");
        fill_payment(&mut record, priced);
        record.decision = Some("DENIED");
        record.rule = Some(refusal.code.to_string());
        record.reason = Some(refusal.message.clone());
        self.finish_refusal(facts, record, refusal).await
    }

    async fn finish_refusal(
        &self,
        facts: &RequestFacts,
        record: TraceRecord,
        refusal: Refusal,
    ) -> Response<ProxyBody> {
        let session_id = facts.identity.session_id();
        if let Some(state) = self.sessions.get(&session_id) {
            session::lock(&state).counts.denied += 1;
        }
        self.metrics
            .decision("DENIED", refusal.code, std::time::Duration::ZERO);
        if let Err(error) = self.trace.append_durable(&record).await {
            tracing::error!(%error, "refusal could not be traced");
        }
        tracing::info!(session = %session_id, trace = %record.trace_id, code = refusal.code, reason = %refusal.message, "payment refused");
        let reason = format!("{}: {}", refusal.code, refusal.message);
        refusal_answer(&record.trace_id, refusal.code, &reason, &session_id)
    }

    /// A settled payment joins its transaction; a 5xx answer compensates it (and, in a
    /// transaction, every earlier step) at once.
    fn after_commit(
        &self,
        facts: &RequestFacts,
        payment: super::compensation::SettledPayment,
        status: StatusCode,
    ) {
        let Some(compensator) = &self.compensator else {
            return;
        };
        if !self.policy.current().compensation.enabled {
            return;
        }
        match &facts.transaction {
            Some(transaction) => {
                let agent = &facts.identity.agent;
                compensator.record_step(agent, transaction, payment);
                if status.is_server_error() {
                    compensator.compensate_transaction(
                        agent,
                        transaction,
                        &format!("step answered {status} after it was paid"),
                    );
                }
            }
            None if status.is_server_error() => {
                compensator.compensate_one(payment, &format!("paid, but the answer was {status}"));
            }
            None => {}
        }
    }

    /// A step of a transaction failed (5xx, or Purser could not get an answer): every
    /// payment that settled in the transaction is compensated, newest first.
    pub fn transaction_failed(&self, facts: &RequestFacts, status: StatusCode) {
        let (Some(compensator), Some(transaction)) = (&self.compensator, &facts.transaction) else {
            return;
        };
        if !self.policy.current().compensation.enabled {
            return;
        }
        if let Some(count) = compensator.compensate_transaction(
            &facts.identity.agent,
            transaction,
            &format!("a step answered {status}"),
        ) {
            tracing::info!(session = %facts.identity, %transaction, refunds = count, "transaction failed; compensating");
        }
    }

    /// Reconciles an unknown payment: committed (it settled) or released (it did not).
    /// Traced as a `resolution` line. `None` when no unknown payment has that id.
    pub fn resolve_unknown(
        &self,
        decision_trace: &str,
        committed: bool,
        by: &str,
    ) -> Option<crate::ledger::UnknownPayment> {
        let payment = self.ledger.resolve_unknown(decision_trace, committed)?;
        self.unknown_by_key
            .retain(|_, trace| trace != decision_trace);
        let policy = self.policy.current();
        let record = TraceRecord {
            trace_id: self.next_trace_id(),
            kind: "resolution",
            time: jiff::Timestamp::now().to_string(),
            session: payment.session.clone(),
            agent: payment.agent.clone(),
            decision_trace_id: Some(decision_trace.to_string()),
            outcome: Some(if committed { "committed" } else { "released" }),
            amount_usd: Some(payment.amount),
            pay_to: Some(payment.pay_to.clone()),
            reason: Some(format!("unknown outcome resolved by {by}")),
            policy_digest: Some(policy.digest.clone()),
            purser_version: Some(crate::VERSION),
            ..TraceRecord::default()
        };
        self.trace.append(&record);
        Some(payment)
    }

    /// One `phase` line, so a restart rebuilds phases. Not awaited: losing it in a crash
    /// leaves the session in an earlier, stricter phase.
    pub fn trace_phase(
        &self,
        session_id: &str,
        agent: &str,
        from: crate::policy::rules::Phase,
        to: crate::policy::rules::Phase,
        by: &str,
    ) {
        let policy = self.policy.current();
        let trace_id = self.next_trace_id();
        let record = TraceRecord {
            trace_id,
            kind: "phase",
            time: jiff::Timestamp::now().to_string(),
            session: session_id.to_string(),
            agent: agent.to_string(),
            phase: Some(phase_name(to)),
            reason: Some(format!("{} → {} by {by}", phase_name(from), phase_name(to))),
            policy_digest: Some(policy.digest.clone()),
            purser_version: Some(crate::VERSION),
            ..TraceRecord::default()
        };
        self.trace.append(&record);
    }

    /// Remembers a 402 challenge the upstream sent this session.
    pub fn on_challenge(&self, facts: &RequestFacts, challenge: Challenge) {
        let policy = self.policy.current();
        let session_id = facts.identity.session_id();
        let state = self
            .sessions
            .get_or_create(&session_id, &facts.identity.agent, &policy.limits);
        let offers = challenge.accepts.len();
        session::lock(&state).remember_challenge(
            facts.resource_key(),
            challenge,
            policy.x402.max_challenges_per_session,
        );
        tracing::debug!(resource = %facts.resource_key(), offers, "402 challenge remembered");
    }

    /// Settles a forwarded payment from its answer, and adds Purser's headers.
    pub fn on_response(
        &self,
        facts: &RequestFacts,
        ticket: Ticket,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) {
        // Any spelling of either receipt header (`PAYMENT_RESPONSE` too): the detector's.
        let receipt = crate::detect::receipt(headers);
        let (outcome, transaction, note) = match receipt {
            Some(Ok(receipt)) if receipt.success => (Outcome::Committed, receipt.transaction, None),
            Some(Ok(receipt)) => (Outcome::Released, receipt.transaction, receipt.error_reason),
            Some(Err(error)) => (
                Outcome::Released,
                None,
                Some(format!("unreadable receipt: {error}")),
            ),
            None => (
                Outcome::Released,
                None,
                Some("no receipt: the merchant did not settle".to_string()),
            ),
        };
        let tx_hash = transaction.clone();
        self.settle(
            facts,
            &ticket,
            outcome,
            transaction,
            note,
            Some(status.as_u16()),
        );
        if outcome == Outcome::Committed {
            if let Some(mut payment) = ticket.settled.clone() {
                payment.tx_hash = tx_hash;
                self.after_commit(facts, payment, status);
            }
        }
        insert_header(headers, "x-purser-decision", "ALLOWED");
        insert_header(headers, "x-purser-trace", &ticket.trace_id);
        if let Some(gate) = ticket.gate {
            insert_header(headers, "x-purser-budget", gate);
        }
    }

    /// Settles a payment whose upstream exchange failed. If the request was never sent,
    /// nothing was paid; otherwise the outcome is unknown and stays counted as spent.
    pub fn on_upstream_failure(&self, facts: &RequestFacts, ticket: Ticket, request_sent: bool) {
        let outcome = if request_sent {
            Outcome::Unknown
        } else {
            Outcome::Released
        };
        let note = if request_sent {
            "connection lost after the payment left"
        } else {
            "upstream unreachable; the payment never left"
        };
        self.settle(facts, &ticket, outcome, None, Some(note.to_string()), None);
    }

    fn settle(
        &self,
        facts: &RequestFacts,
        ticket: &Ticket,
        outcome: Outcome,
        transaction: Option<String>,
        note: Option<String>,
        status: Option<u16>,
    ) {
        if let Some(original) = &ticket.retry_of {
            // Only a successful receipt tells: anything else leaves the original unknown.
            if outcome == Outcome::Committed {
                self.resolve_unknown(original, true, "agent retry with a receipt");
            }
            return;
        }
        let settled = match outcome {
            Outcome::Unknown => {
                for key in &ticket.replay_keys {
                    self.unknown_by_key
                        .insert(key.clone(), ticket.trace_id.clone());
                }
                self.ledger
                    .settle_unknown(ticket.reservation, &ticket.trace_id)
            }
            other => self.ledger.settle(ticket.reservation, other),
        };
        if settled.is_none() {
            return;
        }
        let policy = self.policy.current();
        let trace_id = self.next_trace_id();
        let mut record = base_record(facts, &policy, &trace_id, "settlement");
        record.decision_trace_id = Some(ticket.trace_id.clone());
        record.outcome = Some(match outcome {
            Outcome::Committed => "committed",
            Outcome::Released => "released",
            Outcome::Unknown => "unknown",
        });
        record.amount_usd = Some(ticket.amount_usd);
        record.transaction = transaction;
        record.reason = note;
        record.upstream_status = status;
        self.metrics.settlement(record.outcome.unwrap_or("unknown"));
        self.trace.append(&record);
    }
}

pub(super) fn refusal_answer(
    trace_id: &str,
    code: &str,
    reason: &str,
    session: &str,
) -> Response<ProxyBody> {
    refusal(&RefusalBody {
        decision: "DENIED",
        rule: code,
        reason,
        code,
        trace_id,
        session,
    })
}

/// The payment header, if exactly one payment is present in any spelling; two, or a
/// credential of a protocol Purser does not govern, is refused ([`crate::detect`]).
fn payment_header(headers: &HeaderMap) -> Result<Option<(PaymentHeader, HeaderValue)>, Refusal> {
    match crate::detect::head_payment(headers) {
        Ok(found) => Ok(found.map(|header| (header.kind, header.value))),
        Err(undecidable) => Err(Refusal {
            code: undecidable.code,
            message: undecidable.message,
        }),
    }
}

/// Replay keys as written to the trace: a signature is kept only as its digest, so the
/// log never holds material that could be replayed.
fn replay_keys(priced: &PricedPayment) -> Vec<String> {
    priced
        .payment
        .replay_keys()
        .into_iter()
        .map(|key| match key {
            ReplayKey::Signature(signature) => {
                format!(
                    "signature_sha256:{}",
                    hex(&Sha256::digest(signature.to_ascii_lowercase().as_bytes()))
                )
            }
            other => other.to_string(),
        })
        .collect()
}

fn minute_of_day(policy: &Policy) -> u16 {
    let now = jiff::Timestamp::now().to_zoned(policy.timezone.clone());
    (now.hour() as u16) * 60 + now.minute() as u16
}

fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

pub(super) fn base_record(
    facts: &RequestFacts,
    policy: &Policy,
    trace_id: &str,
    kind: &'static str,
) -> TraceRecord {
    TraceRecord {
        trace_id: trace_id.to_string(),
        kind,
        time: jiff::Timestamp::now().to_string(),
        session: facts.identity.session_id(),
        agent: facts.identity.agent.to_string(),
        method: Some(facts.method.clone()),
        host: Some(facts.host.clone()),
        path: Some(facts.path.clone()),
        policy_digest: Some(policy.digest.clone()),
        purser_version: Some(crate::VERSION),
        ..TraceRecord::default()
    }
}

pub(super) fn fill_payment(record: &mut TraceRecord, priced: &PricedPayment) {
    record.x402_version = Some(priced.payment.version);
    record.scheme = Some(priced.scheme.clone());
    record.network = Some(priced.network.clone());
    record.asset = Some(priced.asset.clone());
    record.asset_symbol = Some(priced.price.symbol.clone());
    record.amount_atomic = Some(priced.price.atomic.to_string());
    record.amount = Some(priced.price.amount);
    record.amount_usd = Some(priced.price.usd);
    record.pay_to = Some(priced.pay_to.clone());
    record.payer = priced.payment.payer.clone();
    record.payment_digest = Some(hex(&priced.payment.digest));
}

fn decision_record(
    facts: &RequestFacts,
    policy: &Policy,
    priced: &PricedPayment,
    evaluation: &Evaluation,
    trace_id: &str,
    phase: &'static str,
) -> TraceRecord {
    let mut record = base_record(facts, policy, trace_id, "decision");
    fill_payment(&mut record, priced);
    record.phase = Some(phase);
    record.tier = evaluation.tier.clone();
    let tool = policy.tool_for(&facts.host, facts.port, &facts.path);
    record.tool = tool.map(|t| t.name.clone());
    record.category = policy
        .category_for(tool, &facts.host, facts.port, &facts.path)
        .map(str::to_string);
    record.rules = evaluation
        .checks
        .iter()
        .map(|check| RuleOutcome {
            id: check.id.clone(),
            action: action_name(check.action),
            matched: check.matched,
            shadow: check.shadow,
            detail: None,
        })
        .collect();
    record.decision = Some(evaluation.verdict.as_str());
    record.rule = Some(evaluation.rule.clone());
    record.reason = Some(evaluation.reason.clone());
    record.gate = evaluation.gate.map(|g| g.as_str());
    record
}

fn budget_snapshot(
    evaluation: &Evaluation,
    limits: &crate::policy::Limits,
    view: &crate::ledger::BudgetView,
) -> BudgetSnapshot {
    use crate::ledger::Level;
    let level = evaluation.ratio.map(|r| r.0).unwrap_or(Level::Session);
    let (account, limit) = match level {
        Level::Session => (view.session, limits.session),
        Level::Agent => (view.agent, limits.agent),
        Level::Fleet => (view.fleet, limits.fleet),
    };
    BudgetSnapshot {
        level: level.as_str(),
        limit,
        spent: account.spent(),
        reserved: account.reserved,
        ratio: evaluation.ratio.map(|r| r.1.round_dp(6)),
    }
}

/// The hold bounds the policy sets.
pub(super) fn hold_limits(policy: &Policy) -> crate::approvals::HoldLimits {
    crate::approvals::HoldLimits {
        per_session: policy.approvals.max_pending_per_session,
        total: policy.approvals.max_pending_total,
    }
}

pub(super) fn settled_payment(
    facts: &RequestFacts,
    priced: &PricedPayment,
    trace_id: &str,
) -> super::compensation::SettledPayment {
    super::compensation::SettledPayment {
        decision_trace_id: trace_id.to_string(),
        session: facts.identity.session_id(),
        agent: facts.identity.agent.to_string(),
        payer: priced.payment.payer.clone(),
        pay_to: priced.pay_to.clone(),
        amount_atomic: priced.price.atomic.to_string(),
        amount_usd: priced.price.usd,
        asset: priced.asset.clone(),
        network: priced.network.clone(),
        tx_hash: None,
    }
}
