//! The on-disk shape of a policy file. Every struct denies unknown fields, so a typo is a
//! load error rather than a rule that silently never applies.

use super::tunnel::TunnelEntry;
use super::values::{
    DurationText, EndpointPattern, Money, OneOrMany, OrderedMap, PhaseName, Ratio, SizeText,
    TrustName,
};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The whole policy file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Free-form name of the policy, shown in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Free-form description.
    #[serde(default)]
    pub description: Option<String>,
    /// IANA time zone for time-window rules; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `phases`: when payments may go out and how sessions move between phases.
    #[serde(default)]
    pub phases: PhasesSection,
    /// `budget`: limits in USD and the graduated gates.
    #[serde(default)]
    pub budget: BudgetSection,
    /// `rules`: structured rules and DSL lines, or one block of DSL text.
    #[serde(default)]
    pub rules: RulesSection,
    /// Autonomy tiers, first match wins.
    #[serde(default)]
    pub tiers: TiersSection,
    /// Named tools: endpoints an agent pays for, and their category.
    #[serde(default)]
    pub tools: OrderedMap<ToolEntry>,
    /// Categories by endpoint pattern, first match wins.
    #[serde(default)]
    pub categories: OrderedMap<OneOrMany<EndpointPattern>>,
    /// `recipients`: the payTo addresses the organisation vouches for.
    #[serde(default)]
    pub recipients: RecipientsSection,
    /// Assets beyond the built-in stablecoins.
    #[serde(default)]
    pub assets: Vec<AssetEntry>,
    /// Named budget overrides that agents can take on.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileEntry>,
    /// Agents by name, with their credentials.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentEntry>,
    /// Where requests without proxy credentials go; absent means they get `407`.
    #[serde(default)]
    pub anonymous: Option<AnonymousEntry>,
    /// Hosts spliced without TLS interception (certificate-pinned clients and the like):
    /// a host pattern, or `{host: PATTERN, trust_payments: true}`.
    #[serde(default)]
    pub tunnel: Vec<TunnelEntry>,
    /// `approvals`: how long holds wait and how many may be pending.
    #[serde(default)]
    pub approvals: ApprovalsSection,
    /// `compensation`: refunds for failed or rolled-back transactions.
    #[serde(default)]
    pub compensation: CompensationSection,
    /// `x402`: how 402 challenges are remembered and bounded.
    #[serde(default)]
    pub x402: X402Section,
    /// `notifications`: the webhook told about holds and gates.
    #[serde(default)]
    pub notifications: NotificationsSection,
    /// `egress`: destinations agents may not reach.
    #[serde(default)]
    pub egress: EgressSection,
    /// `limits`: the memory one agent, or all of them, can make Purser use.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `chains`: EVM nodes to reconcile unknown payments with (`policy::chains`).
    #[serde(default)]
    pub chains: super::chains::ChainsSection,
    /// `transparent`: the identity of connections the kernel redirected to Purser.
    #[serde(default)]
    pub transparent: Option<TransparentSection>,
}

/// `limits`: how much one agent, or all of them, can make Purser keep in memory. Holds
/// are bounded under `approvals`, remembered challenges under `x402`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Connections (and the tunnels they become) one agent may hold open.
    #[serde(default)]
    pub connections_per_agent: Option<usize>,
    /// Sessions whose phase, challenges and frequency windows are kept in memory.
    #[serde(default)]
    pub sessions: Option<usize>,
    /// Sessions one agent may have in memory. Past it, the agent's own idle EXPLORE
    /// sessions are forgotten; never another agent's, nor a session past EXPLORE.
    #[serde(default)]
    pub sessions_per_agent: Option<usize>,
    /// A session unused this long is forgotten; its spend stays in the ledger.
    #[serde(default)]
    pub session_idle: Option<DurationText>,
    /// Interception leaf certificates kept (read when Purser starts).
    #[serde(default)]
    pub leaf_certificates: Option<usize>,
}

/// `egress`: destinations agents may not reach through Purser.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    /// Link-local addresses (169.254.0.0/16, fe80::/10) host cloud metadata services;
    /// refused unless this is true.
    #[serde(default)]
    pub allow_link_local: bool,
    /// When given, only these loopback ports are reachable (the host's own services
    /// are otherwise open to every agent).
    #[serde(default)]
    pub loopback_ports: Option<Vec<u16>>,
}

