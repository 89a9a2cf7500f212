//! What proof-log queries filter on: a line's session, agent, decision and kind.
//!
//! Decisions and kinds are named in any case (`denied` is DENIED); a value outside their
//! vocabulary is an error naming the valid ones ([`super::vocabulary`]). Shared by the
//! CLI's flags (`traces tail`, `traces show`) and the admin API's `GET /v1/traces`.

use super::record::TraceRecord;
use super::vocabulary::{Kind, UnknownValue, Verdict, Vocabulary};

/// Which trace lines to keep; an unset field keeps every line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub session: Option<String>,
    pub agent: Option<String>,
    pub decision: Option<Verdict>,
    pub kind: Option<Kind>,
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
                "decision" => filter.decision = Some(Verdict::parse_any_case(value)?),
                "kind" => filter.kind = Some(Kind::parse_any_case(value)?),
                _ => {}
            }
        }
        Ok(filter)
    }

    /// True when every field set in the filter equals the line's.
    pub fn matches(&self, line: &TraceRecord) -> bool {
        self.session
            .as_deref()
            .is_none_or(|session| line.session.as_str() == session)
            && self
                .agent
                .as_deref()
                .is_none_or(|agent| line.agent == agent)
            && self
                .decision
                .is_none_or(|decision| line.decision == Some(decision))
            && self.kind.is_none_or(|kind| line.kind == kind)
    }
}

/// Clap value parser for `--decision`.
pub fn decision(text: &str) -> Result<Verdict, UnknownValue> {
    Verdict::parse_any_case(text)
}

/// Clap value parser for `--kind`.
pub fn kind(text: &str) -> Result<Kind, UnknownValue> {
    Kind::parse_any_case(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: Kind, decision: Option<Verdict>) -> TraceRecord {
        TraceRecord {
            trace_id: "tr_1".into(),
            kind,
            decision,
            ..TraceRecord::default()
        }
    }

    #[test]
    fn filters_keep_lines_whose_fields_match() {
        let pairs = [
            ("decision".into(), "denied".into()),
            ("limit".into(), "5".into()),
        ];
        let filter = TraceFilter::from_query(&pairs).unwrap();
        assert_eq!(filter.decision, Some(Verdict::Denied));
        assert!(filter.matches(&line(Kind::Decision, Some(Verdict::Denied))));
        assert!(!filter.matches(&line(Kind::Decision, Some(Verdict::Allowed))));
        assert!(!filter.matches(&line(Kind::Settlement, None)));
        let bad = [("kind".into(), "settlements".into())];
        assert_eq!(TraceFilter::from_query(&bad).unwrap_err().field, "kind");
    }

    #[test]
    fn sessions_and_agents_match_exactly() {
        let mut record = line(Kind::Phase, None);
        record.session = crate::policy::SessionId::new("bot", "run-7");
        record.agent = "bot".into();
        let by_session = TraceFilter {
            session: Some("bot.run-7".into()),
            ..TraceFilter::default()
        };
        assert!(by_session.matches(&record));
        let by_agent = TraceFilter {
            agent: Some("bo".into()),
            ..TraceFilter::default()
        };
        assert!(!by_agent.matches(&record));
    }
}
