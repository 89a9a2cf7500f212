//! Inside an intercepted `CONNECT`: terminate the agent's TLS with the host's leaf and
//! serve HTTP/1.1 or HTTP/2, as ALPN chose, forwarding each request to the `CONNECT`
//! target. A tunnel the agent opens with plaintext HTTP (undici's `EnvHttpProxyAgent`,
//! `curl -p` for `http://` URLs) is served as HTTP/1.1 to the target over plain HTTP,
//! through exactly the same forwarding, decision and trace path.
//!
//! The `CONNECT` target is the only upstream for the tunnel: a request inside it that
//! names another host gets `421 Misdirected Request` rather than being routed by its
//! `Host` header, so an agent cannot smuggle a request past host-based policy.

use super::agent_tls::AgentTlsStream;
use super::answers::{self, ErrorCode};
use super::forward::forward_logged;
use super::server::Answering;
use super::shutdown::drive;
use super::sniff::{self, Opening, Prefixed};
use super::{ProxyState, Target};
use crate::policy::Identity;
use http::{header, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

/// Serves the agent's side of an intercepted tunnel until it closes.
///
/// This future is the tunnel's task, kept for as long as the agent keeps the connection
/// (minutes, for a held payment), so it stays small: the handshake's state is boxed and
/// freed once done, and the connection that follows is boxed at its own size.
pub async fn serve(
    state: Arc<ProxyState>,
    upgraded: Upgraded,
    target: Target,
    identity: Identity,
    tls: Arc<ServerConfig>,
) {
    let wait = state.settings.tls_handshake_timeout;
    let (opening, agent) = Box::pin(sniff::opening(TokioIo::new(upgraded), wait)).await;
    let served = match opening {
        Opening::Tls => {
            let Some(stream) = Box::pin(accept_agent_tls(&state, agent, &target, tls)).await else {
                return;
            };
            let http2 = stream.alpn_protocol() == Some(b"h2");
            serve_http(&state, stream, http2, target, identity)
        }
        Opening::Plaintext if sniff::looks_like_http(&agent) => {
            let plain = Target {
                https: false,
                ..target
            };
            serve_http(&state, agent, false, plain, identity)
        }
        Opening::Plaintext => {
            tracing::info!(target = %target.display(), "neither TLS nor HTTP inside CONNECT; closing");
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

/// HTTP/2 or HTTP/1.1 (as ALPN chose) over the agent's stream, until the connection ends.
fn serve_http<S>(
    state: &Arc<ProxyState>,
    stream: S,
    http2: bool,
    target: Target,
    identity: Identity,
) -> Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let shutdown = state.shutdown.clone();
    let service_state = state.clone();
    let service = service_fn(move |mut request| {
        super::forward::detach_governed_head(&mut request);
        inner_request(&service_state, request, &target, &identity)
    });
    if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(state.settings.max_header_bytes as u32)
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
        let mut conn = Box::pin(builder.serve_connection(io, service));
        Box::pin(
            async move { drive(conn.as_mut(), shutdown, |conn| conn.graceful_shutdown()).await },
        )
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(state.settings.header_read_timeout)
            .max_header_size(state.settings.max_header_bytes);
        let mut conn = Box::pin(builder.serve_connection(io, service).with_upgrades());
        Box::pin(
            async move { drive(conn.as_mut(), shutdown, |conn| conn.graceful_shutdown()).await },
        )
    }
}

/// One request inside the tunnel: checked here, forwarded in the returned future.
fn inner_request(
    state: &Arc<ProxyState>,
    request: Request<Incoming>,
    target: &Target,
    identity: &Identity,
) -> Answering {
    if let Some(named) = named_host(&request) {
        if !named.eq_ignore_ascii_case(&target.host) {
            return Answering::now(answers::error(
                ErrorCode::Misdirected,
                format!("this tunnel is for {}, not {named}", target.host),
            ));
        }
    }
    state.metrics.request(target.https);
    let span = tracing::debug_span!("request", session = %identity);
    let scheme = if target.https { "https" } else { "http" };
    let forwarding = forward_logged(
        state.clone(),
        request,
        target.clone(),
        identity.clone(),
        scheme,
    );
    Answering::later(forwarding.instrument(span))
}

/// The host a request inside the tunnel names: `:authority` (HTTP/2) or `Host`.
fn named_host(request: &Request<Incoming>) -> Option<String> {
    let authority = request.uri().authority().map(|a| a.host().to_string());
    authority
        .or_else(|| {
            let host = request.headers().get(header::HOST)?.to_str().ok()?;
            let parsed: http::uri::Authority = host.parse().ok()?;
            Some(parsed.host().to_string())
        })
        .map(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
}
