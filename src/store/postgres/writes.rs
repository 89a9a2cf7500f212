//! [`Writes`]: the store's plain writes (settlements, credits, forgotten keys, released
//! claims, closed holds, transaction steps), queued in order and applied in batches by
//! one task.
//!
//! Guards call these from `Drop`, where nothing can be awaited, and a settlement must
//! never be lost: a write that fails for want of the store is retried until the store
//! answers. Each is applied with an asynchronous commit (no wait for the disk), which is
//! safe because each can be applied twice: the writer keeps the last seconds of batches
//! and applies them again when it sees the store has restarted (`purser_apply` returns
//! the server's start time, and an idle writer still keeping batches asks for it every
//! second), so a write a crash took back is redone even when no other write follows. A read that must
//! see this process's earlier writes waits for them first ([`Writes::caught_up`]).

use super::link::{Link, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

/// Writes applied in one transaction at most.
const BATCH: usize = 512;
/// How long the writer gathers writes nobody waits for (settlements, steps) before it
/// applies them: under a steady trickle, one transaction per gathering rather than one
/// per payment, and the fleet row that every decision locks is held less often.
const GATHER: Duration = Duration::from_millis(10);
/// How long a server must be seen running after it took a batch before the batch is
/// let go: well past the time PostgreSQL takes to flush an asynchronous commit (3 ×
/// wal_writer_delay). Until then it is kept, to be applied again after a restart.
const REDO_WINDOW: Duration = Duration::from_secs(5);
/// How often the writer, idle with batches still kept, asks whether the store restarted.
const RESTART_CHECK: Duration = Duration::from_secs(1);

/// One plain write; `purser_apply` in the migrations applies it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Write {
    /// Ends a reservation: `committed`, `released` or `unknown` (with its details).
    Settle {
        id: i64,
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        unknown: Option<serde_json::Value>,
    },
    /// Gives a compensated payment's amount back to the budget.
    Credit {
        id: i64,
        session: String,
        agent: String,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
    },
    /// Forgets replay keys of a payment that never left.
    ForgetKeys { keys: Vec<String> },
    /// Forgets the keys one claim took (its answer was lost, so it never counted).
    ForgetClaim { claim: i64 },
    /// Ends this process's claim on an unknown payment's retry.
    ReleaseRetry { id: String },
    /// Puts back an unknown payment whose resolution could not be written.
    Unresolving { id: String },
    /// Decides a hold nobody waits for any more (its request went away).
    CloseHold {
        id: String,
        outcome: serde_json::Value,
    },
    /// A settled payment joins its transaction.
    Step {
        id: i64,
        agent: String,
        transaction: String,
        payment: serde_json::Value,
    },
}

impl Write {
    /// Whether a payment's decision must see this write: it changes the replay set or
    /// the unknown payments (a settlement that commits or releases does neither).
    fn shapes_decisions(&self) -> bool {
        match self {
            Write::Settle { outcome, .. } => *outcome == "unknown",
            Write::ForgetKeys { .. }
            | Write::ForgetClaim { .. }
            | Write::ReleaseRetry { .. }
            | Write::Unresolving { .. } => true,
            Write::Credit { .. } | Write::CloseHold { .. } | Write::Step { .. } => false,
        }
    }
}

/// The queue of plain writes.
pub(crate) struct Writes {
    /// The sequence number of the last write queued, of the last one that shapes
    /// decisions, and the queue (one lock, so numbers follow the queue's order).
    queue: parking_lot::Mutex<Queued>,
    applied: watch::Receiver<u64>,
    /// Rung when a write shapes decisions or someone waits: the writer stops gathering.
    hurry: Arc<Notify>,
}

struct Queued {
    last: u64,
    last_shaping: u64,
    sender: mpsc::UnboundedSender<(u64, Write)>,
}

impl Writes {
    /// Starts the writer task.
    pub(super) fn start(link: Arc<Link>) -> Writes {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (applied_tx, applied) = watch::channel(0);
        let hurry = Arc::new(Notify::new());
        tokio::spawn(run(link, receiver, applied_tx, hurry.clone()));
        Writes {
            hurry,
            queue: parking_lot::Mutex::new(Queued {
                last: 0,
                last_shaping: 0,
                sender,
            }),
            applied,
        }
    }

    /// Queues `write`.
    pub(super) fn push(&self, write: Write) {
        let mut queue = self.queue.lock();
        queue.last += 1;
        let number = queue.last;
        if write.shapes_decisions() {
            queue.last_shaping = number;
            self.hurry.notify_one();
        }
        if queue.sender.send((number, write)).is_err() {
            tracing::error!("the fleet store's writer has stopped; a write was lost");
        }
    }

    /// Waits until every write queued before this call is applied, within `limit`.
    pub(super) async fn caught_up(&self, limit: Duration) -> Result<(), StoreError> {
        let target = self.queue.lock().last;
        self.applied_up_to(target, limit).await
    }

    /// Waits until the writes queued before this call that shape decisions (replay keys,
    /// unknown payments) are applied: under load, most writes are plain settlements, and
    /// a decision need not wait for them.
    pub(super) async fn shaping_caught_up(&self, limit: Duration) -> Result<(), StoreError> {
        let target = self.queue.lock().last_shaping;
        self.applied_up_to(target, limit).await
    }

