//! Atomic amounts on the wire: validated integer strings, never floats, never wrapped.
//!
//! The protocol sends amounts as base-10 integer strings of atomic units ("50000" is
//! 0.05 USDC). Some hand-written servers send JSON numbers instead; those are accepted
//! only when serde_json reads them as a `u64` exactly, because a larger or fractional JSON
//! number has already been rounded through a float and its value cannot be trusted.
//! Hex (`0x...`) amounts are refused: the EIP-3009 spec once allowed them but no SDK emits
//! them, and Python merchants (`int(value)`) would refuse them too.

use super::error::{excerpt, X402Error};
use serde_json::Value;

/// Most digits an amount may have: 28 nines still fit a `rust_decimal::Decimal` mantissa,
/// so every accepted amount can be priced exactly.
pub const MAX_AMOUNT_DIGITS: usize = 28;

/// Parses an amount string, or says why it is not one.
pub fn parse_atomic_str(text: &str) -> Result<u128, String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.starts_with('-') {
        return Err(format!("is negative ({})", excerpt(text)));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_digits(text));
    }
    if text.len() > MAX_AMOUNT_DIGITS {
        return Err(format!(
            "has {} digits, more than the {MAX_AMOUNT_DIGITS} allowed",
            text.len()
        ));
    }
    // At most 28 digits always fits a u128; the error arm is unreachable but not trusted.
    text.parse::<u128>()
        .map_err(|_| format!("is not a number ({})", excerpt(text)))
}

/// Explains why a string with a non-digit is refused.
fn not_digits(text: &str) -> String {
    let fractional = text.contains('.')
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().any(|b| b.is_ascii_digit());
    if fractional {
        format!("is fractional ({}); send whole atomic units", excerpt(text))
    } else {
        format!(
            "is not a number ({}): only the digits 0-9 are allowed",
            excerpt(text)
        )
    }
}

/// Parses the amount at `path`: a digit string, or a JSON number that is exactly a `u64`.
///
/// Strings and numbers with bad content are [`X402Error::BadAmount`]; other JSON types are
/// [`X402Error::WrongShape`], since the field itself is the wrong kind of thing.
pub(crate) fn parse_atomic(value: &Value, path: &str) -> Result<u128, X402Error> {
    match value {
        Value::String(text) => {
            parse_atomic_str(text).map_err(|why| X402Error::BadAmount(format!("{path} {why}")))
        }
        Value::Number(number) => from_number(number, path),
        _ => Err(X402Error::WrongShape(format!(
            "{path} must be a string of digits"
        ))),
    }
}

/// Accepts a JSON number only if it is a non-negative integer serde_json holds exactly.
fn from_number(number: &serde_json::Number, path: &str) -> Result<u128, X402Error> {
    if let Some(exact) = number.as_u64() {
        return Ok(u128::from(exact));
    }
    // The float is used only to say what is wrong, never as a value.
    let approx = number.as_f64().unwrap_or(f64::NAN);
    let why = if number.as_i64().is_some() || approx < 0.0 {
        format!("is negative ({number})")
    } else if approx.fract() != 0.0 {
        format!("is fractional ({number}); send whole atomic units")
    } else {
        format!("is a JSON number that cannot be held exactly ({number}); send it as a string")
    };
    Err(X402Error::BadAmount(format!("{path} {why}")))
}
