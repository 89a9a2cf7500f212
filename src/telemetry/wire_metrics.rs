//! Counters of what the wire guards turned away: connections over the connection caps,
//! connections silent past the first-byte timeout, and protocol switches other than
//! WebSocket. Bumped by [`crate::proxy::admission`] and [`crate::proxy::forward`].

use super::prometheus::{family, single};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why a connection was closed before it authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Its peer address held more unauthenticated connections than allowed.
    PeerCap,
    /// Purser held as many connections as it may.
    ConnectionCap,
}

/// The wire guards' counters.
#[derive(Default)]
pub struct WireMetrics {
    connection_limit: AtomicU64,
    unauthenticated: AtomicI64,
    refused_at_cap: AtomicU64,
    evicted_peer_cap: AtomicU64,
    evicted_connection_cap: AtomicU64,
    first_byte_timeouts: AtomicU64,
    upgrades_refused: AtomicU64,
}

impl WireMetrics {
    /// Records the connection cap in force.
    pub fn set_connection_limit(&self, limit: usize) {
        self.connection_limit.store(limit as u64, Ordering::Relaxed);
    }

    /// Sets how many connections are open and not yet authenticated.
    pub fn set_unauthenticated(&self, count: usize) {
        self.unauthenticated.store(count as i64, Ordering::Relaxed);
    }

    /// A new connection closed at once: the cap was reached and nothing could give way.
    pub fn refused_at_cap(&self) {
        self.refused_at_cap.fetch_add(1, Ordering::Relaxed);
    }

    /// An unauthenticated connection closed to make room.
    pub fn evicted(&self, why: Eviction) {
        let counter = match why {
            Eviction::PeerCap => &self.evicted_peer_cap,
            Eviction::ConnectionCap => &self.evicted_connection_cap,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed because it sent nothing within the first-byte timeout.
    pub fn first_byte_timeout(&self) {
        self.first_byte_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A protocol switch (or nested `CONNECT`) refused.
    pub fn upgrade_refused(&self) {
        self.upgrades_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus lines.
    pub fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        single(
            out,
            "purser_connection_limit",
            "gauge",
            "Agent connections Purser accepts at once (--max-connections, below the open-files limit).",
            load(&self.connection_limit),
        );
        single(
            out,
            "purser_connections_unauthenticated",
            "gauge",
            "Agent connections open that have not authenticated yet.",
            self.unauthenticated.load(Ordering::Relaxed),
        );
        family(
            out,
            "purser_connections_rejected_total",
            "counter",
            "Connections closed before they authenticated, by reason.",
        );
        for (reason, counter) in [
            ("connection_cap_full", &self.refused_at_cap),
            ("evicted_peer_cap", &self.evicted_peer_cap),
            ("evicted_connection_cap", &self.evicted_connection_cap),
            ("first_byte_timeout", &self.first_byte_timeouts),
        ] {
            let _ = writeln!(
                out,
                "purser_connections_rejected_total{{reason=\"{reason}\"}} {}",
                load(counter)
            );
        }
        single(
            out,
            "purser_upgrades_refused_total",
            "counter",
            "Protocol switches other than WebSocket (and CONNECTs inside tunnels) refused.",
            load(&self.upgrades_refused),
        );
    }
}
