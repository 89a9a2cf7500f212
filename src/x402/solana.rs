//! Just enough of Solana's transaction format to identify a payment for replay checks.
//!
//! A serialized transaction is a compact-u16 count of signatures, the 64-byte signatures,
//! then the message they sign. The fee payer's slot (the facilitator's) is empty when the
//! client sends it and is not covered by the client's signature, so two byte-different
//! transactions can carry the same signed payment. The replay identity is therefore the
//! SHA-256 of the message, which every signature commits to.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

const SIGNATURE_BYTES: usize = 64;

/// SHA-256 of the signed message of a base64 transaction; `None` if it is not one.
pub(crate) fn message_id(transaction_base64: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(transaction_base64.trim_ascii()).ok()?;
    let message = message_of(&bytes)?;
    Some(Sha256::digest(message).into())
}

/// The message part of a serialized transaction with at least one signature slot.
fn message_of(transaction: &[u8]) -> Option<&[u8]> {
    let (count, used) = read_compact_u16(transaction)?;
    if count == 0 {
        return None;
    }
    let start = count.checked_mul(SIGNATURE_BYTES)?.checked_add(used)?;
    transaction
        .get(start..)
        .filter(|message| !message.is_empty())
}

/// Solana's "shortvec": 7 bits a byte, low first, high bit set while more follow, at most
/// three bytes.
fn read_compact_u16(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (index, byte) in bytes.iter().take(3).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One signature slot, then a message.
    fn transaction(signature_fill: u8, message: &[u8]) -> String {
        let mut bytes = vec![1u8];
        bytes.extend([signature_fill; SIGNATURE_BYTES]);
        bytes.extend(message);
        STANDARD.encode(bytes)
    }

    #[test]
    fn identity_ignores_signature_slots_but_not_the_message() {
        let a = message_id(&transaction(0, b"pay 1 usdc")).unwrap();
        let b = message_id(&transaction(7, b"pay 1 usdc")).unwrap();
        let c = message_id(&transaction(0, b"pay 2 usdc")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn non_transactions_have_no_identity() {
        assert_eq!(message_id("not base64!"), None);
        assert_eq!(message_id(""), None);
        assert_eq!(message_id(&STANDARD.encode([0u8, 1, 2])), None); // no signatures
        assert_eq!(message_id(&STANDARD.encode([2u8; 70])), None); // too short
        assert_eq!(message_id(&STANDARD.encode([0xffu8; 3])), None); // runaway shortvec
    }

    #[test]
    fn compact_u16_reads_multibyte_counts() {
        assert_eq!(read_compact_u16(&[0x05]), Some((5, 1)));
        assert_eq!(read_compact_u16(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(read_compact_u16(&[0xff, 0xff, 0x03]), Some((65535, 3)));
    }
}