/// `notifications`: a webhook told about holds, gates crossed and prohibited attempts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsSection {
    /// `http://` or `https://` URL that receives a JSON POST per event.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Per attempt.
    #[serde(default)]
    pub timeout: Option<DurationText>,
    /// Attempts after the first, with doubling backoff.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// `phases`: when payments may go out and how sessions move between phases.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhasesSection {
    /// Payments are allowed from this phase on; COMMIT when absent.
    #[serde(default)]
    pub allowed_payment_phase: Option<PhaseName>,
    #[serde(default)]
    pub transition_rules: TransitionRules,
}

/// `phases.transition_rules`: Purser's switches, and (the seed's layout) a map from each
/// phase to the phases a session may move to from it, in any mix:
///
/// ```yaml
/// transition_rules:
///   agent_header: true
///   EXPLORE: [DECIDE]
///   DECIDE: [COMMIT]
///   COMMIT: []
/// ```
#[derive(Debug, Default)]
pub struct TransitionRules {
    /// Whether an agent may move its own session forward with `X-Purser-Phase`.
    pub agent_header: bool,
    /// Whether a session may jump EXPLORE → COMMIT without passing DECIDE (true when
    /// absent and no phase lists are given).
    pub allow_skip: Option<bool>,
    /// Phase → the phases it may move to, when the map form is used. A phase the map
    /// does not name may move nowhere.
    pub moves: Vec<(PhaseName, Vec<PhaseName>)>,
}

impl<'de> Deserialize<'de> for TransitionRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = TransitionRules;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of `agent_header`, `allow_skip` and phase → [next phases]")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(TransitionRules::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut rules = TransitionRules::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "agent_header" => rules.agent_header = map.next_value()?,
                        "allow_skip" => rules.allow_skip = Some(map.next_value()?),
                        _ => {
                            let Some(from) = super::phase::Phase::parse(&key) else {
                                return Err(de::Error::custom(format!(
                                    "unknown field `{key}`, expected `agent_header`, `allow_skip` \
                                     or a phase (EXPLORE, DECIDE, COMMIT) with the phases it may move to"
                                )));
                            };
                            if rules.moves.iter().any(|(seen, _)| seen.0 == from) {
                                return Err(de::Error::custom(format!(
                                    "phase `{key}` is listed twice in transition_rules"
                                )));
                            }
                            let to: Option<Vec<PhaseName>> = map.next_value()?;
                            rules.moves.push((PhaseName(from), to.unwrap_or_default()));
                        }
                    }
                }
                Ok(rules)
            }
        }
        deserializer.deserialize_any(RulesVisitor)
    }
}

/// `budget`: limits in USD and the gates on the (spent + reserved) / limit ratio.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Only USD is supported: amounts are priced through each asset's USD peg.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub session_limit: Option<Money>,
    #[serde(default)]
    pub agent_limit: Option<Money>,
    #[serde(default)]
    pub fleet_limit: Option<Money>,
    /// A single payment above this needs approval, whatever the budget.
    #[serde(default)]
    pub single_call_threshold: Option<Money>,
    #[serde(default)]
    pub graduated_gates: GatesSection,
}

/// `budget.graduated_gates`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesSection {
    #[serde(default)]
    pub warning: Option<Ratio>,
    #[serde(default)]
    pub restrict: Option<Ratio>,
    #[serde(default)]
    pub halt: Option<Ratio>,
}

/// `rules`: a list of structured rules and DSL lines, or one block of DSL text.
#[derive(Debug, Default)]
pub struct RulesSection(pub Vec<RuleItem>);

/// One entry of `rules`.
#[derive(Debug)]
pub enum RuleItem {
    /// A DSL line (or a block of them), as written.
    Dsl(String),
    Structured(RuleEntry),
}

/// A structured rule: `{id, condition, action, message}` (the seed layout), optionally
/// with a `target` and `shadow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    #[serde(default)]
    pub id: Option<String>,
    /// Conditions in the DSL's condition syntax: `phase != COMMIT AND cost > 0.50`.
    #[serde(default)]
    pub condition: Option<String>,
    /// BLOCK, REQUIRE_APPROVAL, FLAG or ALLOW.
    pub action: String,
    #[serde(default)]
    pub message: Option<String>,
    /// Tool, `category:NAME`, host pattern or `*` (the default).
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub shadow: bool,
}

