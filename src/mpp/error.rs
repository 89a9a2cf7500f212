//! The one error type of the MPP module, with a stable machine reason for each failure.
//!
//! Messages end up in the agent's `403` body: each names what was wrong and, where it
//! helps, what would be right. Wire text quoted in a message is cut short first.

/// Why MPP data (a challenge, a credential or a receipt) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MppError {
    /// Bigger than Purser decodes; checked before any decoding.
    #[error("MPP {what} is larger than the {limit}-byte limit; it was not decoded")]
    TooLarge {
        /// What was too large (`credential`, `challenge request`).
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },

    /// Not base64url (RFC 4648 §5, padding optional).
    #[error(
        "MPP {0} is not valid base64url: credentials, requests and receipts are base64url \
         (A-Z a-z 0-9 - _, padding optional) of a JSON object"
    )]
    InvalidBase64(&'static str),

    /// Not a JSON object; the detail is the parser's message.
    #[error("MPP {what} is not a JSON object: {detail}")]
    NotJson {
        /// What was being read.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },

    /// A `WWW-Authenticate` value that does not follow RFC 9110's challenge grammar.
    #[error("malformed WWW-Authenticate: {0}")]
    BadChallengeSyntax(String),

    /// The JSON or the auth-params parsed but something has the wrong form; says which.
    #[error("malformed MPP data: {0}")]
    WrongShape(String),

    /// A required field or auth-param is absent or empty.
    #[error("malformed MPP data: required {0} is missing")]
    Missing(String),

    /// The same auth-param twice in one challenge (names are case-insensitive).
    #[error("malformed MPP challenge: parameter {0:?} appears twice")]
    DuplicateParam(String),

    /// An amount that is not a plain non-negative integer of base units.
    #[error("bad MPP amount: {0} (amounts are integer strings of base units, at most 28 digits)")]
    BadAmount(String),

    /// A payment method, intent or payload form Purser cannot price or decide.
    #[error("{0}")]
    Unsupported(String),
}

impl MppError {
    /// A stable snake_case code for the agent's `reason` and for metrics labels; the same
    /// codes x402 refusals use, so an agent reads one vocabulary.
    pub fn reason(&self) -> &'static str {
        match self {
            MppError::TooLarge { .. } => "payment_too_large",
            MppError::InvalidBase64(_)
            | MppError::NotJson { .. }
            | MppError::BadChallengeSyntax(_)
            | MppError::WrongShape(_)
            | MppError::Missing(_)
            | MppError::DuplicateParam(_) => "malformed_payment",
            MppError::BadAmount(_) => "bad_amount",
            MppError::Unsupported(_) => "unsupported_payment",
        }
    }
}

/// Wire text quoted into a message, cut so a hostile value cannot make the message (the
/// log line, the `403` body) arbitrarily long.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}
