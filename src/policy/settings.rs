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
    /// The parsed rule: its action, target and conditions.
    pub ast: RuleAst,
    /// What the agent is told when this rule decides.
    pub message: Option<String>,
}

/// How a tier's payments are approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalMode {
    /// Goes ahead without anyone's approval (`none`, also spelled `autonomous`).
    None,
    /// Held for the veto window, then goes ahead unless a human vetoes it.
    NotifyWithVeto,
    /// Held until a human approves; denied when the hold times out.
    ExplicitHuman,
    /// Refused outright, the attempt still traced (`blocked`, also spelled `prohibited`).
    Blocked,
}

impl ApprovalMode {
    /// The mode's spelling in the policy file (`notify_with_veto`).
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
    /// The tier's name, as traces and `tier IS` conditions spell it.
    pub name: String,
    /// A payment is in this tier only if it costs at most this many USD; `None` for any amount.
    pub max_amount: Option<Decimal>,
    /// The categories a payment must be in to be in this tier; `None` for any.
    pub categories: Option<Vec<String>>,
    /// The recipient trust levels the tier covers; `None` for any.
    pub trust: Option<Vec<Trust>>,
    /// At most `.0` payments in this tier per `.1`, per session.
    pub frequency: Option<(u32, Duration)>,
    /// How the tier's payments are approved.
    pub approval: ApprovalMode,
    /// How long a `notify_with_veto` hold waits for a veto (the tier's own, else
    /// `approvals.veto_window`).
    pub veto_window: Duration,
    /// How long a hold of a payment in this tier waits for a human before it is denied
    /// (the tier's own, else `approvals.timeout`).
    pub timeout: Duration,
}

/// A named tool.
#[derive(Clone, Debug)]
pub struct Tool {
    /// The tool's name, as rule targets spell it (`pay_for_data`).
    pub name: String,
    /// The `host[/path*]` patterns the tool is reached at.
    pub endpoints: Vec<EndpointPattern>,
    /// The category the tool's requests are in, if the policy gives one.
    pub category: Option<String>,
}

/// A category and the endpoints in it.
#[derive(Clone, Debug)]
pub struct Category {
    /// The category's name, as `category:NAME` targets and traces spell it.
    pub name: String,
    /// The `host[/path*]` patterns of the requests in it; empty for a category only tools name.
    pub endpoints: Vec<EndpointPattern>,
}

/// Budget gates as ratios of the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    /// Past this ratio a payment is allowed but flagged (`X-Purser-Budget: warning`).
    pub warning: Option<Decimal>,
    /// Past this ratio new payments need a human's approval.
    pub restrict: Option<Decimal>,
    /// Past this ratio payments are refused.
    pub halt: Option<Decimal>,
}

/// Limits (USD) and gates.
#[derive(Clone, Debug, Default)]
pub struct CompiledBudget {
    /// `budget.session_limit`: USD one session may spend.
    pub session_limit: Option<Decimal>,
    /// `budget.agent_limit`: USD one agent may spend across its sessions.
    pub agent_limit: Option<Decimal>,
    /// `budget.fleet_limit`: USD all agents together may spend.
    pub fleet_limit: Option<Decimal>,
    /// A single payment above this many USD needs approval, whatever the budget.
    pub single_call_threshold: Option<Decimal>,
    /// The graduated gates on the (spent + reserved) / limit ratio.
    pub gates: Gates,
}

/// The limits that apply to one agent, after its own budget and profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// USD one session of this agent may spend.
    pub session: Option<Decimal>,
    /// USD this agent may spend across its sessions.
    pub agent: Option<Decimal>,
    /// USD all agents together may spend.
    pub fleet: Option<Decimal>,
    /// A single payment above this many USD needs approval.
    pub single_call_threshold: Option<Decimal>,
}

/// Phase settings.
#[derive(Clone, Copy, Debug)]
pub struct PhasePolicy {
    /// Payments are allowed from this phase on (COMMIT unless the policy says).
    pub allowed_payment_phase: Phase,
    /// Whether an agent may move its own session forward with `X-Purser-Phase`.
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
    /// Connections (and the tunnels they become) one agent may hold open.
    pub connections_per_agent: usize,
    /// Sessions kept in memory, all agents together.
    pub sessions: usize,
    /// Sessions one agent may have in memory; past it its own idle EXPLORE sessions go.
    pub sessions_per_agent: usize,
    /// A session unused this long is forgotten (its spend stays in the ledger).
    pub session_idle: Duration,
    /// Interception leaf certificates kept in the cache.
    pub leaf_certificates: usize,
}

/// Hold settings.
#[derive(Clone, Copy, Debug)]
pub struct ApprovalSettings {
    /// How long a hold waits for a human before it is denied, for payments in no tier or in
    /// a tier that does not say (default 5 minutes).
    pub timeout: Duration,
    /// How long a `notify_with_veto` hold waits for a veto, for tiers that do not say
    /// (default 30 s).
    pub veto_window: Duration,
    /// Holds one session may have pending at once.
    pub max_pending_per_session: usize,
    /// Holds all sessions together may have pending at once.
    pub max_pending_total: usize,
}

/// Compensation settings.
#[derive(Clone, Debug, Default)]
pub struct CompensationSettings {
    /// Whether failed transaction steps and rollbacks are compensated at all.
    pub enabled: bool,
    /// `compensation.timeout` as written; loaded and checked, but nothing reads it yet.
    pub timeout: Option<Duration>,
    /// The URL refund requests are POSTed to.
    pub endpoint: Option<String>,
    /// Whether a refund requested gives the payment's amount back to the budget.
    pub credit_budget: bool,
}

/// Where events are POSTed.
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    /// The `http://` or `https://` URL events are POSTed to, as JSON; `None` for no notifications.
    pub webhook: Option<http::Uri>,
    /// How long one attempt may take (default 5 s).
    pub timeout: Duration,
    /// Attempts after the first, with doubling backoff (default 3, at most 10).
    pub retries: u32,
}

/// x402 handling settings.
#[derive(Clone, Copy, Debug)]
pub struct X402Settings {
    /// How long a remembered 402 challenge stays valid (default 1 hour).
    pub challenge_ttl: Duration,
    /// Challenges remembered per session; the least recently used go first.
    pub max_challenges_per_session: usize,
    /// Refuse payments that answer no challenge Purser saw, even when they carry an amount.
    pub require_challenge: bool,
    /// Offers kept per remembered challenge (those Purser can price first).
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
