//! The decision path: a request with a payment in, a [`Gate`] out.
//!
//! Control headers are stripped and applied; the payment header is parsed, matched to
//! its challenge and priced; replays and unknown payments' retries are sorted out; the
//! payment is judged and booked; its decision line is on disk before the gate says
//! forward (or before a hold is listed, and so can be approved).

use super::challenges::ChallengeStore;
use super::context::Shared;
use super::evaluate::{Decider, Verdict};
use super::facts::{RequestFacts, TRANSACTION_HEADER};
use super::gate::{Gate, Refusal, RefusalStatus};
use super::hold::{await_hold, hold_limits, open_hold, OpenedHold};
use super::judge::{judge, write_decision, Decision};
use super::mpp;
use super::phases::apply_phase_header;
use super::pricing::{self, PricedPayment, Rejection};
use super::refuse::refuse;
use super::retry::{decide_retry, Retry};
use super::ticket::{Leaving, Ticket};
use crate::detect::mcp::MetaPayment;
use crate::detect::{FoundPayment, HeadPayment, Protocol};
use crate::policy::Policy;
use crate::store::replay::{forget_after, unix_now};
use crate::store::{
    check_retry, KeyScreen, RetryCheck, RetryClaim, RetryIdentity, Screened, Session,
    SessionRefused,
};
use crate::x402::{hex, Payment};
use http::HeaderMap;
use std::sync::Arc;
use std::time::Instant;

/// Where the decision left a request: settled at once, or waiting on a hold.
enum Decided {
    Done(Gate),
    Held(Session, Box<OpenedHold>),
}

/// Looks at a request before it goes upstream: phase header, payment headers, the
/// decision (and, for a held payment, the hold's outcome). Strips Purser's own request
/// headers.
pub(super) async fn on_request(
    shared: &Arc<Shared>,
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    headers: &mut HeaderMap,
    body: Option<&MetaPayment>,
) -> Gate {
    // The decision's working state (payment, evaluation, trace record) is kilobytes,
    // boxed so it is freed once decided: a payment held for minutes keeps only its hold.
    // Bound before the wait, so the future does not keep the whole `Decided` for it.
    let deciding = decide_request(shared, challenges, facts, headers, body);
    let (session, hold) = match Box::pin(deciding).await {
        Decided::Done(gate) => return gate,
        Decided::Held(session, hold) => (session, hold),
    };
    await_hold(shared, facts, &session, hold).await
}

async fn decide_request(
    shared: &Arc<Shared>,
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    headers: &mut HeaderMap,
    body: Option<&MetaPayment>,
) -> Decided {
    let policy = shared.policy.current();
    let session_id = facts.identity.session_id();
    let agent = &facts.identity.agent;
    let session = match shared
        .store
        .session(&session_id, agent, &policy.limits)
        .await
    {
        Ok(session) => session,
        Err(refused) => return done(session_refusal(&refused, &session_id)),
    };
    crate::detect::strip_control_spellings(headers);
    headers.remove(TRANSACTION_HEADER);
    if let Some(refusal) = apply_phase_header(shared, &policy, &session_id, &session, headers).await
    {
        return done(refusal);
    }
    let rejected = |rejection| refuse(shared, facts, &policy, None, rejection);
    let found = match found_payment(headers, body) {
        Ok(None) => return Decided::Done(Gate::Forward(None)),
        Ok(Some(found)) => found,
        Err(rejection) => return done(rejected(rejection).await),
    };
    let mut priced = price_found(challenges, facts, &policy, &found);
    if shared.store.shares_challenges()
        && priced
            .as_ref()
            .is_err_and(|rejection| rejection.code == "unquoted_payment")
    {
        // The 402 may have come back through another replica of the fleet.
        let fleet = shared
            .store
            .shared_challenges(
                agent,
                &session_id,
                policy.x402.challenge_ttl,
                policy.x402.max_challenges_per_session,
            )
            .await;
        if challenges.adopt(agent, &session_id, &fleet, &policy.x402) > 0 {
            priced = price_found(challenges, facts, &policy, &found);
        }
    }
    match priced {
        Ok(priced) => decide(shared, facts, &policy, session, priced).await,
        Err(rejection) => done(rejected(rejection).await),
    }
}

/// The payment found, matched to the challenge the session saw and priced.
fn price_found(
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    policy: &Policy,
    found: &FoundPayment<'_>,
) -> Result<PricedPayment, Rejection> {
    match found {
        FoundPayment::Head(HeadPayment::Mpp(value)) => {
            mpp::price(challenges, facts, policy, value.as_bytes())
        }
        FoundPayment::Head(HeadPayment::X402(header)) => {
            pricing::parse(header.kind, header.value.as_bytes())
                .and_then(|payment| price_x402(challenges, facts, policy, payment))
        }
        FoundPayment::Meta(meta) if meta.protocol == Protocol::MppMcp => {
            mpp::price_meta(challenges, facts, policy, meta)
        }
        FoundPayment::Meta(meta) => pricing::parse_meta(meta)
            .and_then(|payment| price_x402(challenges, facts, policy, payment)),
    }
}

