//! The session phases (EXPLORE → DECIDE → COMMIT) and the one place their names are read
//! and written: policies, the DSL, the `X-Purser-Phase` header, the admin API, the CLI and
//! the proof log all go through [`Phase::parse`] and [`Phase::as_str`].

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The session phases, in their only order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Explore,
    Decide,
    Commit,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 3] = [Phase::Explore, Phase::Decide, Phase::Commit];

    /// `EXPLORE`, `DECIDE` or `COMMIT`: how phases are written everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Explore => "EXPLORE",
            Phase::Decide => "DECIDE",
            Phase::Commit => "COMMIT",
        }
    }

    /// A phase name in any case, surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<Phase> {
        let text = text.trim();
        Phase::ALL
            .into_iter()
            .find(|phase| phase.as_str().eq_ignore_ascii_case(text))
    }
}

/// `EXPLORE`, `DECIDE` or `COMMIT` (the same as [`Phase::as_str`], for call sites that
/// name phases in messages).
pub fn phase_name(phase: Phase) -> &'static str {
    phase.as_str()
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a phase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a phase: EXPLORE, DECIDE or COMMIT")]
pub struct NotAPhase(pub String);

impl FromStr for Phase {
    type Err = NotAPhase;

    fn from_str(text: &str) -> Result<Phase, NotAPhase> {
        Phase::parse(text).ok_or_else(|| NotAPhase(text.to_string()))
    }
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PhaseVisitor;
        impl de::Visitor<'_> for PhaseVisitor {
            type Value = Phase;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a phase: EXPLORE, DECIDE or COMMIT")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Phase, E> {
                text.parse().map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_str(PhaseVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_in_any_case_and_write_in_capitals() {
        assert_eq!(Phase::parse(" commit "), Some(Phase::Commit));
        assert_eq!(Phase::parse("Decide"), Some(Phase::Decide));
        assert_eq!(Phase::parse("COMMITTED"), None);
        for phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{phase}\""));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), phase);
        }
        let refused = serde_json::from_str::<Phase>("\"later\"").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("`later` is not a phase: EXPLORE, DECIDE or COMMIT"),
            "{refused}"
        );
    }

    #[test]
    fn phases_only_go_one_way() {
        assert!(Phase::Explore < Phase::Decide && Phase::Decide < Phase::Commit);
    }
}
