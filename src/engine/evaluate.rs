//! The decision: one pure function from a payment's facts and the policy to ALLOWED,
//! PENDING_APPROVAL or DENIED, with the rule that decided and every check evaluated.
//!
//! The policy's rules come first, in file order, then the built-in checks (phase, tier,
//! budget gates, per-call threshold). Deny overrides: BLOCK > REQUIRE APPROVAL > FLAG > ALLOW;
//! the first matching check with the strongest action decides. Shadow rules are
//! evaluated and reported but never decide.

use crate::ledger::{projected_ratio, BudgetView, Level};
use crate::policy::rules::{Comparison, Condition, Phase, RuleAction, RuleTarget, Trust};
use crate::policy::{ApprovalMode, Limits, Policy, Tier};
pub use crate::trace::{Decider, Gate, Verdict};
use rust_decimal::Decimal;
use std::time::{Duration, Instant};

pub use crate::store::RecentPayment;

/// Everything the decision depends on, gathered beforehand.
#[derive(Clone, Debug)]
pub struct PaymentFacts<'a> {
    pub phase: Phase,
    /// The payment's value in USD.
    pub cost_usd: Decimal,
    pub tool: Option<&'a str>,
    pub category: Option<&'a str>,
    pub host: &'a str,
    pub port: u16,
    pub trust: Trust,
    pub budget: BudgetView,
    pub limits: Limits,
    /// Minutes after midnight in the policy's time zone.
    pub minute_of_day: u16,
    pub now: Instant,
    /// Newest last. A ring buffer, read in place: copying it per decision would cost
    /// more than the rest of the decision.
    pub recent: &'a std::collections::VecDeque<RecentPayment>,
}

/// One check as evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub id: Decider,
    pub action: RuleAction,
    pub matched: bool,
    pub shadow: bool,
    pub message: Option<String>,
}

/// The decision.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// The check that decided ([`Decider::Default`] when nothing matched).
    pub rule: Decider,
    pub reason: String,
    pub checks: Vec<Check>,
    pub tier: Option<String>,
    pub gate: Option<Gate>,
    /// The level and ratio the gates were measured on.
    pub ratio: Option<(Level, Decimal)>,
    /// For PENDING_APPROVAL: the hold is a veto window (goes ahead unless vetoed).
    pub veto_window: Option<Duration>,
    /// For PENDING_APPROVAL: how long a human has.
    pub hold_timeout: Option<Duration>,
    /// Whether a FLAG matched.
    pub flagged: bool,
}

/// Decides one payment.
pub fn evaluate(policy: &Policy, facts: &PaymentFacts<'_>) -> Evaluation {
    let ratio = projected_ratio(&facts.budget, &facts.limits, facts.cost_usd);
    let tier = classify_tier(policy, facts);
    let mut checks = Vec::with_capacity(policy.rules.len() + 6);
    // The policy's own rules come first: when one of them and a built-in check agree, the
    // agent hears the rule the policy's author wrote, with its message.
    for rule in &policy.rules {
        let matched = target_matches(&rule.ast.target, facts)
            && rule
                .ast
                .conditions
                .iter()
                .all(|c| condition_holds(c, &rule.ast.target, facts, tier, ratio));
        checks.push(Check {
            id: Decider::Rule(rule.id.clone()),
            action: rule.ast.action,
            matched,
            shadow: rule.ast.shadow,
            message: rule.message.clone(),
        });
    }
    check_phase(policy, facts, &mut checks);
    check_tier(policy, tier, &mut checks);
    let gate = check_budget(policy, ratio, &mut checks);
    check_threshold(facts, &mut checks);
    conclude(checks, tier, gate, ratio, policy)
}

fn check_phase(policy: &Policy, facts: &PaymentFacts<'_>, checks: &mut Vec<Check>) {
    let allowed = policy.phases.allowed_payment_phase;
    let matched = facts.phase < allowed;
    checks.push(builtin(
        Decider::Phase,
        RuleAction::Block,
        matched,
        format!(
            "payments are allowed from {} on; the session is in {}",
            phase_name(allowed),
            phase_name(facts.phase)
        ),
    ));
}