    async fn applied_up_to(&self, target: u64, limit: Duration) -> Result<(), StoreError> {
        if *self.applied.borrow() >= target {
            return Ok(());
        }
        self.hurry.notify_one();
        let mut applied = self.applied.clone();
        let wait = async { applied.wait_for(|done| *done >= target).await.map(|_| ()) };
        let waited = tokio::time::timeout(limit, wait).await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Unreachable("the writer has stopped".into())),
            Err(_) => Err(StoreError::Timeout(limit)),
        }
    }
}

async fn run(
    link: Arc<Link>,
    mut receiver: mpsc::UnboundedReceiver<(u64, Write)>,
    applied: watch::Sender<u64>,
    hurry: Arc<Notify>,
) {
    let mut recent = Recent::default();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let received = if recent.batches.is_empty() {
            receiver.recv_many(&mut batch, BATCH).await
        } else {
            // Writes the store may have taken back are still kept: while none follow,
            // ask now and then whether it restarted, so they are redone without waiting
            // for this replica's next payment.
            tokio::select! {
                received = receiver.recv_many(&mut batch, BATCH) => received,
                () = tokio::time::sleep(RESTART_CHECK) => {
                    let asked = Instant::now();
                    if let Ok(server) = server_started(&link).await {
                        recent.seen(&link, server, asked).await;
                    }
                    continue;
                }
            }
        };
        if received == 0 {
            return;
        }
        if batch.len() < BATCH && !batch.iter().any(|(_, write)| write.shapes_decisions()) {
            let _ = tokio::time::timeout(GATHER, hurry.notified()).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
        }
        let last = batch.last().map_or(0, |(number, _)| *number);
        let writes: Vec<&Write> = batch.iter().map(|(_, write)| write).collect();
        let json = serde_json::to_string(&writes).unwrap_or_else(|_| "[]".into());
        let asked = Instant::now();
        if let Some(server) = apply_until_done(&link, &json, &writes).await {
            recent.seen(&link, server, asked).await;
        }
        recent.batches.push_back((Instant::now(), json));
        let _ = applied.send(last);
        batch.clear();
    }
}

/// The batches the store may not have on disk yet, each with when it was applied, and
/// the start time of the server that took them.
#[derive(Default)]
struct Recent {
    batches: VecDeque<(Instant, String)>,
    started: Option<String>,
}

impl Recent {
    /// The store answered a question asked at `asked`, and it started at `server`. A new
    /// start: the kept batches are applied again (to it, now). The same start: the
    /// server ran on past `asked`, so what it took [`REDO_WINDOW`] before that is on its
    /// disk, and is let go. Time alone lets nothing go: a store that is down, or a
    /// replica that stood still, proves nothing was flushed.
    async fn seen(&mut self, link: &Link, server: String, asked: Instant) {
        if self
            .started
            .as_ref()
            .is_some_and(|before| *before != server)
        {
            redo(link, &self.batches).await;
            let now = Instant::now();
            for (at, _) in &mut self.batches {
                *at = now;
            }
        } else {
            while self
                .batches
                .front()
                .is_some_and(|(at, _)| asked.saturating_duration_since(*at) > REDO_WINDOW)
            {
                self.batches.pop_front();
            }
        }
        self.started = Some(server);
    }
}

/// Applies a batch, retrying while the store is unreachable. A batch the database refuses
/// is applied one write at a time, so one bad write cannot hold the others back. Returns
/// the server's start time.
async fn apply_until_done(link: &Link, json: &str, writes: &[&Write]) -> Option<String> {
    let mut pause = Duration::from_millis(20);
    loop {
        match apply(link, json).await {
            Ok(started) => return Some(started),
            Err(StoreError::Refused(reason)) if writes.len() > 1 => {
                tracing::warn!(%reason, "a batch of store writes was refused; applying them one by one");
                let mut started = None;
                for write in writes {
                    let one = serde_json::to_string(&[write]).unwrap_or_else(|_| "[]".into());
                    started = Box::pin(apply_until_done(link, &one, &[write]))
                        .await
                        .or(started);
                }
                return started;
            }
            Err(StoreError::Refused(reason)) => {
                tracing::error!(%reason, write = %json, "the fleet store refused a write; it is dropped");
                return None;
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn apply(link: &Link, json: &str) -> Result<String, StoreError> {
    let rows = link
        .rows(
            "SELECT purser_apply($1::TEXT::JSONB, $2)::TEXT",
            &[&json, &link.instance],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
        .unwrap_or_default())
}

/// When the store's server started, as `purser_apply` says it (no lock taken).
async fn server_started(link: &Link) -> Result<String, StoreError> {
    let rows = link
        .rows("SELECT pg_postmaster_start_time()::TEXT", &[])
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
        .unwrap_or_default())
}

/// The store restarted: batches applied just before may have been lost with it.
async fn redo(link: &Link, recent: &VecDeque<(Instant, String)>) {
    tracing::warn!(
        batches = recent.len(),
        "the fleet store restarted; applying this replica's latest writes again"
    );
    for (_, json) in recent {
        let mut pause = Duration::from_millis(20);
        while let Err(error) = apply(link, json).await {
            if !error.maybe_done() {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
