//! Webhook notifications: a JSON POST per new hold, budget gate crossed and prohibited
//! attempt. Events go into a bounded queue drained by one task, so the decision path
//! never waits on a webhook; when the queue is full, events are dropped and counted.

use crate::outbound::{JsonPost, SharedOutbound};
use crate::policy::PolicyStore;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const QUEUE: usize = 1024;

/// The sending side, held by the engine.
pub struct Notifier {
    queue: mpsc::Sender<Value>,
    pub dropped: AtomicU64,
    pub delivered: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl Notifier {
    /// Starts the delivery task. The webhook URL is read from the policy per event, so a
    /// reload takes effect at once.
    pub fn start(policy: Arc<PolicyStore>, client: SharedOutbound) -> Notifier {
        let (queue, mut events) = mpsc::channel::<Value>(QUEUE);
        let delivered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (ok, bad) = (delivered.clone(), failed.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let settings = policy.current().notifications.clone();
                let Some(url) = settings.webhook else {
                    continue;
                };
                if deliver(
                    client.as_ref(),
                    &url,
                    &event,
                    settings.timeout,
                    settings.retries,
                )
                .await
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Notifier {
            queue,
            dropped: AtomicU64::new(0),
            delivered,
            failed,
        }
    }

    /// Queues an event (`{"event": ..., ...}`); never waits.
    pub fn send(&self, event: Value) {
        if self.queue.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("notification queue full; an event was dropped");
        }
    }
}

async fn deliver(
    client: &dyn crate::outbound::Outbound,
    url: &http::Uri,
    event: &Value,
    timeout: Duration,
    retries: u32,
) -> bool {
    let body = event.to_string();
    let mut backoff = Duration::from_millis(250);
    for attempt in 0..=retries {
        let post = JsonPost {
            url,
            body: &body,
            idempotency_key: None,
        };
        match tokio::time::timeout(timeout, client.post_json(post)).await {
            Ok(Ok(status)) if status.is_success() => return true,
            Ok(Ok(status)) => tracing::warn!(
                status = status.as_u16(),
                attempt,
                "webhook refused a notification"
            ),
            Ok(Err(error)) => tracing::warn!(%error, attempt, "webhook unreachable"),
            Err(_) => tracing::warn!(attempt, "webhook timed out"),
        }
        if attempt < retries {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    false
}
