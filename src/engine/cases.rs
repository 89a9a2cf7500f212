//! `purser policy test FILE CASES`: decision cases, each a payment's facts and the
//! decision (and deciding rule) the policy must reach. The cases run the same
//! [`evaluate`] the proxy runs.

use super::evaluate::{evaluate, Evaluation, PaymentFacts, RecentPayment};
use crate::ledger::{Account, BudgetView};
use crate::policy::rules::Trust;
use crate::policy::values::{parse_duration, Money};
use crate::policy::{Phase, Policy};
use crate::x402::normalize_address;
use serde::Deserialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// A cases file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// Inputs every case starts from.
    #[serde(default)]
    pub defaults: CaseInput,
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub input: CaseInput,
    pub expect: Expectation,
}

/// A payment's facts; absent fields come from `defaults`, then from these defaults:
/// agent `agent`, phase COMMIT, host `merchant.example`, port 443, path `/`, time 12:00.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseInput {
    pub agent: Option<String>,
    pub phase: Option<String>,
    /// USD.
    pub cost: Option<Money>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub pay_to: Option<String>,
    /// Whether this agent has paid `pay_to` before (makes it `known`).
    pub paid_before: Option<bool>,
    /// Session spend so far, USD (agent and fleet default to at least this).
    pub spent: Option<Money>,
    pub reserved: Option<Money>,
    pub agent_spent: Option<Money>,
    pub fleet_spent: Option<Money>,
    /// `HH:MM` in the policy's time zone.
    pub time: Option<String>,
    /// Earlier payments in this session: `{count, ago, tier?, tool?, category?, host?}`.
    pub recent: Option<Vec<RecentInput>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentInput {
    #[serde(default = "one")]
    pub count: u32,
    /// How long ago, e.g. `5m`.
    pub ago: String,
    pub tier: Option<String>,
    pub tool: Option<String>,
    pub category: Option<String>,
    pub host: Option<String>,
}

fn one() -> u32 {
    1
}

/// What the case expects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// ALLOWED, DENIED or PENDING_APPROVAL.
    pub decision: String,
    pub rule: Option<String>,
    pub tier: Option<String>,
    pub gate: Option<String>,
}

/// A case's result.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    pub got: String,
}

