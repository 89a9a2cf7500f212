//! The fields of a trace line (SPEC §6). Optional fields are left out when empty, so a
//! settlement line is short and a decision line says everything.

use rust_decimal::Decimal;
use serde::Serialize;

/// One rule as evaluated for a decision.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleOutcome {
    pub id: String,
    /// BLOCK, REQUIRE_APPROVAL, FLAG or ALLOW.
    pub action: &'static str,
    pub matched: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Why it matched or not, briefly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The budget as seen by a decision.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// The level whose ratio is highest.
    pub level: &'static str,
    pub limit: Option<Decimal>,
    pub spent: Decimal,
    pub reserved: Decimal,
    /// (spent + reserved) / limit, this payment included (the snapshot is taken after its
    /// reservation, so `reserved` already counts it).
    pub ratio: Option<Decimal>,
}

/// One line of the proof log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TraceRecord {
    pub trace_id: String,
    /// `decision`, `settlement`, `hold`, `phase`, `resolution`, `compensation`, `summary`.
    pub kind: &'static str,
    /// RFC 3339, UTC.
    pub time: String,
    pub session: String,
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x402_version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_symbol: Option<String>,
    /// Atomic units, as on the wire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_atomic: Option<String>,
    /// In the asset's units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_usd: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// SHA-256 of the decoded payment: identifies it without storing the signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_digest: Option<String>,
    /// SHA-256 of the request's method, host, port, normalised path and query: what the
    /// retry of a payment whose outcome is unknown must ask for again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_digest: Option<String>,
    /// A retry's decision and settlement: the decision trace id of the payment retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Replay keys (payer+nonce, signature digest, transaction digest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replay_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSnapshot>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleOutcome>,
    /// ALLOWED, DENIED, PENDING_APPROVAL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// The rule that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Budget gate crossed, if any: warning, restrict, halt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<&'static str>,
    /// Settlement: committed, released, unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// For settlements: the decision line's trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_trace_id: Option<String>,
    /// The on-chain transaction hash from the receipt (not the `X-Purser-Transaction`
    /// workflow id, which compensation lines carry inside `compensation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
    /// Compensation lines: refund id, transaction, loss, whether the budget was credited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensation: Option<serde_json::Value>,
    /// Refusal summaries: on the refusal that opens one (`opens`), and on the `summary`
    /// line that closes it (how many refusals were counted, by rule and session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purser_version: Option<&'static str>,
}
