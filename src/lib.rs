//! Purser: an x402-aware forward HTTP proxy that enforces payment governance on the wire.
//!
//! The modules follow the data path of a request:
//!
//! * [`proxy`]: the listener, `CONNECT` handling, TLS interception and the upstream client.
//! * [`policy`]: the policy file: loading, validation and the parts the proxy consults.
//! * [`admin`]: the admin listener: health, metrics and (later) the governance API.
//! * [`cli`]: the `purser` command line, a thin layer over the above.
//! * [`demo`]: `purser demo`, a governed workflow end to end on loopback.
//! * [`x402`]: the payment protocol's wire types, parsing and pricing.
//! * [`detect`]: the one payment detector: which payment a request carries, in which
//!   protocol, and whether Purser can govern it.
//! * [`telemetry`]: log set-up.

pub mod admin;
pub mod app;
pub mod approvals;
pub mod cli;
pub mod demo;
pub mod detect;
pub mod engine;
pub mod ledger;
pub mod policy;
pub mod proxy;
pub mod telemetry;
pub mod trace;
pub mod x402;

/// Purser's own version, written into traces and the `Server`-side logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
