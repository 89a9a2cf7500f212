//! Agent identity: who is asking, from `Proxy-Authorization: Basic`, checked against the
//! policy's `agents` table (SPEC §2).
//!
//! The user name is `AGENT` or `AGENT.SESSION`; a session always belongs to its agent, so
//! session ids ([`SessionId`]) are written `AGENT.SESSION` everywhere. Tokens are compared
//! as SHA-256 digests in constant time, so neither the file nor the comparison leaks them.

use super::file::{AgentEntry, AnonymousEntry};
use base64::Engine;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The session used when an agent names none.
pub(super) const DEFAULT_SESSION: &str = "default";

/// Longest agent or session name accepted: names end up in logs, traces and metrics labels.
const MAX_NAME_LEN: usize = 128;

/// An authenticated (or anonymous) caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The agent's name: the proxy user name before its first `.`.
    pub agent: Arc<str>,
    /// The session's name within the agent: after the `.`, else `default`.
    pub session: Arc<str>,
    /// Whether the request carried no credentials and was given the `anonymous` identity.
    pub anonymous: bool,
}

impl Identity {
    /// `AGENT.SESSION`: the id sessions are known by in the admin API and traces.
    pub fn session_id(&self) -> SessionId {
        SessionId::new(&self.agent, &self.session)
    }
}

/// A session's id, `AGENT.SESSION`: the session always names the agent it belongs to.
///
/// Built from an [`Identity`], or read once from text (an admin API path, a proof-log
/// line); the agent and the session name then come from the id, never from splitting the
/// text again. It reads as the `&str` `AGENT.SESSION` wherever one is expected. The
/// default, empty id only stands for a proof-log line that names no session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    /// `AGENT.SESSION`.
    text: String,
    /// Where the agent's name ends (the `.`).
    agent_len: usize,
}

impl SessionId {
    /// The id of `agent`'s session `session`.
    pub fn new(agent: &str, session: &str) -> SessionId {
        SessionId {
            text: format!("{agent}.{session}"),
            agent_len: agent.len(),
        }
    }

    /// `AGENT.SESSION` as text, split at its first `.`; `None` unless both parts are there.
    pub fn parse(text: &str) -> Option<SessionId> {
        let (agent, session) = text.split_once('.')?;
        (!agent.is_empty() && !session.is_empty()).then(|| SessionId {
            text: text.to_string(),
            agent_len: agent.len(),
        })
    }

    /// The agent the session belongs to.
    pub fn agent(&self) -> &str {
        &self.text[..self.agent_len]
    }

    /// The session's own name, without its agent.
    pub fn session(&self) -> &str {
        self.text.get(self.agent_len + 1..).unwrap_or("")
    }

    /// `AGENT.SESSION`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.text
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SessionIdVisitor;
        impl de::Visitor<'_> for SessionIdVisitor {
            type Value = SessionId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a session id, AGENT.SESSION")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SessionId, E> {
                SessionId::parse(text).ok_or_else(|| {
                    E::custom(format!("`{text}` is not a session id: AGENT.SESSION"))
                })
            }
        }
        deserializer.deserialize_str(SessionIdVisitor)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.agent, self.session)
    }
}

/// Why a request was not let in. Each becomes a `407` with this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Proxy-Authorization` header, and the policy has no `anonymous` entry.
    #[error("proxy credentials required: send Proxy-Authorization: Basic (AGENT[.SESSION]:TOKEN)")]
    Missing,
    /// The header is not `Basic` with base64 of `USER:TOKEN`.
    #[error("Proxy-Authorization must be Basic base64(AGENT[.SESSION]:TOKEN)")]
    Malformed,
    /// The agent or session name is empty, too long, or has other characters.
    #[error("agent or session name must be 1-128 characters of letters, digits, '-', '_'")]
    BadName,
    /// The policy's `agents` table does not list this agent.
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
    /// The token does not match the one the policy lists for this agent.
    #[error("wrong token for agent `{0}`")]
    WrongToken(String),
}

#[derive(Debug)]
struct AgentCredentials {
    token_digest: Option<[u8; 32]>,
}

/// Distinct credentials remembered after a successful check.
const VERIFIED_CACHE_ENTRIES: usize = 4096;

/// The policy's agent table, prepared for per-request checks.
#[derive(Debug)]
pub struct AgentDirectory {
    agents: BTreeMap<String, AgentCredentials>,
    anonymous: Option<Identity>,
    /// Header values that already passed, so keep-alive traffic skips base64 and SHA-256.
    /// It belongs to this policy: a reload starts with an empty cache.
    verified: dashmap::DashMap<Box<[u8]>, Identity>,
}