impl<'de> Deserialize<'de> for RulesSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = RulesSection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules, or DSL rule text")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(RulesSection(vec![RuleItem::Dsl(text.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<RuleItem>()? {
                    items.push(item);
                }
                Ok(RulesSection(items))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RulesSection::default())
            }
        }
        deserializer.deserialize_any(RulesVisitor)
    }
}

impl<'de> Deserialize<'de> for RuleItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = RuleItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a DSL rule line or a mapping with id, condition, action, message")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(RuleItem::Dsl(text.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RuleEntry::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RuleItem::Structured)
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// `tiers`: a list of `{name, conditions, approval}` or a mapping name → body.
#[derive(Debug, Default)]
pub struct TiersSection(pub Vec<(String, TierBody)>);

/// A tier in list form: the body's fields plus `name`. (Spelled out rather than
/// flattened: serde cannot deny unknown fields through `flatten`.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedTier {
    name: String,
    #[serde(default)]
    conditions: TierConditions,
    approval: String,
    #[serde(default)]
    veto_window: Option<DurationText>,
    #[serde(default)]
    timeout: Option<DurationText>,
    #[serde(default)]
    description: Option<String>,
}

/// One tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    #[serde(default)]
    pub conditions: TierConditions,
    /// none, notify_with_veto, explicit_human or blocked.
    pub approval: String,
    /// How long a `notify_with_veto` hold waits for a veto.
    #[serde(default)]
    pub veto_window: Option<DurationText>,
    /// How long an `explicit_human` hold waits before it is denied.
    #[serde(default)]
    pub timeout: Option<DurationText>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What a payment must satisfy to be in a tier. Absent conditions match anything.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConditions {
    #[serde(default)]
    pub max_amount: Option<Money>,
    #[serde(default)]
    pub categories: Option<OneOrMany<String>>,
    #[serde(default)]
    pub recipient_trust: Option<OneOrMany<TrustName>>,
    #[serde(default)]
    pub frequency: Option<FrequencyEntry>,
}

/// `frequency: {max: 20, per: 1h}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyEntry {
    pub max: u32,
    pub per: DurationText,
}

impl<'de> Deserialize<'de> for TiersSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TiersVisitor;
        impl<'de> Visitor<'de> for TiersVisitor {
            type Value = TiersSection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of tiers with names, or a mapping of tier names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut tiers = Vec::new();
                while let Some(tier) = seq.next_element::<NamedTier>()? {
                    let body = TierBody {
                        conditions: tier.conditions,
                        approval: tier.approval,
                        veto_window: tier.veto_window,
                        timeout: tier.timeout,
                        description: tier.description,
                    };
                    tiers.push((tier.name, body));
                }
                Ok(TiersSection(tiers))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let ordered = OrderedMap::<TierBody>::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(TiersSection(ordered.0))
            }
        }
        deserializer.deserialize_any(TiersVisitor)
    }
}

/// A named tool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// `host[/path*]` patterns the tool is reached at.
    pub endpoints: OneOrMany<EndpointPattern>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `recipients`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsSection {
    /// payTo addresses the organisation vouches for.
    #[serde(default)]
    pub verified: Vec<String>,
}

/// An extra asset: `{network, asset, symbol, decimals, usd_peg}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    /// The network: a v1 name (`base`) or a CAIP-2 id (`eip155:8453`).
    pub network: String,
    /// The token's contract (EVM: 0x hex) or mint (Solana: base58).
    pub asset: String,
    /// The ticker written into traces (`USDC`).
    pub symbol: String,
    /// Atomic units per whole token, as a power of ten (USDC: 6; at most 28).
    pub decimals: u32,
    /// USD per whole token, for pricing payments against budgets.
    pub usd_peg: Money,
}

/// A named set of budget overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    #[serde(default)]
    pub session_limit: Option<Money>,
    #[serde(default)]
    pub agent_limit: Option<Money>,
    #[serde(default)]
    pub single_call_threshold: Option<Money>,
    #[serde(default)]
    pub description: Option<String>,
}

