//! From the file's shape to the [`Policy`] the engine runs: [`Policy::load`] and
//! [`Policy::from_yaml`] parse the YAML, then every section is compiled here with its
//! defaults filled in and its values checked (the `rules` section in `compile_rules`).
//! Errors carry the `file:line:column` of what they refer to.

use super::compile_rules::{check_references, compile_rules};
use super::egress::EgressRules;
use super::error::{PolicyError, SourceText};
use super::file::{LimitsSection, PolicyFile, TierBody};
use super::identity::AgentDirectory;
use super::rules::{phase_name, Phase};
use super::settings::{
    AgentSettings, ApprovalMode, ApprovalSettings, Category, CompensationSettings, CompiledBudget,
    Gates, MemoryLimits, NotificationSettings, PhasePolicy, Tier, Tool, X402Settings,
};
use super::values::{EndpointPattern, SizeText};
use super::Policy;
use crate::x402::{hex, normalize_address, AssetInfo, AssetTable};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

impl Policy {
    /// Reads and validates the policy at `path`.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::from_yaml(path, &text)
    }

    /// Validates policy text; `path` only labels errors.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let source = SourceText { path, text };
        let parsed: PolicyFile = if text.trim().is_empty() {
            PolicyFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|err| source.yaml_error(&err))?
        };
        Policy::compile(parsed, &source, hex(&Sha256::digest(text.as_bytes())))
    }

    /// Every section in the order its errors are reported.
    fn compile(
        file: PolicyFile,
        source: &SourceText<'_>,
        digest: String,
    ) -> Result<Policy, PolicyError> {
        let timezone = compile_timezone(&file, source)?;
        let approvals = compile_approvals(&file);
        let tier_defaults = TierDefaults {
            veto_window: approvals.veto_window,
            timeout: approvals.timeout,
        };
        let rules = compile_rules(&file, source)?;
        let tools = compile_tools(&file);
        let categories = compile_categories(&file);
        let tiers = compile_tiers(&file, &tier_defaults, source)?;
        check_references(&rules, &tools, &categories, &tiers, source)?;
        let budget = compile_budget(&file, source)?;
        let agent_settings = compile_agent_settings(&file, source)?;
        let phases = compile_phases(&file, source)?;
        check_compensation_action(&file, source)?;
        let assets = compile_assets(&file, source)?;
        let notifications = compile_notifications(&file, source)?;
        let chains = super::chains::compile_chains(&file.chains, source)?;
        let transparent = compile_transparent(&file, source)?;
        Ok(Policy {
            source: source.path.to_path_buf(),
            digest,
            name: file.name.clone().unwrap_or_else(|| "unnamed".to_string()),
            timezone,
            phases,
            budget,
            rules,
            tiers,
            tools,
            categories,
            verified_recipients: compile_verified_recipients(&file),
            assets,
            approvals,
            compensation: compile_compensation(&file),
            x402: compile_x402(&file),
            notifications,
            egress: EgressRules {
                allow_link_local: file.egress.allow_link_local,
                loopback_ports: file.egress.loopback_ports.clone(),
            },
            limits: compile_limits(&file.limits),
            chains,
            transparent,
            agent_settings,
            agents: AgentDirectory::new(file.agents, file.anonymous),
            tunnel: file.tunnel,
            profiles: file.profiles,
        })
    }
}

/// `transparent`, when the policy has one; errors point at the entry they name.
fn compile_transparent(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<Option<super::Transparent>, PolicyError> {
    let Some(section) = &file.transparent else {
        return Ok(None);
    };
    super::transparent::compile(section, &file.agents)
        .map(Some)
        .map_err(|(needle, message)| source.error_at(&needle, 0, message))
}

/// `timezone`: an IANA name; UTC when absent.
fn compile_timezone(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<jiff::tz::TimeZone, PolicyError> {
    match &file.timezone {
        None => Ok(jiff::tz::TimeZone::UTC),
        Some(name) => jiff::tz::TimeZone::get(name)
            .map_err(|e| source.error_at(name, 0, format!("unknown time zone `{name}`: {e}"))),
    }
}

/// `approvals`: how long holds wait, and how many may be pending.
fn compile_approvals(file: &PolicyFile) -> ApprovalSettings {
    ApprovalSettings {
        timeout: file
            .approvals
            .timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(300)),
        veto_window: file
            .approvals
            .veto_window
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(30)),
        max_pending_per_session: file.approvals.max_pending_per_session.unwrap_or(16),
        max_pending_total: file.approvals.max_pending_total.unwrap_or(1024),
    }
}

