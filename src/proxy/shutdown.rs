//! Draining on `SIGTERM`: stop accepting, let each connection finish what it is doing,
//! and know when all of them are gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Tells connections to drain. Cloned into every connection task.
#[derive(Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    open: Arc<OpenConnections>,
}

/// The other end: starts the drain and waits for it.
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
    open: Arc<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    count: AtomicUsize,
    all_closed: Notify,
}

/// Held by a connection while it is open.
pub struct ConnectionGuard {
    open: Arc<OpenConnections>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.open.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open.all_closed.notify_waiters();
        }
    }
}

/// A fresh pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, signal) = watch::channel(false);
    let open = Arc::new(OpenConnections::default());
    (
        ShutdownTrigger {
            sender,
            open: open.clone(),
        },
        Shutdown { signal, open },
    )
}

impl Shutdown {
    /// Resolves once a drain has begun.
    pub async fn requested(&mut self) {
        // An error means the trigger is gone, which also means: stop.
        let _ = self.signal.wait_for(|draining| *draining).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.signal.borrow()
    }

    /// Counts a connection as open until the guard drops.
    pub fn track(&self) -> ConnectionGuard {
        self.open.count.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard {
            open: self.open.clone(),
        }
    }

    /// Open connections right now.
    pub fn open_connections(&self) -> usize {
        self.open.count.load(Ordering::Acquire)
    }
}

impl ShutdownTrigger {
    /// Begins the drain and waits until every tracked connection has closed.
    pub async fn drain(&self) {
        let _ = self.sender.send(true);
        loop {
            let notified = self.open.all_closed.notified();
            if self.open.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A receiver for components started after the trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            signal: self.sender.subscribe(),
            open: self.open.clone(),
        }
    }
}

/// Drives a hyper connection to completion, asking it to finish gracefully (answer what
/// is in flight, take nothing new) once a drain begins.
///
/// The caller pins the connection (boxed, for agent connections): a connection taken by
/// value would be stored twice in this future, once as the argument and once pinned, and
/// an idle or held connection keeps this future for its whole life.
pub async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    mut shutdown: Shutdown,
    begin_drain: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::select! {
        result = conn.as_mut() => return result,
        _ = shutdown.requested() => {}
    }
    begin_drain(conn.as_mut());
    conn.await
}
