//! The one error type of the x402 module, with a stable machine reason for each failure.
//!
//! Every message names what was wrong and, where it helps, what would be right: it ends up
//! in the agent's `403` body, and an agent (or its developer) should be able to act on it.

/// Why x402 data (a challenge, a payment header or a receipt) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X402Error {
    /// The header or body is bigger than Purser will decode; checked before any decoding.
    #[error("x402 data is larger than the {limit}-byte limit; it was not decoded")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },

    /// The header is not standard base64 (RFC 4648 alphabet with `=` padding).
    #[error(
        "x402 header is not valid base64: headers must be standard base64 \
         (A-Z a-z 0-9 + /, padded with =) of a JSON object"
    )]
    InvalidBase64,

    /// The bytes are not JSON; the detail is the parser's message.
    #[error("x402 data is not valid JSON: {0}")]
    NotJson(String),

    /// The JSON parsed but a field has the wrong type or form; says which and how.
    #[error("malformed x402 data: {0}")]
    WrongShape(String),

    /// `x402Version` is not the one this header or body carries.
    #[error("unsupported x402 version: {0}")]
    UnsupportedVersion(String),

    /// A scheme Purser cannot price.
    #[error("unknown x402 scheme {0:?}: Purser understands \"exact\" and \"upto\"")]
    UnknownScheme(String),

    /// A network that is neither a known v1 name nor a CAIP-2 id.
    #[error(
        "unknown network {0:?}: use a CAIP-2 id such as \"eip155:8453\" or a known v1 \
         name such as \"base\""
    )]
    UnknownNetwork(String),

    /// An asset whose decimals Purser does not know, so its value cannot be computed.
    #[error(
        "asset {asset} on network {network} has no known decimals; add it to the \
         policy's assets table to allow payments in it"
    )]
    UnknownAsset {
        /// The network, as the payment or challenge wrote it.
        network: String,
        /// The asset's address, as written.
        asset: String,
    },

    /// An amount that is not a plain non-negative integer of atomic units.
    #[error("bad amount: {0} (amounts are integer strings of atomic units, at most 28 digits)")]
    BadAmount(String),

    /// A required field is absent (or `null`); the path names it.
    #[error("malformed x402 data: required field {0} is missing")]
    MissingField(String),
}

impl X402Error {
    /// A stable snake_case code for the agent's `reason` and for metrics labels.
    ///
    /// Decoding and shape errors share `malformed_payment`: the agent's fix is the same
    /// (send a well-formed header), and the message carries the detail.
    pub fn reason(&self) -> &'static str {
        match self {
            X402Error::TooLarge { .. } => "payment_too_large",
            X402Error::InvalidBase64
            | X402Error::NotJson(_)
            | X402Error::WrongShape(_)
            | X402Error::MissingField(_) => "malformed_payment",
            X402Error::UnsupportedVersion(_) => "unsupported_version",
            // A scheme Purser cannot price is a payment it cannot decide (SPEC §1).
            X402Error::UnknownScheme(_) => "unsupported_payment",
            X402Error::UnknownNetwork(_) => "unknown_network",
            X402Error::UnknownAsset { .. } => "unknown_asset",
            X402Error::BadAmount(_) => "bad_amount",
        }
    }
}

/// Cuts wire text quoted into an error message, so a hostile header cannot make the
/// message (and the log line and the 403 body) arbitrarily long.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}
