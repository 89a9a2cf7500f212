//! Connections before they authenticate: a cap on all agent connections below the
//! open-files limit, a cap per peer address on connections that have not authenticated
//! yet, and a first-byte timeout.
//!
//! File descriptors are shared by every agent. Connections that never authenticate would
//! use them up, and then every agent is locked out: `accept` fails, upstream connections
//! fail, the proof log cannot rotate. So:
//!
//! * at most [`ConnectionLimits::max_connections`] agent connections are open at once
//!   (by default half of what the open-files limit leaves after some headroom: each
//!   connection may need an upstream connection too), counted until the socket closes,
//!   tunnels included;
//! * one peer address holds at most [`ConnectionLimits::max_unauthenticated_per_peer`]
//!   connections that have not yet sent a request with valid credentials;
//! * when either cap is reached, the *oldest* unauthenticated connection (of that peer,
//!   or of all) is closed to make room. The newest wins: an agent that connects and
//!   speaks at once is served even while another floods the same address (in a sidecar
//!   every agent comes from loopback). Only when every open connection has authenticated
//!   is a new one turned away (`503`, then closed). Authenticated connections are never
//!   closed here; `limits.connections_per_agent` bounds those per agent;
//! * a connection that sends nothing within [`ConnectionLimits::first_byte_timeout`] is
//!   closed (the header timeout, which is longer, still bounds a slow request head).

use crate::telemetry::metrics::Metrics;
use crate::telemetry::wire_metrics::Eviction;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Descriptors kept back from the agents: listeners, the proof log, pooled upstream
/// connections, the admin API, DNS.
const HEADROOM: u64 = 256;
/// The least connection cap, however low the open-files limit.
const MIN_CONNECTIONS: usize = 32;

/// The caps in force.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_unauthenticated_per_peer: usize,
    pub first_byte_timeout: Duration,
}

/// The connection cap for an open-files limit: half of what the headroom leaves, since a
/// connection may need an upstream connection too.
pub fn default_max_connections(open_files: u64) -> usize {
    let usable = open_files.saturating_sub(HEADROOM) / 2;
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .max(MIN_CONNECTIONS)
}

/// The soft open-files limit (`RLIMIT_NOFILE`) of this process, from `/proc/self/limits`;
/// `None` where that cannot be read (not Linux).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Admission of agent connections, shared by the accept loop and every connection.
pub struct Admission {
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    open: AtomicUsize,
    waiting: Mutex<Waiting>,
}

