//! The proxy: listener, `CONNECT` and TLS interception, and the upstream client.
//!
//! The layers a request passes, outermost first:
//!
//! 1. [`server`]: accepts TCP and deals each connection to one of the [`workers`] (a
//!    single-threaded runtime per core with its own upstream pools), which serves
//!    HTTP/1.1 to the agent, authenticates each request
//!    ([`crate::policy::AgentDirectory`]) and tags it with its session.
//! 2. [`connect`]: a `CONNECT` is either spliced ([`crate::policy::Policy::tunnel`]) or
//!    intercepted; nothing is tunnelled uninspected by default.
//! 3. [`mitm`]: [`sniff`]s what the agent opens the tunnel with, terminates the agent's
//!    TLS with a leaf from [`leaf_cache`] and serves HTTP/1.1 or HTTP/2 inside it, or
//!    serves plaintext HTTP/1.1 with the same governance.
//! 4. [`forward`]: refuses protocol switches other than WebSocket ([`upgrade`]), reads
//!    JSON bodies for payments ([`inspect_body`]), strips hop-by-hop headers and
//!    credentials, sends the request through [`upstream`] and streams the answer back.
//!    Where a payment is, on every one of these paths, is [`crate::detect`]'s answer.

pub mod admission;
pub mod agent_connections;
pub mod agent_tls;
pub mod answers;
pub mod body;
pub mod ca;
pub mod connect;
pub mod egress;
pub mod forward;
pub mod headers;
pub mod inspect_body;
pub mod leaf_cache;
pub mod mitm;
pub mod outbound;
pub mod render;
pub mod server;
pub mod shutdown;
pub mod sniff;
pub mod trust_bundle;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;
pub mod workers;

use crate::policy::PolicyStore;
use crate::telemetry::metrics::Metrics;
use leaf_cache::LeafCache;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use upstream::Upstream;

/// Limits and timeouts on the agent side.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// Time a client has to send a request's headers, and to start the next request on
    /// an idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest pause inside a streaming body, either direction.
    pub body_idle_timeout: Duration,
    /// Time an agent has to finish the TLS handshake inside `CONNECT`.
    pub tls_handshake_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// How long `SIGTERM` waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Agent connections open at once; 0 derives it from the open-files limit
    /// ([`admission`]).
    pub max_connections: usize,
    /// Connections one peer address may hold before they authenticate.
    pub max_unauthenticated_per_peer: usize,
    /// Time a new connection has to send its first byte.
    pub first_byte_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(30),
            max_connections: 0,
            max_unauthenticated_per_peer: 512,
            first_byte_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything a connection needs, shared by all of them.
pub struct ProxyState {
    pub policy: Arc<PolicyStore>,
    pub engine: Arc<crate::engine::Engine>,
    pub leaves: LeafCache,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub settings: ProxySettings,
    /// The connection caps before authentication ([`admission`]).
    pub admission: Arc<admission::Admission>,
    /// Open connections per agent, bounded by `limits.connections_per_agent`.
    pub agent_connections: Arc<agent_connections::AgentConnections>,
    /// Purser's own listeners: requests aimed at them through the proxy are refused, so
    /// an agent can neither loop the proxy nor reach the admin API with its credentials.
    pub own_addresses: Vec<SocketAddr>,
    /// Tells connections to drain, and counts them.
    pub shutdown: shutdown::Shutdown,
}

/// Where a request is going.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host[:port]` as it goes in a URI, leaving out the scheme's default port.
    pub fn uri_authority(&self) -> String {
        let default_port = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `host:port`, for messages and logs.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl ProxyState {
    /// Whether `target` is one of Purser's own listeners, judged by its literal address
    /// (or `localhost`) before anything is resolved. Names are judged again, address by
    /// address, when the connection is made ([`egress`]).
    pub fn is_own_address(&self, target: &Target) -> bool {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let candidates = if host.eq_ignore_ascii_case("localhost") {
            vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]
        } else {
            host.parse::<IpAddr>().into_iter().collect()
        };
        candidates
            .into_iter()
            .any(|ip| egress::own_listener(&self.own_addresses, ip, target.port).is_some())
    }
}

/// One line per request, tagged with its session: at DEBUG for ordinary answers (a line
/// per request at INFO would cost a fifth of the plain path's throughput), at INFO when
/// the answer is a server-side failure.
pub(crate) fn log_access(
    scheme: &str,
    identity: &crate::policy::Identity,
    method: &http::Method,
    host: &str,
    path: &str,
    status: http::StatusCode,
) {
    if status.is_server_error() {
        tracing::info!(session = %identity, %method, host, path, status = status.as_u16(), scheme, "request failed upstream");
    } else {
        tracing::debug!(session = %identity, %method, host, path, status = status.as_u16(), scheme, "request");
    }
}