/// Each agent's own budget and profile; a profile it names must exist.
fn compile_agent_settings(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<BTreeMap<String, AgentSettings>, PolicyError> {
    for (agent, entry) in &file.agents {
        if let Some(profile) = &entry.profile {
            if !file.profiles.contains_key(profile) {
                return Err(source.error_at(
                    profile,
                    0,
                    format!("agent `{agent}` names unknown profile `{profile}`"),
                ));
            }
        }
    }
    let settings = file.agents.iter().map(|(name, entry)| {
        let settings = AgentSettings {
            budget: entry.budget.map(|m| m.0),
            profile: entry.profile.clone(),
        };
        (name.clone(), settings)
    });
    Ok(settings.collect())
}

/// `recipients.verified`, in the form payTo addresses are compared in. The entries are
/// trimmed because a person typed them (payTo addresses from the wire never are).
fn compile_verified_recipients(file: &PolicyFile) -> HashSet<String> {
    let verified = file.recipients.verified.iter();
    verified.map(|a| normalize_address(a.trim())).collect()
}

/// `compensation`: whether and how refunds are asked for.
fn compile_compensation(file: &PolicyFile) -> CompensationSettings {
    CompensationSettings {
        enabled: file.compensation.enabled,
        timeout: file.compensation.timeout.map(|d| d.0),
        endpoint: file.compensation.endpoint.clone(),
        credit_budget: file.compensation.credit_budget,
    }
}

/// `x402`: how challenges are remembered and bounded.
fn compile_x402(file: &PolicyFile) -> X402Settings {
    X402Settings {
        challenge_ttl: file
            .x402
            .challenge_ttl
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(3600)),
        max_challenges_per_session: file.x402.max_challenges_per_session.unwrap_or(256).max(1),
        require_challenge: file.x402.require_challenge,
        max_offers_per_challenge: file.x402.max_offers_per_challenge.unwrap_or(32).max(1),
        challenge_memory: size_or(file.x402.challenge_memory, 64 << 20),
        challenge_memory_per_agent: size_or(file.x402.challenge_memory_per_agent, 8 << 20),
    }
}

/// A size from the policy in bytes, or the default; at least 4 KiB (one challenge).
fn size_or(size: Option<SizeText>, default: usize) -> usize {
    size.map_or(default, |s| usize::try_from(s.0).unwrap_or(usize::MAX))
        .max(4096)
}

/// `limits`, with defaults; a count of 0 reads as 1.
fn compile_limits(section: &LimitsSection) -> MemoryLimits {
    MemoryLimits {
        connections_per_agent: section.connections_per_agent.unwrap_or(256).max(1),
        sessions: section.sessions.unwrap_or(100_000).max(1),
        sessions_per_agent: section.sessions_per_agent.unwrap_or(10_000).max(1),
        session_idle: section
            .session_idle
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(24 * 3600)),
        leaf_certificates: section.leaf_certificates.unwrap_or(10_000).max(1),
    }
}

/// `phases`: the payment phase and the moves sessions may make. The map form of
/// `transition_rules` lists every allowed move; phases still only go forward (`reset`
/// starts a session over), so a backward move is a load error rather than a rule that
/// could never apply.
fn compile_phases(file: &PolicyFile, source: &SourceText<'_>) -> Result<PhasePolicy, PolicyError> {
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
fn check_compensation_action(
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
fn compile_tools(file: &PolicyFile) -> Vec<Tool> {
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
fn compile_categories(file: &PolicyFile) -> Vec<Category> {
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

/// What a tier inherits from `approvals` when it does not say.
struct TierDefaults {
    veto_window: Duration,
    timeout: Duration,
}

/// Tiers in file order.
fn compile_tiers(
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
fn compile_budget(
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

/// The built-in asset table, extended (or overridden) by the policy's `assets`.
fn compile_assets(file: &PolicyFile, source: &SourceText<'_>) -> Result<AssetTable, PolicyError> {
    let mut table = AssetTable::builtin();
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
        let info = AssetInfo {
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
fn compile_notifications(
    file: &PolicyFile,
    source: &SourceText<'_>,
) -> Result<NotificationSettings, PolicyError> {
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
    Ok(NotificationSettings {
        webhook,
        timeout: section
            .timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(5)),
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
