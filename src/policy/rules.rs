//! The rule language's syntax tree, shared by the DSL parser ([`super::dsl`]), the
//! policy loader and the engine.
//!
//! A rule reads `[@id] [SHADOW] ACTION TARGET [WHEN cond (AND cond)*]`, for example
//! `@no-early-pay BLOCK category:data WHEN phase IS NOT COMMIT`.

use super::host_pattern::HostPattern;
pub use super::phase::{phase_name, Phase};
use rust_decimal::Decimal;
use std::time::Duration;

/// What a rule does when it matches. Ordered by precedence: deny overrides. Written
/// `BLOCK`, `REQUIRE_APPROVAL`, `FLAG` or `ALLOW` (in the proof log's `rules`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleAction {
    Allow,
    Flag,
    RequireApproval,
    Block,
}

/// What a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    /// `*`
    Any,
    /// `category:NAME`
    Category(String),
    /// A tool name from the policy's tool map (a bare identifier).
    Tool(String),
    /// A host pattern: anything with a dot, or `*.example.com`.
    Host(HostPattern),
}

/// Recipient trust levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The payTo is listed in the policy.
    Verified,
    /// This agent has paid this payTo before.
    Known,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

/// A daily window in the policy's time zone, minutes after midnight. `start > end`
/// wraps past midnight (22:00-06:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// One `WHEN` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `phase IS [NOT] P`, `phase != P`, `phase IN (P, Q)`.
    Phase { negate: bool, phases: Vec<Phase> },
    /// `cost ABOVE 0.50`, `cost > 0.50`: the payment's USD value.
    Cost { op: Comparison, amount: Decimal },
    /// `budget ABOVE 90%`, `budget_ratio > 0.90`: (spent + reserved + this) / limit.
    BudgetRatio { op: Comparison, ratio: Decimal },
    /// `time OUTSIDE 09:00-17:00`, `time WITHIN 09:00-17:00`.
    Time { outside: bool, window: TimeWindow },
    /// `category IS [NOT] NAME`.
    Category { negate: bool, name: String },
    /// `recipient IS [NOT] verified|known|unknown`.
    RecipientTrust { negate: bool, trust: Trust },
    /// `tier IS [NOT] NAME`.
    Tier { negate: bool, name: String },
    /// `frequency ABOVE N PER 1h`: payments this session already made to the rule's
    /// target within the window.
    Frequency {
        op: Comparison,
        count: u32,
        window: Duration,
    },
}

/// A parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleAst {
    /// From `@id`; the loader falls back to the line number.
    pub id: Option<String>,
    /// Traced but not enforced.
    pub shadow: bool,
    pub action: RuleAction,
    pub target: RuleTarget,
    pub conditions: Vec<Condition>,
}

/// A DSL error, with the 1-based column in the rule text where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct DslError {
    pub column: usize,
    pub message: String,
}
