//! The agent-facing listener: accept, admit, and serve HTTP/1.1 on the agent's
//! connection, each request through the proxy's one service ([`super::service`]).
//!
//! The connection layers run here, before any request: admission ([`super::admission`]:
//! the connection cap and the cap on unauthenticated connections per peer, making room
//! by closing the oldest unauthenticated connection) and the first-byte timeout. A
//! connection stops being a candidate for eviction once a request on it authenticates.

use super::admission::{self, Admitted, Pass};
use super::arrival::{AgentConnection, Arrival};
use super::service;
use super::shutdown::drive;
use super::state::ProxyState;
use super::workers::Workers;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

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
                Some(pass) => {
                    let state = state.clone();
                    workers.hand_over(stream, peer, move |stream| {
                        serve_connection(state, stream, peer, pass)
                    })
                }
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
    let connection = AgentConnection::new(pass.clone());
    let per_request = service_fn(move |request| {
        service::serve(&service_state, Arrival::Proxy(&connection), request)
    });
    let io = Admitted::new(stream, pass.clone());
    let conn = std::pin::pin!(state
        .settings
        .http1_server()
        .serve_connection(TokioIo::new(io), per_request)
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
