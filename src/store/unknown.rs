//! Payments whose outcome is `unknown`, beyond the amount the ledger keeps for them: the
//! replay keys they hold, the one retry of each that may be in flight, and what an operator
//! needs to reconcile them.
//!
//! A payment that left and got no answer that tells (SPEC §1) may have settled. The agent
//! may send it again; only a byte-identical copy (the same payment digest), from the same
//! session, for the same resource, counts as a retry, and only one copy at a time: the
//! claim on the retry is held until that copy's answer is settled (or its request goes
//! away). Anything else carrying one of its keys is a replay.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// What is known about a payment whose outcome is unknown, besides its amount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnknownDetails {
    pub session: String,
    pub agent: String,
    /// When its outcome became unknown (RFC 3339).
    pub since: String,
    pub method: String,
    pub host: String,
    pub path: String,
    /// SHA-256 (hex) of the decoded payment: a retry must carry exactly these bytes.
    pub payment_digest: Option<String>,
    /// SHA-256 (hex) of what the payment asked for (`engine::facts::resource_digest`).
    /// `None` for lines written before it was traced: such a payment has no retry, only
    /// replays.
    #[serde(skip)]
    pub resource: Option<String>,
    #[serde(skip)]
    pub keys: Vec<String>,
    /// Why the outcome is unknown (no receipt, connection lost, ...).
    pub why: Option<String>,
    pub upstream_status: Option<u16>,
    /// What the chain can be asked about it (EVM payments): chain reconciliation's input,
    /// and where an operator looks it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onchain: Option<crate::x402::ChainAuthorization>,
}

struct Entry {
    details: UnknownDetails,
    retry_in_flight: bool,
    retries: u32,
}

#[derive(Default)]
struct Inner {
    /// By the decision's trace id.
    entries: HashMap<String, Entry>,
    /// Replay key to the trace id of the unknown payment that holds it.
    by_key: HashMap<String, String>,
}

/// The unknown payments the engine knows, by their decision's trace id.
#[derive(Default)]
pub struct UnknownSet {
    inner: Mutex<Inner>,
}

/// What makes a copy the retry of an unknown payment, besides its keys.
pub struct RetryIdentity {
    /// SHA-256 (hex) of the decoded payment.
    pub digest: String,
    pub session: String,
    /// SHA-256 (hex) of what the copy asks for (`engine::facts::resource_digest`).
    pub resource: String,
}

/// What a payment whose keys are checked against the unknown set is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// None of its keys belongs to an unknown payment.
    Unrelated,
    /// It is the retry of this payment (its decision trace id), and the only one in
    /// flight: the claim is held until [`UnknownSet::release_claim`].
    Retry(String),
    /// It shares a key with `original` but is not its retry: a replay.
    Conflict { original: String, why: &'static str },
}

/// An unknown payment cannot be resolved while its retry is in flight: the retry's
/// receipt may be about to say it settled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "payment {0} has a retry in flight; resolve it once that retry's answer is in \
     (GET /v1/payments?outcome=unknown shows retry_in_flight)"
)]
pub struct RetryInFlight(pub String);

/// One unknown payment as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownView {
    pub id: String,
    #[serde(flatten)]
    pub details: UnknownDetails,
    pub retries: u32,
    pub retry_in_flight: bool,
}

impl UnknownSet {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below is a few map operations that cannot leave the maps half
        // updated, so a poisoned lock still guards consistent data.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers a payment whose outcome became unknown (or was found unknown on start).
    pub fn insert(&self, trace_id: &str, details: UnknownDetails) {
        let mut inner = self.lock();
        for key in &details.keys {
            inner.by_key.insert(key.clone(), trace_id.to_string());
        }
        let entry = Entry {
            details,
            retry_in_flight: false,
            retries: 0,
        };
        inner.entries.insert(trace_id.to_string(), entry);
    }

    /// Whether a payment with these keys is the retry of an unknown payment (`identity`
    /// gives its digest, session and resource, computed only if a key matches); if it is
    /// and no other retry is in flight, claims the retry.
    pub fn claim(&self, keys: &[String], identity: impl FnOnce() -> RetryIdentity) -> Claim {
        let mut inner = self.lock();
        let mut originals: Vec<&String> = keys.iter().filter_map(|k| inner.by_key.get(k)).collect();
        originals.sort();
        originals.dedup();
        let original = match originals.as_slice() {
            [] => return Claim::Unrelated,
            [one] => (*one).clone(),
            [first, ..] => {
                return Claim::Conflict {
                    original: (*first).clone(),
                    why: "it shares keys with more than one payment whose outcome is unknown",
                }
            }
        };
        let conflict = |why| Claim::Conflict {
            original: original.clone(),
            why,
        };
        let Some(entry) = inner.entries.get_mut(&original) else {
            return conflict("its original is being resolved");
        };
        let details = &entry.details;
        let copy = identity();
        if details.payment_digest.as_deref() != Some(copy.digest.as_str()) {
            return conflict("it is not a byte-identical copy of that payment");
        }
        if details.session != copy.session {
            return conflict("only the session that sent that payment may retry it");
        }
        if details.resource.as_deref() != Some(copy.resource.as_str()) {
            return conflict("a retry must ask for the same resource (method and URL)");
        }
        if entry.retry_in_flight {
            return conflict("another copy of it is in flight; retries go one at a time");
        }
        entry.retry_in_flight = true;
        entry.retries = entry.retries.saturating_add(1);
        Claim::Retry(original)
    }

