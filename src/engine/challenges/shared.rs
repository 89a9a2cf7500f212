//! Challenges shared by a fleet (`--store`): a 402 one replica passed back may be paid
//! through another (replicas behind a load balancer), so each remembered challenge is
//! also handed to the store in a small form of its own, and a payment that answers no
//! challenge this replica saw adopts the ones the fleet shared for its session before it
//! is refused as unquoted. Adopted challenges keep the age they had and go through the
//! same bounds as any other.

use super::mpp::{self, BINDING_BYTES};
use super::{charge, resource_key, ChallengeStore, Entry, Offer};
use crate::policy::X402Settings;
use crate::store::SharedChallenge;
use crate::x402::hex;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A remembered challenge as the fleet shares it: what pricing reads, nothing more.
#[derive(Serialize, Deserialize)]
struct Form {
    #[serde(rename = "v")]
    version: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offers: Vec<FormOffer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binding: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct FormOffer {
    scheme: String,
    network: String,
    asset: String,
    pay_to: String,
    /// Atomic units, as a string: JSON numbers do not carry 128 bits.
    amount: String,
}

impl ChallengeStore {
    /// The store key and shared form of the x402 challenge `session` got for `resource`.
    pub fn shared_x402(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
    ) -> Option<(String, String)> {
        self.shared_form(agent, session, &resource_key(resource))
    }

    /// The store keys and shared forms of MPP challenges `ids` `session` got for `resource`.
    pub fn shared_mpp<'a>(
        &self,
        agent: &str,
        session: &str,
        resource: &str,
        ids: impl Iterator<Item = &'a str>,
    ) -> Vec<(String, String)> {
        ids.filter_map(|id| self.shared_form(agent, session, &mpp::key(resource, id)))
            .collect()
    }

    fn shared_form(&self, agent: &str, session: &str, key: &str) -> Option<(String, String)> {
        let shelves = self.shelves();
        let seen = shelves
            .agents
            .get(agent)?
            .sessions
            .get(session)?
            .by_resource
            .get(key)?;
        let form = Form {
            version: seen.version,
            offers: seen
                .offers
                .iter()
                .map(|offer| FormOffer {
                    scheme: offer.scheme.to_string(),
                    network: offer.network.to_string(),
                    asset: offer.asset.to_string(),
                    pay_to: offer.pay_to.to_string(),
                    amount: offer.amount_atomic.to_string(),
                })
                .collect(),
            binding: seen.binding.map(|binding| hex(&binding)),
        };
        Some((key.to_string(), serde_json::to_string(&form).ok()?))
    }

    /// Adopts challenges the fleet shared for `session`, oldest first, each within the
    /// bounds and keeping its age; one this replica holds already stays as it is (it is
    /// at least as fresh). Returns how many were adopted.
    pub fn adopt(
        &self,
        agent: &str,
        session: &str,
        shared: &[SharedChallenge],
        settings: &X402Settings,
    ) -> usize {
        let mut adopted = 0;
        for challenge in shared.iter().rev() {
            if challenge.age > settings.challenge_ttl || self.holds(agent, session, &challenge.key)
            {
                continue;
            }
            let Some((entry, bytes)) = entry_of(session, challenge) else {
                continue;
            };
            if self.keep(agent, session, &challenge.key, entry, bytes, settings) {
                adopted += 1;
            }
        }
        adopted
    }

    fn holds(&self, agent: &str, session: &str, key: &str) -> bool {
        self.shelves()
            .agents
            .get(agent)
            .and_then(|shelf| shelf.sessions.get(session))
            .is_some_and(|shelf| shelf.by_resource.contains_key(key))
    }
}

/// A shared challenge as an entry and its charge; `None` for a form that does not read
/// (written by a newer Purser, or damaged): such a challenge is not adopted.
fn entry_of(session: &str, shared: &SharedChallenge) -> Option<(Entry, usize)> {
    let form: Form = serde_json::from_str(&shared.form).ok()?;
    let offers = form
        .offers
        .into_iter()
        .map(|offer| {
            Some(Offer {
                amount_atomic: offer.amount.parse().ok()?,
                scheme: offer.scheme.into(),
                network: offer.network.into(),
                asset: offer.asset.into(),
                pay_to: offer.pay_to.into(),
            })
        })
        .collect::<Option<Vec<Offer>>>()?;
    let binding = match form.binding {
        Some(text) => Some(binding_of(&text)?),
        None => None,
    };
    let mut bytes = charge(session, &shared.key, &offers);
    if binding.is_some() {
        bytes += BINDING_BYTES;
    }
    let seen_at = Instant::now().checked_sub(shared.age)?;
    let entry = Entry {
        version: form.version,
        offers: offers.into_boxed_slice(),
        binding,
        seen_at,
    };
    Some((entry, bytes))
}

fn binding_of(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut binding = [0u8; 32];
    for (i, byte) in binding.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(binding)
}
