//! The transparent listener (`purser run --transparent-listen ADDR`): connections the
//! kernel redirected to Purser (nftables or iptables `REDIRECT` in the agent's network
//! namespace; `purser redirect` writes the rules), served as if the agent had used the
//! proxy.
//!
//! The agent does not know Purser is there: it connected to a merchant's address, and
//! the kernel handed the connection here. So, per connection:
//!
//! 1. the same admission as the agent-facing listener ([`super::server`]): the connection
//!    cap, the cap on connections per peer that have not yet been attributed to an agent,
//!    and the first-byte timeout;
//! 2. the original destination, from `SO_ORIGINAL_DST` (IPv4 and IPv6). A connection
//!    whose original destination is one of Purser's own listeners is refused: nothing
//!    loops, and an agent cannot reach the admin API by way of the redirect;
//! 3. the first bytes ([`super::sniff`], [`hello`]): a TLS ClientHello is intercepted by the name it
//!    asks for ([`hello`]; a leaf is minted for that name, and upstream TLS is verified
//!    for it), or spliced when that name is a `tunnel` host; plain HTTP (a method and a space) is
//!    served by its `Host`. Both go to the proxy's one service as [`Arrival::Transparent`], with the same
//!    detector, decision, holds and traces as any proxied request, and leave for the
//!    original destination's address ([`super::pinned`]);
//! 4. anything Purser cannot read (TLS without SNI, a protocol that is neither TLS nor
//!    HTTP) is refused unless the policy lists its destination under
//!    `transparent.passthrough` ([`passthrough`]).
//!
//! Who the agent is comes from the policy's `transparent` section
//! ([`super::authenticate`]).

mod hello;
mod passthrough;

use super::admission::{self, Admitted, Pass};
use super::agent_tls::AgentTlsStream;
use super::arrival::{AgentConnection, Arrival, Redirected};
use super::egress::own_listener;
use super::service;
use super::shutdown::drive;
use super::sniff::{self, Opening};
use super::state::ProxyState;
use super::workers::Workers;
use hello::{Hello, Replayed};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Accepts redirected connections until a drain begins, handing each to a worker.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>, workers: Arc<Workers>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.requested() => break,
        };
        match accepted {
            Ok((stream, peer)) => match state.admission.admit(peer.ip()) {
                Some(pass) => {
                    let state = state.clone();
                    workers.hand_over(stream, peer, move |stream| {
                        serve_connection(state, stream, peer, pass)
                    })
                }
                None => {
                    tracing::debug!(%peer, "at the connection cap; turning a redirected connection away");
                    drop(stream);
                }
            },
            Err(error) => {
                tracing::warn!(%error, "accept failed on the transparent listener");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("transparent listener closed; draining connections");
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
    match original_destination(&stream) {
        Ok(original) => {
            if let Some(listener) =
                own_listener(&state.own_addresses, original.ip(), original.port())
            {
                state.metrics.refused_connect();
                tracing::warn!(%peer, %original, %listener, "refusing a redirected connection to Purser's own listener");
            } else if admission::first_byte(&stream, &pass, &state.metrics, state.shutdown.clone())
                .await
            {
                let wait = state.settings.tls_handshake_timeout;
                let agent = Admitted::new(stream, pass.clone());
                tokio::select! {
                    () = dispatch(&state, agent, &pass, original, wait) => {}
                    () = pass.evicted() => {
                        tracing::debug!(%peer, "closing a redirected connection to make room");
                    }
                }
            }
        }
        Err(error) => {
            state.metrics.refused_connect();
            tracing::warn!(%peer, %error, "refusing a connection with no original destination: only connections the kernel redirected (purser redirect) belong on the transparent listener");
        }
    }
    state.metrics.connection_closed();
    drop(guard);
}

/// Where the agent was connecting to before the kernel redirected it here.
fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    // An IPv4 connection accepted on a dual-stack socket has a v4-mapped local address,
    // and its original destination is kept by IPv4's conntrack.
    let ipv4 = match stream.local_addr()? {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(local) => local.ip().to_ipv4_mapped().is_some(),
    };
    let original = if ipv4 {
        socket.original_dst_v4()?
    } else {
        socket.original_dst_v6()?
    };
    original
        .as_socket()
        .ok_or_else(|| io::Error::other("SO_ORIGINAL_DST gave no IP address"))
}

type Agent = Admitted<TcpStream>;

