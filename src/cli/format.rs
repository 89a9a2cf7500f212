//! Turning admin API JSON values into table cells: amounts, ratios with a bar, short
//! addresses, clock times and countdowns. Missing values render as `-`.

use jiff::Timestamp;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// What a missing value looks like.
pub const NONE: &str = "-";
/// Width of the ratio bar, inside its brackets.
const BAR_WIDTH: usize = 10;

/// A field as text: strings as they are, numbers and booleans printed, else `-`.
pub fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Bool(flag)) => flag.to_string(),
        _ => NONE.to_string(),
    }
}

/// A decimal field, sent as a JSON string (or, leniently, a number).
pub fn decimal(value: &Value, key: &str) -> Option<Decimal> {
    match value.get(key)? {
        Value::String(text) => Decimal::from_str(text).ok(),
        Value::Number(number) => Decimal::from_str(&number.to_string()).ok(),
        _ => None,
    }
}

/// A count field, 0 when missing.
pub fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A USD amount with at least two decimals: `0.5` → `0.50`, `0.001` stays.
pub fn usd(amount: Option<Decimal>) -> String {
    match amount {
        Some(amount) => {
            let mut amount = amount.normalize();
            if amount.scale() < 2 {
                amount.rescale(2);
            }
            amount.to_string()
        }
        None => NONE.to_string(),
    }
}

/// `[###.......]  30%`, or `-` without a limit.
pub fn ratio_bar(ratio: Option<Decimal>) -> String {
    let Some(ratio) = ratio else {
        return NONE.to_string();
    };
    let share = ratio.to_f64().unwrap_or(0.0).max(0.0);
    let filled = ((share * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    format!(
        "[{}{}] {:>4}",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        format!("{:.0}%", share * 100.0)
    )
}

/// The highest budget gate the ratio has reached: `halt`, `restrict` or `warning`.
pub fn gate_reached(ratio: Option<Decimal>, gates: &Value) -> Option<&'static str> {
    let ratio = ratio?;
    ["halt", "restrict", "warning"]
        .into_iter()
        .find(|gate| decimal(gates, gate).is_some_and(|mark| ratio >= mark))
}

/// `0x1234…abcd` style: the head and tail of a long identifier.
pub fn shorten_middle(text: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= head + tail + 3 {
        return text.to_string();
    }
    let start: String = chars[..head].iter().collect();
    let end: String = chars[chars.len() - tail..].iter().collect();
    format!("{start}...{end}")
}

/// Cuts text to `max` characters, marking the cut with `...`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// A time field: RFC 3339 text, or seconds / milliseconds since the epoch.
pub fn timestamp(value: &Value, key: &str) -> Option<Timestamp> {
    match value.get(key)? {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => {
            let raw = number.as_i64()?;
            if raw.abs() >= 100_000_000_000 {
                Timestamp::from_millisecond(raw).ok()
            } else {
                Timestamp::from_second(raw).ok()
            }
        }
        _ => None,
    }
}

/// `2025-06-01 12:34:56` (UTC).
pub fn clock(time: Option<Timestamp>) -> String {
    time.map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| NONE.to_string())
}

/// Time left until `deadline`: `4m05s`, `1h02m`, `45s`, or `expired`.
pub fn countdown(deadline: Option<Timestamp>, now: Timestamp) -> String {
    let Some(deadline) = deadline else {
        return NONE.to_string();
    };
    let left = deadline.as_second() - now.as_second();
    match left {
        ..=0 => "expired".to_string(),
        1..=59 => format!("{left}s"),
        60..=3599 => format!("{}m{:02}s", left / 60, left % 60),
        _ => format!("{}h{:02}m", left / 3600, (left % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_keep_two_decimals_at_least() {
        assert_eq!(usd(Some(Decimal::from_str("0.5").unwrap())), "0.50");
        assert_eq!(usd(Some(Decimal::from_str("0.001000").unwrap())), "0.001");
        assert_eq!(usd(Some(Decimal::from(12))), "12.00");
        assert_eq!(usd(None), "-");
    }

    #[test]
    fn the_ratio_bar_fills_with_the_ratio() {
        assert_eq!(
            ratio_bar(Some(Decimal::from_str("0.3").unwrap())),
            "[###.......]  30%"
        );
        assert_eq!(ratio_bar(Some(Decimal::from(2))), "[##########] 200%");
        assert_eq!(ratio_bar(None), "-");
    }

    #[test]
    fn gates_report_the_highest_reached() {
        let gates = json!({"warning": "0.70", "restrict": "0.85", "halt": "0.95"});
        let at = |r: &str| gate_reached(Some(Decimal::from_str(r).unwrap()), &gates);
        assert_eq!(at("0.5"), None);
        assert_eq!(at("0.7"), Some("warning"));
        assert_eq!(at("0.9"), Some("restrict"));
        assert_eq!(at("1.2"), Some("halt"));
    }

    #[test]
    fn long_addresses_are_shortened_in_the_middle() {
        let address = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
        assert_eq!(shorten_middle(address, 6, 4), "0x2096...287C");
        assert_eq!(shorten_middle("0xabc", 6, 4), "0xabc");
        assert_eq!(
            truncate("GET api.example.com/long/path", 12),
            "GET api.e..."
        );
    }

    #[test]
    fn countdowns_read_naturally() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| countdown(Some(Timestamp::from_second(1_000_000 + s).unwrap()), now);
        assert_eq!(at(-5), "expired");
        assert_eq!(at(45), "45s");
        assert_eq!(at(245), "4m05s");
        assert_eq!(at(3720), "1h02m");
    }

    #[test]
    fn times_parse_from_text_or_epoch_numbers() {
        let value = json!({"a": "2025-06-01T12:34:56.789Z", "b": 1_748_781_296, "c": 1_748_781_296_000_i64});
        assert_eq!(clock(timestamp(&value, "a")), "2025-06-01 12:34:56");
        assert_eq!(clock(timestamp(&value, "b")), "2025-06-01 12:34:56");
        assert_eq!(clock(timestamp(&value, "c")), "2025-06-01 12:34:56");
        assert_eq!(clock(timestamp(&value, "d")), "-");
    }
}
