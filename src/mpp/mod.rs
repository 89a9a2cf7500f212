//! The Machine Payments Protocol (the HTTP `Payment` authentication scheme,
//! draft-ryan-httpauth-payment) as Purser sees it on the wire: bounded parsing of
//! challenges, credentials and receipts, and the binding between a credential and the
//! challenge it answers.
//!
//! * [`challenge`]: `WWW-Authenticate: Payment` challenges, several per answer, and the
//!   binding digest a credential must reproduce; [`auth_params`] is RFC 9110's
//!   challenge grammar they are written in.
//! * [`credential`]: `Authorization: Payment <base64url JSON>` (or MCP's `_meta` object).
//! * [`receipt`]: `Payment-Receipt`.
//! * [`tempo`]: the signed Tempo transactions a `tempo` charge carries, read far enough
//!   to see what they move.
//! * `canonical`: base64url, hex, amounts, and the canonical JSON form bindings hash.
//!
//! Nothing here prices or decides: that is `crate::detect` (what a credential pays) and
//! the engine (whether it may). Nothing here panics on any input, and every size is
//! bounded before anything is decoded.

pub mod auth_params;
mod canonical;
pub mod challenge;
pub mod credential;
mod error;
pub mod receipt;
pub mod tempo;

pub use canonical::{amount, fixed_hex, hex_bytes};
pub use challenge::{parse_www_authenticate, Challenge};
pub use credential::{parse_authorization, Credential, Echo, EchoForm};
pub use error::MppError;
pub use receipt::{parse_receipt_header, receipt_from_json, Receipt, ReceiptStatus};

/// Largest `request` or `opaque` (base64url characters), receipt or echoed parameter
/// Purser decodes: the SDKs' own limit.
pub const MAX_PARAM_BYTES: usize = 16 * 1024;
/// Largest credential (`Authorization` value) Purser decodes: the SDKs' own limit (it
/// echoes a request of up to [`MAX_PARAM_BYTES`]).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;
/// Largest `WWW-Authenticate` field value read.
pub const MAX_CHALLENGE_FIELD_BYTES: usize = 64 * 1024;
/// Most `Payment` challenges read from one answer.
pub const MAX_CHALLENGES_PER_ANSWER: usize = 32;

#[cfg(test)]
mod tests;
