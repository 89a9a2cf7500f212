//! The rule DSL: a small tokenizer and a recursive-descent parser that turn policy text
//! such as `@big-spend SHADOW REQUIRE APPROVAL FOR category:inference WHEN cost > 2` into
//! a [`RuleAst`] (see [`super::rules`] for the tree).
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

use super::host_pattern::HostPattern;
use super::rules::{Comparison as Cmp, Condition, DslError, Phase, RuleAction, RuleAst};
use super::rules::{RuleTarget, TimeWindow, Trust};
use rust_decimal::Decimal;
use std::time::Duration;

const FIELDS: &str =
    "phase, cost, budget, budget_ratio, time, category, recipient, tier, frequency";
const CMP: &str = "a comparison (ABOVE, BELOW, AT LEAST, AT MOST, >, >=, <, <=, ==, !=)";
const WINDOW: &str = "a time window HH:MM-HH:MM";
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

fn err(column: usize, message: impl Into<String>) -> DslError {
    let message = message.into();
    DslError { column, message }
}

fn fail<T>(column: usize, message: impl Into<String>) -> Result<T, DslError> {
    Err(err(column, message))
}

/// Characters that end a word and stand alone (or pair with a following `=`). Anything
/// else that is not whitespace is a word character, so host patterns (`[::1]:8443`),
/// times (`09:00-17:00`) and numbers stay one token each, and the parser, which knows
/// what it expects, validates them.
fn is_symbol(c: char) -> bool {
    matches!(c, '(' | ')' | ',' | '%' | '@' | '<' | '>' | '=' | '!' | '#')
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    text: &'a str,
    col: usize,
}

impl Token<'_> {
    /// Keywords and symbols alike compare case-insensitively.
    fn is(&self, keyword: &str) -> bool {
        self.text.eq_ignore_ascii_case(keyword)
    }

    fn is_word(&self) -> bool {
        !self.text.starts_with(is_symbol)
    }
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().zip(1usize..).peekable();
    while let Some(((start, c), col)) = chars.next() {
        let mut end = start + c.len_utf8();
        if c == '#' {
            while chars.next_if(|((_, c), _)| *c != '\n').is_some() {}
            continue;
        } else if c.is_whitespace() {
            continue;
        } else if is_symbol(c) {
            // `>=`, `<=`, `==` and `!=` are the only two-character symbols.
            let pairs = matches!(c, '<' | '>' | '=' | '!');
            end += usize::from(pairs && chars.next_if(|((_, n), _)| *n == '=').is_some());
        } else {
            while let Some(((at, n), _)) = chars.next_if(|((_, n), _)| !ends_word(*n)) {
                end = at + n.len_utf8();
            }
        }
        let text = &text[start..end];
        tokens.push(Token { text, col });
    }
    tokens
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || is_symbol(c)
}

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

fn unit_seconds(unit: &str) -> Option<u64> {
    match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(3_600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    }
}

