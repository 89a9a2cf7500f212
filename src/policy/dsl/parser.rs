//! The DSL's grammar (see [`super`] for it in full): a recursive-descent [`Parser`] over
//! tokens, from a whole rule down to each condition's operands.

use super::lexer::{err, fail, tokenize, Token};
use super::literals::{clock, decimal, digits, is_name, name, unit_seconds, WINDOW};
use crate::policy::host_pattern::HostPattern;
use crate::policy::rules::{Comparison as Cmp, Condition, DslError, Phase, RuleAction, RuleAst};
use crate::policy::rules::{RuleTarget, TimeWindow, Trust};
use rust_decimal::Decimal;
use std::time::Duration;

const FIELDS: &str =
    "phase, cost, budget, budget_ratio, time, category, recipient, tier, frequency";
const CMP: &str = "a comparison (ABOVE, BELOW, AT LEAST, AT MOST, >, >=, <, <=, ==, !=)";
const DURATION: &str = "a duration like minute, 30s, 5m, 1h, 1d or `10 minutes`";
const ACTION: &str = "an action (ALLOW, BLOCK, FLAG, REQUIRE APPROVAL FOR)";
const TRUST: &str = "a recipient trust (verified, known, unknown)";
const TARGET: &str = "a target (*, category:NAME, a host pattern or a tool name)";

/// Parses one rule line: `[@id] [SHADOW] ACTION TARGET [WHEN cond (AND cond)*]`.
pub fn parse_rule(text: &str) -> Result<RuleAst, DslError> {
    let mut p = Parser::new(text);
    if p.peek().is_none() {
        return Err(err(1, "empty rule"));
    }
    let id = p.rule_id()?;
    let shadow = p.eat("SHADOW");
    let action = p.action()?;
    let target = p.target()?;
    let when = p.eat("WHEN");
    let conditions = if when { p.conditions()? } else { Vec::new() };
    p.finish("rule", "conditions start with WHEN and are joined with AND")?;
    Ok(RuleAst {
        id,
        shadow,
        action,
        target,
        conditions,
    })
}

/// Parses a condition list: `cond (AND cond)*`, as in the YAML `condition:` field.
pub fn parse_conditions(text: &str) -> Result<Vec<Condition>, DslError> {
    let mut p = Parser::new(text);
    if p.peek().is_none() {
        return Err(err(1, "empty condition"));
    }
    let conditions = p.conditions()?;
    p.finish("conditions", "join conditions with AND")?;
    Ok(conditions)
}