/// One agent's entry in the `agents` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// The proxy password, in clear. Prefer `token_sha256` in shared files.
    #[serde(default)]
    pub token: Option<String>,
    /// Hex SHA-256 of the proxy password, so the file need not hold the secret.
    #[serde(default)]
    pub token_sha256: Option<TokenDigest>,
    /// This agent's own limit across its sessions (overrides `budget.agent_limit`).
    #[serde(default)]
    pub budget: Option<Money>,
    /// A name from `profiles`.
    #[serde(default)]
    pub profile: Option<String>,
}

/// Where anonymous requests go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousEntry {
    /// The agent name anonymous requests are accounted to.
    #[serde(default = "default_anonymous_agent")]
    pub agent: String,
    /// The session anonymous requests share.
    #[serde(default = "default_anonymous_session")]
    pub session: String,
}

fn default_anonymous_agent() -> String {
    "anonymous".to_string()
}

fn default_anonymous_session() -> String {
    "default".to_string()
}

/// `approvals`: holds (SPEC §3).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// How long a hold waits for a human; then it is denied.
    #[serde(default)]
    pub timeout: Option<DurationText>,
    /// Default veto window for `notify_with_veto`.
    #[serde(default)]
    pub veto_window: Option<DurationText>,
    #[serde(default)]
    pub max_pending_per_session: Option<usize>,
    #[serde(default)]
    pub max_pending_total: Option<usize>,
}

/// `compensation` (SPEC §3).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompensationSection {
    #[serde(default)]
    pub enabled: bool,
    /// What compensating means; only `refund` is implemented.
    #[serde(default)]
    pub default_action: Option<String>,
    /// How long a transaction step may take before it counts as failed.
    #[serde(default)]
    pub timeout: Option<DurationText>,
    /// Where refund requests are POSTed.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Whether a compensated payment gives its amount back to the budget.
    #[serde(default)]
    pub credit_budget: bool,
}

/// `x402`: protocol handling.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Section {
    /// How long a remembered 402 challenge stays valid.
    #[serde(default)]
    pub challenge_ttl: Option<DurationText>,
    /// Challenges remembered per session (least recently used go first).
    #[serde(default)]
    pub max_challenges_per_session: Option<usize>,
    /// Offers kept per remembered challenge (those Purser can price first).
    #[serde(default)]
    pub max_offers_per_challenge: Option<usize>,
    /// Memory all remembered challenges may take (`64MiB`); past it the agent holding
    /// the most loses its oldest first.
    #[serde(default)]
    pub challenge_memory: Option<SizeText>,
    /// Memory one agent's remembered challenges may take (`8MiB`); past it the agent's
    /// own oldest go.
    #[serde(default)]
    pub challenge_memory_per_agent: Option<SizeText>,
    /// Refuse payments that answer no challenge Purser saw, even when they carry an amount.
    #[serde(default)]
    pub require_challenge: bool,
}

/// A SHA-256 digest given in hex; checked when the file loads.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct TokenDigest(pub [u8; 32]);

impl TryFrom<String> for TokenDigest {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(format!(
                "token_sha256 must be 64 hex digits, got {} characters",
                text.len()
            ));
        }
        // Checked before slicing: a non-ASCII character would split across a pair (and
        // panic), and `from_str_radix` alone would take a `+` sign as part of a byte.
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("token_sha256 must be hex digits only".to_string());
        }
        let mut digest = [0u8; 32];
        for (index, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                .map_err(|_| "token_sha256 must be hex digits only".to_string())?;
        }
        Ok(TokenDigest(digest))
    }
}

/// `transparent`, as written (compiled in `super::transparent`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransparentSection {
    /// The agent every redirected connection speaks for.
    pub agent: String,
    /// Its session, unless a request picks another; `default` when absent.
    #[serde(default)]
    pub session: Option<String>,
    /// Whether `X-Purser-Session` may pick another session of the agent.
    #[serde(default)]
    pub session_header: bool,
    /// `host:port` or `IP:port` destinations whose unreadable traffic is spliced.
    #[serde(default)]
    pub passthrough: Vec<String>,
}
