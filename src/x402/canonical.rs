//! Canonical bytes of the fields that make a payment single-use, so a replay key does
//! not depend on how the agent spelled them.
//!
//! The same EIP-3009 authorization can be written `0xAB…`, `ab…` or `0x00ab…`: what the
//! token contract checks is bytes (a 20-byte address, a 32-byte nonce), so keys are built
//! from bytes. Hex is read with or without `0x`, in any case; an odd number of digits
//! reads as if it had a leading zero. A value that is not hex, or does not fit its width,
//! cannot be keyed, and the payment carrying it is refused rather than keyed loosely.

/// The longest hex text read (a smart-wallet signature can be long; a header is at most
/// 16 KiB anyway).
const MAX_HEX_DIGITS: usize = 16 * 1024;

/// Bytes of hex text, `0x`/`0X` optional, any case. `None` for empty or non-hex text.
pub(crate) fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .as_bytes();
    if digits.is_empty() || digits.len() > MAX_HEX_DIGITS {
        return None;
    }
    let mut bytes = Vec::with_capacity(digits.len().div_ceil(2));
    // An odd count reads as if it had a leading zero digit: `0x1` is the byte 0x01.
    let (head, rest) = digits.split_at(digits.len() % 2);
    if let [single] = head {
        bytes.push(nibble(*single)?);
    }
    for pair in rest.chunks_exact(2) {
        bytes.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(bytes)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// `bytes` as a big-endian number of exactly `N` bytes: zeros added on the left, leading
/// zero bytes beyond `N` dropped. `None` when the number needs more than `N` bytes.
pub(crate) fn left_padded<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let significant = bytes
        .iter()
        .position(|b| *b != 0)
        .map_or(&[][..], |first| &bytes[first..]);
    let value = if bytes.len() <= N { bytes } else { significant };
    if value.len() > N {
        return None;
    }
    let mut out = [0u8; N];
    out[N - value.len()..].copy_from_slice(value);
    Some(out)
}

/// `bytes` as a fixed `bytesN` value shorter than `N`, zeros added on the right, as an
/// ABI encoder pads a short `bytes32`. `None` when `bytes` is already `N` or longer.
pub(crate) fn right_padded<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    if bytes.len() >= N {
        return None;
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}

/// An EVM address (20 bytes) from hex.
pub(crate) fn address(text: &str) -> Option<[u8; 20]> {
    left_padded(&hex_bytes(text)?)
}

/// Every 32-byte value an EIP-3009 `bytes32` nonce can stand for. Written in full it is
/// one value. Written short (`0x01`), a facilitator could read it as a number (zeros on
/// the left) or as an ABI `bytes32` (zeros on the right): both are keys, so a replay
/// matches whichever the merchant's side uses.
pub(crate) fn bytes32_nonce(text: &str) -> Option<Vec<[u8; 32]>> {
    let bytes = hex_bytes(text)?;
    let number = left_padded::<32>(&bytes)?;
    let mut values = vec![number];
    if let Some(padded) = right_padded::<32>(&bytes).filter(|p| *p != number) {
        values.push(padded);
    }
    Some(values)
}

/// A `uint256` (a Permit2 nonce) as 32 big-endian bytes: `0x` hex, or decimal digits as
/// the SDKs write it. `None` when it is neither or does not fit 256 bits.
pub(crate) fn uint256(text: &str) -> Option<[u8; 32]> {
    if text.starts_with("0x") || text.starts_with("0X") {
        return left_padded(&hex_bytes(text)?);
    }
    if text.is_empty() || text.len() > 100 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for digit in text.bytes() {
        // out = out * 10 + digit, big-endian; a carry out of the top byte is overflow.
        let mut carry = u16::from(digit - b'0');
        for byte in out.iter_mut().rev() {
            let next = u16::from(*byte) * 10 + carry;
            *byte = (next & 0xff) as u8;
            carry = next >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_reads_with_or_without_prefix_in_any_case() {
        assert_eq!(hex_bytes("0xAbCd"), Some(vec![0xab, 0xcd]));
        assert_eq!(hex_bytes("abcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(hex_bytes("0XABCD"), Some(vec![0xab, 0xcd]));
        assert_eq!(hex_bytes("0x1"), Some(vec![0x01]));
        assert_eq!(hex_bytes("123"), Some(vec![0x01, 0x23]));
        for bad in ["", "0x", "0xg0", "12 34", "+12", "0x-1", "０x12", "0x１２"] {
            assert_eq!(hex_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_twenty_bytes_however_spelled() {
        let full = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
        let canonical = address(full).unwrap();
        assert_eq!(address(&full[2..]), Some(canonical));
        assert_eq!(address(&full.to_ascii_lowercase()), Some(canonical));
        assert_eq!(address(&full.to_ascii_uppercase()[2..]), Some(canonical));
        // Leading zeros may be dropped or added; more than 20 significant bytes may not.
        assert_eq!(
            address("0x00ab"),
            address("0x00000000000000000000000000000000000000ab")
        );
        assert_eq!(address(&format!("0x0000{}", &full[2..])), Some(canonical));
        assert_eq!(address(&format!("0x01{}", &full[2..])), None);
        assert_eq!(address("not-an-address"), None);
    }

    #[test]
    fn a_short_nonce_stands_for_both_paddings_and_a_full_one_for_itself() {
        let full = format!("0x{:064x}", 1);
        assert_eq!(bytes32_nonce(&full).unwrap().len(), 1);
        let short = bytes32_nonce("0x01").unwrap();
        assert_eq!(short.len(), 2);
        assert_eq!(short[0], bytes32_nonce(&full).unwrap()[0]);
        let mut right = [0u8; 32];
        right[0] = 1;
        assert_eq!(short[1], right);
        assert_eq!(bytes32_nonce("1").unwrap(), short, "no prefix, odd length");
        assert_eq!(bytes32_nonce(&format!("0x{}", "ff".repeat(33))), None);
        assert_eq!(bytes32_nonce("0xzz"), None);
    }

    #[test]
    fn uint256_reads_decimal_and_hex_alike() {
        let decimal =
            uint256("84923401923840198230498123049812304981230498123049812304981230498").unwrap();
        assert_eq!(uint256("255").unwrap()[31], 0xff);
        assert_eq!(uint256("256").unwrap()[30..], [1, 0]);
        assert_eq!(uint256("0xff"), uint256("255"));
        assert_eq!(uint256("0x00FF"), uint256("00255"));
        assert_ne!(decimal, [0u8; 32]);
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(uint256(max), Some([0xff; 32]));
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(uint256(over), None);
        for bad in ["", "12a", "-1", " 1", "1e3", "ab"] {
            assert_eq!(uint256(bad), None, "{bad:?}");
        }
    }
}
