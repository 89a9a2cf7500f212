//! `tunnel` hosts: spliced without interception, so what crosses them is opaque.
//!
//! Listing a host under `tunnel` is the operator's decision to let TLS bytes to it pass
//! unread (certificate-pinned clients). Payments are another matter: Purser sees neither
//! a tunnel host's 402 challenges nor the payments sent inside the splice, so it cannot
//! govern payments to that host. Unless the entry says `trust_payments: true`:
//!
//! * a plain `http://` request to the host that carries a payment header is refused
//!   ([`payment_refusal`]), although Purser could read it: the challenge it answers
//!   and the rest of the host's traffic went by unseen;
//! * inside the splice, the agent must speak TLS: plaintext (an HTTP request, payment
//!   headers and all, that Purser would pass unread) gets a `403` in the stream and the
//!   tunnel is closed before any byte reaches the host ([`open`]).
//!
//! TLS inside a tunnel is opaque whether or not the host is trusted.

use super::agent_connections::ConnectionSlot;
use super::answers::{self, ErrorCode};
use super::body::ProxyBody;
use super::egress::SpliceConnectError;
use super::upstream::classify;
use super::{ProxyState, Target};
use crate::policy::{Policy, TunnelEntry};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The x402 payment headers, v1 and v2.
const PAYMENT_HEADERS: [&str; 2] = ["x-payment", "payment-signature"];

/// The refusal for a plain (absolute-form) request that carries a payment to a `tunnel`
/// host the policy does not trust with payments; `None` when the request may go on.
pub fn payment_refusal(
    policy: &Policy,
    target: &Target,
    headers: &HeaderMap,
) -> Option<Response<ProxyBody>> {
    let entry = policy.tunnel_entry(&target.host, target.port)?;
    if entry.trust_payments || !PAYMENT_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        return None;
    }
    tracing::warn!(target = %target.display(), tunnel = %entry.pattern, "refusing a payment to an untrusted tunnel host");
    Some(answers::error(
        ErrorCode::TunnelUntrusted,
        untrusted_reason(target, &entry.pattern.to_string()),
    ))
}

fn untrusted_reason(target: &Target, pattern: &str) -> String {
    format!(
        "{} is a `tunnel` host (`{pattern}`): its HTTPS traffic, 402 challenges included, is spliced without inspection, \
         so Purser cannot govern payments to it; the policy must list it as {{host: '{pattern}', trust_payments: true}} to allow them",
        target.display()
    )
}

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
        if !trusted {
            match first_bytes_are_tls(&mut agent, wait).await {
                Opening::Tls(prefix) => {
                    if upstream.write_all(&prefix).await.is_err() {
                        return;
                    }
                }
                Opening::Plaintext => {
                    state.metrics.refused_connect();
                    tracing::warn!(target = %target.display(), "refusing plaintext inside a splice to an untrusted tunnel host");
                    let reason = format!(
                        "only TLS may cross this tunnel; {}",
                        untrusted_reason(&target, &pattern)
                    );
                    let _ = agent.write_all(&refusal_bytes(&reason)).await;
                    let _ = agent.shutdown().await;
                    return;
                }
                Opening::Closed => return,
            }
        }
        if let Err(error) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
            tracing::debug!(%error, "tunnel closed");
        }
    });
    super::connect::ok_response()
}

/// What the agent opened the splice with.
enum Opening {
    /// A TLS record header: the bytes read so far, to pass on.
    Tls(Vec<u8>),
    Plaintext,
    /// Gone, or silent past the wait, before saying anything.
    Closed,
}

/// Reads the first two bytes the agent sends: a TLS record starts with content type 22
/// (handshake) and major version 3. Anything else is not TLS, and a client that speaks
/// TLS speaks first, so silence past `wait` ends the tunnel too.
async fn first_bytes_are_tls<S: AsyncRead + Unpin>(agent: &mut S, wait: Duration) -> Opening {
    let mut prefix = [0u8; 2];
    let mut have = 0;
    let read = tokio::time::timeout(wait, async {
        while have < prefix.len() {
            match agent.read(&mut prefix[have..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    have += n;
                    if prefix[0] != 0x16 {
                        return true;
                    }
                }
            }
        }
        true
    })
    .await;
    match read {
        Ok(true) if prefix[..have] == [0x16, 0x03] => Opening::Tls(prefix[..have].to_vec()),
        Ok(true) => Opening::Plaintext,
        Ok(false) | Err(_) => Opening::Closed,
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn opening(bytes: &'static [u8]) -> Opening {
        let (mut agent, mut purser) = tokio::io::duplex(64);
        agent.write_all(bytes).await.unwrap();
        drop(agent);
        first_bytes_are_tls(&mut purser, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn only_a_tls_record_header_opens_the_splice() {
        assert!(matches!(opening(&[0x16, 0x03, 0x01]).await, Opening::Tls(p) if p == [0x16, 0x03]));
        assert!(matches!(
            opening(b"GET / HTTP/1.1\r\n").await,
            Opening::Plaintext
        ));
        assert!(matches!(opening(&[0x16, 0x00]).await, Opening::Plaintext));
        assert!(matches!(opening(b"G").await, Opening::Plaintext));
        assert!(matches!(opening(&[0x16]).await, Opening::Closed));
        assert!(matches!(opening(b"").await, Opening::Closed));
    }
}