/// Serves a redirected connection by what it opens with.
async fn dispatch(
    state: &Arc<ProxyState>,
    agent: Agent,
    pass: &Arc<Pass>,
    original: SocketAddr,
    wait: Duration,
) {
    let (opening, mut agent) = sniff::opening(agent, wait).await;
    match opening {
        Opening::Tls => {
            let (hello, seen) = Box::pin(hello::read(&mut agent, wait)).await;
            let agent = Replayed::new(seen, agent);
            match hello {
                Hello::Named(name) => Box::pin(tls(state, agent, pass, original, name, wait)).await,
                Hello::Unnamed => unreadable(state, agent, pass, original, "TLS without SNI").await,
                Hello::Broken(reason) => {
                    state.metrics.refused_connect();
                    tracing::info!(%original, %reason, "closing a redirected connection: no TLS ClientHello");
                }
            }
        }
        Opening::Plaintext => {
            let (http, seen) = Box::pin(hello::request_line(&mut agent, wait)).await;
            let agent = Replayed::new(seen, agent);
            if http {
                serve_http(state, agent, redirected(pass, original, None), false).await;
            } else {
                unreadable(state, agent, pass, original, "neither TLS nor HTTP").await;
            }
        }
        Opening::Closed => {}
    }
}

/// A TLS connection that named `name`: spliced if it is a `tunnel` host, else
/// intercepted with a leaf for that name.
async fn tls<S>(
    state: &Arc<ProxyState>,
    agent: S,
    pass: &Arc<Pass>,
    original: SocketAddr,
    name: String,
    wait: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tunnel = state
        .policy
        .peek()
        .tunnel_entry(&name, original.port())
        .map(|entry| entry.pattern.to_string());
    if let Some(pattern) = tunnel {
        // Spliced bytes are never read, so the SNI alone cannot choose a splice: an agent
        // could name a tunnel host and pay any merchant inside. Only a connection that was
        // going to one of the tunnel host's own addresses is spliced.
        if passthrough::resolves_to(state, &name, original).await {
            return passthrough::splice(state, agent, pass, original, &pattern).await;
        }
        state.metrics.refused_connect();
        tracing::warn!(%name, %original, "refusing a redirected connection: its SNI names a tunnel host, but it was going to an address that host does not resolve to");
        return;
    }
    let config = match state.leaves.server_config(&name) {
        Ok(config) => config,
        Err(error) => {
            state.metrics.refused_connect();
            tracing::warn!(%name, %error, "cannot intercept a redirected connection");
            return;
        }
    };
    state.metrics.intercepted_connect();
    let agent = match tokio::time::timeout(wait, AgentTlsStream::accept(agent, config)).await {
        Ok(Ok(agent)) => agent,
        Ok(Err(error)) => {
            // Nothing went upstream: an agent that does not trust Purser's CA is not served.
            state.metrics.refused_connect();
            tracing::info!(%name, %error, "agent TLS handshake failed on a redirected connection; closing");
            return;
        }
        Err(_) => {
            tracing::info!(%name, "agent TLS handshake timed out on a redirected connection");
            return;
        }
    };
    let http2 = agent.alpn_protocol() == Some(b"h2");
    serve_http(state, agent, redirected(pass, original, Some(name)), http2).await;
}

/// Traffic Purser cannot read: spliced where the policy lists its destination, else
/// refused (closed).
async fn unreadable<S>(
    state: &Arc<ProxyState>,
    agent: S,
    pass: &Pass,
    original: SocketAddr,
    what: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match passthrough::listed(state, original).await {
        Some(entry) => passthrough::splice(state, agent, pass, original, &entry).await,
        None => {
            state.metrics.refused_connect();
            tracing::info!(%original, what, "refusing a redirected connection Purser cannot read (its destination is not under transparent.passthrough)");
        }
    }
}

fn redirected(pass: &Arc<Pass>, original: SocketAddr, server_name: Option<String>) -> Redirected {
    Redirected {
        connection: AgentConnection::new(pass.clone()),
        original,
        server_name,
    }
}

/// HTTP/2 (when ALPN chose it) or HTTP/1.1 on a redirected connection until it closes,
/// each request through the proxy's service.
async fn serve_http<S>(state: &Arc<ProxyState>, agent: S, redirected: Redirected, http2: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(agent);
    let shutdown = state.shutdown.clone();
    let service_state = state.clone();
    let per_request = service_fn(move |request| {
        service::serve(&service_state, Arrival::Transparent(&redirected), request)
    });
    let served = if http2 {
        let mut conn = Box::pin(
            state
                .settings
                .http2_server()
                .serve_connection(io, per_request),
        );
        drive(conn.as_mut(), shutdown, |conn| conn.graceful_shutdown()).await
    } else {
        let builder = state.settings.http1_server();
        let mut conn = Box::pin(builder.serve_connection(io, per_request).with_upgrades());
        drive(conn.as_mut(), shutdown, |conn| conn.graceful_shutdown()).await
    };
    if let Err(error) = served {
        let error = super::upstream::describe_chain(&error);
        tracing::debug!(%error, "redirected connection ended with an error");
    }
}
