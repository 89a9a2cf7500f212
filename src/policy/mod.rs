//! The policy file: what Purser enforces, loaded from YAML and validated before use.
//!
//! A policy never silently fails open: unknown keys, malformed values and bad patterns are
//! load errors that name `file:line:column`. A loaded [`Policy`] is immutable; reloading
//! builds a new one and swaps it in atomically (see [`PolicyStore`]).

mod compile;
pub mod dsl;
mod file;
mod host_pattern;
mod identity;
mod phase;
pub mod route;
pub mod rules;
mod tunnel;
pub mod values;

pub use file::{AgentEntry, AnonymousEntry, AssetEntry, PolicyFile};
pub use host_pattern::{HostPattern, HostPatternError};
pub(crate) use identity::constant_time_eq;
pub use identity::{AgentDirectory, AuthError, Identity, SessionId};
pub use phase::{NotAPhase, Phase};
pub use tunnel::TunnelEntry;

use arc_swap::ArcSwap;
use compile::{SourceText, TierDefaults};
use rules::{RuleAst, Trust};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use values::EndpointPattern;

/// Why a policy file could not be loaded. Every variant tells the user where to look.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read policy file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    InvalidWhole { path: PathBuf, message: String },
}

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

    fn clear_moves(&mut self) {
        self.moves = [0; 3];
    }

    fn allow_move(&mut self, from: Phase, to: Phase) {
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

impl MemoryLimits {
    fn compile(section: &file::LimitsSection) -> MemoryLimits {
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

#[derive(Clone, Debug, Default)]
struct AgentSettings {
    budget: Option<Decimal>,
    profile: Option<String>,
}

/// A validated policy, ready for the data path.
#[derive(Debug)]
pub struct Policy {
    /// Where it was loaded from (for reloads and messages).
    pub source: PathBuf,
    /// SHA-256 of the file's bytes, hex: the policy version written into traces.
    pub digest: String,
    pub name: String,
    pub timezone: jiff::tz::TimeZone,
    pub agents: AgentDirectory,
    /// Hosts that are spliced without interception, first match wins.
    pub tunnel: Vec<TunnelEntry>,
    pub phases: PhasePolicy,
    pub budget: CompiledBudget,
    pub rules: Vec<Rule>,
    pub tiers: Vec<Tier>,
    pub tools: Vec<Tool>,
    pub categories: Vec<Category>,
    /// Verified payTo addresses, normalised (EVM hex lowercased).
    pub verified_recipients: HashSet<String>,
    /// The built-in asset table plus the policy's `assets`.
    pub assets: crate::x402::AssetTable,
    pub approvals: ApprovalSettings,
    pub compensation: CompensationSettings,
    pub x402: X402Settings,
    pub notifications: NotificationSettings,
    pub allow_link_local: bool,
    pub loopback_ports: Option<Vec<u16>>,
    pub limits: MemoryLimits,
    agent_settings: BTreeMap<String, AgentSettings>,
    profiles: BTreeMap<String, file::ProfileEntry>,
}

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
        let parsed: PolicyFile = if text.trim().is_empty() {
            PolicyFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|err| yaml_error(path, &err))?
        };
        let source = SourceText { path, text };
        Policy::compile(parsed, &source, hex(&Sha256::digest(text.as_bytes())))
    }

    fn compile(
        file: PolicyFile,
        source: &SourceText<'_>,
        digest: String,
    ) -> Result<Policy, PolicyError> {
        let timezone = match &file.timezone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| {
                source.error_at(name, 0, format!("unknown time zone `{name}`: {e}"))
            })?,
        };
        let approvals = ApprovalSettings {
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
        };
        let tier_defaults = TierDefaults {
            veto_window: approvals.veto_window,
            timeout: approvals.timeout,
        };
        let rules = compile::compile_rules(&file, source)?;
        let tools = compile::compile_tools(&file);
        let categories = compile::compile_categories(&file);
        let tiers = compile::compile_tiers(&file, &tier_defaults, source)?;
        compile::check_references(&rules, &tools, &categories, &tiers, source)?;
        let budget = compile::compile_budget(&file, source)?;
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
        let agent_settings = file
            .agents
            .iter()
            .map(|(name, entry)| {
                let settings = AgentSettings {
                    budget: entry.budget.map(|m| m.0),
                    profile: entry.profile.clone(),
                };
                (name.clone(), settings)
            })
            .collect();
        let phases = compile::compile_phases(&file, source)?;
        compile::check_compensation_action(&file, source)?;
        let compensation = CompensationSettings {
            enabled: file.compensation.enabled,
            timeout: file.compensation.timeout.map(|d| d.0),
            endpoint: file.compensation.endpoint.clone(),
            credit_budget: file.compensation.credit_budget,
        };
        let x402 = X402Settings {
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
        };
        let assets = compile::compile_assets(&file, source)?;
        let notifications = compile::compile_notifications(&file, source)?;
        let verified_recipients = file
            .recipients
            .verified
            .iter()
            .map(|a| normalize_address(a))
            .collect();
        Ok(Policy {
            source: source.path.to_path_buf(),
            digest,
            name: file.name.clone().unwrap_or_else(|| "unnamed".to_string()),
            timezone,
            agents: AgentDirectory::new(file.agents, file.anonymous),
            tunnel: file.tunnel,
            phases,
            budget,
            rules,
            tiers,
            tools,
            categories,
            verified_recipients,
            assets,
            approvals,
            compensation,
            x402,
            notifications,
            allow_link_local: file.egress.allow_link_local,
            loopback_ports: file.egress.loopback_ports.clone(),
            limits: MemoryLimits::compile(&file.limits),
            agent_settings,
            profiles: file.profiles,
        })
    }

    /// Why the policy forbids reaching `host:port`, if it does. Only literal addresses
    /// (and `localhost`) are judged here, before anything is resolved; names are judged
    /// address by address when the connection is made (`proxy::egress`).
    pub fn egress_refusal(&self, host: &str, port: u16) -> Option<String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>().ok()?
        };
        self.egress_refusal_ip(ip, port)
            .map(|refusal| format!("{host} is {refusal}"))
    }

    /// Why the policy forbids connecting to `ip:port`, if it does. This is the check made
    /// on every address Purser is about to connect to, literal or resolved.
    pub fn egress_refusal_ip(&self, ip: IpAddr, port: u16) -> Option<EgressRefusal> {
        let ip = effective_destination(ip);
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if link_local && !self.allow_link_local {
            return Some(EgressRefusal::LinkLocal);
        }
        if ip.is_loopback() {
            if let Some(ports) = &self.loopback_ports {
                if !ports.contains(&port) {
                    return Some(EgressRefusal::LoopbackPort(port));
                }
            }
        }
        None
    }

    /// Whether `host:port` is to be spliced without interception.
    pub fn is_tunnel(&self, host: &str, port: u16) -> bool {
        self.tunnel_entry(host, port).is_some()
    }

    /// The first `tunnel` entry covering `host:port`, if any.
    pub fn tunnel_entry(&self, host: &str, port: u16) -> Option<&TunnelEntry> {
        self.tunnel
            .iter()
            .find(|entry| entry.pattern.matches(host, port))
    }

    /// The limits for `agent`: its own budget, then its profile, then the policy's.
    pub fn limits_for(&self, agent: &str) -> Limits {
        let settings = self.agent_settings.get(agent);
        let profile = settings
            .and_then(|s| s.profile.as_ref())
            .and_then(|name| self.profiles.get(name));
        Limits {
            session: profile
                .and_then(|p| p.session_limit.map(|m| m.0))
                .or(self.budget.session_limit),
            agent: settings
                .and_then(|s| s.budget)
                .or_else(|| profile.and_then(|p| p.agent_limit.map(|m| m.0)))
                .or(self.budget.agent_limit),
            fleet: self.budget.fleet_limit,
            single_call_threshold: profile
                .and_then(|p| p.single_call_threshold.map(|m| m.0))
                .or(self.budget.single_call_threshold),
        }
    }

    /// The tool whose endpoints cover this request, if any.
    ///
    /// `path` is the request's raw path: it is compared in its normal form
    /// ([`route::normalize_path`]), as the merchant will route it.
    pub fn tool_for(&self, host: &str, port: u16, path: &str) -> Option<&Tool> {
        if self.tools.is_empty() {
            return None;
        }
        let path = route::normalize_path(path);
        self.tools
            .iter()
            .find(|tool| tool.endpoints.iter().any(|e| e.matches(host, port, &path)))
    }

    /// The request's category: its tool's, else the category with the most specific
    /// matching endpoint (a longer path beats a shorter one, an exact host a wildcard;
    /// ties go to the one written first).
    pub fn category_for<'a>(
        &'a self,
        tool: Option<&'a Tool>,
        host: &str,
        port: u16,
        path: &str,
    ) -> Option<&'a str> {
        if let Some(category) = tool.and_then(|t| t.category.as_deref()) {
            return Some(category);
        }
        if self.categories.is_empty() {
            return None;
        }
        let path = route::normalize_path(path);
        let mut best: Option<(&'a str, usize)> = None;
        for category in &self.categories {
            for endpoint in category
                .endpoints
                .iter()
                .filter(|e| e.matches(host, port, &path))
            {
                let score = endpoint.specificity();
                if best.is_none_or(|(_, best_score)| score > best_score) {
                    best = Some((category.name.as_str(), score));
                }
            }
        }
        best.map(|(name, _)| name)
    }
}

