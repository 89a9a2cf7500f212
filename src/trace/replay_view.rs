//! What recovery reads of a proof-log line: the fields of [`TraceRecord`] that rebuild
//! budgets, phases, holds, unknown payments, refunds and the replay set, borrowed from
//! the line where they can be.
//!
//! Recovery reads every line ever written before Purser listens, so it must not pay for
//! what it does not use: a decision line's checks, budget snapshot, asset and policy
//! digest are skipped unparsed, and text fields borrow from the line instead of being
//! copied. The view is not a second schema: its fields have [`TraceRecord`]'s names and
//! types (the same vocabularies, [`Phase`] and [`SessionId`]), and a test reads every
//! line of the fixture both ways and compares them field by field.
//!
//! [`TraceRecord`]: super::TraceRecord

use super::vocabulary::{Kind, Outcome, Verdict};
use crate::policy::{Phase, SessionId};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::borrow::Cow;

/// The fields of one proof-log line that recovery replays; see [`super::TraceRecord`] for
/// what each one means.
// Each field is the `TraceRecord` field of the same name, documented there.
#[allow(missing_docs)]
#[derive(Debug, Deserialize)]
pub struct ReplayView<'a> {
    #[serde(borrow)]
    pub trace_id: Cow<'a, str>,
    pub kind: Kind,
    #[serde(borrow, default)]
    pub time: Cow<'a, str>,
    #[serde(default)]
    pub session: SessionId,
    #[serde(borrow, default)]
    pub agent: Cow<'a, str>,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(borrow, default)]
    pub tool: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tier: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub path: Option<Cow<'a, str>>,
    #[serde(default)]
    pub amount_usd: Option<Decimal>,
    #[serde(default)]
    pub onchain: Option<crate::x402::ChainAuthorization>,
    #[serde(borrow, default)]
    pub pay_to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub payment_digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub resource_digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub retry_of: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub replay_keys: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub decision: Option<Verdict>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(borrow, default)]
    pub decision_trace_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub upstream_status: Option<u16>,
    #[serde(default)]
    pub compensation: Option<serde_json::Value>,
}

impl<'a> ReplayView<'a> {
    /// A line of the log (without its newline).
    pub fn from_line(line: &'a str) -> Result<ReplayView<'a>, serde_json::Error> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceRecord;

    const WRITTEN_BEFORE: &str = include_str!("testdata/lines-v0.1.0.jsonl");

    fn text(field: &Option<Cow<'_, str>>) -> Option<String> {
        field.as_deref().map(str::to_string)
    }

    #[test]
    fn every_line_reads_the_same_through_the_view_as_through_the_record() {
        for line in WRITTEN_BEFORE.lines() {
            let record = TraceRecord::from_line(line).unwrap();
            let view = ReplayView::from_line(line).unwrap();
            assert_eq!(view.trace_id, record.trace_id, "{line}");
            assert_eq!(view.kind, record.kind);
            assert_eq!(view.time, record.time);
            assert_eq!(view.session, record.session);
            assert_eq!(view.agent, record.agent);
            assert_eq!(view.phase, record.phase);
            assert_eq!(text(&view.tool), record.tool);
            assert_eq!(text(&view.category), record.category);
            assert_eq!(text(&view.tier), record.tier);
            assert_eq!(text(&view.method), record.method);
            assert_eq!(text(&view.host), record.host);
            assert_eq!(text(&view.path), record.path);
            assert_eq!(view.amount_usd, record.amount_usd);
            assert_eq!(view.onchain, record.onchain);
            assert_eq!(text(&view.pay_to), record.pay_to);
            assert_eq!(text(&view.payment_digest), record.payment_digest);
            assert_eq!(text(&view.resource_digest), record.resource_digest);
            assert_eq!(text(&view.retry_of), record.retry_of);
            let keys: Vec<String> = view.replay_keys.iter().map(|k| k.to_string()).collect();
            assert_eq!(keys, record.replay_keys);
            assert_eq!(view.decision, record.decision);
            assert_eq!(text(&view.reason), record.reason);
            assert_eq!(view.outcome, record.outcome);
            assert_eq!(text(&view.decision_trace_id), record.decision_trace_id);
            assert_eq!(view.upstream_status, record.upstream_status);
            assert_eq!(view.compensation, record.compensation);
        }
    }

    #[test]
    fn a_line_the_record_cannot_read_for_its_vocabulary_the_view_cannot_either() {
        for unreadable in [
            r#"{"trace_id":"tr_1"}"#,
            r#"{"kind":"decision"}"#,
            r#"{"trace_id":"tr_1","kind":"decision","decision":"MAYBE"}"#,
            r#"{"trace_id":"tr_1","kind":"phase","phase":"LATER"}"#,
            r#"{"trace_id":"tr_1","kind":"settlement","outcome":"perhaps"}"#,
        ] {
            assert!(TraceRecord::from_line(unreadable).is_err(), "{unreadable}");
            assert!(ReplayView::from_line(unreadable).is_err(), "{unreadable}");
        }
        // Text with an escape cannot be borrowed; it is read all the same.
        let view = ReplayView::from_line(r#"{"trace_id":"tr_\u0031","kind":"summary"}"#).unwrap();
        assert_eq!(view.trace_id, "tr_1");
    }
}
