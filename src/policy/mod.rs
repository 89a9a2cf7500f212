//! The policy: what Purser enforces, loaded from YAML and validated before use.
//!
//! A policy never silently fails open: unknown keys, malformed values and bad patterns are
//! load errors that name `file:line:column`. A loaded [`Policy`] is immutable; reloading
//! builds a new one and swaps it in atomically (see [`PolicyStore`]).
//!
//! This file is the facade: the [`Policy`] type and its lookups, the [`PolicyStore`], and
//! the re-exports. The rest, from the bottom up:
//!
//! * `route`, `host_pattern`: normal forms of hosts and paths, and host patterns.
//! * `phase`: the session phases, and the one place their names are read and written.
//! * `rules`: the rule language's syntax tree; `dsl` parses rule text into it.
//! * `values`: the typed scalars a policy file is written in (money, durations, phases,
//!   sizes, endpoint patterns).
//! * `tunnel`, `file`: the file's shape as written (serde types that refuse unknown keys).
//! * `settings`: the compiled parts a [`Policy`] holds (rules, tiers, budgets, limits...).
//! * `transparent`: the identity of redirected connections, and what passes them unread.
//! * `egress`: which IP addresses agents may not reach, and what a connection really reaches.
//! * `identity`: agents, their credentials and authentication.
//! * `error`: [`PolicyError`] and how a message finds its `file:line:column`.
//! * `chains`: the EVM nodes unknown payments are reconciled with (`chains`).
//! * `compile`, `compile_rules`: file to [`Policy`] ([`Policy::load`], [`Policy::from_yaml`]),
//!   every section checked and defaulted; `compile_rules` does the `rules` section.

mod chains;
mod compile;
mod compile_rules;
pub mod dsl;
mod egress;
mod error;
mod file;
mod host_pattern;
mod identity;
mod phase;
pub mod route;
pub mod rules;
mod settings;
pub mod transparent;
mod tunnel;
pub mod values;

pub use chains::ChainSettings;
pub use egress::{effective_destination, EgressRefusal, EgressRules};
pub use error::PolicyError;
pub use file::{AgentEntry, AnonymousEntry, AssetEntry, PolicyFile};
pub use host_pattern::{HostPattern, HostPatternError};
pub(crate) use identity::constant_time_eq;
pub use identity::{AgentDirectory, AuthError, Identity, SessionId};
pub use phase::{NotAPhase, Phase};
pub use settings::{
    ApprovalMode, ApprovalSettings, Category, CompensationSettings, CompiledBudget, Gates, Limits,
    MemoryLimits, NotificationSettings, PhasePolicy, Rule, Tier, Tool, X402Settings,
};
pub use transparent::{Passthrough, Transparent};
pub use tunnel::TunnelEntry;

use arc_swap::ArcSwap;
use settings::AgentSettings;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A validated policy, ready for the data path.
#[derive(Debug)]
pub struct Policy {
    /// Where it was loaded from (for reloads and messages).
    pub source: PathBuf,
    /// SHA-256 of the file's bytes, hex: the policy version written into traces.
    pub digest: String,
    /// The policy's `name`, for logs; `unnamed` when the file gives none.
    pub name: String,
    /// The zone time-window rules are read in (`timezone`; UTC when absent).
    pub timezone: jiff::tz::TimeZone,
    /// The agents, their credentials, and where anonymous requests go.
    pub agents: AgentDirectory,
    /// Hosts that are spliced without interception, first match wins.
    pub tunnel: Vec<TunnelEntry>,
    /// When payments may go out, and how sessions move between phases.
    pub phases: PhasePolicy,
    /// The policy-wide limits in USD and the graduated gates.
    pub budget: CompiledBudget,
    /// The rules in the order written, ready to evaluate.
    pub rules: Vec<Rule>,
    /// The autonomy tiers in the order written; the first a payment meets is its tier.
    pub tiers: Vec<Tier>,
    /// The named tools in the order written.
    pub tools: Vec<Tool>,
    /// The categories in the order written, plus any only a tool names.
    pub categories: Vec<Category>,
    /// Verified payTo addresses, in [`crate::x402::normalize_address`] form.
    pub verified_recipients: HashSet<String>,
    /// The built-in asset table plus the policy's `assets`.
    pub assets: crate::x402::AssetTable,
    /// How long holds wait, and how many may be pending.
    pub approvals: ApprovalSettings,
    /// Whether and where refunds are asked for when a transaction fails.
    pub compensation: CompensationSettings,
    /// How long and how many 402 challenges are remembered.
    pub x402: X402Settings,
    /// The webhook told about holds, gates crossed and prohibited attempts.
    pub notifications: NotificationSettings,
    /// Destinations agents may not reach (`egress`).
    pub egress: EgressRules,
    /// Bounds on the memory agents can make Purser use.
    pub limits: MemoryLimits,
    /// EVM nodes unknown payments are reconciled with (`chains`).
    pub chains: ChainSettings,
    /// Who redirected connections speak for (`transparent`); `None` refuses them.
    pub transparent: Option<Transparent>,
    agent_settings: BTreeMap<String, AgentSettings>,
    profiles: BTreeMap<String, file::ProfileEntry>,
}