/// `text` if it is a non-empty run of ASCII digits.
fn digits(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

fn name(text: &str, col: usize, what: &str) -> Result<String, DslError> {
    if !is_name(text) {
        return fail(
            col,
            format!("{what} `{text}` may use only letters, digits, `_` and `-`"),
        );
    }
    Ok(text.to_string())
}

/// A non-negative decimal written as digits with at most one `.`: no sign, exponent or
/// `_`, which `Decimal`'s parser would otherwise accept or misread.
fn decimal(text: &str, col: usize, what: &str) -> Result<Decimal, DslError> {
    let well_formed = text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().any(|b| b.is_ascii_digit())
        && text.matches('.').count() <= 1;
    let parsed = Some(text)
        .filter(|_| well_formed)
        .and_then(|t| Decimal::from_str_exact(t).ok());
    parsed.ok_or_else(|| {
        err(
            col,
            format!("{what} must be a non-negative decimal, found `{text}`"),
        )
    })
}

/// Minutes after midnight for `H:MM` or `HH:MM`; `24:00` only where a window ends.
fn clock(text: &str, col: usize, is_end: bool) -> Result<u16, DslError> {
    let parts = text
        .split_once(':')
        .filter(|(h, m)| h.len() <= 2 && m.len() == 2);
    let number = |t: &str| digits(t).and_then(|d| d.parse::<u16>().ok());
    let Some((hours, minutes)) = parts.and_then(|(h, m)| Some((number(h)?, number(m)?))) else {
        return fail(col, format!("expected {WINDOW}, found `{text}`"));
    };
    match (hours, minutes) {
        (0..=23, 0..=59) | (24, 0) if is_end || hours < 24 => Ok(hours * 60 + minutes),
        (24, 0) => fail(col, "time 24:00 can only end a window; start at 00:00"),
        _ => fail(col, format!("time {text} is not a time of day")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> RuleAst {
        parse_rule(text).unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
    }

    fn cond(text: &str) -> Condition {
        let conditions = parse_conditions(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
        assert_eq!(conditions.len(), 1, "{text}");
        conditions[0].clone()
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn phase(negate: bool, phases: &[Phase]) -> Condition {
        let phases = phases.to_vec();
        Condition::Phase { negate, phases }
    }

    fn cost(op: Cmp, amount: &str) -> Condition {
        let amount = dec(amount);
        Condition::Cost { op, amount }
    }

    fn ratio(op: Cmp, ratio: &str) -> Condition {
        let ratio = dec(ratio);
        Condition::BudgetRatio { op, ratio }
    }

    fn time(outside: bool, start_minute: u16, end_minute: u16) -> Condition {
        let window = TimeWindow {
            start_minute,
            end_minute,
        };
        Condition::Time { outside, window }
    }

    fn frequency(op: Cmp, count: u32, secs: u64) -> Condition {
        let window = Duration::from_secs(secs);
        Condition::Frequency { op, count, window }
    }

    fn host(pattern: &str) -> RuleTarget {
        RuleTarget::Host(HostPattern::parse(pattern).unwrap())
    }

    const SPEC_RULES: [&str; 7] = [
        "BLOCK pay_for_data WHEN phase IS NOT commit",
        "BLOCK * WHEN budget ABOVE 90%",
        "REQUIRE APPROVAL FOR * WHEN cost ABOVE 0.50",
        "FLAG * WHEN time OUTSIDE 09:00-17:00",
        "@big-spend SHADOW REQUIRE APPROVAL FOR category:inference WHEN cost > 2 AND recipient IS unknown",
        "ALLOW *.example.com WHEN tier IS autonomous",
        "BLOCK api.paid.example:8443 WHEN frequency ABOVE 5 PER 1h",
    ];

    #[test]
    fn spec_examples() {
        use RuleAction::*;
        let unknown = Condition::RecipientTrust {
            negate: false,
            trust: Trust::Unknown,
        };
        let autonomous = Condition::Tier {
            negate: false,
            name: "autonomous".into(),
        };
        #[rustfmt::skip]
        let expected = [
            (Block, RuleTarget::Tool("pay_for_data".into()), vec![phase(true, &[Phase::Commit])]),
            (Block, RuleTarget::Any, vec![ratio(Cmp::Gt, "0.90")]),
            (RequireApproval, RuleTarget::Any, vec![cost(Cmp::Gt, "0.50")]),
            (Flag, RuleTarget::Any, vec![time(true, 540, 1020)]),
            (RequireApproval, RuleTarget::Category("inference".into()), vec![cost(Cmp::Gt, "2"), unknown]),
            (Allow, host("*.example.com"), vec![autonomous]),
            (Block, host("api.paid.example:8443"), vec![frequency(Cmp::Gt, 5, 3600)]),
        ];
        for (text, (action, target, conditions)) in SPEC_RULES.iter().zip(expected) {
            let r = rule(text);
            assert_eq!(
                (r.action, r.target, r.conditions),
                (action, target, conditions),
                "{text}"
            );
            assert_eq!(r.id.is_some() || r.shadow, text.starts_with('@'), "{text}");
        }
        assert_eq!(rule(SPEC_RULES[4]).id.as_deref(), Some("big-spend"));
    }

    #[test]
    fn yaml_seed_conditions() {
        assert_eq!(parse_conditions(" # none"), Err(err(1, "empty condition")));
        assert_eq!(cond("phase != COMMIT"), phase(true, &[Phase::Commit]));
        assert_eq!(cond("cost > 0.50"), cost(Cmp::Gt, "0.5"));
        assert_eq!(cond("budget_ratio > 0.90"), ratio(Cmp::Gt, "0.9"));
        let both = parse_conditions("phase == COMMIT AND cost >= 1.5");
        assert_eq!(
            both,
            Ok(vec![phase(false, &[Phase::Commit]), cost(Cmp::Ge, "1.5")])
        );
    }

    #[test]
    fn targets_and_ids() {
        assert_eq!(rule("ALLOW *").conditions, []);
        assert_eq!(
            rule("allow My-Tool_2").target,
            RuleTarget::Tool("My-Tool_2".into())
        );
        assert_eq!(
            rule("FLAG Category:Data").target,
            RuleTarget::Category("Data".into())
        );
        assert_eq!(rule("BLOCK [::1]:8443").target, host("[::1]:8443"));
        assert_eq!(rule("BLOCK localhost:8080").target, host("localhost:8080"));
        assert_eq!(rule("BLOCK *:8443").target, host("*:8443"));
        assert_eq!(rule("@r.1_x BLOCK *").id.as_deref(), Some("r.1_x"));
    }

    #[test]
    fn case_whitespace_and_comments() {
        let r = rule("  @Id  shadow require Approval for  Tool # a comment WHEN cost > 1");
        assert_eq!((r.id.as_deref(), r.shadow), (Some("Id"), true));
        assert_eq!(
            (r.target, r.conditions),
            (RuleTarget::Tool("Tool".into()), vec![])
        );
        let r = rule("block *\n  when Phase is not Commit # why\n  and COST>=1.5 usd");
        assert_eq!(
            r.conditions,
            [phase(true, &[Phase::Commit]), cost(Cmp::Ge, "1.5")]
        );
        let pairs = [
            ("phase==commit", "PHASE IS COMMIT"),
            ("phase=decide", "phase IS Decide"),
            ("cost>$0.5", "cost ABOVE 0.50 USD"),
            ("budget>=90 %", "budget AT LEAST 90%"),
            ("Recipient_Trust IS KNOWN", "recipient == known"),
        ];
        for (a, b) in pairs {
            assert_eq!(cond(a), cond(b), "{a} / {b}");
        }
    }

    #[test]
    fn every_comparison() {
        #[rustfmt::skip]
        let cases = [
            ("ABOVE", Cmp::Gt), ("over", Cmp::Gt), (">", Cmp::Gt),
            ("BELOW", Cmp::Lt), ("under", Cmp::Lt), ("<", Cmp::Lt),
            (">=", Cmp::Ge), ("AT LEAST", Cmp::Ge), ("<=", Cmp::Le), ("at most", Cmp::Le),
            ("==", Cmp::Eq), ("=", Cmp::Eq), ("!=", Cmp::Ne),
        ];
        for (word, op) in cases {
            assert_eq!(cond(&format!("cost {word} 1")), cost(op, "1"), "{word}");
        }
    }

    #[test]
    fn every_condition_form() {
        let (explore, decide) = (Phase::Explore, Phase::Decide);
        let trust = |negate, trust| Condition::RecipientTrust { negate, trust };
        #[rustfmt::skip]
        let cases = [
            ("phase IN (explore, DECIDE)", phase(false, &[explore, decide])),
            ("phase not in(explore,decide)", phase(true, &[explore, decide])),
            ("phase IS explore", phase(false, &[explore])),
            ("budget ABOVE 0%", ratio(Cmp::Gt, "0")),
            ("budget ABOVE 1000%", ratio(Cmp::Gt, "10")),
            ("budget under 12.5%", ratio(Cmp::Lt, "0.125")),
            ("budget_ratio > 1.2", ratio(Cmp::Gt, "1.2")),
            ("budget_ratio > 80%", ratio(Cmp::Gt, "0.8")),
            ("time WITHIN 9:00-17:30", time(false, 540, 1050)),
            ("time inside 22:00 - 06:00", time(false, 1320, 360)),
            ("time BETWEEN 00:00 -24:00", time(false, 0, 1440)),
            ("time outside 08:00- 18:00", time(true, 480, 1080)),
            ("category IS NOT Data", Condition::Category { negate: true, name: "Data".into() }),
            ("category == llm", Condition::Category { negate: false, name: "llm".into() }),
            ("tier != prohibited", Condition::Tier { negate: true, name: "prohibited".into() }),
            ("recipient_trust != Verified", trust(true, Trust::Verified)),
            ("recipient is known", trust(false, Trust::Known)),
            ("frequency ABOVE 0 PER minute", frequency(Cmp::Gt, 0, 60)),
        ];
        for (text, expected) in cases {
            assert_eq!(cond(text), expected, "{text}");
        }
    }

    #[test]
    fn frequency_durations() {
        #[rustfmt::skip]
        let cases = [
            ("hour", 3600), ("Day", 86_400), ("30s", 30), ("5m", 300), ("1h", 3600),
            ("1d", 86_400), ("10 minutes", 600), ("2 HRS", 7200), ("90sec", 90),
        ];
        for (text, secs) in cases {
            let parsed = cond(&format!("frequency AT MOST 3 PER {text}"));
            assert_eq!(parsed, frequency(Cmp::Le, 3, secs), "{text}");
        }
        assert!(parse_conditions("frequency >= 3 PER 5m AND cost > 1").is_ok());
    }

    /// Each bad input with the column and (part of) the message it must produce. Inputs
    /// starting in lower case are condition lists; the others are rules.
    #[rustfmt::skip]
    const ERRORS: &[(&str, usize, &str)] = &[
        ("", 1, "empty rule"),
        ("   # only a comment", 1, "empty rule"),
        ("costt > 1", 1, "unknown field `costt`; expected one of phase, cost, budget, budget_"),
        ("BLOCK * WHEN NOT phase IS commit", 14, "unknown field `NOT`"),
        ("phase IS later", 10, "expected a phase (EXPLORE, DECIDE, COMMIT), found `later`"),
        ("phase IN (commit", 17, "expected `,` or `)` in the list of phases, found end of"),
        ("phase IN commit", 10, "expected `(`"),
        ("phase NOT commit", 11, "expected IN after phase NOT"),
        ("phase > commit", 7, "expected IS, IS NOT"),
        ("time OUTSIDE 9-17", 14, "expected a time window HH:MM-HH:MM, found `9`"),
        ("time OUTSIDE 09:00", 19, "expected a time window HH:MM-HH:MM, found end of input"),
        ("time OUTSIDE 09:00 17:00", 20, "expected a time window HH:MM-HH:MM, found `17:00`"),
        ("time OUTSIDE 09:00-25:00", 20, "time 25:00 is not a time of day"),
        ("time OUTSIDE 09:60-10:00", 14, "time 09:60 is not a time of day"),
        ("time OUTSIDE 123:00-10:00", 14, "expected a time window"),
        ("time OUTSIDE 24:00-10:00", 14, "time 24:00 can only end a window"),
        ("time WITHIN 09:00-09:00", 13, "time window 09:00-09:00 is empty"),
        ("time AFTER 09:00-10:00", 6, "expected OUTSIDE, WITHIN, INSIDE or BETWEEN"),
        ("budget ABOVE 1001%", 14, "percent must be between 0 and 1000"),
        ("budget ABOVE -5%", 14, "percent must be between 0 and 1000"),
        ("budget ABOVE 90", 16, "expected `%` after the budget percentage"),
        ("budget_ratio > -0.5", 16, "ratio must be a non-negative decimal"),
        ("budget_ratio > 11", 16, "ratio must be between 0 and 10"),
        ("cost > -1", 8, "amount must be a non-negative decimal, found `-1`"),
        ("cost > 1e3", 8, "amount must be a non-negative decimal"),
        ("cost > 1_000", 8, "amount must be a non-negative decimal"),
        ("cost > .", 8, "amount must be a non-negative decimal"),
        ("cost > 0.50USD", 8, "amount must be a non-negative decimal"),
        ("cost > 99999999999999999999999999999999", 8, "amount must be a non-negative decimal"),
        ("cost 5", 6, "expected a comparison"),
        ("cost AT 5", 9, "expected LEAST or MOST after AT"),
        ("cost ! 5", 6, "expected a comparison"),
        ("recipient IS trusted", 14, "expected a recipient trust (verified, known, unknown)"),
        ("tier IS a.b", 9, "tier name `a.b` may use only letters"),
        ("category IS", 12, "expected a category name, found end of input"),
        ("frequency ABOVE -1 PER 1h", 17, "frequency count must be a whole number"),
        ("frequency ABOVE 5000000000 PER 1h", 17, "frequency count must be a whole number"),
        ("frequency ABOVE 5 1h", 19, "expected PER"),
        ("frequency ABOVE 5 PER fortnight", 23, "expected a duration"),
        ("frequency ABOVE 5 PER 10 AND cost > 1", 26, "expected a duration"),
        ("frequency ABOVE 5 PER 10x", 25, "expected a duration like minute, 30s, 5m, 1h, 1d"),
        ("frequency ABOVE 5 PER 0s", 23, "longer than zero"),
        ("frequency ABOVE 5 PER 99999999999999999999d", 23, "too long"),
        ("cost > 1 OR cost < 0.1", 10, "OR is not supported"),
        ("cost > 1 cost < 0.1", 10, "trailing input after conditions: `cost < 0.1`"),
        ("BLOCK * cost > 1", 9, "trailing input after rule: `cost > 1`; conditions start"),
        ("BLOCK * WHEN", 13, "expected a condition (phase,"),
        ("BLOCK * WHEN cost > 1 AND", 26, "expected a condition"),
        ("DENY *", 1, "expected an action (ALLOW, BLOCK, FLAG, REQUIRE APPROVAL FOR), found"),
        ("REQUIRE APPROVAL *", 18, "expected `FOR` in REQUIRE APPROVAL FOR"),
        ("BLOCK WHEN cost > 1", 7, "expected a target"),
        ("BLOCK", 6, "expected a target"),
        ("BLOCK (", 7, "expected a target"),
        ("BLOCK tool/x", 7, "expected a target"),
        ("BLOCK category:", 16, "category name `` may use only"),
        ("BLOCK api.*.com", 7, "may use `*` only"),
        ("BLOCK api.com:99999", 7, "bad port"),
        ("@ BLOCK *", 3, "rule id `BLOCK` must follow `@`"),
        ("@", 2, "expected a rule id after `@`"),
        ("@a:b BLOCK *", 2, "rule id `a:b`"),
        ("SHADOW @x BLOCK *", 8, "expected an action"),
        ("BLOCK *\tWHEN cost ≥ 1", 19, "expected a comparison"),
        ("BLOCK ünïcode", 7, "expected a target"),
        ("BLOCK * WHEN tier IS naïve", 22, "tier name `naïve`"),
    ];

    #[test]
    fn errors_name_their_column() {
        for &(text, column, needle) in ERRORS {
            let result = if text
                .trim_start()
                .starts_with(|c: char| c.is_ascii_lowercase())
            {
                parse_conditions(text).map(|_| ())
            } else {
                parse_rule(text).map(|_| ())
            };
            let e = result.expect_err(text);
            assert!(e.message.contains(needle), "`{text}`: {e}");
            assert_eq!(e.column, column, "`{text}`: {e}");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut inputs: Vec<String> = ERRORS.iter().map(|(t, ..)| t.to_string()).collect();
        for text in SPEC_RULES {
            for (at, _) in text.char_indices() {
                inputs.extend([text[..at].to_string(), text[at..].to_string()]);
            }
        }
        #[rustfmt::skip]
        let pieces = [
            "@", "%", "(", ")", ",", "!", "=", "<>", "#", "-", ":", "*.", "[", "]", ".", "$", "é",
            "🦀", "\0", "\u{301}", "24:00", "9:5", "1e99", "AT", "IN", "PER", "WHEN", "AND", "x",
            "category:", "phase", "cost", "time", "frequency", "budget", "BLOCK", "\n", "7",
        ];
        // A fixed-seed LCG keeps the fuzzing reproducible without a dependency.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..(seed % 11) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
                text.push_str(if seed >> 62 == 0 { " " } else { "" });
            }
            inputs.push(text);
        }
        for text in &inputs {
            for e in [parse_rule(text).err(), parse_conditions(text).err()]
                .into_iter()
                .flatten()
            {
                let in_range = (1..=text.chars().count() + 1).contains(&e.column);
                assert!(in_range && !e.message.is_empty(), "{text:?}: {e}");
            }
        }
    }
}
