//! Guards over store state a request holds for a while: a [`Booking`] (a reservation and
//! the replay keys it claimed) and a [`RetryClaim`]. Each gives its state back when it is
//! dropped, so no path that forgets to (an early return, a refusal, an agent that hangs
//! up) can leave money reserved or a payment unable to be sent again.

use super::interface::SharedStore;
use super::unknown::{Claim, RetryIdentity};
use crate::ledger::{Outcome, ReservationId};
use std::fmt;

/// A payment's reservation, and the replay keys it claimed, before the payment leaves.
/// Dropped, the reservation is released and the keys are forgotten: the payment never
/// left, so it may be decided afresh if the agent sends it again. [`Booking::keep`] is
/// the only way out without giving them back.
pub struct Booking {
    store: SharedStore,
    reservation: ReservationId,
    keys: Vec<String>,
    kept: bool,
}

impl Booking {
    /// Guards `reservation`, just booked in `store`.
    pub fn new(store: &SharedStore, reservation: ReservationId) -> Self {
        Booking {
            store: store.clone(),
            reservation,
            keys: Vec::new(),
            kept: false,
        }
    }

    /// The payment's replay keys were claimed: they are forgotten with the reservation.
    pub fn with_keys(mut self, keys: Vec<String>) -> Self {
        self.keys = keys;
        self
    }

    /// The replay keys the booking holds.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The payment does not leave after all: gives the reservation and the keys back now,
    /// and returns the keys (the decision line still names them).
    pub fn release(mut self) -> Vec<String> {
        self.give_back();
        self.kept = true;
        std::mem::take(&mut self.keys)
    }

    fn give_back(&self) {
        self.store.settle(self.reservation, Outcome::Released);
        if !self.keys.is_empty() {
            self.store.forget_replay_keys(&self.keys);
        }
    }

    /// The payment leaves: its reservation and keys stay, for its settlement to end.
    pub fn keep(mut self) -> (ReservationId, Vec<String>) {
        self.kept = true;
        (self.reservation, std::mem::take(&mut self.keys))
    }
}

impl Drop for Booking {
    fn drop(&mut self) {
        if !self.kept {
            self.give_back();
        }
    }
}

impl fmt::Debug for Booking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Booking({})", self.reservation)
    }
}

/// The right to forward the one retry of an unknown payment. Dropping it (the retry was
/// refused, settled, or its request went away) lets the next copy try.
pub struct RetryClaim {
    store: SharedStore,
    original: String,
}

impl RetryClaim {
    /// The decision trace id of the payment being retried.
    pub fn original(&self) -> &str {
        &self.original
    }
}

impl Drop for RetryClaim {
    fn drop(&mut self) {
        self.store.release_retry(&self.original);
    }
}

impl fmt::Debug for RetryClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryClaim({})", self.original)
    }
}

/// What a payment checked against the unknown payments is.
pub enum RetryCheck {
    /// None of its keys belongs to an unknown payment.
    Unrelated,
    /// It is the retry of an unknown payment, and the only one in flight.
    Retry(RetryClaim),
    /// It shares a key with `original` but is not its retry: a replay.
    Conflict { original: String, why: &'static str },
}

/// Checks `keys` against the unknown payments, claiming the retry if it is one.
pub async fn check_retry(
    store: &SharedStore,
    keys: &[String],
    identity: &(dyn Fn() -> RetryIdentity + Sync),
) -> RetryCheck {
    match store.claim_retry(keys, identity).await {
        Claim::Unrelated => RetryCheck::Unrelated,
        Claim::Retry(original) => RetryCheck::Retry(RetryClaim {
            store: store.clone(),
            original,
        }),
        Claim::Conflict { original, why } => RetryCheck::Conflict { original, why },
    }
}
