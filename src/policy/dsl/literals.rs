//! The values written inside DSL tokens: names, non-negative decimals, `HH:MM` clock
//! times and duration units. Each refusal names the token's column.

use super::lexer::{err, fail};
use crate::policy::rules::DslError;
use rust_decimal::Decimal;

/// What a time window looks like, for messages.
pub(super) const WINDOW: &str = "a time window HH:MM-HH:MM";

/// Seconds in one `unit` (`s`, `min`, `hours`, `day`...), any case.
pub(super) fn unit_seconds(unit: &str) -> Option<u64> {
    match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(3_600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    }
}

/// `text` if it is a non-empty run of ASCII digits.
pub(super) fn digits(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `text` is a tool, category, tier or id part: ASCII letters, digits, `_`, `-`.
pub(super) fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

/// `text` as a name, or an error naming `what` it was meant to be.
pub(super) fn name(text: &str, col: usize, what: &str) -> Result<String, DslError> {
    if !is_name(text) {
        return fail(
            col,
            format!("{what} `{text}` may use only letters, digits, `_` and `-`"),
        );
    }
    Ok(text.to_string())
}

/// A non-negative decimal written as digits with at most one `.`: no sign, exponent or
/// `_`, which `Decimal`'s parser would otherwise accept or misread.
pub(super) fn decimal(text: &str, col: usize, what: &str) -> Result<Decimal, DslError> {
    let well_formed = text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().any(|b| b.is_ascii_digit())
        && text.matches('.').count() <= 1;
    let parsed = Some(text)
        .filter(|_| well_formed)
        .and_then(|t| Decimal::from_str_exact(t).ok());
    parsed.ok_or_else(|| {
        err(
            col,
            format!("{what} must be a non-negative decimal, found `{text}`"),
        )
    })
}

/// Minutes after midnight for `H:MM` or `HH:MM`; `24:00` only where a window ends.
pub(super) fn clock(text: &str, col: usize, is_end: bool) -> Result<u16, DslError> {
    let parts = text
        .split_once(':')
        .filter(|(h, m)| h.len() <= 2 && m.len() == 2);
    let number = |t: &str| digits(t).and_then(|d| d.parse::<u16>().ok());
    let Some((hours, minutes)) = parts.and_then(|(h, m)| Some((number(h)?, number(m)?))) else {
        return fail(col, format!("expected {WINDOW}, found `{text}`"));
    };
    match (hours, minutes) {
        (0..=23, 0..=59) | (24, 0) if is_end || hours < 24 => Ok(hours * 60 + minutes),
        (24, 0) => fail(col, "time 24:00 can only end a window; start at 00:00"),
        _ => fail(col, format!("time {text} is not a time of day")),
    }
}
