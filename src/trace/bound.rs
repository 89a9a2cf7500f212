//! Bounded proof-log lines: a field an agent or a merchant can make long (the path, a
//! reason quoting wire input, a host, a method) is cut, and the cut part replaced by its
//! SHA-256 and length: `/very/long…[sha256:ab12…, 30000 bytes]`. The operator can still
//! tell which path it was (hash the one they suspect), and a 30 KB path costs a line of
//! about a kilobyte instead of thirty.
//!
//! What recovery rebuilds state from is never cut on a line that moved money: the
//! session, the agent, amounts, `pay_to`, replay keys and the ids that tie lines
//! together (all of them bounded upstream: names at 128 characters, payment headers at
//! 16 KiB). A refusal, which recovery does not read, is also held to [`MAX_REFUSAL_LINE`]
//! as a whole: past it, every remaining long field is cut and the rule list dropped.

use super::checks::Checks;
use super::decider::Decider;
use super::record::TraceRecord;
use super::vocabulary::{Kind, Verdict};
use crate::x402::hex;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Longest path kept whole.
pub const MAX_PATH: usize = 1024;
/// Longest reason kept whole (reasons may quote a challenge's offers or wire input).
pub const MAX_REASON: usize = 2048;
/// Longest of every other free-text field (host, method, scheme, network, ...).
pub const MAX_FIELD: usize = 256;
/// A refusal line (a `DENIED` decision) never exceeds this many bytes.
pub const MAX_REFUSAL_LINE: usize = 8 * 1024;

/// `text` if it fits in `limit` bytes; otherwise its head, then the SHA-256 and length of
/// the whole. The result is never longer than `limit` plus the marker (about 100 bytes).
pub fn cut(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let mut keep = limit.saturating_sub(MARKER_ROOM).max(16).min(text.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    Cow::Owned(format!(
        "{}…[sha256:{}, {} bytes]",
        &text[..keep],
        hex(&Sha256::digest(text.as_bytes())),
        text.len()
    ))
}

/// Room the marker takes: `…[sha256:` + 64 hex + `, N bytes]`.
const MARKER_ROOM: usize = 100;

/// Whether the line is a refusal: a `DENIED` decision, which moved no money and which
/// recovery skips, so every one of its fields may be cut.
pub fn is_refusal(record: &TraceRecord) -> bool {
    record.kind == Kind::Decision && record.decision == Some(Verdict::Denied)
}

/// The record with its long fields cut, borrowed when nothing needed cutting (the usual
/// case: a few length checks per line).
pub fn bound_record(record: &TraceRecord) -> Cow<'_, TraceRecord> {
    if !needs_cut(record) {
        return Cow::Borrowed(record);
    }
    let mut bounded = record.clone();
    cut_fields(&mut bounded);
    Cow::Owned(bounded)
}

/// A rule or check named past [`MAX_FIELD`] (a policy's own long rule id) is cut like
/// any other name.
fn decider_too_long(decider: &Option<Decider>) -> bool {
    decider
        .as_ref()
        .is_some_and(|decider| decider.name().len() > MAX_FIELD)
}

fn too_long(field: &Option<String>, limit: usize) -> bool {
    field.as_ref().is_some_and(|text| text.len() > limit)
}

fn needs_cut(record: &TraceRecord) -> bool {
    let refusal = is_refusal(record);
    too_long(&record.path, MAX_PATH)
        || too_long(&record.reason, MAX_REASON)
        || [
            &record.host,
            &record.method,
            &record.scheme,
            &record.network,
            &record.asset,
            &record.asset_symbol,
            &record.payer,
            &record.transaction,
        ]
        .iter()
        .any(|field| too_long(field, MAX_FIELD))
        || decider_too_long(&record.rule)
        || (refusal
            && (too_long(&record.pay_to, MAX_FIELD)
                || record.replay_keys.iter().any(|key| key.len() > MAX_FIELD)))
}

fn cut_in_place(field: &mut Option<String>, limit: usize) {
    if let Some(text) = field {
        if let Cow::Owned(shorter) = cut(text, limit) {
            *text = shorter;
        }
    }
}

