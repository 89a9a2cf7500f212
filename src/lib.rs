//! Purser: an x402-aware forward HTTP proxy that enforces payment governance on the wire.
//!
//! The modules, in the order a payment meets them (each depends only on those above it,
//! with the exceptions #16 is removing):
//!
//! * [`x402`]: the payment protocol's wire types, parsing, canonical replay keys, assets.
//! * [`detect`]: the one payment detector: which payment a request carries, in which
//!   protocol, and whether Purser can govern it (header spellings, MPP and L402
//!   credentials, payment keys in JSON bodies).
//! * [`policy`]: the policy file: loading, validation, rules, and route normalisation
//!   (`policy::route`) for matching requests as merchants route them.
//! * [`ledger`]: budgets: reservations, commits, releases and unknown outcomes.
//! * [`trace`]: the hash-chained proof log: bounded lines, refusal summaries, rotation,
//!   verification, filters.
//! * [`approvals`]: holds waiting for a human, and their notifications.
//! * [`store`]: what the engine keeps between requests (budgets and reservations,
//!   sessions and phases, the replay set, unknown payments, holds, open transactions)
//!   behind one interface, with the in-memory store as the default.
//! * [`engine`]: the decision: sessions and phases, pricing, rules, holds, settlement,
//!   retries of unknown payments, compensation, recovery from the proof log.
//! * [`proxy`]: the wire: admission, the listener, `CONNECT` (TLS interception or
//!   plaintext), upgrades, body inspection, forwarding and the upstream client.
//! * [`admin`]: the admin listener: the governance API, the console and metrics.
//! * [`app`]: `purser run`, assembling the above.
//! * [`cli`]: the `purser` command line, a thin layer over the above.
//! * [`demo`]: `purser demo`, a governed workflow end to end on loopback.
//! * [`telemetry`]: log set-up.

pub mod admin;
pub mod app;
pub mod approvals;
pub mod cli;
pub mod codes;
pub mod demo;
pub mod detect;
pub mod engine;
pub mod ledger;
pub mod outbound;
pub mod policy;
pub mod proxy;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod x402;

/// Purser's own version, written into traces and the `Server`-side logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
