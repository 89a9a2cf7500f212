//! Interception certificates per host: minted once, even when many connections to a new
//! host arrive together, then served from memory.
//!
//! Each host gets its own TLS server configuration (its leaf, its key, ALPN `h2` and
//! `http/1.1`). The cache is bounded; past the bound an arbitrary entry is dropped and
//! re-minted if that host comes back.

use super::ca::{CaError, CertificateAuthority, LEAF_VALIDITY};
use dashmap::DashMap;
use rustls::ServerConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A leaf is replaced once it is this old, long before it expires.
const LEAF_REFRESH_AFTER: Duration = Duration::from_secs(LEAF_VALIDITY.as_secs() / 3);

struct CachedLeaf {
    config: Arc<ServerConfig>,
    minted_at: Instant,
}

/// One cache slot. The mutex is what makes concurrent first requests mint only once: the
/// first caller mints while holding it, the others wait and then find the result.
type Slot = Arc<Mutex<Option<CachedLeaf>>>;

/// The per-host cache of interception TLS configurations.
/// Resumable agent sessions remembered, across all intercepted hosts.
const SHARED_SESSION_CACHE: usize = 4096;

pub struct LeafCache {
    ca: CertificateAuthority,
    /// Shared by every leaf: rustls's per-config defaults (a crypto provider and a
    /// 256-entry session cache each) made a cached leaf cost ~21 KB; shared, ~1.5 KB.
    provider: Arc<rustls::crypto::CryptoProvider>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
    slots: DashMap<String, Slot>,
    max_entries: usize,
    minted: AtomicU64,
    hits: AtomicU64,
}

impl LeafCache {
    pub fn new(ca: CertificateAuthority, max_entries: usize) -> Self {
        LeafCache {
            ca,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            sessions: rustls::server::ServerSessionMemoryCache::new(SHARED_SESSION_CACHE),
            slots: DashMap::new(),
            max_entries: max_entries.max(1),
            minted: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The CA signing the leaves.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The TLS configuration to present to an agent that asked for `host`.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let key = host.to_ascii_lowercase();
        let slot = self.slot(&key);
        // A poisoned slot only means a minting thread panicked; the slot's content is
        // either a finished leaf or nothing, both safe to use.
        let mut guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = guard.as_ref() {
            if cached.minted_at.elapsed() < LEAF_REFRESH_AFTER {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(cached.config.clone());
            }
        }
        let config = Arc::new(self.build_config(&key)?);
        self.minted.fetch_add(1, Ordering::Relaxed);
        *guard = Some(CachedLeaf {
            config: config.clone(),
            minted_at: Instant::now(),
        });
        Ok(config)
    }

    fn slot(&self, key: &str) -> Slot {
        if let Some(slot) = self.slots.get(key) {
            return slot.clone();
        }
        if self.slots.len() >= self.max_entries {
            self.evict_one();
        }
        self.slots.entry(key.to_string()).or_default().clone()
    }

    fn evict_one(&self) {
        let victim = self.slots.iter().next().map(|entry| entry.key().clone());
        if let Some(victim) = victim {
            self.slots.remove(&victim);
        }
    }

    fn build_config(&self, host: &str) -> Result<ServerConfig, CaError> {
        let leaf = self.ca.mint_leaf(host)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(leaf.chain, leaf.key)
            })
            .map_err(|e| CaError::Mint {
                host: host.to_string(),
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = self.sessions.clone();
        Ok(config)
    }

    /// How many leaves were minted since start.
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// How many lookups were served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Hosts currently cached.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: usize) -> LeafCache {
        let dir = std::env::temp_dir().join(format!("purser-leaf-{}-{}", max, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (ca, _) = CertificateAuthority::load_or_create(&dir).unwrap();
        LeafCache::new(ca, max)
    }

    #[test]
    fn concurrent_first_lookups_mint_once() {
        let cache = Arc::new(cache(16));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.server_config("New.Example").unwrap())
            })
            .collect();
        let configs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(cache.minted(), 1);
        assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let cache = cache(3);
        for index in 0..10 {
            cache.server_config(&format!("h{index}.example")).unwrap();
        }
        assert!(cache.len() <= 3);
        assert_eq!(cache.minted(), 10);
    }
}