fn check_tier(policy: &Policy, tier: Option<&Tier>, checks: &mut Vec<Check>) {
    if policy.tiers.is_empty() {
        return;
    }
    let Some(tier) = tier else {
        checks.push(builtin(
            Decider::NoTier,
            RuleAction::Block,
            true,
            "no autonomy tier covers this payment".to_string(),
        ));
        return;
    };
    let (action, message) = match tier.approval {
        ApprovalMode::None => (
            RuleAction::Allow,
            format!("tier {} pays autonomously", tier.name),
        ),
        ApprovalMode::NotifyWithVeto => (
            RuleAction::RequireApproval,
            format!("tier {} is held for a veto window", tier.name),
        ),
        ApprovalMode::ExplicitHuman => (
            RuleAction::RequireApproval,
            format!("tier {} needs a human's approval", tier.name),
        ),
        ApprovalMode::Blocked => (
            RuleAction::Block,
            format!("tier {} is prohibited", tier.name),
        ),
    };
    checks.push(builtin(
        Decider::Tier(tier.name.clone()),
        action,
        true,
        message,
    ));
}

fn check_budget(
    policy: &Policy,
    ratio: Option<(Level, Decimal)>,
    checks: &mut Vec<Check>,
) -> Option<Gate> {
    let (level, ratio) = ratio?;
    let gates = policy.budget.gates;
    let over = |threshold: Option<Decimal>| threshold.is_some_and(|t| ratio > t);
    let percent = (ratio * Decimal::from(100)).round_dp(1);
    let describe = |gate: &str| {
        format!(
            "{} budget would reach {percent}% of its limit, past the {gate} gate",
            level.as_str()
        )
    };
    checks.push(builtin(
        Decider::BudgetLimit,
        RuleAction::Block,
        ratio > Decimal::ONE,
        format!(
            "{} budget would be exceeded ({percent}% of its limit)",
            level.as_str()
        ),
    ));
    checks.push(builtin(
        Decider::Gate(Gate::Halt),
        RuleAction::Block,
        over(gates.halt),
        describe("halt"),
    ));
    checks.push(builtin(
        Decider::Gate(Gate::Restrict),
        RuleAction::RequireApproval,
        over(gates.restrict),
        describe("restrict"),
    ));
    checks.push(builtin(
        Decider::Gate(Gate::Warning),
        RuleAction::Flag,
        over(gates.warning),
        describe("warning"),
    ));
    if over(gates.halt) || ratio > Decimal::ONE {
        Some(Gate::Halt)
    } else if over(gates.restrict) {
        Some(Gate::Restrict)
    } else if over(gates.warning) {
        Some(Gate::Warning)
    } else {
        None
    }
}

fn check_threshold(facts: &PaymentFacts<'_>, checks: &mut Vec<Check>) {
    if let Some(threshold) = facts.limits.single_call_threshold {
        checks.push(builtin(
            Decider::SingleCallThreshold,
            RuleAction::RequireApproval,
            facts.cost_usd > threshold,
            format!(
                "payment of ${} is above the per-call threshold of ${threshold}",
                facts.cost_usd
            ),
        ));
    }
}

fn builtin(id: Decider, action: RuleAction, matched: bool, message: String) -> Check {
    Check {
        id,
        action,
        matched,
        shadow: false,
        message: Some(message),
    }
}

fn conclude(
    checks: Vec<Check>,
    tier: Option<&Tier>,
    gate: Option<Gate>,
    ratio: Option<(Level, Decimal)>,
    policy: &Policy,
) -> Evaluation {
    let enforced = || checks.iter().filter(|c| c.matched && !c.shadow);
    let strongest = enforced().map(|c| c.action).max();
    let decider = strongest.and_then(|action| enforced().find(|c| c.action == action));
    let verdict = match strongest {
        Some(RuleAction::Block) => Verdict::Denied,
        Some(RuleAction::RequireApproval) => Verdict::PendingApproval,
        _ => Verdict::Allowed,
    };
    let (rule, reason) = match decider {
        Some(check) => (
            check.id.clone(),
            check
                .message
                .clone()
                .unwrap_or_else(|| format!("rule {} matched", check.id)),
        ),
        None => (Decider::Default, "no rule objected".to_string()),
    };
    // A veto window applies only when the tier's veto is the sole reason to hold.
    let only_tier_holds = enforced()
        .filter(|c| c.action == RuleAction::RequireApproval)
        .all(|c| matches!(c.id, Decider::Tier(_)));
    let veto_window = (verdict == Verdict::PendingApproval && only_tier_holds)
        .then_some(tier)
        .flatten()
        .filter(|t| t.approval == ApprovalMode::NotifyWithVeto)
        .map(|t| t.veto_window);
    let hold_timeout = (verdict == Verdict::PendingApproval)
        .then(|| tier.map(|t| t.timeout).unwrap_or(policy.approvals.timeout));
    let flagged = enforced().any(|c| c.action == RuleAction::Flag);
    Evaluation {
        verdict,
        rule,
        reason,
        checks,
        tier: tier.map(|t| t.name.clone()),
        gate,
        ratio,
        veto_window,
        hold_timeout,
        flagged,
    }
}

