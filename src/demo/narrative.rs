//! What the demo prints: step headings, the exchanges, Purser's decisions with the rule
//! and the budget, one-line summaries of proof-log lines, and the reasons behind each
//! decision, worded for someone meeting Purser for the first time.
//!
//! Everything goes to stdout, line by line, so the output reads the same in a terminal,
//! a pipe or a test.

use rust_decimal::Decimal;
use serde_json::Value;

/// Width prose is wrapped to.
const WIDTH: usize = 88;
/// Indentation of everything under a heading.
const INDENT: &str = "  ";
/// Width of the label column in `label  value` lines.
const LABEL: usize = 9;

/// A step's heading.
pub(super) fn heading(number: u8, total: u8, title: &str) {
    println!();
    let text = format!("Step {number} of {total} · {title} ");
    let rule = "─".repeat(WIDTH.saturating_sub(text.chars().count()));
    println!("{text}{rule}");
}

/// A paragraph, wrapped and indented.
pub(super) fn say(text: &str) {
    for line in wrap(text, WIDTH - INDENT.len()) {
        println!("{INDENT}{line}");
    }
}

/// The explanation of a decision.
pub(super) fn why(text: &str) {
    println!();
    // Wrapped to the width of the indented lines, so none runs past the others.
    let mut lines = wrap(&format!("Why: {text}"), WIDTH - INDENT.len() - 5).into_iter();
    if let Some(first) = lines.next() {
        println!("{INDENT}{first}");
    }
    for line in lines {
        println!("{INDENT}     {line}");
    }
}

/// A request the agent sends.
pub(super) fn request(text: &str) {
    println!();
    println!("{INDENT}→ {text}");
}

/// One `label  value` line under a request.
pub(super) fn detail(label: &str, value: &str) {
    println!("{INDENT}  {label:<LABEL$}{value}");
}

/// A continuation line under a [`detail`].
pub(super) fn more(value: &str) {
    println!("{INDENT}  {:<LABEL$}{value}", "");
}

/// A labelled list: the label on the first line only.
pub(super) fn block(label: &str, values: impl IntoIterator<Item = String>) {
    let mut values = values.into_iter();
    if let Some(first) = values.next() {
        detail(label, &first);
    }
    for value in values {
        more(&value);
    }
}

/// A plain indented line.
pub(super) fn line(text: &str) {
    println!("{INDENT}{text}");
}

/// A blank line.
pub(super) fn gap() {
    println!();
}

/// The step behaved as expected.
pub(super) fn passed(text: &str) {
    println!();
    marked("✓", text);
}

/// The step did not.
pub(super) fn failed(text: &str) {
    println!();
    marked("✗", text);
}

/// A wrapped paragraph behind a mark.
fn marked(mark: &str, text: &str) {
    for (index, line) in wrap(text, WIDTH - INDENT.len() - 2).iter().enumerate() {
        let lead = if index == 0 { mark } else { " " };
        println!("{INDENT}{lead} {line}");
    }
}

/// `$0.01`, `$2.00`: at least two decimals, more only when the amount has them.
pub(super) fn usd(amount: Decimal) -> String {
    let amount = amount.normalize();
    if amount.scale() < 2 {
        format!("${:.2}", amount)
    } else {
        format!("${amount}")
    }
}

/// A decimal from a JSON string or number (`rust_decimal` serializes as a string).
pub(super) fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.to_string().parse().ok(),
        _ => None,
    }
}

/// `0x2096…0287`: enough of an address or hash to recognise it.
pub(super) fn short(hex: &str) -> String {
    if hex.len() <= 14 || !hex.is_ascii() {
        return hex.to_string();
    }
    format!("{}…{}", &hex[..6], &hex[hex.len() - 4..])
}

/// The budget as the admin API shows a session: `$0.11 spent of $2.00 (5.5%)`.
pub(super) fn budget(session: &Value) -> String {
    let spent = decimal(&session["spent"]).unwrap_or_default();
    let reserved = decimal(&session["reserved"]).unwrap_or_default();
    let mut text = match decimal(&session["limit"]) {
        Some(limit) if !limit.is_zero() => {
            let percent = (spent / limit * Decimal::from(100)).round_dp(1).normalize();
            format!("{} spent of {} ({percent}%)", usd(spent), usd(limit))
        }
        _ => format!("{} spent (no limit)", usd(spent)),
    };
    if !reserved.is_zero() {
        text.push_str(&format!(", {} reserved", usd(reserved)));
    }
    text
}

/// One proof-log line in a sentence: id, kind, and what it says.
pub(super) fn trace_summary(line: &Value) -> String {
    let text = |name: &str| line[name].as_str().unwrap_or("").to_string();
    let amount = decimal(&line["amount_usd"]).map(usd).unwrap_or_default();
    let kind = text("kind");
    let what = match kind.as_str() {
        "decision" => {
            let phase = text("phase");
            let phase = if phase.is_empty() {
                String::new()
            } else {
                format!(" in {phase}")
            };
            format!(
                "{} by rule {}, {amount}{phase}",
                text("decision"),
                text("rule")
            )
        }
        "settlement" => {
            let status = line["upstream_status"]
                .as_u64()
                .map(|s| format!(", HTTP {s}"))
                .unwrap_or_default();
            let tx = line["transaction"]
                .as_str()
                .map(|t| format!(", tx {}", short(t)))
                .unwrap_or_default();
            format!("{}{tx}{status}", text("outcome"))
        }
        "hold" => {
            let approval = &line["approval"];
            format!(
                "{} by {} after {} ms",
                approval["outcome"].as_str().unwrap_or(""),
                approval["by"].as_str().unwrap_or("?"),
                approval["waited_ms"].as_u64().unwrap_or(0)
            )
        }
        "phase" => text("reason"),
        "compensation" => format!("refund {} {amount}", text("outcome")),
        _ => text("reason"),
    };
    format!("{}  {kind:<12} {what}", text("trace_id"))
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_read_as_dollars() {
        assert_eq!(usd(Decimal::new(1, 2)), "$0.01");
        assert_eq!(usd(Decimal::new(2, 0)), "$2.00");
        assert_eq!(usd(Decimal::new(75, 2)), "$0.75");
        assert_eq!(usd(Decimal::new(1234, 4)), "$0.1234");
    }

    #[test]
    fn the_budget_line_shows_spent_limit_and_share() {
        let session = json!({"spent": "0.11", "reserved": "0", "limit": "2.00"});
        assert_eq!(budget(&session), "$0.11 spent of $2.00 (5.5%)");
    }

    #[test]
    fn prose_wraps_at_spaces() {
        let lines = wrap("one two three four five", 9);
        assert_eq!(lines, vec!["one two", "three", "four five"]);
    }

    #[test]
    fn a_decision_line_reads_as_a_sentence() {
        let line = json!({"trace_id": "tr_1", "kind": "decision", "decision": "DENIED",
                          "rule": "phase", "amount_usd": "0.01", "phase": "EXPLORE"});
        assert_eq!(
            trace_summary(&line),
            "tr_1  decision     DENIED by rule phase, $0.01 in EXPLORE"
        );
    }
}
