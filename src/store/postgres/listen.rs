//! The hold listener: one connection of its own that `LISTEN`s on `purser_holds`. When a
//! hold is decided on any replica, the store notifies every listener as the decision
//! commits; the replica holding the request releases it at once, with no polling loop on
//! the way. After any reconnect, decisions it may have missed are read back from the
//! store (and every few seconds while requests are held, in case a connection died
//! without a word).

use super::hold_json::outcome_from;
use super::holds::catch_up;
use super::link::{Link, StoreError};
use crate::holds::Holds;
use serde_json::Value;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

/// The channel decisions are notified on (see `purser_decide_hold`).
const CHANNEL: &str = "purser_holds";
/// How often held requests are checked against the store besides the notifications.
const SAFETY_NET: Duration = Duration::from_secs(5);

/// Starts the listener.
pub(super) fn start(link: Arc<Link>, local: Arc<Holds>) {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(50);
        loop {
            match listen(&link, &local).await {
                Ok(()) => pause = Duration::from_millis(50),
                Err(error) => {
                    tracing::warn!(%error, "hold listener lost its connection to the fleet store; reconnecting");
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
            tokio::time::sleep(pause).await;
        }
    });
}

/// Listens until the connection ends.
async fn listen(link: &Link, local: &Holds) -> Result<(), StoreError> {
    let connect = link.config.connect(link.tls.clone());
    let (client, mut connection) = tokio::time::timeout(link.timeout, connect)
        .await
        .map_err(|_| StoreError::Timeout(link.timeout))??;
    let (notices, mut notified) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    if notices.send(note.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "hold listener connection ended");
                    return;
                }
            }
        }
    });
    let listening = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok::<(), StoreError>(())
    };
    tokio::time::timeout(link.timeout, listening)
        .await
        .map_err(|_| StoreError::Timeout(link.timeout))??;
    catch_up(link, local).await?;
    let mut safety_net = tokio::time::interval(SAFETY_NET);
    safety_net.tick().await;
    loop {
        tokio::select! {
            payload = notified.recv() => match payload {
                Some(payload) => deliver(link, local, &payload),
                None => break,
            },
            _ = safety_net.tick() => {
                if local.len() > 0 {
                    let _ = catch_up(link, local).await;
                }
            }
        }
    }
    driver.abort();
    Err(StoreError::Unreachable(
        "the listening connection closed".into(),
    ))
}

/// Releases the request a decision is for, when it is held here.
fn deliver(link: &Link, local: &Holds, payload: &str) {
    let Ok(note) = serde_json::from_str::<Value>(payload) else {
        return;
    };
    if note.get("instance").and_then(Value::as_i64) != Some(link.instance) {
        return;
    }
    let Some(id) = note.get("id").and_then(Value::as_str) else {
        return;
    };
    let outcome = outcome_from(note.get("outcome").unwrap_or(&Value::Null));
    if local.resolve(id, outcome).is_some() {
        tracing::debug!(hold = %id, "hold decided on another replica; request released");
    }
}