/// Why the cases could not run.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Runs every case of `cases_path` against `policy`.
pub fn run_cases(policy: &Policy, cases_path: &Path) -> Result<Vec<CaseResult>, CasesError> {
    let invalid = |message: String| CasesError::Invalid {
        path: cases_path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(cases_path).map_err(|e| invalid(e.to_string()))?;
    let file: CasesFile = serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    file.cases
        .iter()
        .map(|case| {
            run_case(policy, &file.defaults, case)
                .map_err(|message| invalid(format!("case `{}`: {message}", case.name)))
        })
        .collect()
}

fn run_case(policy: &Policy, defaults: &CaseInput, case: &Case) -> Result<CaseResult, String> {
    let input = merge(&case.input, defaults);
    let evaluation = evaluate_input(policy, &input)?;
    let expected = describe_expectation(&case.expect);
    let got = format!(
        "{} by {}{}{}",
        evaluation.verdict.as_str(),
        evaluation.rule,
        evaluation
            .tier
            .as_deref()
            .map(|t| format!(", tier {t}"))
            .unwrap_or_default(),
        evaluation
            .gate
            .map(|g| format!(", gate {}", g.as_str()))
            .unwrap_or_default(),
    );
    let expect = &case.expect;
    let passed = evaluation
        .verdict
        .as_str()
        .eq_ignore_ascii_case(expect.decision.trim())
        && expect
            .rule
            .as_ref()
            .is_none_or(|rule| *rule == evaluation.rule.name())
        && expect
            .tier
            .as_ref()
            .is_none_or(|tier| Some(tier) == evaluation.tier.as_ref())
        && expect
            .gate
            .as_ref()
            .is_none_or(|gate| Some(gate.as_str()) == evaluation.gate.map(|g| g.as_str()));
    Ok(CaseResult {
        name: case.name.clone(),
        passed,
        expected,
        got,
    })
}

fn describe_expectation(expect: &Expectation) -> String {
    let mut text = expect.decision.clone();
    if let Some(rule) = &expect.rule {
        text.push_str(&format!(" by {rule}"));
    }
    if let Some(tier) = &expect.tier {
        text.push_str(&format!(", tier {tier}"));
    }
    if let Some(gate) = &expect.gate {
        text.push_str(&format!(", gate {gate}"));
    }
    text
}

fn merge(case: &CaseInput, defaults: &CaseInput) -> CaseInput {
    macro_rules! pick {
        ($($field:ident),*) => { CaseInput { $($field: case.$field.clone().or_else(|| defaults.$field.clone())),* } };
    }
    pick!(
        agent,
        phase,
        cost,
        host,
        port,
        path,
        pay_to,
        paid_before,
        spent,
        reserved,
        agent_spent,
        fleet_spent,
        time,
        recent
    )
}

/// Builds the facts of a case and evaluates them.
pub fn evaluate_input(policy: &Policy, input: &CaseInput) -> Result<Evaluation, String> {
    let agent = input.agent.clone().unwrap_or_else(|| "agent".to_string());
    let phase_text = input.phase.clone().unwrap_or_else(|| "COMMIT".to_string());
    let phase =
        Phase::parse(&phase_text).ok_or_else(|| format!("`{phase_text}` is not a phase"))?;
    let host = input
        .host
        .clone()
        .unwrap_or_else(|| "merchant.example".to_string());
    let port = input.port.unwrap_or(443);
    let path = input.path.clone().unwrap_or_else(|| "/".to_string());
    let cost = input.cost.map(|m| m.0).ok_or("every case needs a `cost`")?;
    let pay_to = normalize_address(
        input
            .pay_to
            .as_deref()
            .unwrap_or("0x0000000000000000000000000000000000000001"),
    );
    let trust = if policy.verified_recipients.contains(&pay_to) {
        Trust::Verified
    } else if input.paid_before.unwrap_or(false) {
        Trust::Known
    } else {
        Trust::Unknown
    };
    let money = |m: Option<Money>| m.map(|m| m.0).unwrap_or_default();
    let spent = money(input.spent);
    let reserved = money(input.reserved);
    let account = |committed| Account {
        committed,
        unknown: Default::default(),
        reserved,
    };
    let budget = BudgetView {
        session: account(spent),
        agent: account(money(input.agent_spent).max(spent)),
        fleet: account(
            money(input.fleet_spent)
                .max(money(input.agent_spent))
                .max(spent),
        ),
    };
    let now = Instant::now();
    let recent = expand_recent(input.recent.as_deref().unwrap_or(&[]), now, &host)?;
    let tool = policy.tool_for(&host, port, &path);
    let facts = PaymentFacts {
        phase,
        cost_usd: cost,
        tool: tool.map(|t| t.name.as_str()),
        category: policy.category_for(tool, &host, port, &path),
        host: &host,
        port,
        trust,
        budget,
        limits: policy.limits_for(&agent),
        minute_of_day: parse_time(input.time.as_deref().unwrap_or("12:00"))?,
        now,
        recent: &recent,
    };
    Ok(evaluate(policy, &facts))
}

fn expand_recent(
    entries: &[RecentInput],
    now: Instant,
    host: &str,
) -> Result<std::collections::VecDeque<RecentPayment>, String> {
    let mut recent = std::collections::VecDeque::new();
    for entry in entries {
        let ago = parse_duration(&entry.ago)
            .ok_or_else(|| format!("`{}` is not a duration", entry.ago))?;
        let at = now.checked_sub(ago).unwrap_or(now - Duration::from_secs(0));
        for _ in 0..entry.count {
            recent.push_back(RecentPayment {
                at,
                tier: entry.tier.clone(),
                tool: entry.tool.clone(),
                category: entry.category.clone(),
                host: entry.host.clone().unwrap_or_else(|| host.to_string()),
                port: 443,
            });
        }
    }
    Ok(recent)
}

fn parse_time(text: &str) -> Result<u16, String> {
    let (hours, minutes) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not HH:MM"))?;
    let hours: u16 = hours
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not HH:MM"))?;
    let minutes: u16 = minutes
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not HH:MM"))?;
    if hours > 23 || minutes > 59 {
        return Err(format!("`{text}` is not a time of day"));
    }
    Ok(hours * 60 + minutes)
}
