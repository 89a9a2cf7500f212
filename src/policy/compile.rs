//! From the file's shape to the policy the engine runs: defaults filled in, DSL parsed,
//! and every cross-reference (tool, category, tier, profile) checked. Errors carry the
//! `file:line:column` of what they refer to.

use super::dsl;
use super::file::{PolicyFile, RuleEntry, RuleItem, TierBody};
use super::rules::{phase_name, Phase};
use super::rules::{Condition, RuleAction, RuleAst, RuleTarget};
use super::values::EndpointPattern;
use super::{
    ApprovalMode, Category, CompiledBudget, Gates, PhasePolicy, PolicyError, Rule, Tier, Tool,
};
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

/// `phases`: the payment phase and the moves sessions may make. The map form of
/// `transition_rules` lists every allowed move; phases still only go forward (`reset`
/// starts a session over), so a backward move is a load error rather than a rule that
/// could never apply.
pub(super) fn compile_phases(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<PhasePolicy, PolicyError> {
    let allowed_payment_phase = file
        .phases
        .allowed_payment_phase
        .map(|p| p.0)
        .unwrap_or(Phase::Commit);
    let rules = &file.phases.transition_rules;
    if rules.moves.is_empty() {
        let allow_skip = rules.allow_skip.unwrap_or(true);
        return Ok(PhasePolicy::forward_only(
            allowed_payment_phase,
            rules.agent_header,
            allow_skip,
        ));
    }
    if rules.allow_skip.is_some() {
        return Err(source.error_at(
            "allow_skip",
            0,
            "`allow_skip` and phase lists in transition_rules both say which moves are allowed; \
             keep one (list EXPLORE: [DECIDE, COMMIT] to allow the skip)"
                .to_string(),
        ));
    }
    let mut policy = PhasePolicy::forward_only(allowed_payment_phase, rules.agent_header, false);
    policy.clear_moves();
    for (from, targets) in &rules.moves {
        for to in targets {
            if to.0 <= from.0 {
                return Err(source.error_at(
                    &format!("{}:", phase_name(from.0)),
                    0,
                    format!(
                        "transition_rules: {} → {} goes backwards; phases only move forward \
                         (reset a session to start it over)",
                        phase_name(from.0),
                        phase_name(to.0)
                    ),
                ));
            }
            policy.allow_move(from.0, to.0);
        }
    }
    Ok(policy)
}

/// `compensation.default_action`: compensating means asking for a refund (the seed writes
/// `REFUND_REQUEST`). Anything else would be an action Purser silently does not take.
pub(super) fn check_compensation_action(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<(), PolicyError> {
    let Some(action) = file.compensation.default_action.as_deref() else {
        return Ok(());
    };
    let normalized = action.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    if matches!(normalized.as_str(), "refund" | "refund_request") {
        return Ok(());
    }
    Err(source.error_at(
        action,
        0,
        format!(
            "compensation.default_action `{action}` is not supported; Purser compensates with a \
             refund request: write `refund` or `REFUND_REQUEST`"
        ),
    ))
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

#[cfg(test)]
mod tests {
    use super::super::{Policy, PolicyError};
    use super::Phase::{Commit, Decide, Explore};
    use std::path::Path;

    fn load(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_yaml(Path::new("test.yaml"), text)
    }

    fn error(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn the_seed_map_allows_exactly_its_moves() {
        let policy = load(
            "phases:\n  transition_rules:\n    EXPLORE: [DECIDE]\n    DECIDE: [COMMIT]\n    COMMIT: []\n",
        )
        .unwrap();
        let phases = policy.phases;
        assert!(phases.allows(Explore, Decide));
        assert!(phases.allows(Decide, Commit));
        assert!(!phases.allows(Explore, Commit), "the map names no skip");
        assert!(!phases.agent_header);
    }

    #[test]
    fn the_map_mixes_with_purser_switches_and_any_case() {
        let policy = load(
            "phases:\n  transition_rules:\n    agent_header: true\n    explore: [Decide, COMMIT]\n",
        )
        .unwrap();
        assert!(policy.phases.agent_header);
        assert!(policy.phases.allows(Explore, Commit));
        assert!(
            !policy.phases.allows(Decide, Commit),
            "DECIDE is not listed"
        );
    }

    #[test]
    fn todays_forms_keep_their_meaning() {
        let open = load("phases:\n  transition_rules: { agent_header: true }\n").unwrap();
        assert!(
            open.phases.allows(Explore, Commit),
            "allow_skip defaults to true"
        );
        let strict = load("phases:\n  transition_rules: { allow_skip: false }\n").unwrap();
        assert!(!strict.phases.allows(Explore, Commit));
        assert!(strict.phases.allows(Explore, Decide) && strict.phases.allows(Decide, Commit));
        let absent = load("name: x\n").unwrap();
        assert!(absent.phases.allows(Explore, Commit));
    }

    #[test]
    fn a_backward_move_or_an_unknown_key_is_a_load_error() {
        let err = error("phases:\n  transition_rules:\n    COMMIT: [EXPLORE]\n");
        assert!(
            err.starts_with("test.yaml:3:5:") && err.contains("goes backwards"),
            "{err}"
        );
        let err = error("phases:\n  transition_rules:\n    REVIEW: [COMMIT]\n");
        assert!(err.contains("unknown field `REVIEW`"), "{err}");
        let err = error("phases:\n  transition_rules:\n    EXPLORE: [SHIP]\n");
        assert!(err.contains("`SHIP` is not a phase"), "{err}");
        let err =
            error("phases:\n  transition_rules:\n    allow_skip: false\n    EXPLORE: [DECIDE]\n");
        assert!(err.contains("keep one"), "{err}");
    }

    #[test]
    fn seed_actions_and_compensation_load() {
        let policy = load(
            "rules:\n  - {id: a, condition: 'phase != COMMIT', action: DENY}\n  - {id: b, condition: 'cost > 0.50', action: PENDING_APPROVAL}\ncompensation: {enabled: true, default_action: REFUND_REQUEST}\n",
        )
        .unwrap();
        assert_eq!(policy.rules.len(), 2);
        let err = error("compensation: {default_action: CHARGEBACK}\n");
        assert!(
            err.starts_with("test.yaml:1:32:") && err.contains("refund"),
            "{err}"
        );
    }
}
