//! Compensation (SPEC §3): when a step of a transaction fails, or a transaction is rolled
//! back through the admin API, every payment that settled in it gets a refund request,
//! newest first; a payment that settled but whose answer was a 5xx gets one on its own.
//!
//! Refund requests are POSTed by one task with retries and backoff. Each is traced when
//! queued (`pending`) and when it ends (`requested` or `failed`), so a restart resumes the
//! ones still pending.

use crate::ledger::Ledger;
use crate::outbound::{JsonPost, Outbound, SharedOutbound};
use crate::policy::PolicyStore;
use crate::trace::{TraceLog, TraceRecord};
use dashmap::DashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Separates the agent from the transaction id in the map's keys: no agent name contains
/// it (agent names come from Basic credentials and the policy's keys).
const SCOPE: char = '\u{1f}';

fn scoped(agent: &str, transaction: &str) -> String {
    format!("{agent}{SCOPE}{transaction}")
}

/// Open transactions kept; past this the oldest are forgotten.
const MAX_TRANSACTIONS: usize = 10_000;
const ATTEMPTS: u32 = 6;

/// A payment that settled, as compensation needs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettledPayment {
    pub decision_trace_id: String,
    pub session: String,
    pub agent: String,
    pub payer: Option<String>,
    pub pay_to: String,
    pub amount_atomic: String,
    pub amount_usd: Decimal,
    pub asset: String,
    pub network: String,
    pub tx_hash: Option<String>,
}

/// One refund to request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefundJob {
    pub id: String,
    pub transaction: Option<String>,
    pub reason: String,
    pub payment: SettledPayment,
}

struct Transaction {
    steps: Vec<SettledPayment>,
    opened: u64,
}

/// Transactions and the refund queue.
pub struct Compensator {
    transactions: DashMap<String, Transaction>,
    queue: mpsc::UnboundedSender<RefundJob>,
    counter: AtomicU64,
    prefix: String,
}

/// What the refund task needs.
pub struct RefundContext {
    pub policy: Arc<PolicyStore>,
    pub client: SharedOutbound,
    pub trace: TraceLog,
    pub ledger: Arc<Ledger>,
}

impl Compensator {
    /// Starts the refund task.
    pub fn start(context: RefundContext) -> Compensator {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run_refunds(context, jobs));
        Compensator {
            transactions: DashMap::new(),
            queue,
            counter: AtomicU64::new(0),
            prefix: format!("cp_{:x}", jiff::Timestamp::now().as_millisecond()),
        }
    }

    /// Records a settled payment as a step of `agent`'s `transaction`. Transactions are
    /// the agent's own: another agent sending the same id opens a different one, so it
    /// can never make Purser refund payments it did not make.
    pub fn record_step(&self, agent: &str, transaction: &str, payment: SettledPayment) {
        let key = scoped(agent, transaction);
        let transaction = key.as_str();
        if !self.transactions.contains_key(transaction)
            && self.transactions.len() >= MAX_TRANSACTIONS
        {
            let oldest = self
                .transactions
                .iter()
                .min_by_key(|t| t.opened)
                .map(|t| t.key().clone());
            if let Some(oldest) = oldest {
                self.transactions.remove(&oldest);
            }
        }
        let opened = self.counter.fetch_add(1, Ordering::Relaxed);
        self.transactions
            .entry(transaction.to_string())
            .or_insert_with(|| Transaction {
                steps: Vec::new(),
                opened,
            })
            .steps
            .push(payment);
    }

    /// Compensates every settled step of `agent`'s `transaction`, newest first. Returns
    /// how many.
    pub fn compensate_transaction(
        &self,
        agent: &str,
        transaction: &str,
        reason: &str,
    ) -> Option<usize> {
        let (_, open) = self.transactions.remove(&scoped(agent, transaction))?;
        let count = open.steps.len();
        for payment in open.steps.into_iter().rev() {
            self.enqueue(Some(transaction.to_string()), reason, payment);
        }
        Some(count)
    }

    /// An operator's rollback: the transaction `transaction` of every agent that has one.
    pub fn compensate_for_all_agents(&self, transaction: &str, reason: &str) -> Option<usize> {
        let suffix = format!("{SCOPE}{transaction}");
        let agents: Vec<String> = self
            .transactions
            .iter()
            .filter_map(|entry| entry.key().strip_suffix(&suffix).map(str::to_string))
            .collect();
        let counts: Vec<usize> = agents
            .iter()
            .filter_map(|agent| self.compensate_transaction(agent, transaction, reason))
            .collect();
        (!counts.is_empty()).then(|| counts.iter().sum())
    }

    /// Compensates one payment on its own.
    pub fn compensate_one(&self, payment: SettledPayment, reason: &str) {
        self.enqueue(None, reason, payment);
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
        trace_refund(&context, &job, "pending", false, None);
        let settings = context.policy.current().compensation.clone();
        let result = match settings.endpoint.as_deref() {
            Some(endpoint) => request_refund(context.client.as_ref(), endpoint, &job).await,
            None => Err("no compensation.endpoint in the policy".to_string()),
        };
        match result {
            Ok(()) => {
                if settings.credit_budget {
                    context.ledger.credit(
                        &job.payment.session,
                        &job.payment.agent,
                        job.payment.amount_usd,
                    );
                }
                tracing::info!(refund = %job.id, session = %job.payment.session, usd = %job.payment.amount_usd, "refund requested");
                trace_refund(&context, &job, "requested", settings.credit_budget, None);
            }
            Err(error) => {
                tracing::error!(refund = %job.id, %error, "refund request failed; the loss stands");
                trace_refund(&context, &job, "failed", false, Some(error));
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
    outcome: &'static str,
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
        kind: "compensation",
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
        purser_version: Some(crate::VERSION),
        ..TraceRecord::default()
    };
    context.trace.append(&record);
}