/// The first tier whose conditions the payment meets.
fn classify_tier<'p>(policy: &'p Policy, facts: &PaymentFacts<'_>) -> Option<&'p Tier> {
    policy.tiers.iter().find(|tier| {
        tier.max_amount.is_none_or(|max| facts.cost_usd <= max)
            && tier.categories.as_ref().is_none_or(|list| {
                facts
                    .category
                    .is_some_and(|c| list.iter().any(|name| name == c))
            })
            && tier
                .trust
                .as_ref()
                .is_none_or(|list| list.contains(&facts.trust))
            && tier.frequency.is_none_or(|(max, window)| {
                let earlier = facts
                    .recent
                    .iter()
                    .filter(|p| {
                        within(p.at, facts.now, window)
                            && p.tier.as_deref() == Some(tier.name.as_str())
                    })
                    .count();
                earlier < max as usize
            })
    })
}

fn within(at: Instant, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(at) <= window
}

fn target_matches(target: &RuleTarget, facts: &PaymentFacts<'_>) -> bool {
    match target {
        RuleTarget::Any => true,
        RuleTarget::Tool(name) => facts.tool == Some(name.as_str()),
        RuleTarget::Category(name) => facts.category == Some(name.as_str()),
        RuleTarget::Host(pattern) => pattern.matches(facts.host, facts.port),
    }
}

fn recent_matches(target: &RuleTarget, payment: &RecentPayment) -> bool {
    match target {
        RuleTarget::Any => true,
        RuleTarget::Tool(name) => payment.tool.as_deref() == Some(name.as_str()),
        RuleTarget::Category(name) => payment.category.as_deref() == Some(name.as_str()),
        RuleTarget::Host(pattern) => pattern.matches(&payment.host, payment.port),
    }
}

fn condition_holds(
    condition: &Condition,
    target: &RuleTarget,
    facts: &PaymentFacts<'_>,
    tier: Option<&Tier>,
    ratio: Option<(Level, Decimal)>,
) -> bool {
    match condition {
        Condition::Phase { negate, phases } => phases.contains(&facts.phase) != *negate,
        Condition::Cost { op, amount } => compare(facts.cost_usd, *op, *amount),
        Condition::BudgetRatio {
            op,
            ratio: threshold,
        } => compare(ratio.map_or(Decimal::ZERO, |r| r.1), *op, *threshold),
        Condition::Time { outside, window } => {
            in_window(facts.minute_of_day, window.start_minute, window.end_minute) != *outside
        }
        Condition::Category { negate, name } => (facts.category == Some(name.as_str())) != *negate,
        Condition::RecipientTrust { negate, trust } => (facts.trust == *trust) != *negate,
        Condition::Tier { negate, name } => {
            (tier.map(|t| t.name.as_str()) == Some(name.as_str())) != *negate
        }
        Condition::Frequency { op, count, window } => {
            // This payment counts too: `ABOVE 5 PER 1h` stops the sixth.
            let earlier = facts
                .recent
                .iter()
                .filter(|p| within(p.at, facts.now, *window) && recent_matches(target, p))
                .count();
            compare(Decimal::from(earlier + 1), *op, Decimal::from(*count))
        }
    }
}

fn compare(value: Decimal, op: Comparison, against: Decimal) -> bool {
    match op {
        Comparison::Gt => value > against,
        Comparison::Ge => value >= against,
        Comparison::Lt => value < against,
        Comparison::Le => value <= against,
        Comparison::Eq => value == against,
        Comparison::Ne => value != against,
    }
}

/// Whether `minute` falls in `[start, end)`; a window with start > end wraps midnight.
fn in_window(minute: u16, start: u16, end: u16) -> bool {
    if start <= end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    }
}

pub use crate::policy::rules::phase_name;
