//! The fields of a trace line (SPEC §6), the one type the writer, recovery, the CLI and
//! the admin API all use. Optional fields are left out when empty, so a settlement line
//! is short and a decision line says everything.
//!
//! The field order is the line's (the hash chain covers exact bytes): a line Purser wrote
//! reads into a [`TraceRecord`] and serialises back to the same bytes. Reading is
//! tolerant: unknown fields are ignored and every field but `trace_id` and `kind` may be
//! missing. A decision's checks are kept as written when read back ([`Checks`]).

use super::checks::Checks;
use super::decider::{Approver, Decider};
use super::vocabulary::{Gate, HoldEnd, Kind, Outcome, Verdict};
use crate::policy::{Phase, SessionId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The budget as seen by a decision.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// The level whose ratio is highest: `session`, `agent` or `fleet`.
    pub level: Cow<'static, str>,
    /// That level's limit in USD; `None` when it has none.
    pub limit: Option<Decimal>,
    /// USD spent at that level: settled payments, and those whose outcome is unknown.
    pub spent: Decimal,
    /// USD reserved at that level by payments not yet settled.
    pub reserved: Decimal,
    /// (spent + reserved) / limit, this payment included (the snapshot is taken after its
    /// reservation, so `reserved` already counts it).
    pub ratio: Option<Decimal>,
}

/// Who ended a hold, how, when and after how long (a hold line's `approval`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    /// RFC 3339, UTC.
    pub at: String,
    /// Who ended it: a person's name, `timeout`, `veto-window` or `shutdown`.
    pub by: Approver,
    /// The hold's id, as the admin API and the CLI name it.
    pub hold_id: String,
    /// How it ended.
    pub outcome: HoldEnd,
    /// How long the payment was held, in milliseconds.
    pub waited_ms: u64,
}

/// One line of the proof log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TraceRecord {
    /// The previous line's hash, on a line read back from the log. The writer chains
    /// every line it writes itself ([`super::TraceLog`]), so a record to write leaves it
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// The line's own id, `tr_` and 16 hex digits (a settlement, hold or resolution line names
    /// its decision's in `decision_trace_id`).
    pub trace_id: String,
    /// What the line records.
    pub kind: Kind,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub time: String,
    /// The session, `AGENT.SESSION`; empty only on a line that names none.
    #[serde(default)]
    pub session: SessionId,
    /// The agent's name.
    #[serde(default)]
    pub agent: String,
    /// The session's phase when the payment was decided; on a `phase` line, the phase it moved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The policy tool the request matched, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The policy category the request is in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The autonomy tier the payment fell in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The request's HTTP method (cut if long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The host the request went to (cut if long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The request's path as sent, without the query (cut and hashed past its bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `mpp` for a Machine Payments Protocol credential; absent for x402, whose version
    /// is `x402_version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The MCP tool called (`params.name`), for a payment in an MCP tool call (cut if long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_tool: Option<String>,
    /// The payment's x402 version, `1` or `2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x402_version: Option<u8>,
    /// The payment scheme: `exact` or `upto`; for MPP, method and intent (`evm/charge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The network, as the payment wrote it (v1 name or CAIP-2 id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The token paid in: its contract (EVM: 0x hex) or mint (Solana).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// The asset's ticker from the asset table (`USDC`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_symbol: Option<String>,
    /// Atomic units, as on the wire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_atomic: Option<String>,
    /// In the asset's units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    /// The amount in USD, at the asset's peg: what budgets count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_usd: Option<Decimal>,
    /// The recipient: the merchant's address the payment is signed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// The payer's address, as signed; absent where the payload names none (Solana).
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replay_keys: Vec<String>,
    /// On a decision that let an EVM payment go (or held it): what the chain can be asked
    /// about it, should its outcome be unknown (its nonce, the contract keeping it, until
    /// when it was valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onchain: Option<crate::x402::ChainAuthorization>,
    /// The budget level closest to its limit, as the decision saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSnapshot>,
    /// Every rule and built-in check evaluated, with its action and whether it matched.
    #[serde(default, skip_serializing_if = "Checks::is_empty")]
    pub rules: Checks,
    /// The verdict: on a decision line the decision, on a hold line how the hold ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Verdict>,
    /// The rule or check that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Decider>,
    /// Why, in words: the deciding rule's message, or what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Budget gate crossed, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// How a settlement, a resolution or a refund ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// For settlements: the decision line's trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_trace_id: Option<String>,
    /// The on-chain transaction hash from the receipt (not the `X-Purser-Transaction`
    /// workflow id, which compensation lines carry inside `compensation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// The status the merchant answered with (settlement lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Who ended a hold, how and when (hold lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Compensation lines: refund id, transaction, loss, whether the budget was credited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensation: Option<serde_json::Value>,
    /// Refusal summaries: on the refusal that opens one (`opens`), and on the `summary`
    /// line that closes it (how many refusals were counted, by rule and session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// SHA-256 (hex) of the policy file in force when the line was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// The Purser version that wrote the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purser_version: Option<Cow<'static, str>>,
}

