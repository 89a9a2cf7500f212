//! [`ProxySettings`]: limits and timeouts on the agent side, and the HTTP servers they
//! configure, one HTTP/1.1 and one HTTP/2, for the agent's own connection and inside
//! tunnels alike.

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

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
    /// ([`super::admission`]).
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

impl ProxySettings {
    /// The HTTP/1.1 server agents talk to: on their own connection to the proxy and
    /// inside tunnels opened with TLS or plaintext. Upgrades are enabled by the caller
    /// (`with_upgrades`), for WebSocket.
    pub fn http1_server(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_bytes);
        builder
    }

    /// The HTTP/2 server inside intercepted TLS, when the agent's ALPN chose `h2`.
    pub fn http2_server(&self) -> http2::Builder<TokioExecutor> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        builder
    }
}
