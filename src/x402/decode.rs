//! Bounded decoding of x402 headers and bodies: size check first, then base64, then JSON.
//!
//! Only standard, padded base64 is accepted. Both official SDKs emit exactly that (Python
//! `base64.b64encode`; TypeScript `btoa` / `Buffer.toString("base64")`, and its own
//! `Base64EncodedRegex` is `^[A-Za-z0-9+/]*={0,2}$`), so the URL-safe alphabet and missing
//! padding are refused rather than guessed at: a lenient decoder here could read a header
//! differently from the merchant's decoder, and governance must judge the bytes the
//! merchant will judge. Surrounding whitespace is tolerated (proxies and clients add it).

use super::error::X402Error;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest payment header (`X-PAYMENT`, `PAYMENT-SIGNATURE`, `PAYMENT-REQUIRED`, receipts)
/// Purser decodes. Real payments are under 2 KiB; Solana transactions a little more.
pub const MAX_PAYMENT_HEADER_BYTES: usize = 16 * 1024;

/// Largest 402 challenge body Purser buffers and parses (v1 challenges live in the body).
pub const MAX_CHALLENGE_BODY_BYTES: usize = 64 * 1024;

/// Base64-decodes a header value after checking its size; returns the JSON bytes.
pub fn decode_header(value: &[u8]) -> Result<Vec<u8>, X402Error> {
    check_size(value, MAX_PAYMENT_HEADER_BYTES)?;
    STANDARD
        .decode(value.trim_ascii())
        .map_err(|_| X402Error::InvalidBase64)
}

/// Decodes a header value into JSON, returning the decoded bytes too (payments hash them).
pub fn decode_header_json(value: &[u8]) -> Result<(Value, Vec<u8>), X402Error> {
    let bytes = decode_header(value)?;
    let json = parse_json(&bytes)?;
    Ok((json, bytes))
}

/// Decodes a header value straight into a serde type (for example a [`super::wire`] type).
///
/// The typed path reports serde's message, which names missing fields but not always the
/// field of a type error; the `parse_*` functions give precise paths.
pub fn decode_header_as<T: DeserializeOwned>(value: &[u8]) -> Result<T, X402Error> {
    let bytes = decode_header(value)?;
    serde_json::from_slice(&bytes).map_err(|e| json_error(&e))
}

/// Parses a challenge body (v1 402 JSON) after checking its size.
pub fn decode_body_json(body: &[u8]) -> Result<Value, X402Error> {
    check_size(body, MAX_CHALLENGE_BODY_BYTES)?;
    parse_json(body)
}

/// Refuses input over `limit` bytes before any work is done on it.
pub fn check_size(input: &[u8], limit: usize) -> Result<(), X402Error> {
    if input.len() > limit {
        return Err(X402Error::TooLarge { limit });
    }
    Ok(())
}

/// Parses JSON bytes. Duplicate keys keep the last value, as Python's `json` and
/// JavaScript's `JSON.parse` do, so Purser reads a payment the way the merchant will.
pub fn parse_json(bytes: &[u8]) -> Result<Value, X402Error> {
    if bytes.trim_ascii().is_empty() {
        return Err(X402Error::NotJson("the data is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| X402Error::NotJson(e.to_string()))
}

/// Maps a serde_json error from the typed path: syntax errors are not JSON, the rest are
/// JSON of the wrong shape.
fn json_error(error: &serde_json::Error) -> X402Error {
    match error.classify() {
        serde_json::error::Category::Data => X402Error::WrongShape(error.to_string()),
        _ => X402Error::NotJson(error.to_string()),
    }
}
