//! Settlement (SPEC §1): what a forwarded payment's answer says about it, and the
//! reconciliation of the payments whose outcome is unknown.
//!
//! Only two answers release a reservation: a fresh `402` (the merchant asks to be paid, so
//! it did not take this payment) and a receipt that says the settlement failed. A receipt
//! that says it succeeded commits. Everything else (a 2xx or 5xx without a receipt, an
//! unreadable or contradictory receipt, a lost connection) leaves the payment `unknown`
//! and counted as spent: the agent chooses who answers, and its own relay can settle with
//! the merchant and answer without a receipt. An operator resolves an unknown payment
//! (admin API, CLI), or the agent's retry of it brings a receipt that says it settled.
//!
//! A ticket dropped before its answer was settled settles itself as `unknown` too
//! (`ticket`). An `upto` payment commits what its receipt says was charged, never more
//! than the signed maximum it reserved (`upto`). An MPP payment is read by its own
//! forms (`mpp`: `Payment-Receipt`, MCP's `org.paymentauth/receipt`) and settled here by
//! the same rules.

use super::compensation::Compensator;
use super::context::Shared;
use super::facts::RequestFacts;
use super::records::{resolution_record, settlement_record, traced, Settlement};
use super::ticket::{Stake, Ticket};
use crate::detect::mcp::x402_forms::CallAnswer;
use crate::ledger::{Outcome, UnknownPayment};
use crate::store::RetryInFlight;
use crate::trace::TraceError;
use crate::x402::{Receipt, X402Error};
use http::{HeaderMap, HeaderValue, StatusCode};

/// What an answer says about the payment it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerSettlement {
    pub outcome: Outcome,
    /// The settlement transaction from the receipt.
    pub transaction: Option<String>,
    /// What the receipt says was charged (atomic units), when it says.
    pub charged_atomic: Option<u128>,
    /// Why, for the settlement line.
    pub note: Option<String>,
}

/// Reads the answer to a payment: its receipt (either version's header, in any spelling
/// the detector knows) and its status.
pub fn read_answer(status: StatusCode, headers: &HeaderMap) -> AnswerSettlement {
    let fresh_challenge = (status == StatusCode::PAYMENT_REQUIRED)
        .then_some("the merchant answered a fresh 402: it did not take the payment");
    let without =
        format!("answered {status} without a receipt: whether the payment settled is unknown");
    from_receipt(crate::detect::receipt(headers), fresh_challenge, without)
}

/// Reads the JSON-RPC response to a paid MCP tool call (x402 over MCP), as an HTTP answer
/// is read: its receipt (`result._meta["x402/payment-response"]`) commits or releases;
/// without one, a fresh challenge releases; anything else, and an answer Purser could
/// not read (`Err`: why), is unknown.
pub fn read_call_answer(answer: Result<CallAnswer, String>) -> AnswerSettlement {
    let answer = match answer {
        Ok(answer) => answer,
        Err(why) => {
            return from_receipt(
                None,
                None,
                format!("{why}: whether the payment settled is unknown"),
            )
        }
    };
    let fresh_challenge = answer
        .challenge
        .is_some()
        .then_some("the tool answered a fresh x402 challenge: it did not take the payment");
    let without = match answer.error_code {
        Some(code) => format!(
            "the tool call failed (JSON-RPC error {code}) without a receipt: whether the \
             payment settled is unknown"
        ),
        None => "the tool's result carries no receipt: whether the payment settled is \
                 unknown"
            .to_string(),
    };
    from_receipt(answer.receipt, fresh_challenge, without)
}

/// A receipt decides; without one, a fresh challenge releases; else the outcome is
/// unknown, `without` saying why.
fn from_receipt(
    receipt: Option<Result<Receipt, X402Error>>,
    fresh_challenge: Option<&str>,
    without: String,
) -> AnswerSettlement {
    let unknown = |note: String| AnswerSettlement {
        outcome: Outcome::Unknown,
        transaction: None,
        charged_atomic: None,
        note: Some(note),
    };
    match receipt {
        None => match fresh_challenge {
            Some(note) => AnswerSettlement {
                outcome: Outcome::Released,
                transaction: None,
                charged_atomic: None,
                note: Some(note.to_string()),
            },
            None => unknown(without),
        },
        Some(Ok(receipt)) if receipt.success => AnswerSettlement {
            outcome: Outcome::Committed,
            transaction: receipt.transaction,
            charged_atomic: receipt.settled_amount_atomic,
            note: None,
        },
        Some(Ok(receipt)) => AnswerSettlement {
            outcome: Outcome::Released,
            transaction: receipt.transaction,
            charged_atomic: None,
            note: Some(match receipt.error_reason {
                Some(reason) => format!("the receipt says settlement failed: {reason}"),
                None => "the receipt says settlement failed".to_string(),
            }),
        },
        // Two receipts that differ tell nothing either.
        Some(Err(error)) => unknown(format!("unreadable receipt: {error}")),
    }
}

