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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BudgetView, OverBudget, ReserveRequest};
    use crate::policy::{Limits, MemoryLimits};
    use crate::store::{Embedded, Judge, SessionState};
    use rust_decimal::Decimal;
    use std::sync::Arc;
    use std::time::Duration;

    /// Books whatever it is asked to.
    struct BookIt(Option<ReservationId>);

    impl Judge for BookIt {
        fn judge(
            &mut self,
            _: &mut SessionState,
            _: BudgetView,
            book: &mut dyn FnMut() -> Result<ReservationId, OverBudget>,
        ) {
            self.0 = book().ok();
        }
    }

    const LIMITS: MemoryLimits = MemoryLimits {
        connections_per_agent: 1,
        sessions: 10,
        sessions_per_agent: 10,
        session_idle: Duration::from_secs(60),
        leaf_certificates: 1,
    };

    async fn book(store: &SharedStore) -> Booking {
        let session = store.session("a.s", "a", &LIMITS).await.unwrap();
        let request = ReserveRequest {
            session: "a.s",
            agent: "a",
            pay_to: "0x1",
            amount: Decimal::ONE,
            limits: Limits::default(),
            halt_ratio: None,
        };
        let mut judge = BookIt(None);
        store.decide_in(&session, request, None, &mut judge).await;
        Booking::new(store, judge.0.expect("booked"))
    }

    async fn reserved(store: &SharedStore) -> Decimal {
        store.budget("a.s", "a").await.session.reserved
    }

    #[tokio::test]
    async fn a_dropped_booking_gives_its_reservation_and_keys_back() {
        let store: SharedStore = Arc::new(Embedded::new());
        let keys = vec!["k1".to_string()];
        assert!(store.claim_replay_keys(&keys, 100, 10).await);
        let booking = book(&store).await.with_keys(keys.clone());
        assert_eq!(reserved(&store).await, Decimal::ONE);
        drop(booking);
        assert_eq!(reserved(&store).await, Decimal::ZERO);
        assert_eq!(store.first_seen_replay_key(&keys, 10).await, None);
    }

    #[tokio::test]
    async fn a_kept_booking_stays_until_settled_and_a_released_one_names_its_keys() {
        let store: SharedStore = Arc::new(Embedded::new());
        let keys = vec!["k1".to_string()];
        assert!(store.claim_replay_keys(&keys, 100, 10).await);
        let (id, kept_keys) = book(&store).await.with_keys(keys.clone()).keep();
        assert_eq!(kept_keys, keys);
        assert_eq!(reserved(&store).await, Decimal::ONE);
        assert_eq!(store.first_seen_replay_key(&keys, 10).await, Some(0));
        store.settle(id, Outcome::Committed);
        assert_eq!(reserved(&store).await, Decimal::ZERO);
        let released = book(&store).await.with_keys(keys.clone()).release();
        assert_eq!(released, keys);
        assert_eq!(reserved(&store).await, Decimal::ZERO);
        assert_eq!(store.first_seen_replay_key(&keys, 10).await, None);
    }
}
