//! The `rules` section compiled: DSL lines and structured entries into [`Rule`]s with
//! unique ids, then every tool, category and tier a rule or tier names checked to exist.
//! Errors carry the `file:line:column` of what they refer to.

use super::dsl;
use super::error::{PolicyError, SourceText};
use super::file::{PolicyFile, RuleEntry, RuleItem};
use super::rules::{Condition, RuleAction, RuleAst, RuleTarget};
use super::settings::{Category, Rule, Tier, Tool};

/// Parses every rule in the `rules` section.
pub(super) fn compile_rules(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<Vec<Rule>, PolicyError> {
    let mut rules = Vec::new();
    for (index, item) in file.rules.0.iter().enumerate() {
        match item {
            RuleItem::Dsl(text) => {
                for line in text.lines() {
                    let line = strip_comment(line);
                    if !line.trim().is_empty() {
                        rules.push(compile_dsl_line(line, source)?);
                    }
                }
            }
            RuleItem::Structured(entry) => rules.push(compile_entry(entry, index, source)?),
        }
    }
    ensure_unique_ids(&rules, source)?;
    Ok(rules)
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(index) => &line[..index],
        None => line,
    }
}

fn compile_dsl_line(text: &str, source: &SourceText<'_>) -> Result<Rule, PolicyError> {
    let ast = dsl::parse_rule(text)
        .map_err(|e| source.error_at(text, e.column.saturating_sub(1), e.message))?;
    let line = source.line_of(text);
    let id = ast.id.clone().unwrap_or_else(|| format!("line-{line}"));
    Ok(Rule {
        id,
        line,
        ast,
        message: None,
    })
}

fn compile_entry(
    entry: &RuleEntry,
    index: usize,
    source: &SourceText<'_>,
) -> Result<Rule, PolicyError> {
    let locate_text = entry
        .condition
        .as_deref()
        .or(entry.id.as_deref())
        .unwrap_or(&entry.action);
    let action = parse_action(&entry.action).ok_or_else(|| {
        source.error_at(
            &entry.action,
            0,
            format!(
                "rule action `{}` must be BLOCK (or DENY), REQUIRE_APPROVAL (or PENDING_APPROVAL), FLAG or ALLOW",
                entry.action
            ),
        )
    })?;
    let target = match entry.target.as_deref() {
        None | Some("*") => RuleTarget::Any,
        Some(text) => {
            let probe = format!("ALLOW {text}");
            dsl::parse_rule(&probe).map(|ast| ast.target).map_err(|e| {
                source.error_at(text, 0, format!("rule target `{text}`: {}", e.message))
            })?
        }
    };
    let conditions: Vec<Condition> = match entry.condition.as_deref() {
        None => Vec::new(),
        Some(text) if text.trim().is_empty() => Vec::new(),
        Some(text) => dsl::parse_conditions(text)
            .map_err(|e| source.error_at(text, e.column.saturating_sub(1), e.message))?,
    };
    let line = source.line_of(locate_text);
    let id = entry
        .id
        .clone()
        .unwrap_or_else(|| format!("rules[{index}]"));
    Ok(Rule {
        id,
        line,
        ast: RuleAst {
            id: entry.id.clone(),
            shadow: entry.shadow,
            action,
            target,
            conditions,
        },
        message: entry.message.clone(),
    })
}

fn parse_action(text: &str) -> Option<RuleAction> {
    let normalized: String = text
        .trim()
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect();
    match normalized.as_str() {
        "BLOCK" | "DENY" => Some(RuleAction::Block),
        "REQUIRE_APPROVAL" | "REQUIRE_APPROVAL_FOR" | "PENDING_APPROVAL" | "APPROVE" | "HOLD" => {
            Some(RuleAction::RequireApproval)
        }
        "FLAG" | "WARN" => Some(RuleAction::Flag),
        "ALLOW" => Some(RuleAction::Allow),
        _ => None,
    }
}

