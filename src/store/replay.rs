//! The replay set: keys (payer + nonce, signature digest) of payments Purser forwarded,
//! kept only while such a payment could still settle.
//!
//! An EIP-3009 or Permit2 authorization is void after its `validBefore` / `deadline`, and
//! Purser refuses expired payments outright, so a key is forgotten then, and in any case
//! after [`RETENTION`]. A key forgotten early costs nothing in accounting: the chain
//! rejects a reused nonce, so the copy cannot settle, and its reservation is released on
//! a failed receipt or stays counted (`unknown`) without one. Without expiry the set grew
//! by every payment ever forwarded.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

/// The longest a key is kept, whatever the payment says about its validity.
pub const RETENTION_SECS: u64 = 24 * 3600;

/// Keys of forwarded payments, each with the Unix second after which it is forgotten.
/// A key is held as the first 16 bytes of its SHA-256 (a collision needs ~2^64 keys):
/// a few dozen bytes an entry instead of the 80–150-character key.
#[derive(Default)]
pub struct ReplaySet {
    keys: DashMap<u128, u64>,
}

fn digest(key: &str) -> u128 {
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(first)
}

/// When a key of a payment seen at `now`, valid until `valid_before`, may be forgotten.
pub fn forget_after(valid_before: Option<u64>, now: u64) -> u64 {
    let cap = now.saturating_add(RETENTION_SECS);
    valid_before.map_or(cap, |until| until.min(cap))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    jiff::Timestamp::now().as_second().max(0) as u64
}

impl ReplaySet {
    /// Whether `key` was forwarded and is still remembered.
    pub fn contains(&self, key: &str, now: u64) -> bool {
        self.keys
            .get(&digest(key))
            .is_some_and(|until| *until >= now)
    }

    /// Records `key`; `false` when it is already remembered (a replay, or a racing copy).
    pub fn insert_fresh(&self, key: String, until: u64, now: u64) -> bool {
        match self.keys.entry(digest(&key)) {
            Entry::Occupied(existing) if *existing.get() >= now => false,
            Entry::Occupied(mut expired) => {
                expired.insert(until);
                true
            }
            Entry::Vacant(slot) => {
                slot.insert(until);
                true
            }
        }
    }

    pub fn remove(&self, key: &str) {
        self.keys.remove(&digest(key));
    }

    /// Drops the keys whose payments can no longer settle. Returns how many went.
    pub fn forget_expired(&self, now: u64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|_, until| *until >= now);
        before.saturating_sub(self.keys.len())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_refused_until_they_expire_then_forgotten() {
        let set = ReplaySet::default();
        assert!(set.insert_fresh("a".into(), 100, 10));
        assert!(!set.insert_fresh("a".into(), 100, 50), "a replay");
        assert!(set.contains("a", 100));
        assert!(!set.contains("a", 101));
        assert!(
            set.insert_fresh("a".into(), 300, 200),
            "expired: fresh again"
        );
        assert!(set.insert_fresh("b".into(), 150, 10));
        assert_eq!(set.forget_expired(160), 1);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn retention_is_capped() {
        assert_eq!(forget_after(Some(50), 10), 50);
        assert_eq!(forget_after(None, 10), 10 + RETENTION_SECS);
        assert_eq!(forget_after(Some(u64::MAX), 10), 10 + RETENTION_SECS);
    }
}
