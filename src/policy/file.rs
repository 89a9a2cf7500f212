//! The on-disk shape of a policy file. Every struct denies unknown fields, so a typo is a
//! load error rather than a rule that silently never applies.

use super::host_pattern::HostPattern;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole policy file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Free-form name of the policy, shown in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Agents by name, with their credentials.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentEntry>,
    /// Where requests without proxy credentials go; absent means they get `407`.
    #[serde(default)]
    pub anonymous: Option<AnonymousEntry>,
    /// Hosts spliced without TLS interception (certificate-pinned clients and the like).
    #[serde(default)]
    pub tunnel: Vec<HostPattern>,
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
        let mut digest = [0u8; 32];
        for (index, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                .map_err(|_| "token_sha256 must be hex digits only".to_string())?;
        }
        Ok(TokenDigest(digest))
    }
}
