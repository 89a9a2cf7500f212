//! `transparent`: who speaks on connections the kernel redirected to Purser's transparent
//! listener, and what may cross it unread.
//!
//! A redirected connection carries no proxy credentials: the agent does not know Purser is
//! there. The operator vouches for it instead, since only the agent's uid is redirected
//! (`purser redirect`), so the section names the agent (and its session) those
//! connections speak for:
//!
//! ```yaml
//! transparent:
//!   agent: research-bot          # required
//!   session: default             # optional, `default` when absent
//!   session_header: true         # X-Purser-Session may pick another session of this agent
//!   passthrough:                 # spliced unread: TLS without SNI, protocols other than HTTP
//!     - 10.0.0.7:5432
//!     - db.internal:5432
//! ```
//!
//! Everything Purser can read is governed: plain HTTP by its `Host`, TLS by its SNI. What
//! it cannot read (TLS that names no server, any protocol that is neither TLS nor HTTP) is
//! refused unless its destination is listed under `passthrough`. Such a splice can carry
//! no payment Purser would see: x402, MPP and MCP payments all travel in HTTP, and HTTP is
//! never spliced here, so a listed destination is the operator's word that it is not a
//! merchant (a database, a broker), as a `tunnel` entry is for a certificate-pinned host.

use super::file::{AgentEntry, TransparentSection};
use super::identity::{valid_name, Identity, DEFAULT_SESSION};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The request header that picks a session of the transparent agent, where the policy
/// lets it (`session_header: true`). Purser strips it either way.
pub const SESSION_HEADER: &str = "x-purser-session";

/// The compiled `transparent` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transparent {
    /// The identity redirected connections get when no header picks a session.
    pub identity: Identity,
    /// Whether `X-Purser-Session` may pick another session of the agent.
    pub session_header: bool,
    /// Destinations whose unreadable traffic (TLS without SNI, not HTTP) is spliced.
    pub passthrough: Vec<Passthrough>,
}

/// A destination listed under `transparent.passthrough`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passthrough {
    /// `IP:port`: matched against the connection's original destination.
    Address(SocketAddr),
    /// `host:port`: matched when the host resolves to the original destination's address
    /// (resolved when the connection comes, by the proxy).
    Name {
        /// The host name, lower-cased.
        host: String,
        /// The destination port.
        port: u16,
    },
}

impl fmt::Display for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Passthrough::Address(address) => write!(f, "{address}"),
            Passthrough::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a request's `X-Purser-Session` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("X-Purser-Session must be a session name of 1-128 letters, digits, '-' or '_'")]
pub struct BadSessionHeader;

impl Transparent {
    /// The identity of a request on a redirected connection: the section's agent, in the
    /// session `named` picks (the `X-Purser-Session` value, already known to be allowed),
    /// else the section's session.
    pub fn identity(&self, named: Option<&[u8]>) -> Result<Identity, BadSessionHeader> {
        let Some(named) = named else {
            return Ok(self.identity.clone());
        };
        let name = std::str::from_utf8(named)
            .ok()
            .map(str::trim)
            .filter(|name| valid_name(name))
            .ok_or(BadSessionHeader)?;
        if *name == *self.identity.session {
            return Ok(self.identity.clone());
        }
        Ok(Identity {
            agent: self.identity.agent.clone(),
            session: Arc::from(name),
            anonymous: false,
        })
    }

    /// The `IP:port` entry the original destination `original` matches, if any. Name
    /// entries are for the caller to resolve ([`Transparent::named_passthrough`]).
    pub fn passthrough_address(&self, original: SocketAddr) -> Option<&Passthrough> {
        let original = unmapped(original);
        self.passthrough
            .iter()
            .find(|entry| matches!(entry, Passthrough::Address(a) if unmapped(*a) == original))
    }

    /// The `host:port` entries for `port`, whose names the caller resolves.
    pub fn named_passthrough(&self, port: u16) -> impl Iterator<Item = (&str, &Passthrough)> {
        self.passthrough
            .iter()
            .filter_map(move |entry| match entry {
                Passthrough::Name { host, port: p } if *p == port => Some((host.as_str(), entry)),
                _ => None,
            })
    }
}

/// An address with an IPv4-mapped IPv6 address read as the IPv4 address it maps.
fn unmapped(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), address.port()),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

