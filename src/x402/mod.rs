//! The x402 payment protocol as Purser sees it on the wire: bounded decoding, wire types
//! for v1 and v2, normalized challenges, payments and receipts, and pricing.
//!
//! * [`decode`]: size limits, base64 and JSON.
//! * [`wire`]: the messages exactly as they travel (serde types).
//! * [`challenge`], [`payment`], [`receipt`]: the normalized views the engine uses.
//! * [`assets`] and [`network`]: the asset table, network names and exact pricing.
//! * `address`: when two payment addresses are the same account, and their one stored form.
//! * `hex`: lowercase hex text of bytes, for the whole crate.
//! * `canonical`: the bytes replay keys are built from, whatever their hex spelling.
//! * [`permit2`]: the Permit2 and x402 proxy contracts, and the spender a Permit2
//!   payment must name.
//! * [`onchain`]: what the chain can be asked about a payment (its nonce, its contract).
//!
//! Nothing here panics on any input, and money is `rust_decimal::Decimal` or integer atomic
//! units, never a float.

mod address;
pub mod amount;
pub mod assets;
mod canonical;
pub mod challenge;
pub mod decode;
mod error;
mod fields;
mod hex;
pub mod network;
pub mod onchain;
mod payload;
pub mod payment;
pub mod permit2;
pub mod receipt;
mod replay_key;
mod solana;
pub mod wire;

pub use address::{normalize_address, same_address};
pub use assets::{max_payment_usd, price, AssetInfo, AssetTable, Price};
pub use challenge::{
    parse_challenge_json, parse_challenge_v1_body, parse_challenge_v2_header, Challenge,
    Requirement,
};
pub use decode::{MAX_CHALLENGE_BODY_BYTES, MAX_PAYMENT_HEADER_BYTES};
pub use error::X402Error;
pub(crate) use hex::hex;
pub use network::canonical_network;
pub use onchain::{ChainAuthorization, TransferMethod};
pub use payment::{parse_payment_json, parse_payment_v1, parse_payment_v2, Payment, PaymentKind};
pub use receipt::{parse_receipt, parse_receipt_json, Receipt};
pub use replay_key::ReplayKey;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_inputs;
#[cfg(test)]
mod tests_payloads;
#[cfg(test)]
mod tests_schemes;
