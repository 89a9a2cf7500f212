//! MPP challenges in the challenge store: each under `<resource> mpp:<id>`, keeping only
//! its binding digest ([`crate::mpp::Challenge::binding`]), 32 bytes however large its
//! request. A credential is looked up by the id it echoes, on the resource it is sent
//! to, in the session that saw the challenge; the engine compares the digests.

use super::{charge, resource_key, ChallengeStore, Entry};
use crate::policy::X402Settings;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Charged per MPP challenge beyond its key: the binding.
pub(super) const BINDING_BYTES: usize = 32;

/// The store key of challenge `id` on `resource` (hashed when long, as resources are).
pub(super) fn key(resource: &str, id: &str) -> String {
    resource_key(&format!("{resource} mpp:{id}")).into_owned()
}

impl ChallengeStore {
    /// Remembers the MPP challenges `session` got for `resource` in one answer, at most
    /// `max_offers_per_challenge` of them. Returns how many were kept.
    pub fn remember_mpp(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
        challenges: &[crate::mpp::Challenge],
        settings: &X402Settings,
    ) -> usize {
        let kept = challenges.len().min(settings.max_offers_per_challenge);
        let dropped = challenges.len() - kept;
        if dropped > 0 {
            self.offers_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        challenges[..kept]
            .iter()
            .filter(|challenge| {
                let key = key(resource, &challenge.id);
                let bytes = charge(session, &key, &[]) + BINDING_BYTES;
                let entry = Entry {
                    version: 0,
                    offers: Box::new([]),
                    binding: Some(challenge.binding()),
                    seen_at: Instant::now(),
                };
                self.keep(agent, session, &key, entry, bytes, settings)
            })
            .count()
    }

    /// The binding of MPP challenge `id` that `session` got for `resource`, if it is
    /// remembered and still fresh.
    pub fn lookup_mpp(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
        id: &str,
        settings: &X402Settings,
    ) -> Option<[u8; 32]> {
        let key = key(resource, id);
        let shelves = self.shelves();
        let seen = shelves
            .agents
            .get(agent)?
            .sessions
            .get(session)?
            .by_resource
            .get(&key)?;
        if Instant::now().saturating_duration_since(seen.seen_at) > settings.challenge_ttl {
            return None;
        }
        seen.binding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> X402Settings {
        X402Settings {
            challenge_ttl: Duration::from_secs(3600),
            max_challenges_per_session: 8,
            require_challenge: false,
            max_offers_per_challenge: 3,
            challenge_memory: 1 << 20,
            challenge_memory_per_agent: 1 << 20,
        }
    }

    fn challenge(id: &str) -> crate::mpp::Challenge {
        crate::mpp::Challenge {
            id: id.into(),
            realm: "r".into(),
            method: "evm".into(),
            intent: "charge".into(),
            request: serde_json::json!({"amount": "1"}),
            expires: None,
            digest: None,
            description: None,
            opaque: None,
            header: None,
        }
    }

    #[test]
    fn every_challenge_of_an_answer_stays_payable_in_its_session_and_resource() {
        let store = ChallengeStore::default();
        let settings = settings();
        let first = [challenge("a"), challenge("b")];
        assert_eq!(
            store.remember_mpp("ag", "ag.s", "h:443/p", &first, &settings),
            2
        );
        // A second answer for the same resource (a concurrent probe) adds its own.
        let second = [
            challenge("c"),
            challenge("d"),
            challenge("e"),
            challenge("f"),
        ];
        assert_eq!(
            store.remember_mpp("ag", "ag.s", "h:443/p", &second, &settings),
            3
        );
        for id in ["a", "b", "c", "d", "e"] {
            let binding = store.lookup_mpp("ag", "ag.s", "h:443/p", id, &settings);
            assert_eq!(binding, Some(challenge(id).binding()), "{id}");
        }
        assert_eq!(
            store.lookup_mpp("ag", "ag.s", "h:443/p", "f", &settings),
            None
        );
        assert_eq!(
            store.lookup_mpp("ag", "ag.s", "h:443/q", "a", &settings),
            None
        );
        assert_eq!(
            store.lookup_mpp("ag", "ag.t", "h:443/p", "a", &settings),
            None
        );
        assert_eq!(
            store.lookup_mpp("zz", "ag.s", "h:443/p", "a", &settings),
            None
        );
        // x402 lookups of the resource do not see them.
        assert!(store.lookup("ag", "ag.s", "h:443/p", &settings).is_none());
        assert_eq!(store.figures().offers_dropped, 1);
    }

    #[test]
    fn mpp_challenges_count_against_the_session_bound() {
        let store = ChallengeStore::default();
        let settings = settings();
        for n in 0..20 {
            let id = format!("id{n}");
            store.remember_mpp("ag", "ag.s", "h:443/p", &[challenge(&id)], &settings);
        }
        assert_eq!(store.count_for("ag", "ag.s"), 8);
        assert!(store
            .lookup_mpp("ag", "ag.s", "h:443/p", "id19", &settings)
            .is_some());
        assert!(store
            .lookup_mpp("ag", "ag.s", "h:443/p", "id0", &settings)
            .is_none());
    }
}
