//! `tunnel` hosts: spliced without interception, so what crosses them is opaque.
//!
//! Listing a host under `tunnel` is the operator's decision to let TLS bytes to it pass
//! unread (certificate-pinned clients). Payments are another matter: Purser sees neither
//! a tunnel host's 402 challenges nor the payments sent inside the splice, so it cannot
//! govern payments to that host. Unless the entry says `trust_payments: true`:
//!
//! * a plain `http://` request to the host that carries a payment header is refused
//!   ([`super::destination`]), although Purser could read it: the challenge it answers
//!   and the rest of the host's traffic went by unseen;
//! * inside the splice, the agent must speak TLS: plaintext (an HTTP request, payment
//!   headers and all, that Purser would pass unread) gets a `403` in the stream and the
//!   tunnel is closed before any byte reaches the host ([`open`]).
//!
//! TLS inside a tunnel is opaque whether or not the host is trusted.

use super::agent_connections::ConnectionSlot;
use super::answers::{self, ErrorCode};
use super::body::ProxyBody;
use super::destination::untrusted_tunnel_reason;
use super::egress::SpliceConnectError;
use super::sniff::{self, Opening};
use super::state::ProxyState;
use super::target::Target;
use super::upstream::classify;
use crate::policy::TunnelEntry;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Splices a `tunnel` host. The upstream connection is made first so that a dead host is
/// a `502`, as it would be for any other request; its addresses pass the egress checks.
pub async fn open(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
    target: Target,
    entry: TunnelEntry,
    slot: Option<ConnectionSlot>,
) -> Response<ProxyBody> {
    let address = target.display();
    let trusted = entry.trust_payments;
    let pattern = entry.pattern.to_string();
    let connect = tokio::time::timeout(
        state.upstream.settings.connect_timeout,
        state.upstream.egress.connect(&target.host, target.port),
    )
    .await;
    let mut upstream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(SpliceConnectError::Egress(error))) => {
            let failure = classify(&error, &address);
            if failure.code == ErrorCode::Forbidden {
                state.metrics.refused_connect();
                tracing::warn!(target = %address, %error, "refusing CONNECT");
            } else {
                state.metrics.upstream_error(failure.code);
            }
            return answers::error(failure.code, failure.detail);
        }
        Ok(Err(SpliceConnectError::Connect { source, .. })) => {
            let failure = classify(&source, &address);
            state.metrics.upstream_error(failure.code);
            return answers::error(failure.code, failure.detail);
        }
        Err(_) => {
            state.metrics.upstream_error(ErrorCode::UpstreamTimeout);
            return answers::error(
                ErrorCode::UpstreamTimeout,
                format!("connecting to {address} timed out"),
            );
        }
    };
    let _ = upstream.set_nodelay(true);
    state.metrics.tunnelled_connect();
    tracing::info!(target = %address, trusted, "splicing tunnel host without interception");
    let on_upgrade = hyper::upgrade::on(request);
    let wait = state.settings.tls_handshake_timeout;
    tokio::spawn(async move {
        // The agent's connection allowance is held for as long as the splice lasts.
        let _slot = slot;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut agent = TokioIo::new(upgraded);
        if trusted {
            // Whatever the agent says first (or waits for) is the host's business.
            splice(&mut agent, &mut upstream).await;
            return;
        }
        let (opening, mut agent) = sniff::opening(agent, wait).await;
        match opening {
            Opening::Tls => splice(&mut agent, &mut upstream).await,
            Opening::Plaintext => {
                state.metrics.refused_connect();
                tracing::warn!(target = %target.display(), "refusing plaintext inside a splice to an untrusted tunnel host");
                let reason = format!(
                    "only TLS may cross this tunnel; {}",
                    untrusted_tunnel_reason(&target, &pattern)
                );
                let _ = agent.write_all(&refusal_bytes(&reason)).await;
                let _ = agent.shutdown().await;
            }
            Opening::Closed => {}
        }
    });
    answers::tunnel_open()
}

async fn splice<A, U>(agent: &mut A, upstream: &mut U)
where
    A: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(error) = tokio::io::copy_bidirectional(agent, upstream).await {
        tracing::debug!(%error, "tunnel closed");
    }
}

/// A complete `403` answer written into the tunnel, for an agent that sent HTTP.
fn refusal_bytes(reason: &str) -> Vec<u8> {
    let body = format!("purser: {reason}\n");
    let status = ErrorCode::TunnelUntrusted.status();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-purser-error: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or("Forbidden"),
        ErrorCode::TunnelUntrusted.as_str(),
        body.len()
    )
    .into_bytes()
}
