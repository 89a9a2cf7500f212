//! Connection workers: one single-threaded runtime per core, each serving the agent
//! connections handed to it and owning its own upstream connection pools.
//!
//! On a work-stealing runtime an agent's connection and the pooled upstream connection
//! serving its request often sit on different threads, so every request pays for
//! cross-thread wake-ups. With two cores shared by the agents, the upstreams and Purser
//! that cost about a quarter of the plain path's throughput and most of its tail
//! latency. Here a connection lives and dies on the worker that accepted it, and that
//! worker's requests leave through its own pools ([`current`] picks them), the way
//! Envoy's workers do. Everything shared (policy, engine, ledger, metrics) is already
//! thread-safe; holds and the admin API cross threads only through channels.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the caller, 0 off the workers (admin, start-up).
pub fn current() -> usize {
    WORKER_INDEX.with(Cell::get)
}

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start connection worker {index}: {source}")]
    Start {
        index: usize,
        source: std::io::Error,
    },
}

/// The running workers. Dropping this stops them (their connections are closed).
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Held only to be dropped: closing these ends each worker's runtime.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` workers (at least one), each on its own OS thread.
    pub fn start(count: usize) -> Result<Workers, WorkerError> {
        let count = count.max(1);
        let mut handles = Vec::with_capacity(count);
        let mut stop = Vec::with_capacity(count);
        for index in 0..count {
            let (handle, stop_sender) = start_one(index)?;
            handles.push(handle);
            stop.push(stop_sender);
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// Runs `task` on the next worker, round robin: keep-alive connections are few and
    /// long, so an even spread beats whichever thread happens to wake first.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[index].spawn(task);
    }

    /// Moves an accepted connection onto the next worker and `serve`s it there: the
    /// socket is re-registered with that worker's reactor, so its wake-ups happen on that
    /// worker's thread. Both listeners (proxy and transparent) hand connections over here.
    pub fn hand_over<F, Fut>(&self, stream: TcpStream, peer: SocketAddr, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%peer, %error, "could not detach an accepted connection");
                return;
            }
        };
        self.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(error) => {
                    tracing::warn!(%peer, %error, "worker could not register a connection")
                }
            }
        });
    }
}

/// The default worker count: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn start_one(index: usize) -> Result<(Handle, oneshot::Sender<()>), WorkerError> {
    let start_error = |source| WorkerError::Start { index, source };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(start_error)?;
    let handle = runtime.handle().clone();
    let (stop_sender, stop_receiver) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("purser-worker-{index}"))
        .spawn(move || {
            WORKER_INDEX.with(|cell| cell.set(index));
            // Either a send or the sender's drop ends the worker.
            let _ = runtime.block_on(stop_receiver);
        })
        .map_err(start_error)?;
    Ok((handle, stop_sender))
}
