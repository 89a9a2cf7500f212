//! Bytes as MPP writes them, read one way: base64url JSON objects (credentials, requests,
//! receipts), `0x` hex (addresses, nonces, signed transactions), integer amounts, and
//! one canonical form of a JSON value, so that two spellings of one challenge (its
//! `request` as base64url over HTTP or as an object over MCP, keys in any order) bind
//! alike.
//!
//! base64url is read with padding or without (the SDKs write none), in the URL-safe
//! alphabet only: a lenient decoder could read bytes the merchant reads differently.

use super::error::{excerpt, MppError};
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The bytes of base64url `text` of at most `limit` characters.
pub(crate) fn b64url(text: &str, what: &'static str, limit: usize) -> Result<Vec<u8>, MppError> {
    if text.len() > limit {
        return Err(MppError::TooLarge { what, limit });
    }
    B64URL
        .decode(text.trim_ascii())
        .map_err(|_| MppError::InvalidBase64(what))
}

/// A JSON object from its bytes.
pub(crate) fn json_object(bytes: &[u8], what: &'static str) -> Result<Value, MppError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| MppError::NotJson {
        what,
        detail: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(MppError::NotJson {
            what,
            detail: "it is JSON but not an object".into(),
        });
    }
    Ok(value)
}

/// A base64url JSON object of at most `limit` characters.
pub(crate) fn b64url_object(
    text: &str,
    what: &'static str,
    limit: usize,
) -> Result<Value, MppError> {
    json_object(&b64url(text, what, limit)?, what)
}

/// Bytes of `0x` hex text (the prefix is required, digits in any case, an even count).
pub fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?
        .as_bytes();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Exactly `N` bytes of `0x` hex (a 20-byte address, a 32-byte nonce).
pub fn fixed_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex_bytes(text)?.try_into().ok()
}

/// An amount in base units: an integer string, digits only, at most 28 of them (so it
/// prices exactly), as every MPP method writes amounts.
pub fn amount(text: &str) -> Result<u128, MppError> {
    if text.is_empty() || text.len() > 28 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MppError::BadAmount(excerpt(text)));
    }
    text.parse::<u128>()
        .map_err(|_| MppError::BadAmount(excerpt(text)))
}

/// Feeds `value` to `hasher` in a canonical form: object keys sorted, strings and
/// numbers as serde_json writes them, every item delimited.
pub(crate) fn hash_value(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(true) => hasher.update(b"t"),
        Value::Bool(false) => hasher.update(b"f"),
        Value::Number(number) => {
            hasher.update(b"#");
            hash_text(hasher, &number.to_string());
        }
        Value::String(text) => {
            hasher.update(b"s");
            hash_text(hasher, text);
        }
        Value::Array(items) => {
            hasher.update(b"[");
            hasher.update((items.len() as u64).to_be_bytes());
            for item in items {
                hash_value(hasher, item);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            hasher.update((keys.len() as u64).to_be_bytes());
            for key in keys {
                hash_text(hasher, key);
                if let Some(item) = map.get(key) {
                    hash_value(hasher, item);
                }
            }
        }
    }
}

/// Text with its length in front, so no two sequences of texts hash alike.
pub(crate) fn hash_text(hasher: &mut Sha256, text: &str) {
    hasher.update((text.len() as u64).to_be_bytes());
    hasher.update(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(value: &Value) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hash_value(&mut hasher, value);
        hasher.finalize().into()
    }

    #[test]
    fn one_value_in_any_key_order_hashes_alike_and_others_do_not() {
        let a: Value = serde_json::from_str(r#"{"b":[1,"x"],"a":{"d":null,"c":true}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"c":true,"d":null},"b":[1,"x"]}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        for other in [
            r#"{"a":{"c":true,"d":null},"b":[1,"y"]}"#,
            r#"{"a":{"c":true,"d":null},"b":["1","x"]}"#,
            r#"{"a":{"c":true},"b":[1,"x"]}"#,
            r#"{"a":{"c":true,"d":null},"b":[[1],"x"]}"#,
        ] {
            let other: Value = serde_json::from_str(other).unwrap();
            assert_ne!(digest(&a), digest(&other), "{other}");
        }
    }

    #[test]
    fn base64url_with_or_without_padding_but_no_other_alphabet() {
        assert_eq!(b64url("eyJhIjoxfQ", "x", 100).unwrap(), br#"{"a":1}"#);
        assert_eq!(b64url("eyJhIjoxfQ==", "x", 100).unwrap(), br#"{"a":1}"#);
        assert!(b64url("ab+/", "x", 100).is_err());
        assert!(matches!(
            b64url("eyJhIjoxfQ", "x", 4),
            Err(MppError::TooLarge { .. })
        ));
        assert!(b64url_object("WzFd", "x", 100).is_err(), "an array");
    }

    #[test]
    fn hex_and_amounts_are_read_strictly() {
        assert_eq!(hex_bytes("0x0aFF"), Some(vec![0x0a, 0xff]));
        for bad in ["0aff", "0x", "0xabc", "0xzz"] {
            assert_eq!(hex_bytes(bad), None, "{bad}");
        }
        assert_eq!(fixed_hex::<2>("0x0102"), Some([1, 2]));
        assert_eq!(fixed_hex::<2>("0x010203"), None);
        assert_eq!(amount("10000").unwrap(), 10_000);
        for bad in ["", "-1", "1.5", "1e3", " 1", &"9".repeat(29)] {
            assert!(amount(bad).is_err(), "{bad}");
        }
    }
}
