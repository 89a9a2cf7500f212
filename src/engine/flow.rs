//! The data-path flow: a request with a payment in, a decision out; an answer in, a
//! settlement out.

use super::evaluate::{
    action_name, evaluate, phase_name, Evaluation, PaymentFacts, RecentPayment, Verdict,
};
use super::gate::{Gate, Refusal, RefusalStatus};
use super::hold::OpenedHold;
use super::pricing::{self, PaymentHeader, PricedPayment, Rejection};
use super::session::{self, parse_phase, SessionState};
use super::unknown::Claim;
use super::Engine;
use crate::ledger::{Outcome, ReservationId, ReserveRequest};
use crate::policy::rules::Trust;
use crate::policy::{hex, normalize_address, Identity, Policy};
use crate::trace::{BudgetSnapshot, RuleOutcome, TraceRecord};
use crate::x402::Challenge;

use http::{HeaderMap, HeaderValue, StatusCode};
use rust_decimal::Decimal;
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
    /// The query string, if any: a retry must ask for the same one.
    pub query: Option<String>,
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
    /// SHA-256 of the decoded payment, kept if its outcome becomes unknown.
    pub payment_digest: [u8; 32],
    /// Set when this is the agent's retry of a payment whose outcome is unknown: the
    /// claim on that retry. Nothing new is reserved for it.
    pub retry: Option<super::unknown::RetryClaim>,
    /// Settles the payment as `unknown` if the ticket is dropped unsettled.
    pub guard: Option<super::settle::DropGuard>,
}

