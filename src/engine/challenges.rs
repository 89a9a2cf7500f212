//! Remembered 402 challenges: only what pricing reads, bounded in bytes overall and per
//! agent, so one agent's flood of large challenges cannot take the memory, nor push out
//! the challenges other agents' payments are priced by.
//!
//! A challenge as parsed keeps every offer with its `extra` object and descriptions; a
//! 64 KiB `PAYMENT-REQUIRED` header with hundreds of offers took about a megabyte once
//! remembered. What pricing needs of an offer (`engine::pricing::matching_offer` and the
//! `payload_mismatch` check) is its scheme, network, asset, payTo and amount, so that is
//! all that is kept: at most `x402.max_offers_per_challenge` offers (those Purser can
//! price first), each field at most [`MAX_OFFER_FIELD`] bytes (no address or network
//! name is longer; an offer with a longer one could not be priced anyway).
//!
//! Bounds, all in the policy's `x402` section:
//! * `max_challenges_per_session`: a session's least recently seen challenge goes first;
//! * `challenge_memory_per_agent`: past it, the agent's own oldest challenges go;
//! * `challenge_memory`: past it, the oldest challenges of whichever agent holds the most
//!   bytes go, so a light agent loses nothing to a heavy one.
//!
//! MPP challenges (`mpp`) share the shelves and the bounds, each under a key of its
//! own: every MPP challenge of a resource stays payable (each has its own id) until it
//! ages out, while a new x402 challenge replaces the resource's older one.

use crate::policy::X402Settings;
use crate::x402::{hex, AssetTable, Challenge, Requirement};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

mod mpp;
mod shared;

/// Longest scheme, network, asset or payTo kept; an offer with a longer one is dropped.
pub const MAX_OFFER_FIELD: usize = 128;
/// Resource keys longer than this are kept as their SHA-256.
const MAX_RESOURCE_KEY: usize = 256;
/// Bookkeeping per remembered challenge beyond its strings (map slots, order entries).
const ENTRY_OVERHEAD: usize = 160;
/// Per offer beyond its strings: the amount and four string headers.
const OFFER_OVERHEAD: usize = 80;

/// What pricing needs of one offer.
#[derive(Clone, Debug)]
struct Offer {
    scheme: Box<str>,
    network: Box<str>,
    asset: Box<str>,
    pay_to: Box<str>,
    amount_atomic: u128,
}

struct Remembered {
    version: u8,
    offers: Box<[Offer]>,
    /// An MPP challenge's binding digest (`mpp`); `None` for an x402 challenge.
    binding: Option<[u8; 32]>,
    seen_at: Instant,
    seq: u64,
    bytes: usize,
}

/// What a new entry holds: an x402 challenge's offers, or one MPP challenge's binding,
/// and when it was seen (now, or a while ago on another replica of the fleet).
struct Entry {
    version: u8,
    offers: Box<[Offer]>,
    binding: Option<[u8; 32]>,
    seen_at: Instant,
}

/// One session's challenges, by resource, and their order of arrival.
#[derive(Default)]
struct SessionShelf {
    by_resource: HashMap<String, Remembered>,
    order: BTreeMap<u64, String>,
}

/// One agent's challenges: per session, and all of them in order of arrival.
#[derive(Default)]
struct AgentShelf {
    sessions: HashMap<String, SessionShelf>,
    order: BTreeMap<u64, (String, String)>,
    bytes: usize,
}

#[derive(Default)]
struct Shelves {
    agents: HashMap<String, AgentShelf>,
    bytes: usize,
    count: usize,
    next_seq: u64,
}

/// All remembered challenges.
#[derive(Default)]
pub struct ChallengeStore {
    shelves: Mutex<Shelves>,
    bytes: AtomicU64,
    count: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    offers_dropped: AtomicU64,
}

/// The store's figures, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChallengeFigures {
    pub bytes: u64,
    pub count: u64,
    pub evicted: u64,
    pub refused: u64,
    pub offers_dropped: u64,
}

/// The key a resource is remembered under: itself, or its SHA-256 when long (a 30 KB
/// path must not cost 30 KB per challenge).
fn resource_key(resource: &str) -> std::borrow::Cow<'_, str> {
    if resource.len() <= MAX_RESOURCE_KEY {
        std::borrow::Cow::Borrowed(resource)
    } else {
        std::borrow::Cow::Owned(format!(
            "sha256:{}",
            hex(&Sha256::digest(resource.as_bytes()))
        ))
    }
}