/// Why the policy's `egress` section refuses an address; reads after "ADDRESS is".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error(
        "link-local (cloud metadata lives there) and the policy's egress.allow_link_local is off"
    )]
    LinkLocal,
    #[error("loopback, and port {0} is not in the policy's egress.loopback_ports")]
    LoopbackPort(u16),
}

/// The address a connection to `ip` really reaches: an IPv4-mapped IPv6 address is its
/// IPv4 address, and the unspecified address (`0.0.0.0`, `::`) is the host itself, which
/// is where the kernel sends a connection to it. Judging the literal instead would let
/// `[::ffff:169.254.169.254]` or `0.0.0.0:PORT` past the checks.
pub fn effective_destination(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// EVM addresses compare case-insensitively; others (Solana base58) exactly.
pub fn normalize_address(address: &str) -> String {
    let trimmed = address.trim();
    if trimmed.starts_with("0x") || trimmed.starts_with("0X") {
        trimmed.to_ascii_lowercase()
    } else {
        trimmed.to_string()
    }
}

fn yaml_error(path: &Path, err: &serde_yaml_ng::Error) -> PolicyError {
    match err.location() {
        Some(loc) => PolicyError::Invalid {
            path: path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message: strip_location_suffix(&err.to_string()),
        },
        None => PolicyError::InvalidWhole {
            path: path.to_path_buf(),
            message: err.to_string(),
        },
    }
}

/// serde_yaml_ng appends " at line L column C" to its messages; the location is already in
/// the `file:line:column` prefix, so the suffix would only repeat it.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// A size from the policy in bytes, or the default; at least 4 KiB (one challenge).
fn size_or(size: Option<values::SizeText>, default: usize) -> usize {
    size.map_or(default, |s| usize::try_from(s.0).unwrap_or(usize::MAX))
        .max(4096)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The live policy, shared by every connection and swapped atomically on reload.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<Policy>,
}

impl PolicyStore {
    pub fn new(policy: Policy) -> Self {
        PolicyStore {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// The policy in force now, to keep (one atomic load and a reference count).
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// The policy in force now, for a short look: no shared reference count is touched,
    /// so concurrent requests do not contend on one cache line.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.current.load()
    }

    /// Re-reads the policy from its file. A bad file keeps the old policy and says why.
    pub fn reload(&self) -> Result<Arc<Policy>, PolicyError> {
        let path = self.current.load().source.clone();
        let fresh = Arc::new(Policy::load(&path)?);
        self.current.store(fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_yaml(Path::new("test.yaml"), text)
    }

    #[test]
    fn unknown_top_level_key_names_file_line_and_column() {
        let err = load("tunnel: []\nbogus: 1\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.yaml:2:1: unknown field `bogus`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_agent_field_is_an_error() {
        let err = load("agents:\n  bot:\n    tokn: x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:3:5: agents.bot: unknown field `tokn`"),
            "{err}"
        );
    }

    #[test]
    fn bad_tunnel_pattern_points_at_the_entry() {
        let err = load("tunnel:\n  - \"exa mple.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:2:5: tunnel[0]: host pattern"),
            "{err}"
        );
    }

    #[test]
    fn tunnel_patterns_match_hosts_and_ports() {
        let policy = load("tunnel: ['*.pinned.example', 'api.bank.example:8443']\n").unwrap();
        assert!(policy.is_tunnel("a.pinned.example", 443));
        assert!(!policy.is_tunnel("pinned.example.evil", 443));
        assert!(policy.is_tunnel("api.bank.example", 8443));
        assert!(!policy.is_tunnel("api.bank.example", 443));
    }

    #[test]
    fn tunnel_entries_are_untrusted_unless_they_say_so() {
        let policy = load(
            "tunnel:\n  - pinned.example\n  - {host: '*.bank.example', trust_payments: true}\n  - {host: other.example}\n",
        )
        .unwrap();
        let entry = |host| policy.tunnel_entry(host, 443).map(|e| e.trust_payments);
        assert_eq!(entry("pinned.example"), Some(false));
        assert_eq!(entry("api.bank.example"), Some(true));
        assert_eq!(entry("other.example"), Some(false));
        assert_eq!(entry("elsewhere.example"), None);
    }

    #[test]
    fn tunnel_map_errors_name_the_line() {
        let err = load("tunnel:\n  - host: pinned.example\n    trust_payment: true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:3:5:") && err.contains("unknown field `trust_payment`"),
            "{err}"
        );
        let err = load("tunnel:\n  - {trust_payments: true}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:2:") && err.contains("missing field `host`"),
            "{err}"
        );
        let err = load("tunnel:\n  - {host: 'exa mple.com'}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:2:") && err.contains("host pattern"),
            "{err}"
        );
    }

    #[test]
    fn egress_judges_the_address_a_connection_really_reaches() {
        let policy = load("egress:\n  loopback_ports: [8080]\n").unwrap();
        let refused = |ip: &str, port| policy.egress_refusal_ip(ip.parse().unwrap(), port);
        assert_eq!(
            refused("169.254.169.254", 80),
            Some(EgressRefusal::LinkLocal)
        );
        assert_eq!(
            refused("::ffff:169.254.169.254", 80),
            Some(EgressRefusal::LinkLocal)
        );
        assert_eq!(refused("fe80::1", 80), Some(EgressRefusal::LinkLocal));
        assert_eq!(refused("127.0.0.1", 8080), None);
        assert_eq!(
            refused("127.0.0.1", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(
            refused("127.9.9.9", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(refused("::1", 22), Some(EgressRefusal::LoopbackPort(22)));
        assert_eq!(
            refused("::ffff:127.0.0.1", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(
            refused("0.0.0.0", 22),
            Some(EgressRefusal::LoopbackPort(22))
        );
        assert_eq!(refused("::", 22), Some(EgressRefusal::LoopbackPort(22)));
        assert_eq!(refused("192.0.2.1", 22), None);
        assert!(policy.egress_refusal("LOCALHOST", 22).is_some());
        assert!(policy
            .egress_refusal("[::ffff:169.254.169.254]", 80)
            .is_some());
        assert!(policy.egress_refusal("example.com", 22).is_none());
        let open = load("egress:\n  allow_link_local: true\n").unwrap();
        assert_eq!(
            open.egress_refusal_ip("169.254.169.254".parse().unwrap(), 80),
            None
        );
    }

    #[test]
    fn empty_file_is_a_policy_with_nothing_allowed_anonymously() {
        let policy = load("").unwrap();
        assert!(policy.agents.anonymous().is_none());
    }
}