fn cut_fields(record: &mut TraceRecord) {
    cut_in_place(&mut record.path, MAX_PATH);
    cut_in_place(&mut record.reason, MAX_REASON);
    for field in [
        &mut record.host,
        &mut record.method,
        &mut record.scheme,
        &mut record.network,
        &mut record.asset,
        &mut record.asset_symbol,
        &mut record.payer,
        &mut record.transaction,
    ] {
        cut_in_place(field, MAX_FIELD);
    }
    if let Some(rule) = &mut record.rule {
        if let Cow::Owned(shorter) = cut(&rule.name(), MAX_FIELD) {
            *rule = Decider::Rule(shorter);
        }
    }
    if is_refusal(record) {
        cut_in_place(&mut record.pay_to, MAX_FIELD);
        for key in &mut record.replay_keys {
            if let Cow::Owned(shorter) = cut(key, MAX_FIELD) {
                *key = shorter;
            }
        }
    }
}

/// Serialises a record into one line within the bounds: fields cut, and a refusal still
/// over [`MAX_REFUSAL_LINE`] cut harder (every field to its shortest, no rule list).
/// Returns the JSON and whether anything was cut.
pub fn bounded_line(record: &TraceRecord) -> Result<(String, bool), serde_json::Error> {
    let mut bounded = bound_record(record);
    let mut cut_any = matches!(bounded, Cow::Owned(_));
    if bounded.prev_hash.is_some() {
        // A record read back from the log: the writer chains the line itself.
        bounded.to_mut().prev_hash = None;
    }
    let mut line = serde_json::to_string(bounded.as_ref())?;
    if line.len() > MAX_REFUSAL_LINE && is_refusal(record) {
        let mut harder = bounded.into_owned();
        cut_in_place(&mut harder.path, MAX_FIELD);
        cut_in_place(&mut harder.reason, MAX_FIELD);
        harder.rules = Checks::default();
        harder.replay_keys.truncate(4);
        for key in &mut harder.replay_keys {
            if let Cow::Owned(shorter) = cut(key, MAX_FIELD) {
                *key = shorter;
            }
        }
        harder.tool = harder.tool.map(|t| cut(&t, MAX_FIELD).into_owned());
        harder.category = harder.category.map(|c| cut(&c, MAX_FIELD).into_owned());
        harder.tier = harder.tier.map(|t| cut(&t, MAX_FIELD).into_owned());
        line = serde_json::to_string(&harder)?;
        cut_any = true;
    }
    Ok((line, cut_any))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(path: String) -> TraceRecord {
        TraceRecord {
            trace_id: "tr_1".into(),
            kind: Kind::Decision,
            time: "2026-01-01T00:00:00Z".into(),
            session: crate::policy::SessionId::new("a", "s"),
            agent: "a".into(),
            path: Some(path),
            decision: Some(Verdict::Denied),
            rule: Some(Decider::refusal("malformed_payment")),
            reason: Some("x".repeat(50_000)),
            ..TraceRecord::default()
        }
    }

    #[test]
    fn a_long_field_keeps_its_head_and_names_the_whole_by_hash_and_length() {
        let path = format!("/very/long/{}", "é".repeat(15_000));
        let cut = cut(&path, MAX_PATH);
        assert!(cut.len() <= MAX_PATH + 120, "{}", cut.len());
        assert!(cut.starts_with("/very/long/"));
        let digest = hex(&Sha256::digest(path.as_bytes()));
        assert!(cut.ends_with(&format!("[sha256:{digest}, {} bytes]", path.len())));
        assert_eq!(super::cut("/short", MAX_PATH), "/short");
    }

    #[test]
    fn a_refusal_line_stays_under_the_hard_cap_whatever_it_carries() {
        let mut record = refusal("/p".repeat(20_000));
        record.replay_keys = vec!["k".repeat(16_000); 8];
        record.pay_to = Some("0x".repeat(8_000));
        let (line, cut_any) = bounded_line(&record).unwrap();
        assert!(cut_any);
        assert!(line.len() <= MAX_REFUSAL_LINE, "{}", line.len());
    }

    #[test]
    fn a_forward_decision_keeps_what_recovery_reads() {
        let mut record = refusal("/ok".into());
        record.decision = Some(Verdict::Allowed);
        record.reason = Some("within budget".into());
        record.pay_to = Some("0x".repeat(400));
        record.replay_keys = vec!["evm:".to_string() + &"1".repeat(600)];
        let (line, cut_any) = bounded_line(&record).unwrap();
        assert!(!cut_any, "nothing recovery reads is cut: {line}");
        assert!(line.contains(&"1".repeat(600)));
    }
}