/// Why an unknown payment could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no payment with an unknown outcome has trace id `{0}`")]
    NotUnknown(String),
    #[error(transparent)]
    RetryInFlight(#[from] RetryInFlight),
    #[error("the resolution could not be made durable, so it was not applied: {0}")]
    Trace(#[from] TraceError),
}

/// A resolution that was applied.
#[derive(Debug)]
pub struct Resolved {
    pub payment: UnknownPayment,
    /// The `resolution` line's trace id.
    pub trace_id: String,
}

/// Settles a forwarded payment from its answer, and adds Purser's headers.
pub(super) async fn on_response(
    shared: &Shared,
    compensator: Option<&Compensator>,
    facts: &RequestFacts,
    ticket: Ticket,
    status: StatusCode,
    headers: &mut HeaderMap,
) {
    let answer = read_answer(status, headers);
    answer_headers(&ticket, headers);
    on_answer(shared, compensator, facts, ticket, status, answer).await;
}

/// Purser's headers on the answer to an allowed payment: the decision, its trace id,
/// and the budget gate it crossed.
pub(super) fn answer_headers(ticket: &Ticket, headers: &mut HeaderMap) {
    insert_header(headers, "x-purser-decision", "ALLOWED");
    insert_header(headers, "x-purser-trace", &ticket.trace_id);
    if let Some(gate) = ticket.gate {
        insert_header(headers, "x-purser-budget", gate);
    }
}

/// Settles a forwarded payment from what its answer says.
pub(super) async fn on_answer(
    shared: &Shared,
    compensator: Option<&Compensator>,
    facts: &RequestFacts,
    mut ticket: Ticket,
    status: StatusCode,
    answer: AnswerSettlement,
) {
    let committed = answer.outcome == Outcome::Committed;
    let tx_hash = answer.transaction.clone();
    let mut settlement = Settlement {
        outcome: answer.outcome,
        amount_usd: ticket.amount_usd,
        amount_atomic: None,
        transaction: answer.transaction,
        note: answer.note,
        upstream_status: Some(status.as_u16()),
        retry_of: None,
    };
    if committed {
        let assets = &shared.policy.current().assets;
        if let Some(charge) = ticket.charge(answer.charged_atomic, assets) {
            settlement.amount_usd = charge.usd;
            settlement.amount_atomic = Some(charge.atomic);
            settlement.note = Some(charge.note);
        }
    }
    settle(shared, facts, &mut ticket, settlement).await;
    if let (true, Some(compensator)) = (committed, compensator) {
        compensator
            .after_commit(facts, &ticket.settled, tx_hash, status)
            .await;
    }
}

/// Settles a payment whose upstream exchange failed. If the request was never sent,
/// nothing was paid; otherwise the outcome is unknown and stays counted as spent.
pub(super) fn on_upstream_failure(
    shared: &Shared,
    facts: &RequestFacts,
    mut ticket: Ticket,
    request_sent: bool,
) {
    let (outcome, note) = if request_sent {
        (Outcome::Unknown, "connection lost after the payment left")
    } else {
        (
            Outcome::Released,
            "upstream unreachable; the payment never left",
        )
    };
    let settlement = Settlement {
        outcome,
        amount_usd: ticket.amount_usd,
        amount_atomic: None,
        transaction: None,
        note: Some(note.to_string()),
        upstream_status: None,
        retry_of: None,
    };
    let stake = ticket.take_stake();
    finish(shared, facts, &ticket, stake, settlement);
}

/// Settles the ticket's stake and writes the settlement line; a retry whose receipt says
/// it settled resolves its original as committed first.
async fn settle(
    shared: &Shared,
    facts: &RequestFacts,
    ticket: &mut Ticket,
    settlement: Settlement,
) {
    let stake = ticket.take_stake();
    if let (Stake::Retry(claim), Outcome::Committed) = (&stake, settlement.outcome) {
        // The retry holds the claim, so nothing else can have resolved the original.
        resolve_by_retry(shared, claim.original(), &ticket.trace_id).await;
    }
    finish(shared, facts, ticket, stake, settlement);
}

/// Ends `stake` and writes the settlement line.
fn finish(
    shared: &Shared,
    facts: &RequestFacts,
    ticket: &Ticket,
    stake: Stake,
    mut settlement: Settlement,
) {
    // Held to the end: a retry's claim keeps other copies out until it is settled.
    let mut claim = None;
    match stake {
        Stake::Reserved { reservation, .. } => match settlement.outcome {
            Outcome::Unknown => {
                let details = ticket.unknown_details(
                    facts,
                    settlement.note.clone(),
                    settlement.upstream_status,
                );
                shared
                    .store
                    .settle_unknown(reservation, &ticket.trace_id, details);
            }
            outcome => {
                shared.store.settle(reservation, outcome);
                // An `upto` payment charged less than it reserved: the rest goes back.
                let uncharged = ticket.amount_usd - settlement.amount_usd;
                if outcome == Outcome::Committed && uncharged > rust_decimal::Decimal::ZERO {
                    let session = facts.identity.session_id();
                    let agent = &facts.identity.agent;
                    shared.store.credit(&session, agent, uncharged);
                }
            }
        },
        // Nothing is booked for a retry: its amount is already counted as the
        // original's. Only a receipt that says it settled tells what happened to the
        // original; any other answer leaves it unknown (a failed receipt may only mean
        // that the original had already settled).
        Stake::Retry(retry) => {
            settlement.retry_of = Some(retry.original().to_string());
            claim = Some(retry);
        }
        Stake::Settled => return,
    }
    let policy = shared.policy.current();
    let outcome = settlement.outcome;
    let trace_id = shared.next_trace_id();
    let record = settlement_record(facts, &policy, &trace_id, &ticket.trace_id, settlement);
    shared.metrics.settlement(traced(outcome).as_str());
    shared.trace.append(&record);
    drop(claim);
}

/// The agent's retry brought a receipt that says it settled: the original payment is
/// committed. Not awaited on disk: if the line is lost in a crash, the payment comes back
/// `unknown`, still counted.
async fn resolve_by_retry(shared: &Shared, original: &str, retry: &str) {
    if !matches!(shared.store.take_unknown(original, true).await, Ok(Some(_))) {
        return;
    }
    let Some(payment) = shared.store.resolve_unknown(original, true).await else {
        return;
    };
    let why = format!("the agent's retry {retry} brought a receipt that says it settled");
    let policy = shared.policy.current();
    let record = resolution_record(
        &policy,
        shared.next_trace_id(),
        original,
        &payment,
        true,
        &why,
    );
    shared.trace.append(&record);
}

/// Reconciles an unknown payment: committed (it settled) or released (it did not). The
/// `resolution` line is on disk before the budget changes.
pub(super) async fn resolve_unknown(
    shared: &Shared,
    decision_trace: &str,
    committed: bool,
    by: &str,
    why: &str,
) -> Result<Resolved, ResolveError> {
    let not_unknown = || ResolveError::NotUnknown(decision_trace.to_string());
    // Taking the entry first means no retry can claim it while the line is written.
    let details = shared.store.take_unknown(decision_trace, false).await?;
    let Some(payment) = shared.store.unknown_payment(decision_trace).await else {
        return Err(not_unknown());
    };
    let outcome = if committed { "committed" } else { "released" };
    let reason = format!("resolved as {outcome} by {by}: {why}");
    let policy = shared.policy.current();
    let record = resolution_record(
        &policy,
        shared.next_trace_id(),
        decision_trace,
        &payment,
        committed,
        &reason,
    );
    if let Err(error) = shared.trace.append_durable(&record).await {
        if let Some(details) = details {
            shared.store.remember_unknown(decision_trace, details);
        }
        return Err(error.into());
    }
    let payment = shared
        .store
        .resolve_unknown(decision_trace, committed)
        .await
        .ok_or_else(not_unknown)?;
    tracing::info!(payment = %decision_trace, outcome, %by, usd = %payment.amount, "unknown payment resolved");
    Ok(Resolved {
        payment,
        trace_id: record.trace_id,
    })
}

fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const RECEIPT_HEADERS: [&str; 4] = [
        "payment-response",
        "x-payment-response",
        "payment_response",
        "x_payment_response",
    ];

    fn receipt(success: bool) -> HeaderValue {
        let json = serde_json::json!({"success": success, "transaction": "0xabc",
                                      "network": "base", "payer": "0x1"});
        let text = base64::engine::general_purpose::STANDARD.encode(json.to_string());
        HeaderValue::from_str(&text).unwrap()
    }

    fn answer(status: u16, receipts: &[(&'static str, HeaderValue)]) -> Outcome {
        let mut headers = HeaderMap::new();
        for (name, value) in receipts {
            headers.append(*name, value.clone());
        }
        read_answer(StatusCode::from_u16(status).unwrap(), &headers).outcome
    }

    #[test]
    fn only_a_fresh_402_or_a_failed_receipt_releases() {
        assert_eq!(answer(402, &[]), Outcome::Released);
        assert_eq!(
            answer(200, &[("payment-response", receipt(false))]),
            Outcome::Released
        );
        assert_eq!(
            answer(402, &[("x-payment-response", receipt(false))]),
            Outcome::Released
        );
        for status in [200, 201, 204, 301, 404, 500, 502, 503] {
            assert_eq!(answer(status, &[]), Outcome::Unknown, "{status}");
        }
        let garbage = HeaderValue::from_static("not-a-receipt");
        assert_eq!(
            answer(200, &[("payment-response", garbage.clone())]),
            Outcome::Unknown
        );
        assert_eq!(
            answer(402, &[("payment-response", garbage)]),
            Outcome::Unknown
        );
    }

    #[test]
    fn an_mcp_answer_settles_as_an_http_answer_does() {
        use crate::x402::{Challenge, Receipt};
        let receipt = |success| Receipt {
            success,
            payer: None,
            transaction: Some("0xabc".into()),
            network: None,
            error_reason: None,
            settled_amount_atomic: None,
        };
        let challenge = Challenge {
            version: 2,
            resource: None,
            accepts: Vec::new(),
        };
        let outcome = |answer: CallAnswer| read_call_answer(Ok(answer)).outcome;
        let with = |receipt, challenge, error_code| CallAnswer {
            receipt,
            challenge,
            error_code,
            tool_error: false,
        };
        assert_eq!(
            outcome(with(Some(Ok(receipt(true))), None, None)),
            Outcome::Committed
        );
        // A failed receipt beside a fresh challenge (the SDK's settlement failure).
        let failed = with(Some(Ok(receipt(false))), Some(challenge.clone()), None);
        assert_eq!(outcome(failed), Outcome::Released);
        assert_eq!(
            outcome(with(None, Some(challenge), None)),
            Outcome::Released
        );
        assert_eq!(outcome(with(None, None, None)), Outcome::Unknown);
        assert_eq!(outcome(with(None, None, Some(-32603))), Outcome::Unknown);
        let unreadable = Some(Err(X402Error::WrongShape("two".into())));
        assert_eq!(outcome(with(unreadable, None, None)), Outcome::Unknown);
        let cut = read_call_answer(Err("the answer broke off".into()));
        assert_eq!(cut.outcome, Outcome::Unknown);
        assert!(cut.note.unwrap().starts_with("the answer broke off"));
    }

    #[test]
    fn a_receipt_that_settled_commits_under_either_name() {
        for name in RECEIPT_HEADERS {
            assert_eq!(answer(200, &[(name, receipt(true))]), Outcome::Committed);
            assert_eq!(answer(500, &[(name, receipt(true))]), Outcome::Committed);
        }
        // The same receipt twice is one receipt; two that differ tell nothing.
        let twice = [
            ("payment-response", receipt(true)),
            ("x-payment-response", receipt(true)),
        ];
        assert_eq!(answer(200, &twice), Outcome::Committed);
        let differ = [
            ("payment-response", receipt(false)),
            ("x-payment-response", receipt(true)),
        ];
        assert_eq!(answer(200, &differ), Outcome::Unknown);
    }
}