/// Connections not yet authenticated, oldest first.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    by_age: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    by_peer: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Waiting {
    fn insert(&mut self, id: u64, peer: IpAddr, evict: Arc<Notify>) {
        self.by_age.insert(id, (peer, evict));
        self.by_peer.entry(peer).or_default().insert(id);
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Notify>> {
        let (peer, evict) = self.by_age.remove(&id)?;
        if let Some(ids) = self.by_peer.get_mut(&peer) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
        Some(evict)
    }

    fn waiting_from(&self, peer: IpAddr) -> usize {
        self.by_peer.get(&peer).map_or(0, BTreeSet::len)
    }

    /// Closes the oldest waiting connection, of `peer` or of anyone.
    fn evict_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let oldest = match peer {
            Some(peer) => self.by_peer.get(&peer).and_then(|ids| ids.first().copied()),
            None => self.by_age.keys().next().copied(),
        };
        match oldest.and_then(|id| self.remove(id)) {
            Some(evict) => {
                evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// One admitted connection. It counts against the cap until the last handle drops,
/// which is when its socket closes (a tunnel keeps it in its upgraded stream).
pub struct Pass {
    admission: Arc<Admission>,
    id: u64,
    evict: Arc<Notify>,
    authenticated: AtomicBool,
}

impl Admission {
    pub fn new(limits: ConnectionLimits, metrics: Arc<Metrics>) -> Arc<Admission> {
        metrics.wire.set_connection_limit(limits.max_connections);
        Arc::new(Admission {
            limits,
            metrics,
            open: AtomicUsize::new(0),
            waiting: Mutex::new(Waiting::default()),
        })
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Admits a connection from `peer`, making room by closing older unauthenticated
    /// connections; `None` when it must be turned away (every open connection has
    /// authenticated and the cap is reached).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<Pass>> {
        let mut waiting = self.lock();
        if self.open.load(Ordering::Acquire) >= self.limits.max_connections {
            if !waiting.evict_oldest(None) {
                self.metrics.wire.refused_at_cap();
                return None;
            }
            self.metrics.wire.evicted(Eviction::ConnectionCap);
        }
        if waiting.waiting_from(peer) >= self.limits.max_unauthenticated_per_peer
            && waiting.evict_oldest(Some(peer))
        {
            self.metrics.wire.evicted(Eviction::PeerCap);
        }
        let id = waiting.next_id;
        waiting.next_id += 1;
        let evict = Arc::new(Notify::new());
        waiting.insert(id, peer, evict.clone());
        self.open.fetch_add(1, Ordering::AcqRel);
        self.metrics.wire.set_unauthenticated(waiting.by_age.len());
        Some(Arc::new(Pass {
            admission: self.clone(),
            id,
            evict,
            authenticated: AtomicBool::new(false),
        }))
    }

    /// Agent connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn forget(&self, id: u64) {
        let mut waiting = self.lock();
        if waiting.remove(id).is_some() {
            self.metrics.wire.set_unauthenticated(waiting.by_age.len());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Pass {
    /// The connection's first request passed authentication: it is no longer a
    /// candidate for eviction. Cheap after the first call.
    pub fn authenticated(&self) {
        // A load first: every request calls this, and only the first one writes.
        if !self.authenticated.load(Ordering::Acquire)
            && !self.authenticated.swap(true, Ordering::AcqRel)
        {
            self.admission.forget(self.id);
        }
    }

    /// Resolves when the connection must close to make room for a newer one.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.admission.limits.first_byte_timeout
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.authenticated.load(Ordering::Acquire) {
            self.admission.forget(self.id);
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The caps for `settings` under an open-files limit (`None`: unknown, taken as 1024).
pub fn limits_for(
    settings: &super::settings::ProxySettings,
    open_files: Option<u64>,
) -> ConnectionLimits {
    let max_connections = match settings.max_connections {
        0 => default_max_connections(open_files.unwrap_or(1024)),
        configured => configured,
    };
    ConnectionLimits {
        max_connections,
        max_unauthenticated_per_peer: settings.max_unauthenticated_per_peer.max(1),
        first_byte_timeout: settings.first_byte_timeout,
    }
}

/// Waits for the connection's first byte without reading it. `false` when the connection
/// is to be closed instead: silent past the first-byte timeout, gone, pushed out to make
/// room, or Purser is draining.
pub async fn first_byte(
    stream: &tokio::net::TcpStream,
    pass: &Pass,
    metrics: &Metrics,
    mut shutdown: super::shutdown::Shutdown,
) -> bool {
    let mut probe = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(pass.first_byte_timeout(), stream.peek(&mut probe)) => {
            match peeked {
                Ok(Ok(read)) => read > 0,
                Ok(Err(_)) => false,
                Err(_) => {
                    metrics.wire.first_byte_timeout();
                    false
                }
            }
        }
        () = pass.evicted() => false,
        () = shutdown.requested() => false,
    }
}

/// What a connection turned away at the cap is told before it is closed.
pub const TURNED_AWAY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
x-purser-error: too_many_connections\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 67\r\n\r\n\
purser: at its connection limit (--max-connections); retry shortly\n";

/// A connection's socket with its [`Pass`]: the pass lives exactly as long as the
/// socket, in hyper's connection or in the tunnel the connection became.
pub struct Admitted<S> {
    inner: S,
    _pass: Arc<Pass>,
}

impl<S> Admitted<S> {
    pub fn new(inner: S, pass: Arc<Pass>) -> Self {
        Admitted { inner, _pass: pass }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn admission(max: usize, per_peer: usize) -> Arc<Admission> {
        Admission::new(
            ConnectionLimits {
                max_connections: max,
                max_unauthenticated_per_peer: per_peer,
                first_byte_timeout: Duration::from_secs(10),
            },
            Arc::new(Metrics::default()),
        )
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    async fn is_evicted(pass: &Pass) -> bool {
        tokio::time::timeout(Duration::from_millis(1), pass.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_newest_connection_of_a_peer_pushes_out_its_oldest_unauthenticated_one() {
        let admission = admission(100, 2);
        let first = admission.admit(ip(1)).unwrap();
        let second = admission.admit(ip(1)).unwrap();
        let other = admission.admit(ip(2)).unwrap();
        let third = admission.admit(ip(1)).unwrap();
        assert!(is_evicted(&first).await);
        assert!(!is_evicted(&second).await);
        assert!(!is_evicted(&other).await);
        assert!(!is_evicted(&third).await);
        // Authenticated connections are never pushed out.
        second.authenticated();
        third.authenticated();
        let fourth = admission.admit(ip(1)).unwrap();
        let _fifth = admission.admit(ip(1)).unwrap();
        assert!(!is_evicted(&second).await && !is_evicted(&fourth).await);
        drop(first);
        assert_eq!(admission.open_connections(), 5);
    }

    #[tokio::test]
    async fn at_the_cap_unauthenticated_connections_give_way_and_then_new_ones_are_refused() {
        let admission = admission(2, 10);
        let first = admission.admit(ip(1)).unwrap();
        let second = admission.admit(ip(2)).unwrap();
        second.authenticated();
        let third = admission.admit(ip(3)).unwrap();
        assert!(
            is_evicted(&first).await,
            "the oldest unauthenticated gives way"
        );
        third.authenticated();
        drop(first);
        assert!(
            admission.admit(ip(4)).is_none(),
            "all authenticated: refused"
        );
        drop(second);
        assert!(
            admission.admit(ip(4)).is_some(),
            "room again once one closes"
        );
    }

    #[test]
    fn the_turned_away_answer_is_complete() {
        let text = std::str::from_utf8(TURNED_AWAY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn the_default_cap_leaves_room_below_the_open_files_limit() {
        assert_eq!(default_max_connections(20_000), 9_872);
        assert_eq!(default_max_connections(1_024), 384);
        assert_eq!(default_max_connections(100), MIN_CONNECTIONS);
    }
}
