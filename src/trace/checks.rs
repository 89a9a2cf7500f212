//! A decision line's `rules`: every check evaluated for the payment, in order, with what
//! it does and whether it matched.
//!
//! The engine builds them typed ([`Checks::Evaluated`]). Read back from the log they are
//! kept as written ([`Checks::Written`]): recovery, the CLI and the admin API pass them on
//! without looking inside, and leaving a decision's eight or so small objects unparsed
//! keeps the replay of a large log as fast as it was before records were typed (and
//! writes them out again byte for byte). [`Checks::outcomes`] reads them when asked.

use super::decider::Decider;
use crate::policy::rules::RuleAction;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// One check as evaluated for a decision.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleOutcome {
    pub id: Decider,
    pub action: RuleAction,
    pub matched: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Why it matched or not, briefly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every check evaluated for a decision, in order.
#[derive(Clone, Debug)]
pub enum Checks {
    /// As the engine evaluated them, for a line to write.
    Evaluated(Vec<RuleOutcome>),
    /// As a line read back from the log has them, unparsed.
    Written(Box<RawValue>),
}

impl Checks {
    /// No checks: the field is left out of the line.
    pub fn is_empty(&self) -> bool {
        match self {
            Checks::Evaluated(outcomes) => outcomes.is_empty(),
            Checks::Written(raw) => raw.get().trim() == "[]",
        }
    }

    /// The checks, parsed if they were read back from the log.
    pub fn outcomes(&self) -> Result<Cow<'_, [RuleOutcome]>, serde_json::Error> {
        match self {
            Checks::Evaluated(outcomes) => Ok(Cow::Borrowed(outcomes)),
            Checks::Written(raw) => serde_json::from_str(raw.get()).map(Cow::Owned),
        }
    }
}

impl Default for Checks {
    fn default() -> Self {
        Checks::Evaluated(Vec::new())
    }
}

impl From<Vec<RuleOutcome>> for Checks {
    fn from(outcomes: Vec<RuleOutcome>) -> Self {
        Checks::Evaluated(outcomes)
    }
}

impl FromIterator<RuleOutcome> for Checks {
    fn from_iter<I: IntoIterator<Item = RuleOutcome>>(outcomes: I) -> Self {
        Checks::Evaluated(outcomes.into_iter().collect())
    }
}

impl Serialize for Checks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Checks::Evaluated(outcomes) => outcomes.serialize(serializer),
            Checks::Written(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Checks::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_back_are_written_out_as_they_were_and_parse_when_asked() {
        let written = r#"[{"id":"tier:open","action":"ALLOW","matched":true},{"id":"budget_halt","action":"BLOCK","matched":false,"shadow":true}]"#;
        let checks: Checks = serde_json::from_str(written).unwrap();
        assert_eq!(serde_json::to_string(&checks).unwrap(), written);
        let outcomes = checks.outcomes().unwrap();
        assert_eq!(outcomes[0].id, Decider::Tier("open".into()));
        assert_eq!(outcomes[1].action, RuleAction::Block);
        assert!(outcomes[1].shadow);
        let evaluated = Checks::from(outcomes.into_owned());
        assert_eq!(serde_json::to_string(&evaluated).unwrap(), written);
        assert!(Checks::default().is_empty());
    }
}
