//! The rule DSL (`parse_rule`, `parse_conditions`) and the host and endpoint patterns it
//! and the policy loader share. Input: `RULE` or `RULE\0HOST`; a parsed host pattern is
//! then matched against HOST, as the proxy matches request hosts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::policy::dsl::{parse_conditions, parse_rule};
use purser::policy::rules::{Condition, DslError, RuleAst, RuleTarget};
use purser::policy::values::EndpointPattern;
use purser::policy::HostPattern;
use rust_decimal::Decimal;

/// A refusal points into the text (1-based, one past the end allowed) and says something.
fn check_error(text: &str, error: &DslError) {
    let in_range = (1..=text.chars().count() + 1).contains(&error.column);
    assert!(in_range && !error.message.is_empty(), "{text:?}: {error:?}");
}

fn check_conditions(conditions: &[Condition]) {
    for condition in conditions {
        match condition {
            Condition::Phase { phases, .. } => assert!(!phases.is_empty()),
            Condition::Cost { amount, .. } => assert!(!amount.is_sign_negative()),
            Condition::BudgetRatio { ratio, .. } => {
                assert!(
                    !ratio.is_sign_negative() && *ratio <= Decimal::TEN,
                    "{ratio}"
                )
            }
            Condition::Time { window, .. } => {
                assert_ne!(window.start_minute, window.end_minute);
                assert!(window.start_minute < 24 * 60 && window.end_minute <= 24 * 60);
            }
            Condition::Frequency { window, .. } => assert!(!window.is_zero()),
            Condition::Category { name, .. } | Condition::Tier { name, .. } => {
                assert!(!name.is_empty())
            }
            Condition::RecipientTrust { .. } => {}
        }
    }
}

fn check_rule(rule: &RuleAst, host: &str) {
    if let Some(id) = &rule.id {
        assert!(!id.is_empty());
    }
    match &rule.target {
        RuleTarget::Host(pattern) => {
            let _ = pattern.matches(host, 443);
            let _ = pattern.matches(host, 8443);
        }
        RuleTarget::Category(name) | RuleTarget::Tool(name) => assert!(!name.is_empty()),
        RuleTarget::Any => {}
    }
    check_conditions(&rule.conditions);
}

fn parse(text: &str, host: &str) {
    match parse_rule(text) {
        Ok(rule) => check_rule(&rule, host),
        Err(error) => check_error(text, &error),
    }
    match parse_conditions(text) {
        Ok(conditions) => {
            assert!(!conditions.is_empty());
            check_conditions(&conditions);
        }
        Err(error) => check_error(text, &error),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (rule, host) = text.split_once('\0').unwrap_or((&text, "api.example.com"));
    parse(rule, host);
    if let Ok(pattern) = HostPattern::parse(rule) {
        let _ = pattern.matches(host, 443);
        assert!(!pattern.to_string().is_empty());
    }
    if let Ok(endpoint) = EndpointPattern::parse(rule) {
        let _ = endpoint.matches(host, 443, "/v1/data");
        let _ = endpoint.specificity();
    }
});
