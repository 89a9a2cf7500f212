//! The parts a compiled [`super::Policy`] is made of: rules ready to evaluate, tiers,
//! tools, categories, budgets and limits, and each section's settings with its defaults
//! filled in. Plain data; `compile` builds it and the engine reads it.

use super::rules::{Phase, RuleAst, Trust};
use super::values::EndpointPattern;
use rust_decimal::Decimal;
use std::time::Duration;

/// A rule ready to evaluate.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `@id`, the entry's `id`, or `line-N`.
    pub id: String,
    /// Where it was written.
    pub line: usize,
    pub ast: RuleAst,
    /// What the agent is told when this rule decides.
    pub message: Option<String>,
}

/// How a tier's payments are approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalMode {
    None,
    NotifyWithVeto,
    ExplicitHuman,
    Blocked,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::None => "none",
            ApprovalMode::NotifyWithVeto => "notify_with_veto",
            ApprovalMode::ExplicitHuman => "explicit_human",
            ApprovalMode::Blocked => "blocked",
        }
    }
}

/// An autonomy tier.
#[derive(Clone, Debug)]
pub struct Tier {
    pub name: String,
    pub max_amount: Option<Decimal>,
    pub categories: Option<Vec<String>>,
    pub trust: Option<Vec<Trust>>,
    /// At most `.0` payments in this tier per `.1`, per session.
    pub frequency: Option<(u32, Duration)>,
    pub approval: ApprovalMode,
    pub veto_window: Duration,
    pub timeout: Duration,
}

/// A named tool.
#[derive(Clone, Debug)]
pub struct Tool {
    pub name: String,
    pub endpoints: Vec<EndpointPattern>,
    pub category: Option<String>,
}

/// A category and the endpoints in it.
#[derive(Clone, Debug)]
pub struct Category {
    pub name: String,
    pub endpoints: Vec<EndpointPattern>,
}

/// Budget gates as ratios of the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    pub warning: Option<Decimal>,
    pub restrict: Option<Decimal>,
    pub halt: Option<Decimal>,
}

/// Limits (USD) and gates.
#[derive(Clone, Debug, Default)]
pub struct CompiledBudget {
    pub session_limit: Option<Decimal>,
    pub agent_limit: Option<Decimal>,
    pub fleet_limit: Option<Decimal>,
    pub single_call_threshold: Option<Decimal>,
    pub gates: Gates,
}

/// The limits that apply to one agent, after its own budget and profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub session: Option<Decimal>,
    pub agent: Option<Decimal>,
    pub fleet: Option<Decimal>,
    pub single_call_threshold: Option<Decimal>,
}

/// Phase settings.
#[derive(Clone, Copy, Debug)]
pub struct PhasePolicy {
    pub allowed_payment_phase: Phase,
    pub agent_header: bool,
    /// The forward moves a session may make: `moves[from]` has bit `to` set.
    moves: [u8; 3],
}

impl PhasePolicy {
    /// Whether a session may move from `from` to the later phase `to`.
    pub fn allows(&self, from: Phase, to: Phase) -> bool {
        self.moves[from as usize] & (1 << to as u8) != 0
    }

    pub(super) fn clear_moves(&mut self) {
        self.moves = [0; 3];
    }

    pub(super) fn allow_move(&mut self, from: Phase, to: Phase) {
        self.moves[from as usize] |= 1 << to as u8;
    }

    /// Every forward move, or every forward move but the skip EXPLORE → COMMIT.
    pub fn forward_only(
        allowed_payment_phase: Phase,
        agent_header: bool,
        allow_skip: bool,
    ) -> Self {
        let mut moves = [0u8; 3];
        for from in [Phase::Explore, Phase::Decide, Phase::Commit] {
            for to in [Phase::Decide, Phase::Commit] {
                if to > from && (allow_skip || to as u8 - from as u8 == 1) {
                    moves[from as usize] |= 1 << to as u8;
                }
            }
        }
        PhasePolicy {
            allowed_payment_phase,
            agent_header,
            moves,
        }
    }
}

/// Bounds on memory that agents can make Purser use (`limits` in the policy).
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimits {
    pub connections_per_agent: usize,
    pub sessions: usize,
    pub sessions_per_agent: usize,
    pub session_idle: Duration,
    pub leaf_certificates: usize,
}

/// Hold settings.
#[derive(Clone, Copy, Debug)]
pub struct ApprovalSettings {
    pub timeout: Duration,
    pub veto_window: Duration,
    pub max_pending_per_session: usize,
    pub max_pending_total: usize,
}

/// Compensation settings.
#[derive(Clone, Debug, Default)]
pub struct CompensationSettings {
    pub enabled: bool,
    pub timeout: Option<Duration>,
    pub endpoint: Option<String>,
    pub credit_budget: bool,
}

/// Where events are POSTed.
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    pub webhook: Option<http::Uri>,
    pub timeout: Duration,
    pub retries: u32,
}

/// x402 handling settings.
#[derive(Clone, Copy, Debug)]
pub struct X402Settings {
    pub challenge_ttl: Duration,
    pub max_challenges_per_session: usize,
    pub require_challenge: bool,
    pub max_offers_per_challenge: usize,
    /// Bytes all remembered challenges may take.
    pub challenge_memory: usize,
    /// Bytes one agent's remembered challenges may take.
    pub challenge_memory_per_agent: usize,
}

/// What the policy says about one agent beyond its credentials.
#[derive(Clone, Debug, Default)]
pub(super) struct AgentSettings {
    /// Its own agent budget, above its profile's.
    pub(super) budget: Option<Decimal>,
    /// The profile it takes its other limits from.
    pub(super) profile: Option<String>,
}
