//! Who decided: the check that decided a payment ([`Decider`], a line's `rule` and the
//! ids in its `rules`), and who ended a hold ([`Approver`], a hold line's `approval.by`).
//!
//! Both are written as the names the proof log has always used (`tier:gold`,
//! `budget_halt`, `default`, a rule's id; `ana`, `timeout`), so code branches on the
//! variant, never on a prefix of the name.
//!
//! Read back from a log, a name is taken for a built-in check when it spells one, and
//! otherwise for a policy rule: Purser's own refusal codes (`malformed_payment`, ...) and
//! rule ids are both plain names there. Either way a name reads back and prints exactly
//! as it was written.

use super::vocabulary::Gate;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// The check that decided a payment (or one of the checks evaluated for it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decider {
    /// A rule of the policy, by its id (`@id`, `id:`, or `line-N` / `rules[N]` when it
    /// has none).
    Rule(String),
    /// One of Purser's own refusals, by its code: the payment could not be parsed or
    /// priced, was replayed, or found no room to be held (`malformed_payment`,
    /// `replayed_payment`, `hold_limit`, `refusal_rate`, ...).
    Refusal(Cow<'static, str>),
    /// The autonomy tier the payment falls in (`tier:NAME`).
    Tier(String),
    /// No autonomy tier covers the payment (`tier`).
    NoTier,
    /// The session is not yet in the phase payments are allowed in (`phase`).
    Phase,
    /// The payment would take a budget past its limit (`budget_limit`).
    BudgetLimit,
    /// A graduated budget gate (`budget_warning`, `budget_restrict`, `budget_halt`).
    Gate(Gate),
    /// Above the policy's per-call threshold (`single_call_threshold`).
    SingleCallThreshold,
    /// No check objected (`default`).
    Default,
}

/// How a tier check is written: `tier:NAME`.
const TIER_PREFIX: &str = "tier:";

impl Decider {
    /// One of Purser's own refusals, by its code.
    pub const fn refusal(code: &'static str) -> Decider {
        Decider::Refusal(Cow::Borrowed(code))
    }

    /// The name the proof log, the answers and the metrics use. Borrowed, except for a
    /// tier (`tier:NAME`).
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Decider::Rule(id) => Cow::Borrowed(id),
            Decider::Refusal(code) => Cow::Borrowed(code),
            Decider::Tier(name) => Cow::Owned(format!("{TIER_PREFIX}{name}")),
            Decider::NoTier => Cow::Borrowed("tier"),
            Decider::Phase => Cow::Borrowed("phase"),
            Decider::BudgetLimit => Cow::Borrowed("budget_limit"),
            Decider::Gate(Gate::Warning) => Cow::Borrowed("budget_warning"),
            Decider::Gate(Gate::Restrict) => Cow::Borrowed("budget_restrict"),
            Decider::Gate(Gate::Halt) => Cow::Borrowed("budget_halt"),
            Decider::SingleCallThreshold => Cow::Borrowed("single_call_threshold"),
            Decider::Default => Cow::Borrowed("default"),
        }
    }

    /// The decider a name in a log stands for (see the module's note on rules and
    /// refusal codes).
    pub fn from_name(name: &str) -> Decider {
        if let Some(tier) = name.strip_prefix(TIER_PREFIX) {
            return Decider::Tier(tier.to_string());
        }
        match name {
            "tier" => Decider::NoTier,
            "phase" => Decider::Phase,
            "budget_limit" => Decider::BudgetLimit,
            "budget_warning" => Decider::Gate(Gate::Warning),
            "budget_restrict" => Decider::Gate(Gate::Restrict),
            "budget_halt" => Decider::Gate(Gate::Halt),
            "single_call_threshold" => Decider::SingleCallThreshold,
            "default" => Decider::Default,
            rule => Decider::Rule(rule.to_string()),
        }
    }
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decider::Tier(name) => write!(f, "{TIER_PREFIX}{name}"),
            other => f.write_str(&other.name()),
        }
    }
}

impl Serialize for Decider {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decider {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl de::Visitor<'_> for NameVisitor {
            type Value = Decider;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the name of a rule or check")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Decider, E> {
                Ok(Decider::from_name(name))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Who ended a hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Approver {
    /// A person who approved or denied it, by the name they gave (or `admin-api`, `cli`
    /// when they gave none).
    Person(String),
    /// Nobody decided before the hold's timeout (`timeout`).
    Timeout,
    /// A veto hold's window passed without a veto (`veto-window`).
    VetoWindow,
    /// Purser stopped while the payment was held (`shutdown`).
    Shutdown,
}

impl Approver {
    /// The name a hold line's `approval.by` carries.
    pub fn name(&self) -> &str {
        match self {
            Approver::Person(name) => name,
            Approver::Timeout => "timeout",
            Approver::VetoWindow => "veto-window",
            Approver::Shutdown => "shutdown",
        }
    }

    /// Who a name in a log stands for: a person, unless it names the deadline or a stop.
    pub fn from_name(name: &str) -> Approver {
        match name {
            "timeout" => Approver::Timeout,
            "veto-window" => Approver::VetoWindow,
            "shutdown" => Approver::Shutdown,
            person => Approver::Person(person.to_string()),
        }
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Approver {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Approver {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl de::Visitor<'_> for NameVisitor {
            type Value = Approver;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("who ended a hold")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Approver, E> {
                Ok(Approver::from_name(name))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decider_reads_back_as_it_was_written() {
        let deciders = [
            Decider::Rule("no-early-pay".into()),
            Decider::Tier("gold".into()),
            Decider::NoTier,
            Decider::Phase,
            Decider::BudgetLimit,
            Decider::Gate(Gate::Warning),
            Decider::Gate(Gate::Restrict),
            Decider::Gate(Gate::Halt),
            Decider::SingleCallThreshold,
            Decider::Default,
        ];
        for decider in deciders {
            let json = serde_json::to_string(&decider).unwrap();
            assert_eq!(json, format!("\"{}\"", decider.name()));
            assert_eq!(decider.to_string(), decider.name());
            assert_eq!(serde_json::from_str::<Decider>(&json).unwrap(), decider);
        }
        assert_eq!(Decider::Tier("gold".into()).name(), "tier:gold");
    }

    #[test]
    fn a_refusal_code_reads_back_as_a_name_and_prints_the_same() {
        let written = Decider::refusal("malformed_payment");
        let json = serde_json::to_string(&written).unwrap();
        assert_eq!(json, "\"malformed_payment\"");
        let read: Decider = serde_json::from_str(&json).unwrap();
        assert_eq!(read.to_string(), written.to_string());
    }

    #[test]
    fn approvers_are_people_unless_the_deadline_or_a_stop_decided() {
        assert_eq!(Approver::from_name("ana"), Approver::Person("ana".into()));
        for approver in [Approver::Timeout, Approver::VetoWindow, Approver::Shutdown] {
            assert_eq!(Approver::from_name(approver.name()), approver);
        }
    }
}