    /// Ends the claim on `original`'s retry (the retry was refused, settled, or its
    /// request went away), so the next copy may try.
    pub fn release_claim(&self, original: &str) {
        if let Some(entry) = self.lock().entries.get_mut(original) {
            entry.retry_in_flight = false;
        }
    }

    /// Forgets a payment that was resolved. A retry in flight blocks an operator's
    /// resolution but not the retry's own (`by_retry`).
    pub fn take(
        &self,
        trace_id: &str,
        by_retry: bool,
    ) -> Result<Option<UnknownDetails>, RetryInFlight> {
        let mut inner = self.lock();
        match inner.entries.get(trace_id) {
            None => return Ok(None),
            Some(entry) if entry.retry_in_flight && !by_retry => {
                return Err(RetryInFlight(trace_id.to_string()))
            }
            Some(_) => {}
        }
        let entry = inner.entries.remove(trace_id);
        inner.by_key.retain(|_, owner| owner != trace_id);
        Ok(entry.map(|e| e.details))
    }

    /// The listing for the admin API, with retry state.
    pub fn view(&self, trace_id: &str) -> Option<UnknownView> {
        let inner = self.lock();
        let entry = inner.entries.get(trace_id)?;
        Some(UnknownView {
            id: trace_id.to_string(),
            details: entry.details.clone(),
            retries: entry.retries,
            retry_in_flight: entry.retry_in_flight,
        })
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(digest: &str, session: &str, resource: &str) -> impl FnOnce() -> RetryIdentity {
        let identity = RetryIdentity {
            digest: digest.into(),
            session: session.into(),
            resource: resource.into(),
        };
        move || identity
    }

    fn details(digest: &str, session: &str, resource: &str) -> UnknownDetails {
        UnknownDetails {
            session: session.into(),
            payment_digest: Some(digest.into()),
            resource: Some(resource.into()),
            keys: vec!["k1".into(), "k2".into()],
            ..UnknownDetails::default()
        }
    }

    #[test]
    fn only_an_identical_copy_from_its_session_for_its_resource_is_a_retry() {
        let set = UnknownSet::default();
        set.insert("tr_1", details("d", "a.s", "r"));
        let keys = vec!["k2".to_string()];
        assert!(matches!(
            set.claim(&["x".into()], copy("d", "a.s", "r")),
            Claim::Unrelated
        ));
        for (digest, session, resource) in [("e", "a.s", "r"), ("d", "a.t", "r"), ("d", "a.s", "q")]
        {
            assert!(matches!(
                set.claim(&keys, copy(digest, session, resource)),
                Claim::Conflict { .. }
            ));
        }
        let Claim::Retry(original) = set.claim(&keys, copy("d", "a.s", "r")) else {
            panic!("the identical copy is a retry");
        };
        assert_eq!(original, "tr_1");
        assert!(
            matches!(
                set.claim(&keys, copy("d", "a.s", "r")),
                Claim::Conflict { .. }
            ),
            "one at a time"
        );
        assert_eq!(set.take("tr_1", false), Err(RetryInFlight("tr_1".into())));
        set.release_claim(&original);
        let view = set.view("tr_1").unwrap();
        assert_eq!((view.retries, view.retry_in_flight), (1, false));
        let Claim::Retry(again) = set.claim(&keys, copy("d", "a.s", "r")) else {
            panic!("the claim was released, so the copy may retry again");
        };
        set.release_claim(&again);
        assert!(set.take("tr_1", false).unwrap().is_some());
        assert!(matches!(
            set.claim(&keys, copy("d", "a.s", "r")),
            Claim::Unrelated
        ));
        assert!(set.is_empty());
    }

    #[test]
    fn keys_of_two_unknown_payments_conflict() {
        let set = UnknownSet::default();
        set.insert("tr_1", details("d", "a.s", "r"));
        let mut other = details("e", "a.s", "r");
        other.keys = vec!["k3".into()];
        set.insert("tr_2", other);
        let keys = vec!["k1".to_string(), "k3".to_string()];
        assert!(matches!(
            set.claim(&keys, copy("d", "a.s", "r")),
            Claim::Conflict { .. }
        ));
    }
}
