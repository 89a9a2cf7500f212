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
//! A ticket dropped before its answer was settled (the agent's request went away while
//! the payment was upstream) settles itself as `unknown` too, rather than leaving its
//! amount reserved for ever where no one can reconcile it.

use super::flow::{base_record, RequestFacts, Ticket};
use super::unknown::{resource_digest, RetryInFlight, UnknownDetails, UnknownSet, UnknownView};
use super::{Engine, TraceIds};
use crate::ledger::{Ledger, Outcome, UnknownPayment};
use crate::policy::{hex, PolicyStore};
use crate::telemetry::metrics::Metrics;
use crate::trace::{TraceError, TraceLog, TraceRecord};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

/// What an answer says about the payment it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerSettlement {
    pub outcome: Outcome,
    /// The settlement transaction from the receipt.
    pub transaction: Option<String>,
    /// Why, for the settlement line.
    pub note: Option<String>,
}

/// Reads the answer to a payment: its receipt (either version's header, in any spelling
/// the detector knows) and its status.
pub fn read_answer(status: StatusCode, headers: &HeaderMap) -> AnswerSettlement {
    let unknown = |note: String| AnswerSettlement {
        outcome: Outcome::Unknown,
        transaction: None,
        note: Some(note),
    };
    match crate::detect::receipt(headers) {
        None if status == StatusCode::PAYMENT_REQUIRED => AnswerSettlement {
            outcome: Outcome::Released,
            transaction: None,
            note: Some("the merchant answered a fresh 402: it did not take the payment".into()),
        },
        None => unknown(format!(
            "answered {status} without a receipt: whether the payment settled is unknown"
        )),
        Some(Ok(receipt)) if receipt.success => AnswerSettlement {
            outcome: Outcome::Committed,
            transaction: receipt.transaction,
            note: None,
        },
        Some(Ok(receipt)) => AnswerSettlement {
            outcome: Outcome::Released,
            transaction: receipt.transaction,
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

/// The parts of the engine a ticket needs to settle itself when it is dropped unsettled.
pub struct Settler {
    pub(super) ledger: Arc<Ledger>,
    pub(super) unknowns: Arc<UnknownSet>,
    pub(super) trace: TraceLog,
    pub(super) policy: Arc<PolicyStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) trace_ids: Arc<TraceIds>,
}

/// Held by a forwarded payment's ticket: if the ticket goes away before its answer was
/// settled, its reservation becomes `unknown`.
pub struct DropGuard {
    settler: Arc<Settler>,
    facts: Box<RequestFacts>,
}

impl std::fmt::Debug for DropGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DropGuard")
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let settler = &guard.settler;
        // Settled already (the usual case): the reservation is gone and this is a no-op.
        if settler
            .ledger
            .settle_unknown(self.reservation, &self.trace_id)
            .is_none()
        {
            return;
        }
        let why = "the request went away before its answer came (the agent closed the \
                   connection while the payment was upstream)";
        let details = unknown_details(&guard.facts, self, Some(why.to_string()), None);
        settler.unknowns.insert(&self.trace_id, details);
        let policy = settler.policy.current();
        let trace_id = settler.trace_ids.next();
        let mut record = base_record(&guard.facts, &policy, &trace_id, "settlement");
        record.decision_trace_id = Some(self.trace_id.clone());
        record.outcome = Some("unknown");
        record.amount_usd = Some(self.amount_usd);
        record.reason = Some(why.to_string());
        settler.metrics.settlement("unknown");
        settler.trace.append(&record);
        tracing::warn!(trace = %self.trace_id, "payment left but its request went away; outcome unknown");
    }
}

impl Engine {
    /// The guard a forwarded payment's ticket carries.
    pub(super) fn drop_guard(&self, facts: &RequestFacts) -> DropGuard {
        DropGuard {
            settler: self.settler.clone(),
            facts: Box::new(facts.clone()),
        }
    }