/// Compiles the section; an error is a message for the entry it names.
pub(super) fn compile(
    section: &TransparentSection,
    agents: &BTreeMap<String, AgentEntry>,
) -> Result<Transparent, (String, String)> {
    let agent = section.agent.trim();
    if !valid_name(agent) {
        return Err((
            section.agent.clone(),
            format!("transparent.agent `{agent}` must be 1-128 letters, digits, '-' or '_'"),
        ));
    }
    // Once any agent is listed, every agent must be (as for proxy credentials): the
    // transparent agent's budget and profile come from its entry.
    if !agents.is_empty() && !agents.contains_key(agent) {
        return Err((
            section.agent.clone(),
            format!("transparent.agent `{agent}` is not listed under `agents`; add it there (a token is not needed)"),
        ));
    }
    let session = section.session.as_deref().map(str::trim);
    let session = session.unwrap_or(DEFAULT_SESSION);
    if !valid_name(session) {
        return Err((
            session.to_string(),
            format!("transparent.session `{session}` must be 1-128 letters, digits, '-' or '_'"),
        ));
    }
    let passthrough = section
        .passthrough
        .iter()
        .map(|entry| parse_passthrough(entry).map_err(|message| (entry.clone(), message)))
        .collect::<Result<_, _>>()?;
    Ok(Transparent {
        identity: Identity {
            agent: Arc::from(agent),
            session: Arc::from(session),
            anonymous: false,
        },
        session_header: section.session_header,
        passthrough,
    })
}

/// `IP:port`, `[IPv6]:port` or `host:port`; the port is required (a destination is one
/// service, not a whole host).
fn parse_passthrough(entry: &str) -> Result<Passthrough, String> {
    let text = entry.trim();
    let wrong = || {
        format!("transparent.passthrough entry `{text}` must be IP:port, [IPv6]:port or host:port")
    };
    if let Ok(address) = text.parse::<SocketAddr>() {
        return match address.port() {
            0 => Err(wrong()),
            _ => Ok(Passthrough::Address(address)),
        };
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(wrong)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(wrong)?;
    let host = host.to_ascii_lowercase();
    let name_like = !host.is_empty()
        && host.len() <= 253
        && host.parse::<IpAddr>().is_err()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !name_like {
        return Err(wrong());
    }
    Ok(Passthrough::Name { host, port })
}

#[cfg(test)]
mod tests {
    use super::super::Policy;
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> Result<Policy, String> {
        Policy::from_yaml(Path::new("t.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_section_names_the_agent_its_session_and_what_passes_unread() {
        let policy = load(
            "transparent:\n  agent: bot\n  session_header: true\n  passthrough: ['10.0.0.7:5432', '[fd00::7]:6379', 'DB.internal:5432']\n",
        )
        .unwrap();
        let section = policy.transparent.unwrap();
        assert_eq!(section.identity.session_id(), "bot.default");
        assert!(section.session_header);
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(section.passthrough_address(at("10.0.0.7:5432")).is_some());
        assert!(section
            .passthrough_address(at("[::ffff:10.0.0.7]:5432"))
            .is_some());
        assert!(section.passthrough_address(at("10.0.0.7:5433")).is_none());
        assert!(section.passthrough_address(at("[fd00::7]:6379")).is_some());
        let names: Vec<_> = section.named_passthrough(5432).map(|(h, _)| h).collect();
        assert_eq!(names, ["db.internal"]);
        assert_eq!(section.named_passthrough(443).count(), 0);
    }

    #[test]
    fn a_header_picks_a_session_of_the_same_agent_only_by_a_valid_name() {
        let policy = load("transparent: {agent: bot, session: main}\n").unwrap();
        let section = policy.transparent.unwrap();
        assert_eq!(section.identity(None).unwrap().session_id(), "bot.main");
        let picked = section.identity(Some(b"run-7")).unwrap();
        assert_eq!(picked.session_id(), "bot.run-7");
        assert!(!picked.anonymous);
        for bad in [&b""[..], b"other.agent", b"a b", b"\xff"] {
            assert_eq!(
                section.identity(Some(bad)),
                Err(BadSessionHeader),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_sections_are_load_errors_that_say_what_to_write() {
        let err = load("transparent: {agent: 'bad name'}\n").unwrap_err();
        assert!(
            err.starts_with("t.yaml:1:") && err.contains("transparent.agent"),
            "{err}"
        );
        let err = load("agents: {alice: {token: x}}\ntransparent: {agent: bob}\n").unwrap_err();
        assert!(err.contains("not listed under `agents`"), "{err}");
        assert!(load("agents: {bob: {}}\ntransparent: {agent: bob}\n").is_ok());
        for entry in ["10.0.0.7", "db.internal", "10.0.0.7:0", "a b:80", "[::1]"] {
            let err = load(&format!(
                "transparent: {{agent: bot, passthrough: ['{entry}']}}\n"
            ))
            .unwrap_err();
            assert!(err.contains("must be IP:port"), "{entry}: {err}");
        }
        let err = load("transparent: {agent: bot, sesion: x}\n").unwrap_err();
        assert!(err.contains("unknown field `sesion`"), "{err}");
        assert!(load("").unwrap().transparent.is_none());
    }
}
