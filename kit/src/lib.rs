//! The kit Purser's integration tests and its bench binary share, so each piece of test
//! machinery exists once:
//!
//! * [`origin`]: the origin stub (recording for tests, lean for load).
//! * [`bare_proxy`]: a bare hyper pass-through forward proxy, the yardstick.
//! * [`merchant`]: the stub merchant and facilitator (402 challenge, then a paid answer
//!   with a receipt; refunds; the facilitator's record); [`mcp_merchant`]: the same for
//!   paid MCP tool calls (x402 over MCP).
//! * [`x402`]: payments, challenges and receipts built from Purser's own wire types.
//! * [`mpp`]: a stub MPP merchant, and credentials answering its challenges.
//! * [`client`]: HTTP/1.1 client connections, whole answers, proxy credentials.
//! * [`tunnel`]: `CONNECT` tunnels and TLS clients through a proxy.
//! * [`load`]: load-generation primitives (dialing through a proxy, measurement windows,
//!   tallies).
//! * [`admin`]: a client of Purser's admin API, and a console that answers holds.
//! * [`pki`]: a throwaway CA and leaves for TLS origins.
//! * [`process`]: starting and stopping `purser run`, `/proc` probes, scratch directories.
//! * [`proof_log`]: the proof log as the reports read it; [`gen_log`]: a long one made
//!   from a real one.
//! * [`stats`]: percentiles, medians, percentages, USD sums, a seeded random stream.

pub mod admin;
pub mod bare_proxy;
pub mod client;
pub mod gen_log;
pub mod load;
pub mod mcp_merchant;
pub mod merchant;
pub mod mpp;
pub mod origin;
pub mod pki;
pub mod process;
pub mod proof_log;
pub mod stats;
pub mod tunnel;
pub mod x402;

/// The error of everything fallible here that is not a test assertion.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
