//! The rule DSL: a small tokenizer and a recursive-descent parser that turn policy text
//! such as `@big-spend SHADOW REQUIRE APPROVAL FOR category:inference WHEN cost > 2` into
//! a [`RuleAst`](super::rules::RuleAst) (see [`super::rules`] for the tree).
//!
//! ```text
//! rule  := ['@'ID] ['SHADOW'] (ALLOW | BLOCK | FLAG | REQUIRE APPROVAL FOR) target
//!          ['WHEN' cond ('AND' cond)*]
//! target:= '*' | 'category:'NAME | host pattern (has '.', ':port', '*.' or '[') | tool NAME
//! cond  := phase (IS [NOT] | == | = | !=) PHASE  |  phase [NOT] IN '(' PHASE (',' PHASE)* ')'
//!        | cost CMP ['$']DECIMAL ['USD']  |  budget CMP N'%'  |  budget_ratio CMP (DECIMAL | N'%')
//!        | time (OUTSIDE | WITHIN | INSIDE | BETWEEN) HH:MM-HH:MM
//!        | (category | tier) EQ NAME  |  (recipient | recipient_trust) EQ TRUST
//!        | frequency CMP COUNT PER (unit | Nunit | N unit)     unit: s, m, h, d and spelled out
//! CMP   := ABOVE | OVER | BELOW | UNDER | AT LEAST | AT MOST | > | >= | < | <= | == | = | !=
//! ```
//!
//! Keywords and field names are case-insensitive; ids and tool, category and tier names
//! keep their case. `#` starts a comment. Every refusal names the 1-based character column
//! of the offending token (counted from the start of the text, newlines included), because
//! a rule that does not parse must stop the policy from loading rather than fail open.
//!
//! * `lexer`: text to tokens with their columns, and the errors that point at a column.
//! * `parser`: the grammar above, token by token, into the tree.
//! * `literals`: the values inside tokens (names, decimals, clock times, duration units).

mod lexer;
mod literals;
mod parser;
#[cfg(test)]
mod tests;

pub use parser::{parse_conditions, parse_rule};