/// The offers worth keeping: well-formed (short fields), priceable ones first, no
/// duplicates, at most `max`. Returns them and how many were dropped.
fn keep_offers(challenge: &Challenge, max: usize, assets: &AssetTable) -> (Vec<Offer>, usize) {
    let fits = |offer: &&Requirement| {
        [&offer.scheme, &offer.network, &offer.asset, &offer.pay_to]
            .iter()
            .all(|field| field.len() <= MAX_OFFER_FIELD)
    };
    let priceable = |offer: &&Requirement| assets.lookup(&offer.network, &offer.asset).is_ok();
    let ordered = challenge
        .accepts
        .iter()
        .filter(fits)
        .filter(priceable)
        .chain(
            challenge
                .accepts
                .iter()
                .filter(fits)
                .filter(|offer| !priceable(offer)),
        );
    let mut kept: Vec<Offer> = Vec::new();
    for offer in ordered {
        if kept.len() >= max {
            break;
        }
        let duplicate = kept.iter().any(|k| {
            *k.scheme == *offer.scheme
                && *k.network == *offer.network
                && *k.asset == *offer.asset
                && *k.pay_to == *offer.pay_to
                && k.amount_atomic == offer.amount_atomic
        });
        if !duplicate {
            kept.push(Offer {
                scheme: offer.scheme.as_str().into(),
                network: offer.network.as_str().into(),
                asset: offer.asset.as_str().into(),
                pay_to: offer.pay_to.as_str().into(),
                amount_atomic: offer.amount_atomic,
            });
        }
    }
    let dropped = challenge.accepts.len().saturating_sub(kept.len());
    (kept, dropped)
}

/// What a remembered challenge is charged: its strings, each key twice (the maps and
/// the orders), and the bookkeeping.
fn charge(session: &str, resource: &str, offers: &[Offer]) -> usize {
    let strings: usize = offers
        .iter()
        .map(|o| OFFER_OVERHEAD + o.scheme.len() + o.network.len() + o.asset.len() + o.pay_to.len())
        .sum();
    ENTRY_OVERHEAD + 2 * (session.len() + resource.len()) + strings
}

impl ChallengeStore {
    fn shelves(&self) -> MutexGuard<'_, Shelves> {
        self.shelves.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the challenge `session` (of `agent`) got for `resource`, within the
    /// policy's bounds. False if it could not be kept at all (larger than a budget).
    pub fn remember(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
        challenge: &Challenge,
        settings: &X402Settings,
        assets: &AssetTable,
    ) -> bool {
        let resource = resource_key(resource);
        let (offers, dropped) = keep_offers(challenge, settings.max_offers_per_challenge, assets);
        if dropped > 0 {
            self.offers_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let bytes = charge(session, &resource, &offers);
        let entry = Entry {
            version: challenge.version,
            offers: offers.into_boxed_slice(),
            binding: None,
            seen_at: Instant::now(),
        };
        self.keep(agent, session, &resource, entry, bytes, settings)
    }

    /// Keeps `entry` under `resource` (already a [`resource_key`]), charged `bytes`,
    /// within the bounds: replacing what the key held, evicting what the bounds require.
    /// False if it could not be kept at all (larger than a budget).
    fn keep(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
        entry: Entry,
        bytes: usize,
        settings: &X402Settings,
    ) -> bool {
        if bytes > settings.challenge_memory_per_agent || bytes > settings.challenge_memory {
            // The merchant's terms changed: the older challenge must not price payments.
            let mut shelves = self.shelves();
            shelves.forget(agent, session, resource);
            self.bytes.store(shelves.bytes as u64, Ordering::Relaxed);
            self.count.store(shelves.count as u64, Ordering::Relaxed);
            drop(shelves);
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                agent,
                bytes,
                "a 402 challenge is larger than the challenge memory allows; not remembered"
            );
            return false;
        }
        let mut shelves = self.shelves();
        let mut evicted = 0;
        shelves.forget(agent, session, resource);
        evicted += shelves.expire_oldest(agent, settings);
        evicted += shelves.make_session_room(agent, session, settings.max_challenges_per_session);
        while shelves.agent_bytes(agent) + bytes > settings.challenge_memory_per_agent {
            if !shelves.evict_oldest(agent) {
                break;
            }
            evicted += 1;
        }
        let seq = shelves.next_seq;
        shelves.next_seq += 1;
        shelves.insert(
            agent,
            session,
            resource,
            Remembered {
                version: entry.version,
                offers: entry.offers,
                binding: entry.binding,
                seen_at: entry.seen_at,
                seq,
                bytes,
            },
        );
        while shelves.bytes > settings.challenge_memory {
            let Some(heaviest) = shelves.heaviest_agent() else {
                break;
            };
            if !shelves.evict_oldest(&heaviest) {
                break;
            }
            evicted += 1;
        }
        self.bytes.store(shelves.bytes as u64, Ordering::Relaxed);
        self.count.store(shelves.count as u64, Ordering::Relaxed);
        if evicted > 0 {
            self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        }
        true
    }

    /// The challenge `session` got for `resource`, if still fresh, as pricing reads it.
    pub fn lookup(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
        settings: &X402Settings,
    ) -> Option<Challenge> {
        let resource = resource_key(resource);
        let shelves = self.shelves();
        let seen = shelves
            .agents
            .get(agent)?
            .sessions
            .get(session)?
            .by_resource
            .get(resource.as_ref())?;
        if seen.seen_at.elapsed() > settings.challenge_ttl {
            return None;
        }
        Some(Challenge {
            version: seen.version,
            resource: None,
            accepts: seen
                .offers
                .iter()
                .map(|offer| Requirement {
                    scheme: offer.scheme.to_string(),
                    network: offer.network.to_string(),
                    asset: offer.asset.to_string(),
                    amount_atomic: offer.amount_atomic,
                    pay_to: offer.pay_to.to_string(),
                    resource: None,
                    max_timeout_seconds: None,
                    extra: Default::default(),
                })
                .collect(),
        })
    }