    /// Settles a forwarded payment from its answer, and adds Purser's headers.
    pub fn on_response(
        &self,
        facts: &RequestFacts,
        ticket: Ticket,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) {
        let answer = read_answer(status, headers);
        let tx_hash = answer.transaction.clone();
        self.settle(
            facts,
            &ticket,
            answer.outcome,
            answer.transaction,
            answer.note,
            Some(status.as_u16()),
        );
        if answer.outcome == Outcome::Committed {
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
        let (outcome, note) = if request_sent {
            (Outcome::Unknown, "connection lost after the payment left")
        } else {
            (
                Outcome::Released,
                "upstream unreachable; the payment never left",
            )
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
        let retry_of = ticket
            .retry
            .as_ref()
            .map(|claim| claim.original().to_string());
        if let Some(original) = &retry_of {
            // Nothing is booked for a retry: its amount is already counted as the
            // original's. Only a receipt that says it settled tells what happened to
            // the original; any other answer leaves it unknown (a failed receipt may
            // only mean that the original had already settled).
            if outcome == Outcome::Committed {
                self.resolve_by_retry(original, &ticket.trace_id);
            }
        } else {
            let settled = match outcome {
                Outcome::Unknown => {
                    let amount = self
                        .ledger
                        .settle_unknown(ticket.reservation, &ticket.trace_id);
                    if amount.is_some() {
                        let details = unknown_details(facts, ticket, note.clone(), status);
                        self.unknowns.insert(&ticket.trace_id, details);
                    }
                    amount
                }
                other => self.ledger.settle(ticket.reservation, other),
            };
            if settled.is_none() {
                return;
            }
        }
        let policy = self.policy.current();
        let trace_id = self.next_trace_id();
        let mut record = base_record(facts, &policy, &trace_id, "settlement");
        record.decision_trace_id = Some(ticket.trace_id.clone());
        record.outcome = Some(outcome_name(outcome));
        record.amount_usd = Some(ticket.amount_usd);
        record.transaction = transaction;
        record.reason = note;
        record.upstream_status = status;
        record.retry_of = retry_of;
        self.metrics.settlement(outcome_name(outcome));
        self.trace.append(&record);
    }

    /// The agent's retry brought a receipt that says it settled: the original payment is
    /// committed. Not awaited: if the line is lost in a crash, the payment comes back
    /// `unknown`, still counted.
    fn resolve_by_retry(&self, original: &str, retry: &str) {
        // The retry holds the claim, so nothing else can have resolved the original.
        if !matches!(self.unknowns.take(original, true), Ok(Some(_))) {
            return;
        }
        let Some(payment) = self.ledger.resolve_unknown(original, true) else {
            return;
        };
        let why = format!("the agent's retry {retry} brought a receipt that says it settled");
        let record = self.resolution_record(original, &payment, true, &why);
        self.trace.append(&record);
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
        let not_unknown = || ResolveError::NotUnknown(decision_trace.to_string());
        // Taking the entry first means no retry can claim it while the line is written.
        let details = self.unknowns.take(decision_trace, false)?;
        let Some(payment) = self.ledger.unknown_payment(decision_trace) else {
            return Err(not_unknown());
        };
        let outcome = if committed { "committed" } else { "released" };
        let reason = format!("resolved as {outcome} by {by}: {why}");
        let record = self.resolution_record(decision_trace, &payment, committed, &reason);
        if let Err(error) = self.trace.append_durable(&record).await {
            if let Some(details) = details {
                self.unknowns.insert(decision_trace, details);
            }
            return Err(error.into());
        }
        let payment = self
            .ledger
            .resolve_unknown(decision_trace, committed)
            .ok_or_else(not_unknown)?;
        tracing::info!(payment = %decision_trace, outcome, %by, usd = %payment.amount, "unknown payment resolved");
        Ok(Resolved {
            payment,
            trace_id: record.trace_id,
        })
    }

    fn resolution_record(
        &self,
        decision_trace: &str,
        payment: &UnknownPayment,
        committed: bool,
        reason: &str,
    ) -> TraceRecord {
        let policy = self.policy.current();
        TraceRecord {
            trace_id: self.next_trace_id(),
            kind: "resolution",
            time: jiff::Timestamp::now().to_string(),
            session: payment.session.clone(),
            agent: payment.agent.clone(),
            decision_trace_id: Some(decision_trace.to_string()),
            outcome: Some(if committed { "committed" } else { "released" }),
            amount_usd: Some(payment.amount),
            pay_to: Some(payment.pay_to.clone()),
            reason: Some(reason.to_string()),
            policy_digest: Some(policy.digest.clone()),
            purser_version: Some(crate::VERSION),
            ..TraceRecord::default()
        }
    }

    /// Unknown payments with what an operator needs to reconcile them, oldest first.
    pub fn unknown_payments(&self) -> Vec<(UnknownPayment, UnknownView)> {
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
        list
    }
}

fn unknown_details(
    facts: &RequestFacts,
    ticket: &Ticket,
    why: Option<String>,
    upstream_status: Option<u16>,
) -> UnknownDetails {
    UnknownDetails {
        session: facts.identity.session_id(),
        agent: facts.identity.agent.to_string(),
        since: jiff::Timestamp::now().to_string(),
        method: facts.method.clone(),
        host: facts.host.clone(),
        path: facts.path.clone(),
        payment_digest: Some(hex(&ticket.payment_digest)),
        resource: Some(resource_digest(facts)),
        keys: ticket.replay_keys.clone(),
        why,
        upstream_status,
    }
}

pub(super) fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Committed => "committed",
        Outcome::Released => "released",
        Outcome::Unknown => "unknown",
    }
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
