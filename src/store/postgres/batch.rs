//! The two operations every payment makes, batched: reserving its amount and screening
//! and claiming its replay keys (`purser_decide`, one round trip), and claiming keys on
//! their own (`purser_claim_keys`, for a decision that did not screen them). Requests that
//! arrive while a batch is in flight go together in the next one, so under load one
//! round trip and one commit serve many decisions, and the hot budget rows are locked
//! once per batch rather than once per payment.
//!
//! An answer can outlive its asker (the payment timed out waiting, the store answered
//! late). What it booked is then undone through the write queue: the reservation is
//! released, the claimed keys forgotten. Undoing is safe because the payment never left.

use super::link::{Link, StoreError};
use super::writes::{Write, Writes};
use rust_decimal::Decimal;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Requests per batch at most.
const BATCH: usize = 256;

/// One payment's reservation request.
pub(super) struct ReserveItem {
    pub id: i64,
    pub session: String,
    pub agent: String,
    pub pay_to: String,
    pub amount: Decimal,
    /// Session, agent and fleet caps (limit × halt ratio); `None`: no limit.
    pub caps: [Option<Decimal>; 3],
    /// The replay keys to screen and claim with the reservation (a JSON array), and
    /// until when they are remembered; `None`: nothing screened.
    pub keys: Option<String>,
    pub until: i64,
}

/// What the store answered: what refused it (`session`, `agent` or `fleet`, or the screen:
/// `replayed`, `unknown_key`) or none, the index of the key found remembered, the session's
/// phase, and session, agent and fleet accounts (committed, unknown, reserved) just
/// before it. Booked with its keys claimed when nothing refused it.
#[derive(Clone)]
pub(super) struct Reserved {
    pub refused: Option<String>,
    pub seen: Option<i32>,
    pub phase: String,
    pub accounts: [[Decimal; 3]; 3],
}

/// One payment's replay-key claim.
pub(super) struct ClaimItem {
    pub claim: i64,
    pub keys: Vec<String>,
    pub until: i64,
    pub now: i64,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
type Queue<I, O> = mpsc::UnboundedSender<(I, Reply<O>)>;
/// The claim queue, shared by the tasks that take batches from it.
type ClaimJobs = Arc<Mutex<mpsc::UnboundedReceiver<(ClaimItem, Reply<bool>)>>>;

/// The batchers of one replica.
pub(crate) struct Batchers {
    reserve: Queue<ReserveItem, Reserved>,
    claim: Queue<ClaimItem, bool>,
    link: Arc<Link>,
    writes: Arc<Writes>,
}

impl Batchers {
    pub(super) fn start(link: Arc<Link>, writes: Arc<Writes>) -> Batchers {
        let (reserve, reserve_jobs) = mpsc::unbounded_channel();
        let (claim, claim_jobs) = mpsc::unbounded_channel();
        tokio::spawn(run_reserves(link.clone(), writes.clone(), reserve_jobs));
        // Claims wait for the disk: two batches in flight let their flushes overlap.
        let claim_jobs = Arc::new(Mutex::new(claim_jobs));
        for _ in 0..2 {
            tokio::spawn(run_claims(link.clone(), writes.clone(), claim_jobs.clone()));
        }
        Batchers {
            reserve,
            claim,
            link,
            writes,
        }
    }

    /// The store these batches go to.
    pub(super) fn link(&self) -> &Link {
        &self.link
    }

    /// The write queue their undoing goes through.
    pub(super) fn writes(&self) -> &Writes {
        &self.writes
    }

    /// Reserves one payment's amount (or learns which level refuses it).
    pub(super) async fn reserve(&self, item: ReserveItem) -> Result<Reserved, StoreError> {
        let id = item.id;
        let undo = |reserved: Reserved| {
            if reserved.refused.is_none() {
                undo_booking(&self.writes, id);
            }
        };
        ask(&self.link, &self.reserve, item, undo).await
    }

