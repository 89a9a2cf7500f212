//! `chains`: the EVM nodes Purser may ask about payments whose outcome is unknown, and how
//! often (chain reconciliation, `engine::chain_watch`).
//!
//! ```yaml
//! chains:
//!   rpc:                        # network (CAIP-2 id or x402 v1 name) -> JSON-RPC URL
//!     eip155:8453: https://mainnet.base.org
//!     base-sepolia: http://127.0.0.1:8545
//!   every: 30s                  # how often unknown payments are looked at (default 30s)
//!   per_check: 16               # the most payments asked about each time (default 16)
//!   timeout: 10s                # one eth_call (default 10s)
//!   max_backoff: 15m            # a failing payment is retried after every, 2x, 4x ... up to this
//!   expiry_margin: 60s          # an unused nonce counts as expired this long after its
//!                               # validBefore / deadline (default 60s)
//! ```
//!
//! Without `rpc` entries nothing is asked, and unknown payments wait for an operator. A
//! network named twice (`base` and `eip155:8453`) is a load error, as is a URL that is not
//! `http://` or `https://`.

use super::error::{PolicyError, SourceText};
use super::values::{DurationText, OrderedMap};
use crate::x402::canonical_network;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `chains`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainsSection {
    /// Network to the node's JSON-RPC URL.
    #[serde(default)]
    pub rpc: OrderedMap<String>,
    #[serde(default)]
    pub every: Option<DurationText>,
    #[serde(default)]
    pub per_check: Option<usize>,
    #[serde(default)]
    pub timeout: Option<DurationText>,
    #[serde(default)]
    pub max_backoff: Option<DurationText>,
    #[serde(default)]
    pub expiry_margin: Option<DurationText>,
}

/// Chain reconciliation's settings, compiled.
#[derive(Clone, Debug)]
pub struct ChainSettings {
    /// CAIP-2 network (`eip155:8453`) to the node's URL.
    pub rpc: BTreeMap<String, http::Uri>,
    /// How often unknown payments are looked at.
    pub every: Duration,
    /// The most payments asked about each time.
    pub per_check: usize,
    /// How long one `eth_call` may take.
    pub timeout: Duration,
    /// The longest a payment whose check failed waits before the next.
    pub max_backoff: Duration,
    /// How long after its `validBefore` / `deadline` an unused nonce counts as expired:
    /// room for a transaction already in flight and for a clock that differs from the
    /// chain's.
    pub expiry_margin: Duration,
}

impl Default for ChainSettings {
    fn default() -> Self {
        ChainSettings {
            rpc: BTreeMap::new(),
            every: Duration::from_secs(30),
            per_check: 16,
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(15 * 60),
            expiry_margin: Duration::from_secs(60),
        }
    }
}

impl ChainSettings {
    /// The node for `network` (any spelling of it), if the policy names one.
    pub fn rpc_for(&self, network: &str) -> Option<&http::Uri> {
        self.rpc.get(&canonical_network(network)?)
    }
}

/// Checks and defaults `chains`.
pub(super) fn compile_chains(
    section: &ChainsSection,
    source: &SourceText<'_>,
) -> Result<ChainSettings, PolicyError> {
    let defaults = ChainSettings::default();
    let mut rpc = BTreeMap::new();
    for (network, url) in &section.rpc.0 {
        let id = canonical_network(network)
            .filter(|id| id.starts_with("eip155:"))
            .ok_or_else(|| {
                source.error_at(
                    network,
                    0,
                    format!(
                        "chains.rpc: `{network}` is not an EVM network; use a CAIP-2 id such \
                         as eip155:8453 or an x402 name such as base"
                    ),
                )
            })?;
        let uri = rpc_url(network, url, source)?;
        if rpc.insert(id.clone(), uri).is_some() {
            return Err(source.error_at(
                network,
                0,
                format!("chains.rpc: network {id} is named twice"),
            ));
        }
    }
    let duration = |value: Option<DurationText>, default: Duration| value.map_or(default, |d| d.0);
    let every = duration(section.every, defaults.every).max(Duration::from_millis(100));
    Ok(ChainSettings {
        rpc,
        every,
        per_check: section
            .per_check
            .unwrap_or(defaults.per_check)
            .clamp(1, 1000),
        timeout: duration(section.timeout, defaults.timeout).max(Duration::from_millis(100)),
        max_backoff: duration(section.max_backoff, defaults.max_backoff).max(every),
        expiry_margin: duration(section.expiry_margin, defaults.expiry_margin),
    })
}

/// An absolute `http://` or `https://` URL: a typo here would leave every unknown payment
/// unknown.
fn rpc_url(network: &str, text: &str, source: &SourceText<'_>) -> Result<http::Uri, PolicyError> {
    let bad = |why: String| source.error_at(text, 0, format!("chains.rpc.{network}: {why}"));
    let uri: http::Uri = text
        .trim()
        .parse()
        .map_err(|e| bad(format!("`{text}` is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
        return Err(bad(format!("`{text}` must be an http:// or https:// URL")));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use crate::policy::Policy;
    use std::path::Path;
    use std::time::Duration;

    fn load(text: &str) -> Result<Policy, String> {
        Policy::from_yaml(Path::new("p.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn networks_are_named_in_any_spelling_and_settings_default() {
        let policy = load(
            "chains:\n  rpc:\n    eip155:84532: http://127.0.0.1:8545\n    base: https://node.example/v1\n  every: 5s\n",
        )
        .unwrap();
        let chains = &policy.chains;
        assert_eq!(
            chains.rpc_for("base-sepolia").map(ToString::to_string),
            Some("http://127.0.0.1:8545/".to_string())
        );
        assert!(chains.rpc_for("eip155:8453").is_some());
        assert!(chains.rpc_for("eip155:1").is_none());
        assert_eq!(chains.every, Duration::from_secs(5));
        assert_eq!(chains.per_check, 16);
        assert_eq!(chains.expiry_margin, Duration::from_secs(60));
        assert!(load("name: x\n").unwrap().chains.rpc.is_empty());
    }

    #[test]
    fn a_bad_network_url_or_key_is_a_load_error_with_its_place() {
        let error = load("chains:\n  rpc:\n    solana: http://x\n").unwrap_err();
        assert!(
            error.contains("p.yaml:3:") && error.contains("not an EVM network"),
            "{error}"
        );
        let error = load("chains:\n  rpc:\n    base: ftp://node\n").unwrap_err();
        assert!(error.contains("http:// or https://"), "{error}");
        let error =
            load("chains:\n  rpc:\n    base: http://a\n    eip155:8453: http://b\n").unwrap_err();
        assert!(error.contains("named twice"), "{error}");
        let error = load("chains:\n  rcp: {}\n").unwrap_err();
        assert!(error.contains("unknown field"), "{error}");
    }
}
