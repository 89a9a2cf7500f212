//! The DSL against the product's example rules, every form and comparison, and every
//! refusal with the column it must name; plus a fixed-seed fuzz that no input panics.

use super::lexer::err;
use super::{parse_conditions, parse_rule};
use crate::policy::host_pattern::HostPattern;
use crate::policy::rules::{Comparison as Cmp, Condition, Phase, RuleAction, RuleAst};
use crate::policy::rules::{RuleTarget, TimeWindow, Trust};
use rust_decimal::Decimal;
use std::time::Duration;

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
