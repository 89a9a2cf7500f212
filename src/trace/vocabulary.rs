//! The proof log's fixed vocabularies: what a line records ([`Kind`]), a decision's
//! [`Verdict`], a settlement's or refund's [`Outcome`], the budget [`Gate`] crossed and how
//! a hold ended ([`HoldEnd`]).
//!
//! Each is written exactly as [`Vocabulary::as_str`] spells it (the spellings are the
//! published schema, `schemas/trace-line.schema.json`, and the hash chain covers them).
//! Queries name them in any case ([`Vocabulary::parse_any_case`]); a value outside the
//! vocabulary is an error naming the valid ones, never an empty result, so a typo does
//! not read as "no such payments".

use serde::{Deserialize, Serialize};
use std::fmt;

/// A field whose values are a fixed list.
pub trait Vocabulary: Copy + Sized + 'static {
    /// The field (and query parameter) these values fill.
    const FIELD: &'static str;
    /// Every value, in the order they are listed to the user.
    const ALL: &'static [Self];

    /// The value as the proof log spells it.
    fn as_str(self) -> &'static str;

    /// The value spelled `text` in any case, surrounding spaces ignored.
    fn parse_any_case(text: &str) -> Result<Self, UnknownValue> {
        let text = text.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownValue {
                field: Self::FIELD,
                given: text.to_string(),
                valid: Self::ALL.iter().map(|value| value.as_str()).collect(),
            })
    }
}

/// A value outside its vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a {field}; valid values: {}", valid.join(", "))]
pub struct UnknownValue {
    pub field: &'static str,
    pub given: String,
    pub valid: Vec<&'static str>,
}

/// What a line records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A payment decided (allowed, refused or held). The default only fills a record
    /// being built: every writer names its kind.
    #[default]
    Decision,
    /// A forwarded payment's answer: committed, released or unknown.
    Settlement,
    /// A held payment approved or denied.
    Hold,
    /// A session moved to another phase.
    Phase,
    /// A payment whose outcome was unknown, reconciled.
    Resolution,
    /// A refund of a settled payment.
    Compensation,
    /// Refusals past an agent's rate, counted instead of written.
    Summary,
}

impl Vocabulary for Kind {
    const FIELD: &'static str = "kind";
    const ALL: &'static [Kind] = &[
        Kind::Decision,
        Kind::Settlement,
        Kind::Hold,
        Kind::Phase,
        Kind::Resolution,
        Kind::Compensation,
        Kind::Summary,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Decision => "decision",
            Kind::Settlement => "settlement",
            Kind::Hold => "hold",
            Kind::Phase => "phase",
            Kind::Resolution => "resolution",
            Kind::Compensation => "compensation",
            Kind::Summary => "summary",
        }
    }
}

/// A decision line's verdict; a hold line carries the human's (or the deadline's)
/// ALLOWED or DENIED, and a summary line the DENIED of the refusals it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Allowed,
    PendingApproval,
    Denied,
}

impl Verdict {
    /// `ALLOWED`, `PENDING_APPROVAL` or `DENIED`.
    pub fn as_str(self) -> &'static str {
        Vocabulary::as_str(self)
    }
}

impl Vocabulary for Verdict {
    const FIELD: &'static str = "decision";
    const ALL: &'static [Verdict] = &[Verdict::Allowed, Verdict::Denied, Verdict::PendingApproval];

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "ALLOWED",
            Verdict::PendingApproval => "PENDING_APPROVAL",
            Verdict::Denied => "DENIED",
        }
    }
}

/// How a payment (or its refund) ended, as its line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Settled: the money moved (settlement and resolution lines).
    Committed,
    /// Not paid: the reservation went back to the budget (settlement and resolution).
    Released,
    /// It left, and no answer said whether it settled (settlement lines).
    Unknown,
    /// A refund was queued (compensation lines).
    Pending,
    /// The refund endpoint took the request (compensation lines).
    Requested,
    /// The refund endpoint could not be reached or refused, after retries (compensation).
    Failed,
}