    /// Challenges remembered for a session.
    pub fn count_for(&self, agent: &str, session: &str) -> usize {
        self.shelves()
            .agents
            .get(agent)
            .and_then(|shelf| shelf.sessions.get(session))
            .map_or(0, |shelf| shelf.by_resource.len())
    }

    /// Forgets a session's challenges (the session was reset).
    pub fn forget_session(&self, agent: &str, session: &str) {
        let mut shelves = self.shelves();
        let resources: Vec<String> = shelves
            .agents
            .get(agent)
            .and_then(|shelf| shelf.sessions.get(session))
            .map(|shelf| shelf.by_resource.keys().cloned().collect())
            .unwrap_or_default();
        for resource in resources {
            shelves.forget(agent, session, &resource);
        }
        self.bytes.store(shelves.bytes as u64, Ordering::Relaxed);
        self.count.store(shelves.count as u64, Ordering::Relaxed);
    }

    pub fn figures(&self) -> ChallengeFigures {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ChallengeFigures {
            bytes: load(&self.bytes),
            count: load(&self.count),
            evicted: load(&self.evicted),
            refused: load(&self.refused),
            offers_dropped: load(&self.offers_dropped),
        }
    }

    /// Bytes charged to one agent.
    pub fn agent_bytes(&self, agent: &str) -> usize {
        self.shelves().agent_bytes(agent)
    }
}

impl Shelves {
    fn agent_bytes(&self, agent: &str) -> usize {
        self.agents.get(agent).map_or(0, |shelf| shelf.bytes)
    }

    fn heaviest_agent(&self) -> Option<String> {
        self.agents
            .iter()
            .filter(|(_, shelf)| shelf.bytes > 0)
            .max_by_key(|(_, shelf)| shelf.bytes)
            .map(|(agent, _)| agent.clone())
    }

    fn insert(&mut self, agent: &str, session: &str, resource: &str, seen: Remembered) {
        let shelf = self.agents.entry(agent.to_string()).or_default();
        shelf.bytes += seen.bytes;
        self.bytes += seen.bytes;
        self.count += 1;
        shelf
            .order
            .insert(seen.seq, (session.to_string(), resource.to_string()));
        let session_shelf = shelf.sessions.entry(session.to_string()).or_default();
        session_shelf.order.insert(seen.seq, resource.to_string());
        session_shelf.by_resource.insert(resource.to_string(), seen);
    }

    /// Removes one challenge; true if there was one.
    fn forget(&mut self, agent: &str, session: &str, resource: &str) -> bool {
        let Some(shelf) = self.agents.get_mut(agent) else {
            return false;
        };
        let Some(session_shelf) = shelf.sessions.get_mut(session) else {
            return false;
        };
        let Some(seen) = session_shelf.by_resource.remove(resource) else {
            return false;
        };
        session_shelf.order.remove(&seen.seq);
        if session_shelf.by_resource.is_empty() {
            shelf.sessions.remove(session);
        }
        shelf.order.remove(&seen.seq);
        shelf.bytes -= seen.bytes;
        self.bytes -= seen.bytes;
        self.count -= 1;
        if shelf.sessions.is_empty() {
            self.agents.remove(agent);
        }
        true
    }

    /// Removes the agent's oldest challenge; false if it has none.
    fn evict_oldest(&mut self, agent: &str) -> bool {
        let Some((session, resource)) = self
            .agents
            .get(agent)
            .and_then(|shelf| shelf.order.first_key_value())
            .map(|(_, key)| key.clone())
        else {
            return false;
        };
        self.forget(agent, &session, &resource)
    }

    /// Drops the agent's challenges past their time to live (the oldest come first).
    fn expire_oldest(&mut self, agent: &str, settings: &X402Settings) -> usize {
        let mut expired = 0;
        loop {
            let stale = self.agents.get(agent).and_then(|shelf| {
                let (_, (session, resource)) = shelf.order.first_key_value()?;
                let seen = shelf.sessions.get(session)?.by_resource.get(resource)?;
                (seen.seen_at.elapsed() > settings.challenge_ttl)
                    .then(|| (session.clone(), resource.clone()))
            });
            match stale {
                Some((session, resource)) if self.forget(agent, &session, &resource) => {
                    expired += 1
                }
                _ => return expired,
            }
        }
    }

    /// Makes room for one more challenge in the session.
    fn make_session_room(&mut self, agent: &str, session: &str, max: usize) -> usize {
        let mut evicted = 0;
        loop {
            let oldest = self
                .agents
                .get(agent)
                .and_then(|shelf| shelf.sessions.get(session))
                .filter(|shelf| shelf.by_resource.len() >= max.max(1))
                .and_then(|shelf| shelf.order.first_key_value())
                .map(|(_, resource)| resource.clone());
            match oldest {
                Some(resource) if self.forget(agent, session, &resource) => evicted += 1,
                _ => return evicted,
            }
        }
    }
}

#[cfg(test)]
mod tests;
