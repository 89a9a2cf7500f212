//! How a request reached the proxy: the one thing the service ([`super::service`])
//! branches on, and the signature by which connection servers call it.
//!
//! Every layer of the service is the same for every request; where they differ (who the
//! agent is, where the request goes, what the access line calls its scheme) they ask the
//! [`Arrival`]. A new way in (a transparent listener, say) is one more variant, and the
//! compiler then names every layer that has to say what it means for it.

use super::admission::Pass;
use super::agent_connections::{ConnectionClaim, ConnectionSlot};
use super::answering::Answering;
use super::state::ProxyState;
use super::target::Target;
use crate::policy::Identity;
use http::Request;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// How a request arrived.
#[derive(Clone, Copy)]
pub enum Arrival<'a> {
    /// On the agent's own connection to the proxy: absolute-form (`GET http://host/path`)
    /// or a `CONNECT`. It carries its credentials and names its target.
    Proxy(&'a AgentConnection),
    /// Inside a `CONNECT` tunnel whose TLS Purser terminated, HTTP/1.1 or HTTP/2.
    Intercepted(&'a Tunnel),
    /// Inside a `CONNECT` tunnel the agent opened with plaintext HTTP/1.1 (undici's
    /// `EnvHttpProxyAgent`, `curl -p` for `http://` URLs).
    Plaintext(&'a Tunnel),
    /// On a connection the kernel redirected to the transparent listener
    /// ([`super::transparent`]): no credentials, the policy's `transparent` section
    /// names the agent; the destination is the connection's original one.
    Transparent(&'a Redirected),
}

impl Arrival<'_> {
    /// The scheme the access line names.
    pub fn scheme(self) -> &'static str {
        match self {
            Arrival::Proxy(_) | Arrival::Plaintext(_) => "http",
            Arrival::Intercepted(_) => "https",
            Arrival::Transparent(redirected) if redirected.server_name.is_some() => "https",
            Arrival::Transparent(_) => "http",
        }
    }
}

/// What the requests on one agent connection share.
pub struct AgentConnection {
    /// The connection's admission; marked authenticated by the first request that is.
    pub pass: Arc<Pass>,
    /// The connection's slot under `limits.connections_per_agent`.
    pub claim: ConnectionClaim,
}

impl AgentConnection {
    pub fn new(pass: Arc<Pass>) -> Self {
        AgentConnection {
            pass,
            claim: ConnectionClaim::default(),
        }
    }

    /// The connection's slot, for a tunnel: it outlives hyper's connection future, so it
    /// carries the slot from here on.
    pub fn take_slot(&self) -> Option<ConnectionSlot> {
        self.claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// A `CONNECT` tunnel Purser serves: its target, checked when it opened (every request
/// inside goes there), and the agent that opened it.
pub struct Tunnel {
    pub target: Target,
    pub identity: Identity,
}

/// A connection the kernel redirected to the transparent listener.
pub struct Redirected {
    /// Its admission and its slot under `limits.connections_per_agent`, as on the
    /// agent's own connection to the proxy.
    pub connection: AgentConnection,
    /// Where the agent was connecting to (`SO_ORIGINAL_DST`): every request on the
    /// connection goes there.
    pub original: SocketAddr,
    /// The name the agent's TLS asked for (SNI) when Purser terminated it; `None` for
    /// plain HTTP, which names its host in each request.
    pub server_name: Option<String>,
}

/// The proxy's service, as the connection servers inside tunnels are given it: passed
/// down rather than imported, so that the service can open a tunnel that re-enters it
/// without the files depending on each other.
pub type Service = fn(&Arc<ProxyState>, Arrival<'_>, Request<Incoming>) -> Answering;
