//! From the file's shape to the policy the engine runs: defaults filled in, DSL parsed,
//! and every cross-reference (tool, category, tier, profile) checked. Errors carry the
//! `file:line:column` of what they refer to.

use super::dsl;
use super::file::{PolicyFile, RuleEntry, RuleItem, TierBody};
use super::rules::{Condition, RuleAction, RuleAst, RuleTarget};
use super::values::EndpointPattern;
use super::{ApprovalMode, Category, CompiledBudget, Gates, PolicyError, Rule, Tier, Tool};
use rust_decimal::Decimal;
use std::path::Path;
use std::time::Duration;

/// Turns located-by-search errors into `PolicyError::Invalid`.
pub(super) struct SourceText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl SourceText<'_> {
    /// An error at the first place `needle` appears (line 1 if it cannot be found).
    pub fn error_at(&self, needle: &str, extra_column: usize, message: String) -> PolicyError {
        let (line, column) = self.locate(needle);
        PolicyError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column: column + extra_column,
            message,
        }
    }

    fn locate(&self, needle: &str) -> (usize, usize) {
        let needle = needle.trim();
        for (index, line) in self.text.lines().enumerate() {
            if let Some(column) = line.find(needle).filter(|_| !needle.is_empty()) {
                return (index + 1, line[..column].chars().count() + 1);
            }
        }
        (1, 1)
    }

    fn line_of(&self, needle: &str) -> usize {
        self.locate(needle).0
    }
}

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
                "rule action `{}` must be BLOCK, REQUIRE_APPROVAL, FLAG or ALLOW",
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
        "REQUIRE_APPROVAL" | "REQUIRE_APPROVAL_FOR" | "APPROVE" | "HOLD" => {
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

/// Tools in file order.
pub(super) fn compile_tools(file: &PolicyFile) -> Vec<Tool> {
    file.tools
        .0
        .iter()
        .map(|(name, entry)| Tool {
            name: name.clone(),
            endpoints: entry.endpoints.0.clone(),
            category: entry.category.clone(),
        })
        .collect()
}

/// Categories in file order, plus any a tool names that the `categories` map does not.
pub(super) fn compile_categories(file: &PolicyFile) -> Vec<Category> {
    let mut categories: Vec<Category> = file
        .categories
        .0
        .iter()
        .map(|(name, endpoints)| Category {
            name: name.clone(),
            endpoints: endpoints.0.clone(),
        })
        .collect();
    for (_, tool) in &file.tools.0 {
        if let Some(name) = &tool.category {
            if !categories.iter().any(|c| &c.name == name) {
                categories.push(Category {
                    name: name.clone(),
                    endpoints: Vec::<EndpointPattern>::new(),
                });
            }
        }
    }
    categories
}

pub(super) struct TierDefaults {
    pub veto_window: Duration,
    pub timeout: Duration,
}

/// Tiers in file order.
pub(super) fn compile_tiers(
    file: &PolicyFile,
    defaults: &TierDefaults,
    source: &SourceText<'_>,
) -> Result<Vec<Tier>, PolicyError> {
    file.tiers
        .0
        .iter()
        .map(|(name, body)| compile_tier(name, body, defaults, source))
        .collect()
}

fn compile_tier(
    name: &str,
    body: &TierBody,
    defaults: &TierDefaults,
    source: &SourceText<'_>,
) -> Result<Tier, PolicyError> {
    let approval = match body.approval.trim().to_ascii_lowercase().as_str() {
        "none" | "autonomous" => ApprovalMode::None,
        "notify_with_veto" => ApprovalMode::NotifyWithVeto,
        "explicit_human" => ApprovalMode::ExplicitHuman,
        "blocked" | "prohibited" => ApprovalMode::Blocked,
        other => {
            return Err(source.error_at(
                &body.approval,
                0,
                format!("tier `{name}`: approval `{other}` must be none, notify_with_veto, explicit_human or blocked"),
            ))
        }
    };
    let conditions = &body.conditions;
    Ok(Tier {
        name: name.to_string(),
        max_amount: conditions.max_amount.map(|m| m.0),
        categories: conditions.categories.as_ref().map(|c| c.0.clone()),
        trust: conditions
            .recipient_trust
            .as_ref()
            .map(|t| t.0.iter().map(|n| n.0).collect()),
        frequency: conditions.frequency.as_ref().map(|f| (f.max, f.per.0)),
        approval,
        veto_window: body
            .veto_window
            .map(|d| d.0)
            .unwrap_or(defaults.veto_window),
        timeout: body.timeout.map(|d| d.0).unwrap_or(defaults.timeout),
    })
}

/// Budget limits and gates; gates must rise warning ≤ restrict ≤ halt.
pub(super) fn compile_budget(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<CompiledBudget, PolicyError> {
    let budget = &file.budget;
    if let Some(currency) = &budget.currency {
        if !currency.eq_ignore_ascii_case("USD") {
            return Err(source.error_at(
                currency,
                0,
                format!("budget currency `{currency}` is not supported; budgets are in USD"),
            ));
        }
    }
    let gates = Gates {
        warning: budget.graduated_gates.warning.map(|r| r.0),
        restrict: budget.graduated_gates.restrict.map(|r| r.0),
        halt: budget.graduated_gates.halt.map(|r| r.0),
    };
    let ordered = [gates.warning, gates.restrict, gates.halt];
    let present: Vec<Decimal> = ordered.iter().flatten().copied().collect();
    if present.windows(2).any(|pair| pair[0] > pair[1]) {
        return Err(source.error_at(
            "graduated_gates",
            0,
            "graduated_gates must rise: warning ≤ restrict ≤ halt".to_string(),
        ));
    }
    Ok(CompiledBudget {
        session_limit: budget.session_limit.map(|m| m.0),
        agent_limit: budget.agent_limit.map(|m| m.0),
        fleet_limit: budget.fleet_limit.map(|m| m.0),
        single_call_threshold: budget.single_call_threshold.map(|m| m.0),
        gates,
    })
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

/// The built-in asset table, extended (or overridden) by the policy's `assets`.
pub(super) fn compile_assets(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<crate::x402::AssetTable, PolicyError> {
    let mut table = crate::x402::AssetTable::builtin();
    for entry in &file.assets {
        if entry.decimals > 28 {
            return Err(source.error_at(
                &entry.asset,
                0,
                format!(
                    "asset {}: decimals {} is more than 28",
                    entry.asset, entry.decimals
                ),
            ));
        }
        let info = crate::x402::AssetInfo {
            symbol: entry.symbol.clone(),
            decimals: entry.decimals,
            usd_peg: entry.usd_peg.0,
        };
        table
            .insert(&entry.network, &entry.asset, info)
            .map_err(|e| source.error_at(&entry.asset, 0, format!("asset {}: {e}", entry.asset)))?;
    }
    Ok(table)
}

/// The webhook URL must be absolute http(s); a typo here would silently drop alerts.
pub(super) fn compile_notifications(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<super::NotificationSettings, PolicyError> {
    let section = &file.notifications;
    let webhook = match &section.webhook {
        None => None,
        Some(text) => {
            let uri: http::Uri = text.parse().map_err(|e| {
                source.error_at(
                    text,
                    0,
                    format!("notifications.webhook `{text}` is not a URL: {e}"),
                )
            })?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
                return Err(source.error_at(
                    text,
                    0,
                    format!("notifications.webhook `{text}` must be an http:// or https:// URL"),
                ));
            }
            Some(uri)
        }
    };
    Ok(super::NotificationSettings {
        webhook,
        timeout: section
            .timeout
            .map(|d| d.0)
            .unwrap_or(std::time::Duration::from_secs(5)),
        retries: section.retries.unwrap_or(3).min(10),
    })
}
