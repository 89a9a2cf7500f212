//! Compensation (SPEC §3): when a step of a transaction fails, or a transaction is rolled
//! back through the admin API, every payment that settled in it gets a refund request,
//! newest first; a payment that settled but whose answer was a 5xx gets one on its own.
//!
//! Refund requests are POSTed by one task with retries and backoff. Each is traced when
//! queued (`pending`) and when it ends (`requested` or `failed`), so a restart resumes the
//! ones still pending.

use super::facts::RequestFacts;
use crate::outbound::{JsonPost, Outbound, SharedOutbound};
use crate::policy::PolicyStore;
use crate::store::SharedStore;
use crate::trace::{Kind, Outcome, TraceLog, TraceRecord};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use crate::store::SettledPayment;

const ATTEMPTS: u32 = 6;

/// One refund to request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefundJob {
    pub id: String,
    pub transaction: Option<String>,
    pub reason: String,
    pub payment: SettledPayment,
}

/// The refund queue, and the transactions it compensates (kept in the store).
pub struct Compensator {
    policy: Arc<PolicyStore>,
    store: SharedStore,
    queue: mpsc::UnboundedSender<RefundJob>,
    counter: AtomicU64,
    prefix: String,
}

/// What the refund task needs.
pub struct RefundContext {
    pub policy: Arc<PolicyStore>,
    pub client: SharedOutbound,
    pub trace: TraceLog,
    pub store: SharedStore,
}

impl Compensator {
    /// Starts the refund task.
    pub fn start(context: RefundContext) -> Compensator {
        let (queue, jobs) = mpsc::unbounded_channel();
        let (policy, store) = (context.policy.clone(), context.store.clone());
        tokio::spawn(run_refunds(context, jobs));
        Compensator {
            policy,
            store,
            queue,
            counter: AtomicU64::new(0),
            prefix: format!("cp_{:x}", jiff::Timestamp::now().as_millisecond()),
        }
    }

    fn enabled(&self) -> bool {
        self.policy.peek().compensation.enabled
    }

    /// A settled payment joins its transaction; a 5xx answer compensates it (and, in a
    /// transaction, every earlier step) at once.
    ///
    /// Takes the payment by reference and copies it only when it is kept: most commits
    /// are in no transaction and answered 2xx, and this runs on every one of them.
    pub(super) async fn after_commit(
        &self,
        facts: &RequestFacts,
        payment: &SettledPayment,
        tx_hash: Option<String>,
        status: StatusCode,
    ) {
        if !self.enabled() {
            return;
        }
        let kept = || SettledPayment {
            tx_hash,
            ..payment.clone()
        };
        match &facts.transaction {
            Some(transaction) => {
                let agent = &facts.identity.agent;
                self.store.record_step(agent, transaction, kept());
                if status.is_server_error() {
                    let reason = format!("step answered {status} after it was paid");
                    self.compensate_transaction(agent, transaction, &reason)
                        .await;
                }
            }
            None if status.is_server_error() => {
                self.enqueue(None, &format!("paid, but the answer was {status}"), kept());
            }
            None => {}
        }
    }

    /// A step of a transaction failed (5xx, or Purser could not get an answer): every
    /// payment that settled in the transaction is compensated, newest first.
    pub(super) async fn transaction_failed(&self, facts: &RequestFacts, status: StatusCode) {
        let Some(transaction) = &facts.transaction else {
            return;
        };
        if !self.enabled() {
            return;
        }
        let reason = format!("a step answered {status}");
        let agent = &facts.identity.agent;
        if let Some(count) = self
            .compensate_transaction(agent, transaction, &reason)
            .await
        {
            tracing::info!(session = %facts.identity, %transaction, refunds = count, "transaction failed; compensating");
        }
    }

    /// Compensates every settled step of `agent`'s `transaction`, newest first. Returns
    /// how many.
    async fn compensate_transaction(
        &self,
        agent: &str,
        transaction: &str,
        reason: &str,
    ) -> Option<usize> {
        let steps = self.store.take_transaction(agent, transaction).await?;
        Some(self.compensate_steps(transaction, reason, steps))
    }

    fn compensate_steps(
        &self,
        transaction: &str,
        reason: &str,
        steps: Vec<SettledPayment>,
    ) -> usize {
        let count = steps.len();
        for payment in steps.into_iter().rev() {
            self.enqueue(Some(transaction.to_string()), reason, payment);
        }
        count
    }

    /// An operator's rollback: the transaction `transaction` of every agent that has one.
    /// Returns how many refunds were queued, `None` when no agent has it open.
    pub(super) async fn rollback(&self, transaction: &str, reason: &str) -> Option<usize> {
        let open = self
            .store
            .take_transaction_for_all_agents(transaction)
            .await;
        let counts: Vec<usize> = open
            .into_iter()
            .map(|steps| self.compensate_steps(transaction, reason, steps))
            .collect();
        (!counts.is_empty()).then(|| counts.iter().sum())
    }