    /// Claims one payment's replay keys: `true` when all were free.
    pub(super) async fn claim(&self, item: ClaimItem) -> Result<bool, StoreError> {
        let claim = item.claim;
        let undo = |claimed: bool| {
            if claimed {
                self.writes.push(Write::ForgetClaim { claim });
            }
        };
        ask(&self.link, &self.claim, item, undo).await
    }
}

/// Gives back what a booking took: its reservation, and the keys claimed with it (the
/// claim carries the reservation's id).
pub(super) fn undo_booking(writes: &Writes, id: i64) {
    writes.push(Write::Settle {
        id,
        outcome: "released",
        unknown: None,
    });
    writes.push(Write::ForgetClaim { claim: id });
}

/// Queues `item` and waits for its answer within the time limit; an answer that comes
/// after the asker stopped waiting is handed to `undo`.
async fn ask<I, O>(
    link: &Link,
    queue: &Queue<I, O>,
    item: I,
    undo: impl FnOnce(O),
) -> Result<O, StoreError> {
    let (reply, mut answer) = oneshot::channel();
    if queue.send((item, reply)).is_err() {
        return Err(StoreError::Unreachable("the batcher has stopped".into()));
    }
    let result = match tokio::time::timeout(link.timeout, &mut answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StoreError::Unreachable("the batcher has stopped".into())),
        Err(_) => {
            // Closed first, so the batcher either sees it closed (and undoes the answer
            // itself) or has already sent the answer, which is undone here.
            answer.close();
            if let Ok(Ok(late)) = answer.try_recv() {
                undo(late);
            }
            Err(StoreError::Timeout(link.timeout))
        }
    };
    link.note(&result);
    result
}

async fn run_reserves(
    link: Arc<Link>,
    writes: Arc<Writes>,
    mut jobs: mpsc::UnboundedReceiver<(ReserveItem, Reply<Reserved>)>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while jobs.recv_many(&mut batch, BATCH).await > 0 {
        let items: Vec<&ReserveItem> = batch.iter().map(|(item, _)| item).collect();
        let answers = link.within(reserve_batch(&link, &items)).await;
        for (item, reply) in batch.drain(..) {
            let answer = match &answers {
                Ok(rows) => rows
                    .iter()
                    .find(|(id, _)| *id == item.id)
                    .map(|(_, reserved)| Ok(reserved.clone()))
                    .unwrap_or_else(|| Err(StoreError::Refused("no answer for it".into()))),
                Err(error) => {
                    if error.maybe_done() {
                        undo_booking(&writes, item.id);
                    }
                    Err(error.clone())
                }
            };
            if let Err(Ok(unwanted)) = reply.send(answer) {
                if unwanted.refused.is_none() {
                    undo_booking(&writes, item.id);
                }
            }
        }
    }
}

async fn reserve_batch(
    link: &Link,
    items: &[&ReserveItem],
) -> Result<Vec<(i64, Reserved)>, StoreError> {
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let sessions: Vec<&str> = items.iter().map(|i| i.session.as_str()).collect();
    let agents: Vec<&str> = items.iter().map(|i| i.agent.as_str()).collect();
    let pay_to: Vec<&str> = items.iter().map(|i| i.pay_to.as_str()).collect();
    let amounts: Vec<Decimal> = items.iter().map(|i| i.amount).collect();
    let cap =
        |level: usize| -> Vec<Option<Decimal>> { items.iter().map(|i| i.caps[level]).collect() };
    let (session_caps, agent_caps, fleet_caps) = (cap(0), cap(1), cap(2));
    let keys: Vec<Option<&str>> = items.iter().map(|i| i.keys.as_deref()).collect();
    let until: Vec<i64> = items.iter().map(|i| i.until).collect();
    let now = jiff::Timestamp::now().as_second();
    let client = link.pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT * FROM purser_decide($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                                         $11::TEXT[]::JSONB[], $12, $13)",
        )
        .await?;
    let flush = client.prepare_cached("SELECT purser_flush()").await?;
    // Sent together, in this order: the decisions commit without waiting for the disk
    // (the hot budget rows are not held through a flush), and the transaction after them
    // writes a log record and commits waiting for the disk, which makes the log durable
    // up to and past theirs. (A transaction that writes nothing, such as one that only
    // takes a transaction id, would not wait.) Both answers are in before any payment
    // may leave: one round trip, one flush.
    let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[
        &ids,
        &link.instance,
        &link.replica,
        &sessions,
        &agents,
        &pay_to,
        &amounts,
        &session_caps,
        &agent_caps,
        &fleet_caps,
        &keys,
        &until,
        &now,
    ];
    let (decided, flushed) =
        tokio::join!(client.query(&statement, params), client.query(&flush, &[]));
    let rows = decided?;
    if let Err(error) = flushed {
        // The decisions committed but are not known to be on disk: none may leave, and
        // an error that may have been done has their bookings given back.
        return Err(StoreError::Unreachable(format!(
            "the decisions were booked but not flushed to disk ({error});              check that Purser's role may call pg_logical_emit_message"
        )));
    }
    rows.iter().map(reserved_row).collect()
}

