//! The hash chain: each line starts with `"prev_hash"`, the SHA-256 (lowercase hex) of
//! the previous line's bytes without its newline, and the first line ever with
//! [`GENESIS_HASH`]. Any edit, insertion or deletion then breaks the chain at the next
//! line ([`super::verify`]).

use crate::x402::hex;
use sha2::{Digest, Sha256};

/// The hash a chain starts from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash the next line chains from: SHA-256 of this line's bytes, in hex.
pub fn line_hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

/// Puts `"prev_hash"` first in the JSON object, so every line can be checked alone.
pub(crate) fn chain_line(prev_hash: &str, json_object: &str) -> String {
    let body = json_object.strip_prefix('{').unwrap_or(json_object);
    if body.trim_start().starts_with('}') {
        format!("{{\"prev_hash\":\"{prev_hash}\"}}")
    } else {
        format!("{{\"prev_hash\":\"{prev_hash}\",{body}")
    }
}
