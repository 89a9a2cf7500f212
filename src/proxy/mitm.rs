//! Inside an intercepted `CONNECT`: terminate the agent's TLS with the host's leaf and
//! serve HTTP/1.1 or HTTP/2, as ALPN chose. A tunnel the agent opens with plaintext HTTP
//! (undici's `EnvHttpProxyAgent`, `curl -p` for `http://` URLs) is served as HTTP/1.1 to
//! the target over plain HTTP.
//!
//! Like hudsucker's MITM core, this knows no policy: each request inside is handed to
//! the service it was given ([`super::service::serve`], the same stack as every other
//! request), with the tunnel as its [`Arrival`]. The tunnel's target is the only
//! upstream; the service holds each request to it ([`super::destination`]).

use super::agent_tls::AgentTlsStream;
use super::arrival::{Arrival, Service, Tunnel};
use super::shutdown::drive;
use super::sniff::{self, Opening, Prefixed};
use super::state::ProxyState;
use super::target::Target;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves the agent's side of an intercepted tunnel until it closes.
///
/// This future is the tunnel's task, kept for as long as the agent keeps the connection
/// (minutes, for a held payment), so it stays small: the handshake's state is boxed and
/// freed once done, and the connection that follows is boxed at its own size.
pub async fn serve(
    state: Arc<ProxyState>,
    upgraded: Upgraded,
    tunnel: Tunnel,
    tls: Arc<ServerConfig>,
    service: Service,
) {
    let wait = state.settings.tls_handshake_timeout;
    let (opening, agent) = Box::pin(sniff::opening(TokioIo::new(upgraded), wait)).await;
    let served = match opening {
        Opening::Tls => {
            let Some(stream) = Box::pin(accept_agent_tls(&state, agent, &tunnel.target, tls)).await
            else {
                return;
            };
            let http2 = stream.alpn_protocol() == Some(b"h2");
            serve_http(&state, stream, Inside::Tls { http2 }, tunnel, service)
        }
        Opening::Plaintext if sniff::looks_like_http(&agent) => {
            let plain = Tunnel {
                target: Target {
                    https: false,
                    ..tunnel.target
                },
                identity: tunnel.identity,
            };
            serve_http(&state, agent, Inside::Plaintext, plain, service)
        }
        Opening::Plaintext => {
            tracing::info!(target = %tunnel.target.display(), "neither TLS nor HTTP inside CONNECT; closing");
            state.metrics.refused_connect();
            return;
        }
        Opening::Closed => return,
    };
    let guard = state.shutdown.track();
    if let Err(error) = served.await {
        // The whole chain: hyper's own text ("http2 error") hides the cause, such as a
        // reset flood (`too_many_resets`) that ended the connection.
        let error = super::upstream::describe_chain(&error);
        tracing::debug!(%error, "intercepted connection ended with an error");
    }
    drop(guard);
}

type AgentStream = Prefixed<TokioIo<Upgraded>>;
type AgentTls = AgentTlsStream<AgentStream>;

/// The TLS handshake with the agent, under the handshake timeout; `None` when it fails.
async fn accept_agent_tls(
    state: &ProxyState,
    agent: AgentStream,
    target: &Target,
    tls: Arc<ServerConfig>,
) -> Option<AgentTls> {
    let handshake = AgentTlsStream::accept(agent, tls);
    match tokio::time::timeout(state.settings.tls_handshake_timeout, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            // Nothing has gone upstream: an agent that does not trust Purser's CA (or
            // sends a broken handshake) is simply not served.
            tracing::info!(target = %target.display(), %error, "agent TLS handshake failed inside CONNECT; closing");
            state.metrics.refused_connect();
            None
        }
        Err(_) => {
            tracing::info!(target = %target.display(), "agent TLS handshake timed out; closing");
            None
        }
    }
}

/// What the agent speaks inside the tunnel, once Purser sees it.
#[derive(Clone, Copy)]
enum Inside {
    /// TLS that Purser terminated; HTTP/2 when ALPN chose `h2`.
    Tls { http2: bool },
    /// Plaintext HTTP/1.1.
    Plaintext,
}

/// HTTP/2 or HTTP/1.1 over the agent's stream, until the connection ends; each request
/// goes to `service`, arrived through `tunnel`.
fn serve_http<S>(
    state: &Arc<ProxyState>,
    stream: S,
    inside: Inside,
    tunnel: Tunnel,
    service: Service,
) -> Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let shutdown = state.shutdown.clone();
    let service_state = state.clone();
    let per_request = service_fn(move |request| {
        let arrival = match inside {
            Inside::Tls { .. } => Arrival::Intercepted(&tunnel),
            Inside::Plaintext => Arrival::Plaintext(&tunnel),
        };
        service(&service_state, arrival, request)
    });
    if let Inside::Tls { http2: true } = inside {
        let builder = state.settings.http2_server();
        let mut conn = Box::pin(builder.serve_connection(io, per_request));
        Box::pin(
            async move { drive(conn.as_mut(), shutdown, |conn| conn.graceful_shutdown()).await },
        )
    } else {
        let builder = state.settings.http1_server();
        let mut conn = Box::pin(builder.serve_connection(io, per_request).with_upgrades());
        Box::pin(
            async move { drive(conn.as_mut(), shutdown, |conn| conn.graceful_shutdown()).await },
        )
    }
}
