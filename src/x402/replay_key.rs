//! What makes a payment single-use, as keys the replay set remembers. Its own file
//! because both the payload readers (which build keys) and the payment (which carries
//! them) need it.

use super::hex::hex;
use std::fmt;

/// What makes a payment single-use. Any key seen before means a replay. Keys hold
/// canonical bytes (see [`super::canonical`]), so a re-spelled payment has the same keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplayKey {
    /// EVM: (payer, nonce); the token contracts' own uniqueness rule. A Permit2 nonce is
    /// its `uint256` as 32 big-endian bytes.
    PayerNonce([u8; 20], [u8; 32]),
    /// SHA-256 of the signature's bytes: the log never holds material that could be
    /// replayed.
    Signature([u8; 32]),
    /// Solana: SHA-256 of the transaction's signed message (see `solana.rs` for why not
    /// the transaction bytes).
    SolanaTransaction([u8; 32]),
}

impl fmt::Display for ReplayKey {
    /// A stable text form, for the trace log the replay set is rebuilt from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayKey::PayerNonce(payer, nonce) => {
                write!(f, "payer_nonce:0x{}:0x{}", hex(payer), hex(nonce))
            }
            ReplayKey::Signature(digest) => write!(f, "signature_sha256:{}", hex(digest)),
            ReplayKey::SolanaTransaction(id) => write!(f, "solana_tx:{}", hex(id)),
        }
    }
}
