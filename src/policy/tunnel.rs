//! `tunnel` entries: hosts Purser splices without TLS interception.
//!
//! An entry is a host pattern (`pinned.example.com`, `*.bank.example:8443`) or a map
//! `{host: PATTERN, trust_payments: true}`. A spliced host's HTTPS traffic, and the 402
//! challenges in it, are opaque to Purser, so payments to it cannot be governed: they are
//! refused unless the operator marks the entry `trust_payments: true`. The default is
//! untrusted, so a plain pattern keeps failing closed.

use super::host_pattern::HostPattern;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// One `tunnel` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEntry {
    /// The hosts (and port) the entry splices.
    pub pattern: HostPattern,
    /// The operator vouches for payments to this host although Purser cannot see them:
    /// plain `http://` payments to it go through the engine as usual, and the splice
    /// carries whatever the agent sends (not only TLS).
    pub trust_payments: bool,
}

/// The map form, spelled out so that unknown keys are load errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelMap {
    host: HostPattern,
    #[serde(default)]
    trust_payments: bool,
}

impl<'de> Deserialize<'de> for TunnelEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = TunnelEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a host pattern, or a mapping {host: PATTERN, trust_payments: BOOL}")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                let pattern = HostPattern::parse(text).map_err(E::custom)?;
                Ok(TunnelEntry {
                    pattern,
                    trust_payments: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let entry = TunnelMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TunnelEntry {
                    pattern: entry.host,
                    trust_payments: entry.trust_payments,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}