impl AgentDirectory {
    /// The directory for the policy's `agents` table and its `anonymous` entry.
    pub(crate) fn new(
        entries: BTreeMap<String, AgentEntry>,
        anonymous: Option<AnonymousEntry>,
    ) -> Self {
        let agents = entries
            .into_iter()
            .map(|(name, entry)| {
                let token_digest = entry
                    .token_sha256
                    .map(|digest| digest.0)
                    .or_else(|| entry.token.as_deref().map(sha256));
                (name, AgentCredentials { token_digest })
            })
            .collect();
        let anonymous = anonymous.map(|entry| Identity {
            agent: entry.agent.into(),
            session: entry.session.into(),
            anonymous: true,
        });
        AgentDirectory {
            agents,
            anonymous,
            verified: dashmap::DashMap::new(),
        }
    }

    /// The identity requests without credentials get, if the policy has one.
    pub fn anonymous(&self) -> Option<&Identity> {
        self.anonymous.as_ref()
    }

    /// Names of the agents in the table.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// Decides who sent a request from its `Proxy-Authorization` value (if any).
    ///
    /// An agent table with no entries trusts the user name as given (there is nothing to
    /// check it against); once any agent is listed, every agent must be listed, and an
    /// agent with a token must present it.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Identity, AuthError> {
        let Some(header) = header else {
            return self.anonymous.clone().ok_or(AuthError::Missing);
        };
        if let Some(known) = self.verified.get(header) {
            return Ok(known.clone());
        }
        let identity = self.check(header)?;
        if self.verified.len() >= VERIFIED_CACHE_ENTRIES {
            self.verified.clear();
        }
        self.verified.insert(header.into(), identity.clone());
        Ok(identity)
    }

    fn check(&self, header: &[u8]) -> Result<Identity, AuthError> {
        let (user, token) = decode_basic(header)?;
        let (agent, session) = split_user(&user)?;
        if !self.agents.is_empty() {
            let credentials = self
                .agents
                .get(agent)
                .ok_or_else(|| AuthError::UnknownAgent(agent.to_string()))?;
            if let Some(expected) = &credentials.token_digest {
                if !constant_time_eq(expected, &sha256(&token)) {
                    return Err(AuthError::WrongToken(agent.to_string()));
                }
            }
        }
        Ok(Identity {
            agent: agent.into(),
            session: session.into(),
            anonymous: false,
        })
    }
}

fn decode_basic(header: &[u8]) -> Result<(String, String), AuthError> {
    let text = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (user, token) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
    Ok((user.to_string(), token.to_string()))
}

fn split_user(user: &str) -> Result<(&str, &str), AuthError> {
    let (agent, session) = user.split_once('.').unwrap_or((user, DEFAULT_SESSION));
    if valid_name(agent) && valid_name(session) {
        Ok((agent, session))
    } else {
        Err(AuthError::BadName)
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Compares secrets without an early exit, so timing does not tell how much matched.
/// (A length difference is not secret: it returns at once.)
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_token: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_token);
        format!("Basic {encoded}").into_bytes()
    }

    fn directory(anonymous: bool) -> AgentDirectory {
        let mut agents = BTreeMap::new();
        agents.insert(
            "bot".to_string(),
            AgentEntry {
                token: Some("t0ken".into()),
                ..AgentEntry::default()
            },
        );
        let anonymous = anonymous.then(|| AnonymousEntry {
            agent: "anon".into(),
            session: "shared".into(),
        });
        AgentDirectory::new(agents, anonymous)
    }

    #[test]
    fn agent_and_session_come_from_the_user_name() {
        let id = directory(false)
            .authenticate(Some(&basic("bot.run-7:t0ken")))
            .unwrap();
        assert_eq!(id.session_id(), "bot.run-7");
        let id = directory(false)
            .authenticate(Some(&basic("bot:t0ken")))
            .unwrap();
        assert_eq!(id.session_id(), "bot.default");
    }

    #[test]
    fn wrong_missing_and_unknown_credentials_are_refused() {
        let dir = directory(false);
        assert_eq!(
            dir.authenticate(Some(&basic("bot:nope"))),
            Err(AuthError::WrongToken("bot".into()))
        );
        assert_eq!(dir.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            dir.authenticate(Some(&basic("eve:t0ken"))),
            Err(AuthError::UnknownAgent("eve".into()))
        );
        assert_eq!(
            dir.authenticate(Some(b"Bearer abc")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            dir.authenticate(Some(&basic("bot.bad name:t0ken"))),
            Err(AuthError::BadName)
        );
    }

    #[test]
    fn a_session_id_names_its_agent_and_session() {
        let id = SessionId::new("bot", "run-7");
        assert_eq!(
            (id.agent(), id.session(), id.as_str()),
            ("bot", "run-7", "bot.run-7")
        );
        assert_eq!(SessionId::parse("bot.run-7"), Some(id.clone()));
        for bad in ["bot", ".run", "bot.", ""] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"bot.run-7\"");
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SessionId>("\"bot\"").is_err());
    }

    #[test]
    fn anonymous_requests_go_to_the_anonymous_session() {
        let id = directory(true).authenticate(None).unwrap();
        assert!(id.anonymous);
        assert_eq!(id.session_id(), "anon.shared");
    }
}
