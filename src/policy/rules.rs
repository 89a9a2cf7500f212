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
    /// `ALLOW`: the payment may go ahead (the weakest).
    Allow,
    /// `FLAG`: the payment may go ahead; the match is recorded with its decision.
    Flag,
    /// `REQUIRE_APPROVAL` (`REQUIRE APPROVAL` in the DSL): the payment is held for a human.
    RequireApproval,
    /// `BLOCK`: the payment is refused (the strongest).
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
    /// Neither listed nor paid before.
    Unknown,
}

/// How a condition compares the payment's figure with the rule's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `>`, `ABOVE`, `OVER`.
    Gt,
    /// `>=`, `AT LEAST`.
    Ge,
    /// `<`, `BELOW`, `UNDER`.
    Lt,
    /// `<=`, `AT MOST`.
    Le,
    /// `==`, `=`.
    Eq,
    /// `!=`.
    Ne,
}

/// A daily window in the policy's time zone, minutes after midnight. `start > end`
/// wraps past midnight (22:00-06:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Where the window opens, in minutes after midnight (included).
    pub start_minute: u16,
    /// Where the window closes, in minutes after midnight (excluded; 1440 is midnight).
    pub end_minute: u16,
}

/// One `WHEN` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `phase IS [NOT] P`, `phase != P`, `phase IN (P, Q)`.
    Phase {
        /// Written with `NOT` or `!=`: holds when the session is in none of `phases`.
        negate: bool,
        /// The phases named.
        phases: Vec<Phase>,
    },
    /// `cost ABOVE 0.50`, `cost > 0.50`: the payment's USD value.
    Cost {
        /// How the cost is compared with `amount`.
        op: Comparison,
        /// The amount in USD.
        amount: Decimal,
    },
    /// `budget ABOVE 90%`, `budget_ratio > 0.90`: (spent + reserved + this) / limit.
    BudgetRatio {
        /// How the ratio is compared with `ratio`.
        op: Comparison,
        /// The ratio as a fraction (`90%` is 0.9).
        ratio: Decimal,
    },
    /// `time OUTSIDE 09:00-17:00`, `time WITHIN 09:00-17:00`.
    Time {
        /// Written `OUTSIDE`: holds when the time is not in `window`.
        outside: bool,
        /// The daily window.
        window: TimeWindow,
    },
    /// `category IS [NOT] NAME`.
    Category {
        /// Written with `NOT`: holds when the request is in another category, or none.
        negate: bool,
        /// The category's name.
        name: String,
    },
    /// `recipient IS [NOT] verified|known|unknown`.
    RecipientTrust {
        /// Written with `NOT`: holds when the recipient's trust is another level.
        negate: bool,
        /// The trust level named.
        trust: Trust,
    },
    /// `tier IS [NOT] NAME`.
    Tier {
        /// Written with `NOT`: holds when the payment is in another tier, or none.
        negate: bool,
        /// The tier's name.
        name: String,
    },
    /// `frequency ABOVE N PER 1h`: payments this session already made to the rule's
    /// target within the window.
    Frequency {
        /// How the number of payments is compared with `count`.
        op: Comparison,
        /// The N in `ABOVE N`.
        count: u32,
        /// The window counted back from now (`PER 1h`).
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
    /// What the rule does when it matches.
    pub action: RuleAction,
    /// The requests it applies to.
    pub target: RuleTarget,
    /// Its `WHEN` conditions, all of which must hold; empty for none.
    pub conditions: Vec<Condition>,
}

/// A DSL error, with the 1-based column in the rule text where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct DslError {
    /// 1-based column, in characters; one past the end when the text stopped too soon.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}