    /// Queues a job rebuilt from the proof log (a refund still pending at the restart).
    pub fn resume(&self, job: RefundJob) {
        let _ = self.queue.send(job);
    }

    fn enqueue(&self, transaction: Option<String>, reason: &str, payment: SettledPayment) {
        let id = format!(
            "{}_{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let job = RefundJob {
            id,
            transaction,
            reason: reason.to_string(),
            payment,
        };
        let _ = self.queue.send(job);
    }
}

async fn run_refunds(context: RefundContext, mut jobs: mpsc::UnboundedReceiver<RefundJob>) {
    while let Some(job) = jobs.recv().await {
        trace_refund(&context, &job, Outcome::Pending, false, None);
        let settings = context.policy.current().compensation.clone();
        let result = match settings.endpoint.as_deref() {
            Some(endpoint) => request_refund(context.client.as_ref(), endpoint, &job).await,
            None => Err("no compensation.endpoint in the policy".to_string()),
        };
        match result {
            Ok(()) => {
                if settings.credit_budget {
                    context.store.credit(
                        &job.payment.session,
                        &job.payment.agent,
                        job.payment.amount_usd,
                    );
                }
                tracing::info!(refund = %job.id, session = %job.payment.session, usd = %job.payment.amount_usd, "refund requested");
                trace_refund(
                    &context,
                    &job,
                    Outcome::Requested,
                    settings.credit_budget,
                    None,
                );
            }
            Err(error) => {
                tracing::error!(refund = %job.id, %error, "refund request failed; the loss stands");
                trace_refund(&context, &job, Outcome::Failed, false, Some(error));
            }
        }
    }
}

async fn request_refund(
    client: &dyn Outbound,
    endpoint: &str,
    job: &RefundJob,
) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("compensation.endpoint: {e}"))?;
    let body = json!({
        "refund_id": job.id,
        "transaction": job.transaction,
        "payer": job.payment.payer,
        "pay_to": job.payment.pay_to,
        "amount": job.payment.amount_atomic,
        "amount_usd": job.payment.amount_usd.to_string(),
        "asset": job.payment.asset,
        "network": job.payment.network,
        "tx_hash": job.payment.tx_hash,
        "trace_id": job.payment.decision_trace_id,
        "session": job.payment.session,
        "reason": job.reason,
    })
    .to_string();
    let mut backoff = Duration::from_millis(250);
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let post = JsonPost {
            url: &uri,
            body: &body,
            idempotency_key: Some(job.id.as_str()),
        };
        match tokio::time::timeout(Duration::from_secs(10), client.post_json(post)).await {
            Ok(Ok(status)) if status.is_success() => return Ok(()),
            Ok(Ok(status)) => last_error = format!("endpoint answered {status}"),
            Ok(Err(error)) => last_error = format!("endpoint unreachable: {error}"),
            Err(_) => last_error = "endpoint timed out".to_string(),
        }
        tracing::warn!(refund = %job.id, attempt, error = %last_error, "refund request will be retried");
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
    }
    Err(last_error)
}

fn trace_refund(
    context: &RefundContext,
    job: &RefundJob,
    outcome: Outcome,
    credited: bool,
    error: Option<String>,
) {
    let policy = context.policy.current();
    let record = TraceRecord {
        // A resumed refund writes `pending` again: the time keeps the ids distinct.
        trace_id: format!(
            "{}_{outcome}_{}",
            job.id,
            jiff::Timestamp::now().as_microsecond()
        ),
        kind: Kind::Compensation,
        time: jiff::Timestamp::now().to_string(),
        session: job.payment.session.clone(),
        agent: job.payment.agent.clone(),
        decision_trace_id: Some(job.payment.decision_trace_id.clone()),
        outcome: Some(outcome),
        amount_usd: Some(job.payment.amount_usd),
        amount_atomic: Some(job.payment.amount_atomic.clone()),
        pay_to: Some(job.payment.pay_to.clone()),
        payer: job.payment.payer.clone(),
        asset: Some(job.payment.asset.clone()),
        network: Some(job.payment.network.clone()),
        transaction: job.payment.tx_hash.clone(),
        reason: Some(error.unwrap_or_else(|| job.reason.clone())),
        compensation: Some(json!({
            "refund_id": job.id,
            "transaction": job.transaction,
            "loss_usd": job.payment.amount_usd.to_string(),
            "credited": credited,
            "job": job,
        })),
        policy_digest: Some(policy.digest.clone()),
        purser_version: Some(crate::VERSION.into()),
        ..TraceRecord::default()
    };
    context.trace.append(&record);
}
