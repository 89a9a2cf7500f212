//! The agent-facing listener: accept, serve HTTP/1.1, authenticate, dispatch.
//!
//! A connection is admitted first ([`super::admission`]: the connection cap, the cap on
//! unauthenticated connections per peer, the first-byte timeout); it stops being a
//! candidate for eviction once a request on it authenticates.
//!
//! Every request is authenticated on its own (a `CONNECT` carries the credentials for
//! the whole tunnel) and handled inside a span carrying its session, so every log line
//! it produces says which agent session it belongs to.

use super::admission::{self, Admitted, Pass};
use super::agent_connections::{claim_for, ConnectionClaim};
use super::answers::{self, ErrorCode};
use super::body::ProxyBody;
use super::forward::{detach_governed_head, forward_logged};
use super::shutdown::drive;
use super::workers::Workers;
use super::{connect, ProxyState, Target};
use crate::policy::Identity;
use http::{header, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

/// Accepts agent connections until a drain begins, handing each to a worker.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>, workers: Arc<Workers>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.requested() => break,
        };
        match accepted {
            Ok((stream, peer)) => match state.admission.admit(peer.ip()) {
                Some(pass) => hand_over(&workers, &state, stream, peer, pass),
                None => turn_away(stream, peer),
            },
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("proxy listener closed; draining connections");
}

/// Moves an accepted connection onto a worker's runtime: the socket is re-registered
/// with that worker's reactor, so its wake-ups happen on that worker's thread.
fn hand_over(
    workers: &Workers,
    state: &Arc<ProxyState>,
    stream: TcpStream,
    peer: SocketAddr,
    pass: Arc<Pass>,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%peer, %error, "could not detach an accepted connection");
            return;
        }
    };
    let state = state.clone();
    workers.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => serve_connection(state, stream, peer, pass).await,
            Err(error) => tracing::warn!(%peer, %error, "worker could not register a connection"),
        }
    });
}

/// At the connection cap with every connection authenticated: a `503`, if the socket
/// takes it at once, and the connection is closed.
fn turn_away(stream: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "at the connection cap; turning a connection away");
    let _ = stream.try_write(admission::TURNED_AWAY);
}

async fn serve_connection(
    state: Arc<ProxyState>,
    stream: TcpStream,
    peer: SocketAddr,
    pass: Arc<Pass>,
) {
    let _ = stream.set_nodelay(true);
    let guard = state.shutdown.track();
    state.metrics.connection_opened();
    if admission::first_byte(&stream, &pass, &state.metrics, state.shutdown.clone()).await {
        serve_http1(&state, stream, peer, pass).await;
    }
    state.metrics.connection_closed();
    drop(guard);
}