impl TraceRecord {
    /// A line of the log (without its newline).
    pub fn from_line(line: &str) -> Result<TraceRecord, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// Whether the line is this trace id, or refers to it (the settlement, hold or
    /// resolution of that decision, or the summary citing it).
    pub fn belongs_to(&self, trace_id: &str) -> bool {
        self.trace_id == trace_id || self.decision_trace_id.as_deref() == Some(trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::bound::bounded_line;
    use crate::trace::chain::chain_line;
    use crate::trace::Vocabulary;
    use std::collections::BTreeSet;

    /// A log written before trace records were typed (Purser 0.1.0): every kind, allowed,
    /// refused and held decisions, a gate, a shadow rule, holds approved and denied,
    /// every settlement outcome, a resolution, a refund pending and requested, a cut
    /// path, a refusal opening a summary, and the summary.
    const WRITTEN_BEFORE: &str = include_str!("testdata/lines-v0.1.0.jsonl");

    fn read(line: &str) -> TraceRecord {
        TraceRecord::from_line(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn lines_written_before_read_back_and_write_out_byte_for_byte() {
        for line in WRITTEN_BEFORE.lines() {
            let record = read(line);
            assert_eq!(serde_json::to_string(&record).unwrap(), line);
        }
    }

    #[test]
    fn the_writer_chains_a_record_read_back_into_the_same_line() {
        for line in WRITTEN_BEFORE.lines() {
            let record = read(line);
            let prev_hash = record.prev_hash.clone().unwrap();
            let (json, cut) = bounded_line(&record).unwrap();
            assert!(!json.contains("prev_hash"), "the writer adds it: {json}");
            assert_eq!(chain_line(&prev_hash, &json), line);
            // The one line with a path past its bound was cut when written; it stays so.
            assert!(!cut, "{line}");
        }
    }

    #[test]
    fn the_lines_written_before_cover_every_vocabulary() {
        let records: Vec<TraceRecord> = WRITTEN_BEFORE.lines().map(read).collect();
        let kinds: BTreeSet<&str> = records.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds.len(), Kind::ALL.len(), "{kinds:?}");
        let verdicts: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| r.decision.map(|d| d.as_str()))
            .collect();
        assert_eq!(verdicts.len(), Verdict::ALL.len(), "{verdicts:?}");
        let outcomes: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| r.outcome.map(|o| o.as_str()))
            .collect();
        assert_eq!(
            outcomes.len(),
            Outcome::ALL.len() - 1,
            "all but failed: {outcomes:?}"
        );
        assert!(records.iter().any(|r| r.gate == Some(Gate::Warning)));
        assert!(records
            .iter()
            .any(|r| r.rule == Some(Decider::Tier("open".into()))));
        assert!(records.iter().any(|r| r
            .approval
            .as_ref()
            .is_some_and(|a| a.outcome == HoldEnd::Denied)));
        let phase = records.iter().find(|r| r.kind == Kind::Phase).unwrap();
        assert_eq!(phase.phase, Some(Phase::Commit));
        assert_eq!(phase.session.agent(), "agent");
    }

    #[test]
    fn reading_ignores_unknown_fields_and_missing_optional_ones() {
        let record = read(r#"{"trace_id":"tr_1","kind":"settlement","later":{"x":1}}"#);
        assert_eq!(record.kind, Kind::Settlement);
        assert_eq!(record.session, SessionId::default());
        assert!(record.replay_keys.is_empty() && record.rules.is_empty());
        for unreadable in [
            r#"{"trace_id":"tr_1"}"#,
            r#"{"kind":"decision"}"#,
            r#"{"trace_id":"tr_1","kind":"decision","decision":"MAYBE"}"#,
            r#"{"trace_id":"tr_1","kind":"phase","phase":"LATER"}"#,
        ] {
            assert!(TraceRecord::from_line(unreadable).is_err(), "{unreadable}");
        }
    }
}