/// The tokens of one text and how far the grammar has read them.
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    end_col: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let tokens = tokenize(text);
        // "Found end of input" points just past the last token, not past a trailing comment.
        let end_col = tokens.last().map_or(1, |t| t.col + t.text.chars().count());
        Parser {
            tokens,
            pos: 0,
            end_col,
        }
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn eat(&mut self, keyword: &str) -> bool {
        let hit = self.peek().is_some_and(|t| t.is(keyword));
        self.pos += usize::from(hit);
        hit
    }

    fn expected(&self, what: &str) -> DslError {
        match self.peek() {
            Some(t) => err(t.col, format!("expected {what}, found `{}`", t.text)),
            None => err(self.end_col, format!("expected {what}, found end of input")),
        }
    }

    /// The next token, which must be a word (a name, number, keyword or pattern).
    fn word(&mut self, what: &str) -> Result<Token<'a>, DslError> {
        let token = self.peek().filter(Token::is_word);
        self.pos += usize::from(token.is_some());
        token.ok_or_else(|| self.expected(what))
    }

    /// What `pick` makes of the next token (given in upper case), consuming it if anything.
    fn one_of<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> Result<T, DslError> {
        let picked = self.peek().and_then(|t| pick(&t.text.to_ascii_uppercase()));
        let value = picked.ok_or_else(|| self.expected(what))?;
        self.pos += 1;
        Ok(value)
    }

    fn finish(&self, context: &str, hint: &str) -> Result<(), DslError> {
        let Some(next) = self.peek() else {
            return Ok(());
        };
        if next.is("OR") {
            let message = "OR is not supported; join conditions with AND or write separate rules";
            return fail(next.col, message);
        }
        let rest: Vec<&str> = self.tokens[self.pos..].iter().map(|t| t.text).collect();
        let rest = rest.join(" ");
        fail(
            next.col,
            format!("trailing input after {context}: `{rest}`; {hint}"),
        )
    }

    /// `@id`, written without a space: `@ BLOCK` is more likely a typo than an id `BLOCK`.
    fn rule_id(&mut self) -> Result<Option<String>, DslError> {
        let Some(at) = self.peek().filter(|t| t.is("@")) else {
            return Ok(None);
        };
        self.pos += 1;
        let id = self.word("a rule id after `@`")?;
        let valid = id.text.split('.').all(is_name);
        if id.col != at.col + 1 || !valid {
            let rule = "must follow `@` and use only letters, digits, `_`, `-` and `.`";
            return fail(id.col, format!("rule id `{}` {rule}", id.text));
        }
        Ok(Some(id.text.to_string()))
    }

    fn action(&mut self) -> Result<RuleAction, DslError> {
        let action = self.one_of(ACTION, |w| match w {
            "ALLOW" => Some(Some(RuleAction::Allow)),
            "BLOCK" => Some(Some(RuleAction::Block)),
            "FLAG" => Some(Some(RuleAction::Flag)),
            "REQUIRE" => Some(None), // needs APPROVAL FOR
            _ => None,
        })?;
        if let Some(action) = action {
            return Ok(action);
        }
        for keyword in ["APPROVAL", "FOR"] {
            if !self.eat(keyword) {
                return Err(self.expected(&format!("`{keyword}` in REQUIRE APPROVAL FOR")));
            }
        }
        Ok(RuleAction::RequireApproval)
    }

    fn target(&mut self) -> Result<RuleTarget, DslError> {
        if self.peek().is_some_and(|t| t.is("WHEN")) {
            return Err(self.expected(TARGET));
        }
        let Token { text, col } = self.word(TARGET)?;
        let prefix = text
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("category:"));
        let category = text.get(9..).filter(|_| prefix);
        if text == "*" {
            Ok(RuleTarget::Any)
        } else if let Some(category) = category {
            let name = name(category, col + 9, "category name")?;
            Ok(RuleTarget::Category(name))
        } else if text.contains(['.', ':', '*', '[']) {
            let host = HostPattern::parse(text).map_err(|e| err(col, e.to_string()))?;
            Ok(RuleTarget::Host(host))
        } else if is_name(text) {
            Ok(RuleTarget::Tool(text.to_string()))
        } else {
            fail(col, format!("expected {TARGET}, found `{text}`"))
        }
    }

    fn conditions(&mut self) -> Result<Vec<Condition>, DslError> {
        let mut conditions = vec![self.condition()?];
        while self.eat("AND") {
            conditions.push(self.condition()?);
        }
        Ok(conditions)
    }

    fn condition(&mut self) -> Result<Condition, DslError> {
        let field = self.word(&format!("a condition ({FIELDS})"))?;
        Ok(match field.text.to_ascii_lowercase().as_str() {
            "phase" => self.phase_condition()?,
            "cost" => self.cost_condition()?,
            "budget" => self.budget_condition(true)?,
            "budget_ratio" => self.budget_condition(false)?,
            "time" => self.time_condition()?,
            "frequency" => self.frequency_condition()?,
            "category" => Condition::Category {
                negate: self.equality()?,
                name: self.name("category name")?,
            },
            "tier" => Condition::Tier {
                negate: self.equality()?,
                name: self.name("tier name")?,
            },
            "recipient" | "recipient_trust" => {
                let negate = self.equality()?;
                let trust = self.one_of(TRUST, |w| match w {
                    "VERIFIED" => Some(Trust::Verified),
                    "KNOWN" => Some(Trust::Known),
                    "UNKNOWN" => Some(Trust::Unknown),
                    _ => None,
                })?;
                Condition::RecipientTrust { negate, trust }
            }
            _ => {
                let message = format!("unknown field `{}`; expected one of {FIELDS}", field.text);
                return fail(field.col, message);
            }
        })
    }

    /// `IS`, `IS NOT`, `==`, `=`, `!=`; returns whether the test is negated.
    fn equality(&mut self) -> Result<bool, DslError> {
        if self.eat("IS") {
            return Ok(self.eat("NOT"));
        }
        self.one_of("IS, IS NOT, ==, = or !=", |w| match w {
            "==" | "=" => Some(false),
            "!=" => Some(true),
            _ => None,
        })
    }

    fn comparison(&mut self) -> Result<Cmp, DslError> {
        if self.eat("AT") {
            return self.one_of("LEAST or MOST after AT", |w| match w {
                "LEAST" => Some(Cmp::Ge),
                "MOST" => Some(Cmp::Le),
                _ => None,
            });
        }
        self.one_of(CMP, |w| match w {
            "ABOVE" | "OVER" | ">" => Some(Cmp::Gt),
            "BELOW" | "UNDER" | "<" => Some(Cmp::Lt),
            ">=" => Some(Cmp::Ge),
            "<=" => Some(Cmp::Le),
            "==" | "=" => Some(Cmp::Eq),
            "!=" => Some(Cmp::Ne),
            _ => None,
        })
    }

    fn name(&mut self, what: &str) -> Result<String, DslError> {
        let token = self.word(&format!("a {what}"))?;
        name(token.text, token.col, what)
    }

    fn phase_condition(&mut self) -> Result<Condition, DslError> {
        let negate = self.eat("NOT");
        if !self.eat("IN") {
            if negate {
                return Err(self.expected("IN after phase NOT"));
            }
            let negate = self.equality()?;
            let phases = vec![self.phase()?];
            return Ok(Condition::Phase { negate, phases });
        }
        if !self.eat("(") {
            return Err(self.expected("`(` starting a list of phases"));
        }
        let mut phases = vec![self.phase()?];
        while self.eat(",") {
            phases.push(self.phase()?);
        }
        if !self.eat(")") {
            return Err(self.expected("`,` or `)` in the list of phases"));
        }
        Ok(Condition::Phase { negate, phases })
    }

    fn phase(&mut self) -> Result<Phase, DslError> {
        self.one_of("a phase (EXPLORE, DECIDE, COMMIT)", Phase::parse)
    }

    fn cost_condition(&mut self) -> Result<Condition, DslError> {
        let op = self.comparison()?;
        let token = self.word("an amount in USD")?;
        // A `$` prefix reads naturally in a USD amount, so it is accepted too.
        let text = token.text.strip_prefix('$').unwrap_or(token.text);
        let amount = decimal(text, token.col, "amount")?;
        self.eat("USD");
        Ok(Condition::Cost { op, amount })
    }

    /// `budget` takes a percentage (`90%`); `budget_ratio` a ratio (`0.90`) or a percentage.
    /// A bare `budget ABOVE 90` is refused: it would silently mean 9000%.
    fn budget_condition(&mut self, percent_only: bool) -> Result<Condition, DslError> {
        let op = self.comparison()?;
        let Token { text, col } = self.word("a percentage like 90% or a ratio like 0.90")?;
        let percent = self.eat("%");
        if percent_only && !percent {
            return Err(self.expected("`%` after the budget percentage"));
        }
        let ratio = if percent {
            // `-5%` is a percentage out of range rather than a malformed number.
            let value = decimal(text.trim_start_matches('-'), col, "percent")?;
            let in_range = !text.starts_with('-') && value <= Decimal::ONE_THOUSAND;
            let ratio = value.checked_div(Decimal::ONE_HUNDRED).filter(|_| in_range);
            ratio.ok_or_else(|| err(col, "percent must be between 0 and 1000"))?
        } else {
            Some(decimal(text, col, "ratio")?)
                .filter(|v| *v <= Decimal::TEN)
                .ok_or_else(|| err(col, "ratio must be between 0 and 10 (1000%)"))?
        };
        Ok(Condition::BudgetRatio { op, ratio })
    }

    fn time_condition(&mut self) -> Result<Condition, DslError> {
        let outside = self.one_of("OUTSIDE, WITHIN, INSIDE or BETWEEN", |w| match w {
            "OUTSIDE" => Some(true),
            "WITHIN" | "INSIDE" | "BETWEEN" => Some(false),
            _ => None,
        })?;
        let window = self.time_window()?;
        Ok(Condition::Time { outside, window })
    }

    /// `09:00-17:00`, also spaced as `09:00 - 17:00` (which tokenizes as up to three words).
    fn time_window(&mut self) -> Result<TimeWindow, DslError> {
        let first = self.word(WINDOW)?;
        let (start, mut end) = match first.text.split_once('-') {
            Some((s, e)) => (
                s,
                Token {
                    text: e,
                    col: first.col + s.chars().count() + 1,
                },
            ),
            None => {
                let dash = self.word(WINDOW)?;
                let Some(rest) = dash.text.strip_prefix('-') else {
                    return fail(
                        dash.col,
                        format!("expected {WINDOW}, found `{}`", dash.text),
                    );
                };
                (
                    first.text,
                    Token {
                        text: rest,
                        col: dash.col + 1,
                    },
                )
            }
        };
        if end.text.is_empty() {
            end = self.word(WINDOW)?;
        }
        let start_minute = clock(start, first.col, false)?;
        let end_minute = clock(end.text, end.col, true)?;
        if start_minute == end_minute {
            let message = format!(
                "time window {start}-{} is empty; start and end must differ",
                end.text
            );
            return fail(first.col, message);
        }
        Ok(TimeWindow {
            start_minute,
            end_minute,
        })
    }

    /// `frequency cmp N PER DURATION`. N may be 0 (`ABOVE 0` = any earlier payment).
    fn frequency_condition(&mut self) -> Result<Condition, DslError> {
        let op = self.comparison()?;
        let Token { text, col } = self.word("a payment count")?;
        let Some(count) = digits(text).and_then(|d| d.parse::<u32>().ok()) else {
            let message = format!("frequency count must be a whole number, found `{text}`");
            return fail(col, message);
        };
        if !self.eat("PER") {
            return Err(self.expected("PER and a duration, as in `frequency ABOVE 5 PER 1h`"));
        }
        let window = self.duration()?;
        Ok(Condition::Frequency { op, count, window })
    }

    /// `minute`, `30s`, `1h`, or a count and a unit as two words: `10 minutes`.
    fn duration(&mut self) -> Result<Duration, DslError> {
        let Token { text, col } = self.word(DURATION)?;
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let mut unit = Token {
            text: unit,
            col: col + digits_end,
        };
        if !number.is_empty() && unit.text.is_empty() {
            unit = self.word(DURATION)?;
        }
        let Some(unit_secs) = unit_seconds(unit.text) else {
            return fail(
                unit.col,
                format!("expected {DURATION}, found `{}`", unit.text),
            );
        };
        // No number means one unit: `PER hour`.
        let count = Some(number)
            .filter(|n| !n.is_empty())
            .map_or(Some(1u64), |n| n.parse().ok());
        match count.and_then(|n| n.checked_mul(unit_secs)) {
            Some(0) => fail(col, "a frequency window must be longer than zero"),
            Some(secs) => Ok(Duration::from_secs(secs)),
            None => fail(col, format!("duration `{text}` is too long")),
        }
    }
}