/// Where the decision left a request: settled at once, or waiting on a hold.
pub(super) enum Decided {
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
        let state =
            match self
                .sessions
                .get_or_create(&session_id, &facts.identity.agent, &policy.limits)
            {
                Ok(state) => state,
                Err(refused) => return Decided::Done(refuse(refused.refusal(&session_id))),
            };
        crate::detect::strip_control_spellings(headers);
        headers.remove(TRANSACTION_HEADER);
        if let Some(refusal) = self.apply_phase_header(&policy, &session_id, &state, headers) {
            return Decided::Done(refuse(refusal));
        }
        let header = match payment_header(headers) {
            Ok(None) => return Decided::Done(Gate::Forward(None)),
            Ok(Some(found)) => found,
            Err(refusal) => {
                return Decided::Done(refuse(self.refuse_unparsed(facts, &policy, refusal).await))
            }
        };
        let (kind, value) = header;
        let payment = match pricing::parse(kind, value.as_bytes()) {
            Ok(payment) => payment,
            Err(refusal) => {
                return Decided::Done(refuse(self.refuse_unparsed(facts, &policy, refusal).await))
            }
        };
        let challenge = self.challenges.lookup(
            &facts.identity.agent,
            &session_id,
            &facts.resource_key(),
            &policy.x402,
        );
        let priced = match pricing::price_payment(
            payment,
            challenge.as_ref(),
            &policy.assets,
            policy.x402.require_challenge,
        ) {
            Ok(priced) => priced,
            Err(refusal) => {
                return Decided::Done(refuse(self.refuse_unparsed(facts, &policy, refusal).await))
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
        let now = super::replay::unix_now();
        if let Some(refusal) = unkeyed_or_expired(&priced, &replay_keys, now) {
            return Decided::Done(refuse(
                self.refuse_priced(facts, policy, &priced, refusal).await,
            ));
        }
        match self.claim_retry(facts, &priced, &replay_keys) {
            Claim::Unrelated => {}
            Claim::Retry(claim) => {
                let retry = super::retry::Retry {
                    priced,
                    replay_keys,
                    claim,
                    started,
                };
                return Box::pin(self.decide_retry(facts, policy, state, retry)).await;
            }
            Claim::Conflict { original, why } => {
                let refusal = Rejection {
                    code: "replayed_payment",
                    message: format!(
                        "this payment shares its authorization with payment {original}, whose \
                         outcome is unknown, and is not its retry: {why}"
                    ),
                };
                return Decided::Done(refuse(
                    self.refuse_priced(facts, policy, &priced, refusal).await,
                ));
            }
        }
        if let Some(seen) = replay_keys
            .iter()
            .find(|key| self.seen_payments.contains(key, now))
        {
            let refusal = Rejection {
                code: "replayed_payment",
                message: format!(
                    "this payment was already seen ({})",
                    seen.split(':').next().unwrap_or("key")
                ),
            };
            return Decided::Done(refuse(
                self.refuse_priced(facts, policy, &priced, refusal).await,
            ));
        }
        let agent = facts.identity.agent.to_string();
        let session_id = facts.identity.session_id();
        let limits = policy.limits_for(&agent);
        let (mut evaluation, mut reservation, phase) =
            self.evaluate_and_reserve(facts, policy, state, &priced, &session_id, &agent, None);
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
        let written = self.trace.append_durable(&record).await;
        if let Err(error) = &written {
            tracing::error!(%error, "decision could not be made durable; refusing the payment");
            if let Some(id) = reservation {
                self.ledger.settle(id, Outcome::Released);
                self.forget_replay_keys(&replay_keys);
            }
            return Decided::Done(refuse(Refusal::trace_unavailable(
                error,
                &trace_id,
                &session_id,
            )));
        }
        // A refusal past the agent's rate cites the line that summarises it.
        let trace_id = written.unwrap_or(trace_id);
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
                payment_digest: priced.payment.digest,
                retry: None,
                guard: Some(self.drop_guard(facts)),
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
                        refuse(Refusal::rejected(
                            "hold_limit",
                            &refused.to_string(),
                            &trace_id,
                            &session_id,
                        ))
                    }
                }
            }
            _ => refuse(Refusal::denied(
                "denied",
                &evaluation.rule,
                &evaluation.reason,
                &trace_id,
                &session_id,
            )),
        };
        Decided::Done(gate)
    }

    /// Decides under the session lock (phase and frequency windows cannot change under
    /// the decision) and reserves if allowed. A retry (`already_counted`: the amount its
    /// unknown original holds) is judged as if that amount were not spent yet, and
    /// reserves nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn evaluate_and_reserve(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        state: &std::sync::Mutex<SessionState>,
        priced: &PricedPayment,
        session_id: &str,
        agent: &str,
        already_counted: Option<Decimal>,
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
            budget: match already_counted {
                Some(amount) => {
                    super::retry::without_unknown(self.ledger.view(session_id, agent), amount)
                }
                None => self.ledger.view(session_id, agent),
            },
            limits,
            minute_of_day: minute_of_day(policy),
            now,
            recent: &session.recent,
        };
        let mut evaluation = evaluate(policy, &payment_facts);
        let mut reservation = None;
        // A held payment keeps its amount reserved while it waits.
        if already_counted.is_none()
            && matches!(
                evaluation.verdict,
                Verdict::Allowed | Verdict::PendingApproval
            )
        {
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
            // A retry is not a new payment for frequency windows: its original counted.
            Verdict::Allowed if already_counted.is_some() => session.counts.allowed += 1,
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
    ) -> Option<Refusal> {
        let value = headers.remove(PHASE_HEADER)?;
        if !policy.phases.agent_header {
            tracing::warn!("ignoring X-Purser-Phase: the policy does not let agents change phase");
            return None;
        }
        let text = value.to_str().unwrap_or("");
        let Some(target) = parse_phase(text) else {
            let reason = format!("`{text}` is not a phase: EXPLORE, DECIDE or COMMIT");
            return Some(Refusal::control(
                RefusalStatus::BadRequest,
                "bad_phase",
                reason,
                session_id,
            ));
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
                let mut refusal = Refusal::control(
                    RefusalStatus::Conflict,
                    "invalid_transition",
                    error.to_string(),
                    session_id,
                );
                refusal.phase = Some(phase_name(session.phase));
                Some(refusal)
            }
        }
    }

    pub(super) async fn refuse_unparsed(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        refusal: Rejection,
    ) -> Refusal {
        let trace_id = self.next_trace_id();
        let mut record = base_record(facts, policy, &trace_id, "decision");
        record.decision = Some("DENIED");
        record.rule = Some(refusal.code.to_string());
        record.reason = Some(refusal.message.clone());
        self.finish_refusal(facts, record, refusal).await
    }

    pub(super) async fn refuse_priced(
        &self,
        facts: &RequestFacts,
        policy: &Policy,
        priced: &PricedPayment,
        refusal: Rejection,
    ) -> Refusal {
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
        refusal: Rejection,
    ) -> Refusal {
        let session_id = facts.identity.session_id();
        if let Some(state) = self.sessions.get(&session_id) {
            session::lock(&state).counts.denied += 1;
        }
        self.metrics
            .decision("DENIED", refusal.code, std::time::Duration::ZERO);
        // A refusal past the agent's rate cites the line that summarises it.
        let cited = match self.trace.append_durable(&record).await {
            Ok(cited) => cited,
            Err(error) => {
                tracing::error!(%error, "refusal could not be traced");
                record.trace_id.clone()
            }
        };
        if cited == record.trace_id {
            tracing::info!(session = %session_id, trace = %cited, code = refusal.code, reason = %refusal.message, "payment refused");
        } else {
            tracing::debug!(session = %session_id, trace = %cited, code = refusal.code, "payment refused; counted in a summary");
        }
        Refusal::rejected(refusal.code, &refusal.message, &cited, &session_id)
    }

    /// A settled payment joins its transaction; a 5xx answer compensates it (and, in a
    /// transaction, every earlier step) at once.
    pub(super) fn after_commit(
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
        let Ok(state) =
            self.sessions
                .get_or_create(&session_id, &facts.identity.agent, &policy.limits)
        else {
            return; // refused: its payments are answered 429 anyway
        };
        session::lock(&state).counts.challenges += 1;
        let offers = challenge.accepts.len();
        self.challenges.remember(
            &facts.identity.agent,
            &session_id,
            &facts.resource_key(),
            &challenge,
            &policy.x402,
            &policy.assets,
        );
        tracing::debug!(resource = %facts.resource_key(), offers, "402 challenge remembered");
    }
}