/// An x402 payment, matched to the challenge the session saw and priced.
fn price_x402(
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    policy: &Policy,
    payment: Payment,
) -> Result<PricedPayment, Rejection> {
    let session_id = facts.identity.session_id();
    let agent = &facts.identity.agent;
    let challenge = challenges.lookup(agent, &session_id, &facts.resource_key(), &policy.x402);
    pricing::price_payment(
        payment,
        challenge.as_ref(),
        &policy.assets,
        policy.x402.require_challenge,
    )
}

async fn decide(
    shared: &Arc<Shared>,
    facts: &RequestFacts,
    policy: &Arc<Policy>,
    session: Session,
    priced: PricedPayment,
) -> Decided {
    let started = Instant::now();
    let mut replay_keys = replay_keys(&priced);
    let now = unix_now();
    let rejected = |rejection| refuse(shared, facts, policy, Some(&priced), rejection);
    if let Some(rejection) = unkeyed_or_expired(&priced, &replay_keys, now) {
        return done(rejected(rejection).await);
    }
    let identity = || RetryIdentity {
        digest: hex(&priced.payment.digest()),
        session: facts.identity.session_id().into(),
        resource: facts.resource_digest(),
    };
    let screens = shared.store.screens_keys();
    if !screens {
        match retry_verdict(check_retry(&shared.store, &replay_keys, &identity).await) {
            RetryVerdict::Unrelated => {}
            RetryVerdict::Refuse(rejection) => return done(rejected(rejection).await),
            RetryVerdict::Retry(claim) => {
                let retry = Retry {
                    priced,
                    replay_keys,
                    claim,
                    started,
                };
                return run_retry(shared, facts, policy, &session, retry).await;
            }
        }
        if let Some(index) = shared.store.first_seen_replay_key(&replay_keys, now).await {
            return done(rejected(already_seen(&replay_keys, index)).await);
        }
    }
    let agent: &str = &facts.identity.agent;
    let session_id = facts.identity.session_id();
    let until = forget_after(priced.payment.valid_before(), now);
    let screen = screens.then_some(KeyScreen {
        keys: &replay_keys,
        until,
        now,
    });
    let mut judged = judge(
        shared,
        facts,
        policy,
        &session,
        &priced,
        &session_id,
        agent,
        None,
        screen,
    )
    .await;
    let keys_claimed = match judged.screened {
        Screened::Judged { keys_claimed } => keys_claimed,
        Screened::Replayed(index) => {
            return done(rejected(already_seen(&replay_keys, index)).await)
        }
        Screened::SharesUnknownKey => {
            // The screen saw a key of an unknown payment: the full look decides whether
            // this is its retry.
            let rejection =
                match retry_verdict(check_retry(&shared.store, &replay_keys, &identity).await) {
                    RetryVerdict::Unrelated => Rejection {
                        code: "replayed_payment",
                        message: "this payment shares its authorization with a payment whose \
                              outcome was resolved while it arrived; send it again"
                            .to_string(),
                    },
                    RetryVerdict::Refuse(rejection) => rejection,
                    RetryVerdict::Retry(claim) => {
                        let retry = Retry {
                            priced,
                            replay_keys,
                            claim,
                            started,
                        };
                        return run_retry(shared, facts, policy, &session, retry).await;
                    }
                };
            return done(rejected(rejection).await);
        }
    };
    if let Some(booking) = judged.booking.take() {
        if keys_claimed {
            judged.booking = Some(booking.with_keys(std::mem::take(&mut replay_keys)));
        } else if shared
            .store
            .claim_replay_keys(&replay_keys, until, now)
            .await
        {
            // Claiming the keys is the check that counts: of two copies racing, one
            // loses here.
            judged.booking = Some(booking.with_keys(std::mem::take(&mut replay_keys)));
        } else {
            drop(booking);
            let evaluation = &mut judged.evaluation;
            evaluation.verdict = Verdict::Denied;
            // A shared store that did not answer cannot say whether it was a replay.
            (evaluation.rule, evaluation.reason) = match shared.store.unavailable() {
                Some(why) => (Decider::refusal("ledger_unavailable"), why),
                None => (
                    Decider::refusal("replayed_payment"),
                    "this payment was already forwarded once".to_string(),
                ),
            };
        }
    }
    let trace_id = shared.next_trace_id();
    // Room for the hold is checked before the decision is written, but the hold is
    // listed (and so can be approved) only once that line is on disk.
    if judged.evaluation.verdict == Verdict::PendingApproval {
        if let Some(booking) = judged.booking.take() {
            match shared
                .store
                .hold_room(&session_id, hold_limits(policy))
                .await
            {
                Ok(()) => judged.booking = Some(booking),
                Err(refused) => {
                    replay_keys = booking.release();
                    let evaluation = &mut judged.evaluation;
                    evaluation.verdict = Verdict::Denied;
                    evaluation.rule = Decider::refusal("hold_limit");
                    evaluation.reason = refused.to_string();
                }
            }
        }
    }
    let keys = judged
        .booking
        .as_ref()
        .map_or(replay_keys.as_slice(), |b| b.keys());
    let decision = Decision {
        judged: &judged,
        session_id: &session_id,
        trace_id: &trace_id,
        replay_keys: keys,
        retry_of: None,
        started,
    };
    let written = write_decision(shared, facts, policy, &priced, decision).await;
    // A refusal past the agent's rate cites the line that summarises it.
    let trace_id = match written {
        Ok(cited) => cited,
        Err(error) => {
            tracing::error!(%error, "decision could not be made durable; refusing the payment");
            // Dropping the booking gives the reservation and the keys back.
            return done(Refusal::trace_unavailable(&error, &trace_id, &session_id));
        }
    };
    let evaluation = &judged.evaluation;
    tracing::info!(session = %session_id, trace = %trace_id, decision = evaluation.verdict.as_str(), rule = %evaluation.rule, usd = %priced.price.usd, host = %facts.host, "payment decision");
    let gate = evaluation.gate.map(|g| g.as_str());
    match (evaluation.verdict, judged.booking) {
        (Verdict::Allowed, Some(booking)) => {
            let leaving = Leaving::new(facts, &priced, trace_id, gate);
            let ticket = Ticket::reserved(shared, facts, leaving, booking);
            Decided::Done(Gate::Forward(Some(Box::new(ticket))))
        }
        (Verdict::PendingApproval, Some(booking)) => {
            let opened = open_hold(
                shared,
                facts,
                policy,
                &priced,
                evaluation,
                judged.trust,
                &trace_id,
                booking,
            )
            .await;
            match opened {
                Ok(hold) => Decided::Held(session, Box::new(hold)),
                // Another hold took the last place since the check above; the booking
                // was given back.
                Err(refused) => done(Refusal::rejected(
                    "hold_limit",
                    &refused.to_string(),
                    &trace_id,
                    &session_id,
                )),
            }
        }
        _ => done(Refusal::denied(
            "denied",
            &evaluation.rule.name(),
            &evaluation.reason,
            &trace_id,
            &session_id,
        )),
    }
}

