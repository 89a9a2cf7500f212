//! The two calls chain reconciliation makes, ABI-encoded, and their answers decoded.
//!
//! * `authorizationState(address authorizer, bytes32 nonce) returns (bool)`, selector
//!   `0xe94a0102`, asked of an EIP-3009 token (USDC's FiatToken): true once the nonce was
//!   used by `transferWithAuthorization`, `receiveWithAuthorization` or
//!   `cancelAuthorization`.
//! * `nonceBitmap(address owner, uint256 wordPos) returns (uint256)`, selector
//!   `0x4fe02b44`, asked of Permit2: word `nonce >> 8`, in which bit `nonce & 0xff` is
//!   set once the nonce was used by a transfer or invalidated by
//!   `invalidateUnorderedNonces`.
//!
//! Calldata is the selector, then each argument as one 32-byte word (an address padded
//! on the left). The selectors and worked examples are in
//! `tests/data/x402/chain_eth_call.json` (made with `eth_abi`).

use super::RpcError;

/// `authorizationState(address,bytes32)`.
pub const AUTHORIZATION_STATE: [u8; 4] = [0xe9, 0x4a, 0x01, 0x02];
/// `nonceBitmap(address,uint256)`.
pub const NONCE_BITMAP: [u8; 4] = [0x4f, 0xe0, 0x2b, 0x44];

/// Calldata asking a token whether `payer` used EIP-3009 nonce `nonce`.
pub fn authorization_state(payer: &[u8; 20], nonce: &[u8; 32]) -> Vec<u8> {
    call(AUTHORIZATION_STATE, &[address_word(payer), *nonce])
}

/// Calldata asking Permit2 for the bitmap word holding `owner`'s `nonce`, and the bit of
/// that word which is the nonce.
pub fn nonce_bitmap(owner: &[u8; 20], nonce: &[u8; 32]) -> (Vec<u8>, u8) {
    // nonce >> 8 on 32 big-endian bytes: every byte one place to the right.
    let mut word_position = [0u8; 32];
    word_position[1..].copy_from_slice(&nonce[..31]);
    (
        call(NONCE_BITMAP, &[address_word(owner), word_position]),
        nonce[31],
    )
}

/// `authorizationState`'s answer: an ABI `bool`.
pub fn decode_bool(data: &[u8]) -> Result<bool, RpcError> {
    let word = one_word(data)?;
    match (word[..31].iter().all(|b| *b == 0), word[31]) {
        (true, 0) => Ok(false),
        (true, 1) => Ok(true),
        _ => Err(RpcError::BadAnswer(format!(
            "0x{} is not an ABI bool",
            super::to_hex(&word)
        ))),
    }
}

/// Whether bit `bit` of `nonceBitmap`'s answer (a `uint256`) is set.
pub fn decode_bit(data: &[u8], bit: u8) -> Result<bool, RpcError> {
    let word = one_word(data)?;
    let byte = word[31 - usize::from(bit / 8)];
    Ok(byte >> (bit % 8) & 1 == 1)
}

/// Return data of exactly one word. `0x` (no data) is what a node answers for an address
/// with no contract: the wrong address, or the wrong chain for it.
fn one_word(data: &[u8]) -> Result<[u8; 32], RpcError> {
    if data.is_empty() {
        return Err(RpcError::BadAnswer(
            "the call returned no data: no contract at that address on this chain \
             (check the network's RPC URL in the policy)"
                .into(),
        ));
    }
    data.try_into().map_err(|_| {
        RpcError::BadAnswer(format!(
            "the call returned {} bytes, not one 32-byte word",
            data.len()
        ))
    })
}

fn address_word(address: &[u8; 20]) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(address);
    word
}

fn call(selector: [u8; 4], words: &[[u8; 32]]) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + 32 * words.len());
    data.extend_from_slice(&selector);
    for word in words {
        data.extend_from_slice(word);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::super::{from_hex, to_hex};
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/data/x402/chain_eth_call.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn bytes<const N: usize>(text: &str) -> [u8; N] {
        from_hex(text).unwrap().try_into().unwrap()
    }

    fn text(value: &Value) -> &str {
        value.as_str().unwrap()
    }

    const PAYER: &str = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";

    #[test]
    fn authorization_state_encodes_as_eth_abi_does() {
        let vector = &vectors()["eip3009_authorizationState"];
        assert_eq!(text(&vector["selector"]), "0xe94a0102");
        let nonce = "0x3ac527bc51a57fafb26c7f07104bb9394bf90b093b36ad06eeb3119da3a8b761";
        let data = authorization_state(&bytes(PAYER), &bytes(nonce));
        let expected = text(&vector["request"]["params"][0]["data"]);
        assert_eq!(format!("0x{}", to_hex(&data)), expected);
        let used = from_hex(text(&vector["answer_used"]["result"])).unwrap();
        let unused = from_hex(text(&vector["answer_unused"]["result"])).unwrap();
        assert_eq!(decode_bool(&used), Ok(true));
        assert_eq!(decode_bool(&unused), Ok(false));
        let mut two = used.clone();
        two[31] = 2;
        assert!(decode_bool(&two).is_err());
        assert!(decode_bool(&[]).is_err(), "no contract");
        assert!(decode_bool(&used[1..]).is_err());
    }

    #[test]
    fn nonce_bitmap_asks_for_the_word_and_reads_the_bit() {
        let vector = &vectors()["permit2_nonceBitmap"];
        assert_eq!(text(&vector["selector"]), "0x4fe02b44");
        // 105205563032569441392086685637033542508993842326992909591278444171080113378985
        let nonce = "0xe8983d0ede90da0cbaa6fb794b951184188cb5898a18e0c08f1b8c2c60a0d6a9";
        let (data, bit) = nonce_bitmap(&bytes(PAYER), &bytes(nonce));
        let expected = text(&vector["request"]["params"][0]["data"]);
        assert_eq!(format!("0x{}", to_hex(&data)), expected);
        assert_eq!(
            u64::from(bit),
            vector["bitPos = nonce & 0xff"].as_u64().unwrap()
        );
        let used = from_hex(text(&vector["answer_used (bit set)"]["result"])).unwrap();
        let unused = from_hex(text(&vector["answer_unused"]["result"])).unwrap();
        assert_eq!(decode_bit(&used, bit), Ok(true));
        assert_eq!(decode_bit(&unused, bit), Ok(false));
        assert_eq!(decode_bit(&used, bit - 1), Ok(false), "only that bit");
        let mut top = [0u8; 32];
        top[0] = 0x80;
        assert_eq!(decode_bit(&top, 255), Ok(true));
        assert_eq!(decode_bit(&top, 0), Ok(false));
    }
}
