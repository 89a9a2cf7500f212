//! Upstream clients pinned to the address a redirected connection was going to.
//!
//! A connection the kernel redirected to the transparent listener
//! ([`super::transparent`]) names its destination twice: the address the agent connected
//! to (`SO_ORIGINAL_DST`) and the host it asked for (TLS SNI, or `Host`). Purser connects
//! to the address the agent chose, never to a fresh lookup of the name: the agent, its
//! resolver and Purser's may disagree (hosts files, split DNS), and what the agent meant
//! to reach is that address. The name still has to hold: upstream TLS is verified for the
//! SNI name, so a request cannot claim a host it is not talking to; and the address
//! passes the same egress checks as every other ([`super::egress`]).
//!
//! The name is what the request carries upstream (`Host`, `:authority`, SNI), so the
//! pooled client is keyed by the name; pinning adds the address to the key by keeping
//! one client per original destination and worker. A client is cheap (its pool, and the
//! connector over the shared TLS configuration and session cache); at most
//! [`MAX_DESTINATIONS_PER_WORKER`] are kept, an arbitrary one dropped past that (its idle
//! connections close; requests in flight keep theirs).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Where a request from the transparent listener goes: its connection's original
/// destination. The service puts it in the request's extensions; the upstream leg
/// ([`super::forward`]) sends such a request through a pinned client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginalDestination(pub SocketAddr);

/// Pinned clients kept per worker.
pub const MAX_DESTINATIONS_PER_WORKER: usize = 256;

type Build<C> = Box<dyn Fn(SocketAddr, bool) -> C + Send + Sync>;

/// One map of pinned clients per connection worker, so a request and its pooled
/// upstream connection share a thread (as [`super::upstream`]'s clients do).
pub struct PinnedClients<C> {
    build: Build<C>,
    workers: Vec<Mutex<HashMap<(SocketAddr, bool), C>>>,
}

impl<C: Clone> PinnedClients<C> {
    /// Maps for `pools` workers; `build(address, http1_only)` makes a client whose every
    /// connection goes to `address`.
    pub fn new(
        pools: usize,
        build: impl Fn(SocketAddr, bool) -> C + Send + Sync + 'static,
    ) -> Self {
        PinnedClients {
            build: Box::new(build),
            workers: (0..pools.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// The client pinned to `address` on worker `worker`, made on first use.
    pub fn client(&self, worker: usize, address: SocketAddr, http1_only: bool) -> C {
        let mut clients = self.workers[worker % self.workers.len()].lock();
        let key = (address, http1_only);
        if let Some(client) = clients.get(&key) {
            return client.clone();
        }
        if clients.len() >= MAX_DESTINATIONS_PER_WORKER {
            if let Some(any) = clients.keys().next().copied() {
                clients.remove(&any);
            }
        }
        let client = (self.build)(address, http1_only);
        clients.insert(key, client.clone());
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn one_client_per_destination_and_worker_and_a_bounded_number_of_them() {
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let pinned = PinnedClients::new(2, move |address: SocketAddr, http1| {
            counter.fetch_add(1, Ordering::Relaxed);
            (address, http1)
        });
        let at = |port| SocketAddr::from(([10, 0, 0, 2], port));
        assert_eq!(pinned.client(0, at(443), false), (at(443), false));
        assert_eq!(pinned.client(0, at(443), false), (at(443), false));
        assert_eq!(
            built.load(Ordering::Relaxed),
            1,
            "reused on the same worker"
        );
        pinned.client(1, at(443), false);
        pinned.client(0, at(443), true);
        assert_eq!(built.load(Ordering::Relaxed), 3);
        for port in 1..=(MAX_DESTINATIONS_PER_WORKER as u16 * 2) {
            pinned.client(0, at(port), false);
        }
        assert!(pinned.workers[0].lock().len() <= MAX_DESTINATIONS_PER_WORKER);
    }
}
