//! The store: what the engine keeps between requests and that a fleet of Purser
//! instances would share. Budgets and reservations, sessions and their phases, the
//! replay set, payments whose outcome is unknown, holds, and open transactions sit
//! behind one interface, [`Store`].
//!
//! * [`interface`]: the [`Store`] trait, and the [`Judge`] a decision runs inside it.
//! * [`op`]: [`Op`], what its operations return: ready at once, or a boxed future.
//! * [`embedded`]: [`Embedded`], the default: in memory, rebuilt from the proof log on
//!   start ([`restore`]).
//! * [`postgres`]: [`Postgres`], the fleet store (`--store postgres://...`): every
//!   replica pointed at one database shares one state. `app.rs` chooses between them.
//! * [`guards`]: a [`Booking`] (a reservation and its replay keys) and a [`RetryClaim`],
//!   which give their state back when dropped.
//! * [`session`], [`session_table`], [`replay`], [`unknown`], [`transactions`]: the
//!   state itself, and the embedded store's tables of it.

pub mod embedded;
pub mod guards;
pub mod interface;
pub mod op;
pub mod postgres;
pub mod replay;
pub mod restore;
pub mod session;
pub mod session_table;
pub mod transactions;
pub mod unknown;

pub use embedded::Embedded;
pub use guards::{check_retry, Booking, RetryCheck, RetryClaim};
pub use interface::{Judge, KeyScreen, Screened, SharedChallenge, SharedStore, Store};
pub use op::Op;
pub use postgres::{FleetSettings, Postgres, StoreSetupError};
pub use restore::Recovered;
pub use session::{DecisionCounts, RecentPayment, Session, SessionState, TransitionError};
pub use session_table::{SessionFigures, SessionRefused};
pub use transactions::SettledPayment;
pub use unknown::{RetryIdentity, RetryInFlight, UnknownDetails, UnknownView};
