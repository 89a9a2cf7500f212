//! What proof-log queries filter on: a line's session, agent, decision and kind.
//!
//! Decisions and kinds come from fixed vocabularies and match in any case (`denied` is
//! DENIED). A value outside them is an error naming the valid ones, never an empty
//! result: a typo must not read as "no such payments". Shared by the CLI's flags
//! (`traces tail`, `traces show`) and the admin API's `GET /v1/traces`.

use serde_json::Value;

/// A field whose values are a fixed list, spelled as the trace log spells them.
#[derive(Debug)]
pub struct Vocabulary {
    /// The field (and query parameter) name.
    pub field: &'static str,
    pub values: &'static [&'static str],
}

/// A decision line's verdict; hold lines carry the human's ALLOWED or DENIED.
pub const DECISIONS: Vocabulary = Vocabulary {
    field: "decision",
    values: &["ALLOWED", "DENIED", "PENDING_APPROVAL"],
};

/// What a trace line records.
pub const KINDS: Vocabulary = Vocabulary {
    field: "kind",
    values: &[
        "decision",
        "settlement",
        "hold",
        "phase",
        "resolution",
        "compensation",
        "summary",
    ],
};

/// A filter value outside its vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a {field}; valid values: {}", valid.join(", "))]
pub struct UnknownValue {
    pub field: &'static str,
    pub given: String,
    pub valid: &'static [&'static str],
}

impl Vocabulary {
    /// The value as the trace log spells it, whatever case `text` is in.
    pub fn canonical(&self, text: &str) -> Result<&'static str, UnknownValue> {
        let text = text.trim();
        self.values
            .iter()
            .copied()
            .find(|value| value.eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownValue {
                field: self.field,
                given: text.to_string(),
                valid: self.values,
            })
    }
}

/// Which trace lines to keep; an unset field keeps every line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub session: Option<String>,
    pub agent: Option<String>,
    pub decision: Option<&'static str>,
    pub kind: Option<&'static str>,
}

impl TraceFilter {
    /// The filter named by query parameters (`session`, `agent`, `decision`, `kind`);
    /// other parameters are left to the caller.
    pub fn from_query(pairs: &[(String, String)]) -> Result<TraceFilter, UnknownValue> {
        let mut filter = TraceFilter::default();
        for (key, value) in pairs {
            match key.as_str() {
                "session" => filter.session = Some(value.clone()),
                "agent" => filter.agent = Some(value.clone()),
                "decision" => filter.decision = Some(DECISIONS.canonical(value)?),
                "kind" => filter.kind = Some(KINDS.canonical(value)?),
                _ => {}
            }
        }
        Ok(filter)
    }

    /// True when every field set in the filter equals the line's.
    pub fn matches(&self, line: &Value) -> bool {
        let wanted = [
            ("session", self.session.as_deref()),
            ("agent", self.agent.as_deref()),
            ("decision", self.decision),
            ("kind", self.kind),
        ];
        wanted.into_iter().all(|(field, wanted)| {
            wanted.is_none_or(|value| line.get(field).and_then(Value::as_str) == Some(value))
        })
    }
}

/// Clap value parser for `--decision`.
pub fn decision(text: &str) -> Result<&'static str, UnknownValue> {
    DECISIONS.canonical(text)
}

/// Clap value parser for `--kind`.
pub fn kind(text: &str) -> Result<&'static str, UnknownValue> {
    KINDS.canonical(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evaluate::Verdict;
    use serde_json::json;

    #[test]
    fn values_match_in_any_case() {
        assert_eq!(DECISIONS.canonical("denied"), Ok("DENIED"));
        assert_eq!(
            DECISIONS.canonical(" Pending_Approval "),
            Ok("PENDING_APPROVAL")
        );
        assert_eq!(KINDS.canonical("HOLD"), Ok("hold"));
    }

    #[test]
    fn an_unknown_value_names_the_valid_ones() {
        let error = DECISIONS.canonical("denyed").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`denyed` is not a decision; valid values: ALLOWED, DENIED, PENDING_APPROVAL"
        );
    }

    #[test]
    fn every_verdict_is_a_decision() {
        for verdict in [Verdict::Allowed, Verdict::Denied, Verdict::PendingApproval] {
            assert_eq!(DECISIONS.canonical(verdict.as_str()), Ok(verdict.as_str()));
        }
    }

    #[test]
    fn filters_keep_lines_whose_fields_match() {
        let pairs = [
            ("decision".into(), "denied".into()),
            ("limit".into(), "5".into()),
        ];
        let filter = TraceFilter::from_query(&pairs).unwrap();
        assert_eq!(filter.decision, Some("DENIED"));
        assert!(filter.matches(&json!({"decision": "DENIED", "kind": "decision"})));
        assert!(!filter.matches(&json!({"decision": "ALLOWED"})));
        assert!(!filter.matches(&json!({"kind": "settlement"})));
        let bad = [("kind".into(), "settlements".into())];
        assert_eq!(TraceFilter::from_query(&bad).unwrap_err().field, "kind");
    }
}