/// HTTP/1.1 on an admitted connection, until it closes or is pushed out to make room.
async fn serve_http1(
    state: &Arc<ProxyState>,
    stream: TcpStream,
    peer: SocketAddr,
    pass: Arc<Pass>,
) {
    let service_state = state.clone();
    let claim = ConnectionClaim::default();
    let service_pass = pass.clone();
    let service = service_fn(move |mut request| {
        detach_governed_head(&mut request);
        handle_request(&service_state, request, &claim, &service_pass)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.settings.header_read_timeout)
        .max_header_size(state.settings.max_header_bytes);
    let io = Admitted::new(stream, pass.clone());
    let conn = std::pin::pin!(builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades());
    let served = tokio::select! {
        served = drive(conn, state.shutdown.clone(), |conn| conn.graceful_shutdown()) => served,
        () = pass.evicted() => {
            tracing::debug!(%peer, "closing an unauthenticated connection to make room");
            Ok(())
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "agent connection ended with an error");
    }
}

/// The service future of an agent-facing connection. hyper keeps a slot of its size on
/// every connection, busy or idle, so it is two words; the work is boxed per request, and
/// only as large as that request's path needs (a held payment keeps just its forwarding).
pub struct Answering(Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>);

impl Answering {
    /// An answer known without waiting (refusals).
    pub fn now(response: Response<ProxyBody>) -> Self {
        Answering(Box::pin(std::future::ready(response)))
    }

    pub fn later(work: impl Future<Output = Response<ProxyBody>> + Send + 'static) -> Self {
        Answering(Box::pin(work))
    }
}

impl From<Response<ProxyBody>> for Answering {
    fn from(response: Response<ProxyBody>) -> Self {
        Answering::now(response)
    }
}

impl Future for Answering {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}

/// One request on the agent's connection: authenticated and checked here, synchronously;
/// what has to wait (a tunnel, the upstream) runs in the returned future, tagged with
/// the request's session.
fn handle_request(
    state: &Arc<ProxyState>,
    request: Request<Incoming>,
    claim: &ConnectionClaim,
    pass: &Pass,
) -> Answering {
    let identity = match admit(state, &request, claim) {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    pass.authenticated();
    let span = tracing::debug_span!("request", session = %identity);
    if request.method() == Method::CONNECT {
        // The tunnel outlives this connection's hyper future: it carries the slot.
        let slot = claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let tunnel = connect::handle(state.clone(), request, identity, slot);
        return Answering::later(tunnel.instrument(span));
    }
    let target = match span.in_scope(|| forwardable_target(state, &request)) {
        Ok(target) => target,
        Err(refusal) => return refusal,
    };
    state.metrics.request(target.https);
    let forwarding = forward_logged(state.clone(), request, target, identity, "http");

    Answering::later(forwarding.instrument(span))
}

/// The agent's identity, once its credentials pass and it has room for this connection.
fn admit(
    state: &ProxyState,
    request: &Request<Incoming>,
    claim: &ConnectionClaim,
) -> Result<Identity, Answering> {
    let policy = state.policy.peek();
    let credentials = request
        .headers()
        .get(header::PROXY_AUTHORIZATION)
        .map(|v| v.as_bytes());
    let identity = match policy.agents.authenticate(credentials) {
        Ok(identity) => identity,
        Err(error) => {
            state.metrics.auth_failure();
            tracing::info!(%error, method = %request.method(), "proxy authentication failed");
            return Err(Answering::now(answers::error(
                ErrorCode::ProxyAuthRequired,
                error,
            )));
        }
    };
    let limit = policy.limits.connections_per_agent;
    drop(policy);
    if !claim_for(&state.agent_connections, claim, &identity.agent, limit) {
        tracing::warn!(agent = %identity.agent, limit, "agent at its connection limit; refusing");
        let mut answer = answers::error(
            ErrorCode::TooManyConnections,
            format!(
                "agent `{}` already holds {limit} open connections (limits.connections_per_agent)",
                identity.agent
            ),
        );
        answer
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return Err(Answering::now(answer));
    }
    Ok(identity)
}

/// Where an absolute-form request goes, if the policy lets it go there.
fn forwardable_target(
    state: &ProxyState,
    request: &Request<Incoming>,
) -> Result<Target, Answering> {
    let target =
        absolute_target(request).map_err(|reason| answers::error(ErrorCode::BadRequest, reason))?;
    if state.is_own_address(&target) {
        return Err(Answering::now(answers::error(
            ErrorCode::Forbidden,
            "Purser's own listeners are not reachable through the proxy",
        )));
    }
    let policy = state.policy.peek();
    if let Some(reason) = policy.egress_refusal(&target.host, target.port) {
        return Err(Answering::now(answers::error(ErrorCode::Forbidden, reason)));
    }
    if let Some(refusal) = super::tunnel::payment_refusal(&policy, &target, request.headers()) {
        return Err(Answering::now(refusal));
    }
    Ok(target)
}

/// The target of an absolute-form request (`GET http://host/path`).
fn absolute_target(request: &Request<Incoming>) -> Result<Target, String> {
    let uri = request.uri();
    let https = match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
        Some(other) => {
            return Err(format!(
                "scheme `{other}` is not proxied; use http or https"
            ))
        }
        None => return Err(
            "Purser is a forward proxy: send absolute-form requests (http://host/path) or CONNECT"
                .to_string(),
        ),
    };
    let authority = uri.authority().ok_or("request URI has no host")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err("request URI has no host".to_string());
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Target {
        https,
        host: host.to_ascii_lowercase(),
        port,
    })
}