fn reserved_row(row: &tokio_postgres::Row) -> Result<(i64, Reserved), StoreError> {
    let number = |index: usize| -> Result<Decimal, StoreError> {
        row.try_get::<_, Decimal>(index)
            .map_err(|e| StoreError::Refused(e.to_string()))
    };
    let account = |first: usize| -> Result<[Decimal; 3], StoreError> {
        Ok([number(first)?, number(first + 1)?, number(first + 2)?])
    };
    let id: i64 = row
        .try_get(0)
        .map_err(|e| StoreError::Refused(e.to_string()))?;
    Ok((
        id,
        Reserved {
            refused: row
                .try_get(1)
                .map_err(|e| StoreError::Refused(e.to_string()))?,
            seen: row
                .try_get(2)
                .map_err(|e| StoreError::Refused(e.to_string()))?,
            phase: row
                .try_get(3)
                .map_err(|e| StoreError::Refused(e.to_string()))?,
            accounts: [account(4)?, account(7)?, account(10)?],
        },
    ))
}

async fn run_claims(link: Arc<Link>, writes: Arc<Writes>, jobs: ClaimJobs) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // The lock is held only while taking a batch, not while it is in flight.
        if jobs.lock().await.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let items: Vec<&ClaimItem> = batch.iter().map(|(item, _)| item).collect();
        let answers = link.within(claim_batch(&link, &items)).await;
        for (item, reply) in batch.drain(..) {
            let answer = match &answers {
                Ok(claimed) => Ok(claimed.contains(&item.claim)),
                Err(error) => {
                    if error.maybe_done() {
                        writes.push(Write::ForgetClaim { claim: item.claim });
                    }
                    Err(error.clone())
                }
            };
            if let Err(Ok(true)) = reply.send(answer) {
                writes.push(Write::ForgetClaim { claim: item.claim });
            }
        }
    }
}

/// The claims of the batch that got all their keys.
async fn claim_batch(link: &Link, items: &[&ClaimItem]) -> Result<Vec<i64>, StoreError> {
    let mut claims = Vec::new();
    let mut keys = Vec::new();
    let mut until = Vec::new();
    for item in items {
        for key in &item.keys {
            claims.push(item.claim);
            keys.push(key.as_str());
            until.push(item.until);
        }
    }
    let now = items.iter().map(|i| i.now).max().unwrap_or(0);
    let client = link.pool.get().await?;
    let statement = client
        .prepare_cached("SELECT r_claim FROM purser_claim_keys($1, $2, $3, $4, $5) WHERE r_claimed")
        .await?;
    let rows = client
        .query(&statement, &[&claims, &keys, &until, &now, &link.instance])
        .await?;
    rows.iter()
        .map(|row| {
            row.try_get(0)
                .map_err(|e| StoreError::Refused(e.to_string()))
        })
        .collect()
}
