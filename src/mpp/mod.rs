//! The Machine Payments Protocol (the HTTP `Payment` authentication scheme,
//! draft-ryan-httpauth-payment) as Purser sees it on the wire: bounded parsing of
//! challenges, credentials and receipts, and the binding between a credential and the
//! challenge it answers.
//!
//! * [`challenge`]: `WWW-Authenticate: Payment` challenges, several per answer, and the
//!   binding digest a credential must reproduce; [`auth_params`] is RFC 9110's
//!   challenge grammar they are written in.
//! * [`credential`]: `Authorization: Payment <base64url JSON>` (or MCP's `_meta` object).
//! * [`receipt`]: the `Payment-Receipt` header.
//! * [`tempo`]: the signed Tempo transactions a `tempo` charge carries, read far enough
//!   to see what they move.
//! * `canonical`: base64url, hex, amounts, and the canonical JSON form bindings hash;
//!   `limits`: the size bounds.
//!
//! Nothing here prices or decides: that is `crate::detect` (what a credential pays) and
//! the engine (whether it may). Nothing here panics on any input, and every size is
//! bounded before anything is decoded.

pub mod auth_params;
mod canonical;
pub mod challenge;
pub mod credential;
mod error;
mod limits;
pub mod receipt;
pub mod tempo;

pub use canonical::{amount, fixed_hex, hex_bytes};
pub use challenge::{challenges_from_mcp, parse_www_authenticate, Challenge};
pub use credential::{parse_authorization, Credential, Echo, EchoForm};
pub use error::MppError;
pub use limits::{
    MAX_CHALLENGES_PER_ANSWER, MAX_CHALLENGE_FIELD_BYTES, MAX_CREDENTIAL_BYTES, MAX_PARAM_BYTES,
};
pub use receipt::{parse_receipt_header, receipt_from_json, Receipt, ReceiptStatus};

#[cfg(test)]
mod tests;
