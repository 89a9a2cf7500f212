//! The policy file: what Purser enforces, loaded from YAML and validated before use.
//!
//! A policy never silently fails open: unknown keys, malformed values and bad patterns are
//! load errors that name `file:line:column`. A loaded [`Policy`] is immutable; reloading
//! builds a new one and swaps it in atomically (see [`PolicyStore`]).

mod file;
mod host_pattern;
mod identity;

pub use file::{AgentEntry, AnonymousEntry, PolicyFile};
pub use host_pattern::{HostPattern, HostPatternError};
pub use identity::{AgentDirectory, AuthError, Identity};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A validated policy, ready for the data path.
#[derive(Debug)]
pub struct Policy {
    /// Where it was loaded from (for reloads and messages).
    pub source: PathBuf,
    /// SHA-256 of the file's bytes, hex: the policy version written into traces.
    pub digest: String,
    pub agents: AgentDirectory,
    /// Hosts that are spliced without interception.
    pub tunnel: Vec<HostPattern>,
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
        let digest = hex(&Sha256::digest(text.as_bytes()));
        Ok(Policy {
            source: path.to_path_buf(),
            digest,
            agents: AgentDirectory::new(parsed.agents, parsed.anonymous),
            tunnel: parsed.tunnel,
        })
    }

    /// Whether `host:port` is to be spliced without interception.
    pub fn is_tunnel(&self, host: &str, port: u16) -> bool {
        self.tunnel.iter().any(|p| p.matches(host, port))
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

    /// The policy in force now. Cheap: one atomic load and a reference count.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
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
            err.starts_with("test.yaml:2:3: tunnel: host pattern"),
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
    fn empty_file_is_a_policy_with_nothing_allowed_anonymously() {
        let policy = load("").unwrap();
        assert!(policy.agents.anonymous().is_none());
    }
}