/// Lookups on a loaded policy; building one is `compile`'s ([`Policy::load`]).
impl Policy {
    /// Why the policy forbids reaching `host:port`, if it does. Only literal addresses
    /// (and `localhost`) are judged here, before anything is resolved; names are judged
    /// address by address when the connection is made (`proxy::egress`).
    pub fn egress_refusal(&self, host: &str, port: u16) -> Option<String> {
        self.egress.refusal(host, port)
    }

    /// Why the policy forbids connecting to `ip:port`, if it does. This is the check made
    /// on every address Purser is about to connect to, literal or resolved.
    pub fn egress_refusal_ip(&self, ip: IpAddr, port: u16) -> Option<EgressRefusal> {
        self.egress.refusal_ip(ip, port)
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

    /// The tool of a request that may be an MCP tool call (`mcp_tool`: its
    /// `params.name`): a tool with an `mcp://tool/...` endpoint covering the name, else
    /// the tool its host and path reach ([`Policy::tool_for`]).
    pub fn tool_for_call(
        &self,
        host: &str,
        port: u16,
        path: &str,
        mcp_tool: Option<&str>,
    ) -> Option<&Tool> {
        let by_name = mcp_tool.and_then(|name| {
            self.tools
                .iter()
                .find(|tool| tool.endpoints.iter().any(|e| e.matches_mcp_tool(name)))
        });
        by_name.or_else(|| self.tool_for(host, port, path))
    }

    /// The category of a request that may be an MCP tool call: its tool's, else the
    /// category with an `mcp://tool/...` endpoint covering the name (the most specific),
    /// else the one its host and path reach ([`Policy::category_for`]).
    pub fn category_for_call<'a>(
        &'a self,
        tool: Option<&'a Tool>,
        host: &str,
        port: u16,
        path: &str,
        mcp_tool: Option<&str>,
    ) -> Option<&'a str> {
        if let Some(category) = tool.and_then(|t| t.category.as_deref()) {
            return Some(category);
        }
        let mut best: Option<(&'a str, usize)> = None;
        for category in mcp_tool.map_or(&[][..], |_| &self.categories[..]) {
            for endpoint in &category.endpoints {
                let covers = mcp_tool.is_some_and(|name| endpoint.matches_mcp_tool(name));
                let score = endpoint.specificity();
                if covers && best.is_none_or(|(_, best_score)| score > best_score) {
                    best = Some((category.name.as_str(), score));
                }
            }
        }
        best.map(|(name, _)| name)
            .or_else(|| self.category_for(tool, host, port, path))
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

/// The live policy, shared by every connection and swapped atomically on reload.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<Policy>,
}

impl PolicyStore {
    /// A store serving `policy` until the first reload.
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
    use std::path::Path;

    fn load(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_yaml(Path::new("test.yaml"), text)
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
    fn mcp_tool_patterns_pick_tools_and_categories_by_tool_name() {
        let policy = load(
            "tools:\n  mcp_server: { endpoints: ['mcp.example/mcp'], category: general }\n  \
             weather: { endpoints: ['mcp://tool/get_weather'], category: data }\n\
             categories:\n  premium: ['mcp://tool/premium_*', 'other.example/*']\n  \
             exact: ['mcp://tool/premium_gold']\n",
        )
        .unwrap();
        let tool = |name| {
            policy
                .tool_for_call("mcp.example", 443, "/mcp", name)
                .map(|t| t.name.as_str())
        };
        assert_eq!(tool(Some("get_weather")), Some("weather"));
        assert_eq!(tool(Some("Get_Weather")), Some("mcp_server"));
        assert_eq!(tool(None), Some("mcp_server"));
        assert!(policy.tool_for("x.example", 443, "/get_weather").is_none());
        let category =
            |name| policy.category_for_call(None, "elsewhere.example", 443, "/mcp", name);
        assert_eq!(category(Some("premium_silver")), Some("premium"));
        assert_eq!(category(Some("premium_gold")), Some("exact"));
        assert_eq!(category(Some("free")), None);
        assert_eq!(category(None), None);
        for bad in ["mcp://tool/", "mcp://tool/a b", "mcp://tool/x*y"] {
            let err = load(&format!("categories:\n  c: ['{bad}']\n")).unwrap_err();
            assert!(err.to_string().contains("MCP tool pattern"), "{bad}: {err}");
        }
    }

    #[test]
    fn empty_file_is_a_policy_with_nothing_allowed_anonymously() {
        let policy = load("").unwrap();
        assert!(policy.agents.anonymous().is_none());
    }
}
