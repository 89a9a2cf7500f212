//! Purser: a forward HTTP proxy that governs the payments AI agents make on the wire
//! (x402), deciding each one before its signature reaches the merchant.
//!
//! The modules follow a payment's path. Each imports only modules listed above it, and
//! no two files import each other (`tests/layers.rs` checks both from the source):
//!
//! * [`x402`]: the payment protocol's wire types, bounded parsing, replay keys, assets,
//!   and one normal form for addresses.
//! * [`mpp`]: the Machine Payments Protocol's wire (the HTTP `Payment` scheme): bounded
//!   parsing of challenges, credentials and receipts, and their binding.
//! * `codes`, [`outbound`]: the stable error codes every layer speaks; the client
//!   Purser's own calls (webhooks, refund requests) go through.
//! * [`chain_rpc`]: `eth_call` to an EVM node (ABI, JSON-RPC), behind the small trait
//!   chain reconciliation is given.
//! * [`detect`]: the one payment detector: whether a request carries a payment, in
//!   which protocol, and whether Purser can govern it.
//! * [`telemetry`]: log set-up and the counters behind `/metrics`.
//! * [`policy`]: the policy file: loading, validation, the rule DSL, identity, routes.
//! * [`ledger`]: budgets in decimal: reservations, commits, releases, unknown outcomes.
//! * [`trace`]: the hash-chained proof log: typed records, the writer, rotation,
//!   verification, filters.
//! * `holds`: payments waiting for a human (approvals), and their notifications.
//! * [`store`]: what the engine keeps between requests, behind one [`store::Store`]
//!   interface; [`store::Embedded`] (in memory, rebuilt from the proof log) is the
//!   default.
//! * [`engine`]: the decision. It knows no HTTP: it returns a typed
//!   [`engine::Gate`] that the proxy renders.
//! * [`proxy`]: the wire: admission, `CONNECT` and TLS interception, the one service
//!   every request passes, rendering, the upstream client.
//! * `admin`: the admin API, the console and `/metrics`.
//! * [`app`]: `purser run`, assembling the above.
//! * `redirect`: `purser redirect`, the nftables rules that send an agent's traffic to
//!   the transparent listener.
//! * `demo`: `purser demo`, a governed workflow end to end on loopback.
//! * [`cli`]: the `purser` command line, a thin layer over the above.
//!
//! Modules shown as code rather than links are internal: nothing outside Purser needs
//! them. The rest are public because the binary, the test kit, the benches or the fuzz
//! targets build on them.

pub(crate) mod admin;
pub mod app;
pub mod chain_rpc;
pub mod cli;
pub(crate) mod codes;
pub(crate) mod demo;
pub mod detect;
#[doc(hidden)]
pub mod engine;
pub(crate) mod holds;
#[doc(hidden)]
pub mod ledger;
pub mod mpp;
pub mod outbound;
pub mod policy;
#[doc(hidden)]
pub mod proxy;
pub(crate) mod redirect;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod telemetry;
pub mod trace;
pub mod x402;

/// Purser's own version, written into traces and the `Server`-side logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