fn ensure_unique_ids(rules: &[Rule], source: &SourceText<'_>) -> Result<(), PolicyError> {
    for (index, rule) in rules.iter().enumerate() {
        if rules[..index].iter().any(|earlier| earlier.id == rule.id) {
            return Err(source.error_at(
                &rule.id,
                0,
                format!("rule id `{}` is used twice", rule.id),
            ));
        }
    }
    Ok(())
}

/// Every tool, category and tier a rule, tier or tool names must exist.
pub(super) fn check_references(
    rules: &[Rule],
    tools: &[Tool],
    categories: &[Category],
    tiers: &[Tier],
    source: &SourceText<'_>,
) -> Result<(), PolicyError> {
    let category_exists = |name: &str| categories.iter().any(|c| c.name == name);
    let tier_exists = |name: &str| tiers.iter().any(|t| t.name == name);
    for rule in rules {
        let where_ = |name: &str, what: &str| {
            source.error_at(
                name,
                0,
                format!("rule `{}` names unknown {what} `{name}`", rule.id),
            )
        };
        match &rule.ast.target {
            RuleTarget::Tool(name) if !tools.iter().any(|t| &t.name == name) => {
                return Err(where_(name, "tool (define it under `tools`)"))
            }
            RuleTarget::Category(name) if !category_exists(name) => {
                return Err(where_(name, "category"))
            }
            _ => {}
        }
        for condition in &rule.ast.conditions {
            match condition {
                Condition::Category { name, .. } if !category_exists(name) => {
                    return Err(where_(name, "category"))
                }
                Condition::Tier { name, .. } if !tier_exists(name) => {
                    return Err(where_(name, "tier"))
                }
                _ => {}
            }
        }
    }
    for tier in tiers {
        for name in tier.categories.iter().flatten() {
            if !category_exists(name) {
                return Err(source.error_at(
                    name,
                    0,
                    format!("tier `{}` names unknown category `{name}`", tier.name),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::policy::{Policy, PolicyError};
    use std::path::Path;

    fn error(text: &str) -> String {
        let loaded: Result<Policy, PolicyError> = Policy::from_yaml(Path::new("t.yaml"), text);
        loaded.unwrap_err().to_string()
    }

    #[test]
    fn a_dsl_error_names_its_line_and_the_column_in_that_line() {
        let err = error("name: x\nrules: |\n  BLOCK * WHEN cost > 1\n  FLAG * WHEN cost >> 1\n");
        assert!(
            err.starts_with("t.yaml:4:21: expected an amount in USD, found `>`"),
            "{err}"
        );
    }

    #[test]
    fn ids_are_the_written_one_the_entry_index_or_the_line() {
        let text = "rules:\n  - '@mine BLOCK * WHEN cost > 9'\n  - {action: FLAG}\n  - 'ALLOW *'\n";
        let policy = Policy::from_yaml(Path::new("t.yaml"), text).unwrap();
        let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["mine", "rules[1]", "line-4"]);
        let err = error("rules:\n  - '@a BLOCK *'\n  - {id: a, action: FLAG}\n");
        assert!(
            err.starts_with("t.yaml:2:7: rule id `a` is used twice"),
            "{err}"
        );
    }

    #[test]
    fn unknown_actions_and_names_are_load_errors() {
        let err = error("rules:\n  - {id: x, action: MAYBE}\n");
        assert!(
            err.starts_with("t.yaml:2:21: rule action `MAYBE` must be BLOCK"),
            "{err}"
        );
        let err = error("rules: 'BLOCK pay_for_data'\n");
        assert!(
            err.contains(
                "rule `line-1` names unknown tool (define it under `tools`) `pay_for_data`"
            ),
            "{err}"
        );
        let err = error("tiers:\n  t: {approval: none, conditions: {categories: [data]}}\n");
        assert!(
            err.contains("tier `t` names unknown category `data`"),
            "{err}"
        );
    }
}