/// What a look at the unknown payments leaves the decision to do.
enum RetryVerdict {
    /// None of its keys is an unknown payment's: decide it as a new payment.
    Unrelated,
    /// The retry of an unknown payment, claimed.
    Retry(RetryClaim),
    /// A copy of an unknown payment that is not its retry: a replay.
    Refuse(Rejection),
}

fn retry_verdict(check: RetryCheck) -> RetryVerdict {
    match check {
        RetryCheck::Unrelated => RetryVerdict::Unrelated,
        RetryCheck::Retry(claim) => RetryVerdict::Retry(claim),
        RetryCheck::Conflict { original, why } => RetryVerdict::Refuse(Rejection {
            code: "replayed_payment",
            message: format!(
                "this payment shares its authorization with payment {original}, whose \
                 outcome is unknown, and is not its retry: {why}"
            ),
        }),
    }
}

async fn run_retry(
    shared: &Arc<Shared>,
    facts: &RequestFacts,
    policy: &Policy,
    session: &Session,
    retry: Retry,
) -> Decided {
    Decided::Done(Box::pin(decide_retry(shared, facts, policy, session, retry)).await)
}

/// The refusal of a payment whose key at `index` is remembered already.
fn already_seen(keys: &[String], index: usize) -> Rejection {
    let seen = keys
        .get(index)
        .map_or("key", |key| key.split(':').next().unwrap_or("key"));
    Rejection {
        code: "replayed_payment",
        message: format!("this payment was already seen ({seen})"),
    }
}

fn done(refusal: Refusal) -> Decided {
    Decided::Done(Gate::Refuse(Box::new(refusal)))
}

/// What the agent is told when its session cannot be tracked: `429 too_many_sessions`.
fn session_refusal(refused: &SessionRefused, session_id: &str) -> Refusal {
    Refusal::control(
        RefusalStatus::TooManyRequests,
        "too_many_sessions",
        refused.to_string(),
        session_id,
    )
}

/// The payment, if exactly one is present: a header in any spelling, or an MCP call's
/// `_meta` payment read from the body; two, or a credential of a protocol Purser does
/// not govern, is refused ([`crate::detect`]).
fn found_payment<'b>(
    headers: &HeaderMap,
    body: Option<&'b MetaPayment>,
) -> Result<Option<FoundPayment<'b>>, Rejection> {
    crate::detect::request_payment(headers, body).map_err(|undecidable| Rejection {
        code: undecidable.code,
        message: undecidable.message,
    })
}

/// Replay keys as written to the trace (a signature is only ever its digest).
fn replay_keys(priced: &PricedPayment) -> Vec<String> {
    priced.payment.replay_keys()
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
        .valid_before()
        .is_some_and(|until| until < now)
        .then(|| Rejection {
            code: "expired_payment",
            message: "the payment's authorization expired (validBefore / deadline is past); \
                      it could not settle"
                .to_string(),
        })
}