/// The gate for a refusal.
pub(super) fn refuse(refusal: Refusal) -> Gate {
    Gate::Refuse(Box::new(refusal))
}

/// The payment header, if exactly one payment is present in any spelling; two, or a
/// credential of a protocol Purser does not govern, is refused ([`crate::detect`]).
fn payment_header(headers: &HeaderMap) -> Result<Option<(PaymentHeader, HeaderValue)>, Rejection> {
    match crate::detect::head_payment(headers) {
        Ok(found) => Ok(found.map(|header| (header.kind, header.value))),
        Err(undecidable) => Err(Rejection {
            code: undecidable.code,
            message: undecidable.message,
        }),
    }
}

/// Replay keys as written to the trace (a signature is only ever its digest).
fn replay_keys(priced: &PricedPayment) -> Vec<String> {
    priced
        .payment
        .replay_keys()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A payment Purser cannot key cannot be checked for replays; an expired one could not
/// settle. Either is refused before anything else.
fn unkeyed_or_expired(priced: &PricedPayment, keys: &[String], now: u64) -> Option<Rejection> {
    if keys.is_empty() {
        return Some(Rejection {
            code: "unsupported_payment",
            message: format!(
                "Purser cannot identify a payment on network {} for replay checks, so it \
                 does not let it through",
                priced.network
            ),
        });
    }
    priced
        .payment
        .valid_before
        .is_some_and(|until| until < now)
        .then(|| Rejection {
            code: "expired_payment",
            message: "the payment's authorization expired (validBefore / deadline is past); \
                      it could not settle"
                .to_string(),
        })
}

fn minute_of_day(policy: &Policy) -> u16 {
    let now = jiff::Timestamp::now().to_zoned(policy.timezone.clone());
    (now.hour() as u16) * 60 + now.minute() as u16
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

pub(super) fn decision_record(
    facts: &RequestFacts,
    policy: &Policy,
    priced: &PricedPayment,
    evaluation: &Evaluation,
    trace_id: &str,
    phase: &'static str,
) -> TraceRecord {
    let mut record = base_record(facts, policy, trace_id, "decision");
    fill_payment(&mut record, priced);
    record.resource_digest = Some(super::unknown::resource_digest(facts));
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

pub(super) fn budget_snapshot(
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