impl Outcome {
    /// `committed`, `released`, `unknown`, `pending`, `requested` or `failed`.
    pub fn as_str(self) -> &'static str {
        Vocabulary::as_str(self)
    }
}

impl Vocabulary for Outcome {
    const FIELD: &'static str = "outcome";
    const ALL: &'static [Outcome] = &[
        Outcome::Committed,
        Outcome::Released,
        Outcome::Unknown,
        Outcome::Pending,
        Outcome::Requested,
        Outcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Released => "released",
            Outcome::Unknown => "unknown",
            Outcome::Pending => "pending",
            Outcome::Requested => "requested",
            Outcome::Failed => "failed",
        }
    }
}

/// The graduated budget gate a payment crosses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    Warning,
    Restrict,
    Halt,
}

impl Gate {
    /// `warning`, `restrict` or `halt`.
    pub fn as_str(self) -> &'static str {
        Vocabulary::as_str(self)
    }
}

impl Vocabulary for Gate {
    const FIELD: &'static str = "gate";
    const ALL: &'static [Gate] = &[Gate::Warning, Gate::Restrict, Gate::Halt];

    fn as_str(self) -> &'static str {
        match self {
            Gate::Warning => "warning",
            Gate::Restrict => "restrict",
            Gate::Halt => "halt",
        }
    }
}

/// How a hold ended (a hold line's `approval.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldEnd {
    Approved,
    Denied,
    /// Nobody decided before the hold's timeout: denied.
    TimedOut,
    /// A veto hold's window passed without a veto: approved.
    VetoWindowPassed,
    /// Purser stopped while the payment was held: denied.
    #[serde(rename = "shutdown")]
    ShuttingDown,
}

impl Vocabulary for HoldEnd {
    const FIELD: &'static str = "approval outcome";
    const ALL: &'static [HoldEnd] = &[
        HoldEnd::Approved,
        HoldEnd::Denied,
        HoldEnd::TimedOut,
        HoldEnd::VetoWindowPassed,
        HoldEnd::ShuttingDown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            HoldEnd::Approved => "approved",
            HoldEnd::Denied => "denied",
            HoldEnd::TimedOut => "timed_out",
            HoldEnd::VetoWindowPassed => "veto_window_passed",
            HoldEnd::ShuttingDown => "shutdown",
        }
    }
}

macro_rules! display_as_written {
    ($($vocabulary:ty),+) => {
        $(impl fmt::Display for $vocabulary {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Vocabulary::as_str(*self))
            }
        })+
    };
}

display_as_written!(Kind, Verdict, Outcome, Gate, HoldEnd);

#[cfg(test)]
mod tests {
    use super::*;

    /// Serde's spelling is the one `as_str` gives (and the filters list), both ways.
    fn spelled_alike<T>()
    where
        T: Vocabulary + Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
    {
        for value in T::ALL {
            let json = serde_json::to_string(value).unwrap();
            assert_eq!(json, format!("\"{}\"", value.as_str()));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *value);
            assert_eq!(
                T::parse_any_case(&value.as_str().to_lowercase()),
                Ok(*value)
            );
        }
    }

    #[test]
    fn every_vocabulary_is_written_as_the_schema_spells_it() {
        spelled_alike::<Kind>();
        spelled_alike::<Verdict>();
        spelled_alike::<Outcome>();
        spelled_alike::<Gate>();
        spelled_alike::<HoldEnd>();
    }

    #[test]
    fn values_match_in_any_case() {
        assert_eq!(Verdict::parse_any_case("denied"), Ok(Verdict::Denied));
        assert_eq!(
            Verdict::parse_any_case(" Pending_Approval "),
            Ok(Verdict::PendingApproval)
        );
        assert_eq!(Kind::parse_any_case("HOLD"), Ok(Kind::Hold));
    }

    #[test]
    fn an_unknown_value_names_the_valid_ones() {
        let error = Verdict::parse_any_case("denyed").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`denyed` is not a decision; valid values: ALLOWED, DENIED, PENDING_APPROVAL"
        );
    }
}
