//! Redirected connections Purser cannot read, spliced to where they were going: TLS
//! without SNI and protocols other than HTTP, to destinations the policy lists under
//! `transparent.passthrough`; TLS for a `tunnel` host, as a `CONNECT` to it would be.
//!
//! Nothing here is HTTP Purser could read: a plaintext connection that opens with an
//! HTTP request is always served by the proxy's service, never spliced. So the only
//! payments that could cross a splice are inside TLS Purser was told not to open, to a
//! destination the operator named (see [`crate::policy::transparent`]).

use super::super::admission::Pass;
use super::super::agent_connections::ConnectionSlot;
use super::super::state::ProxyState;
use crate::policy::Transparent;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The `transparent.passthrough` entry `original` matches, if any, as the policy writes
/// it. A `host:port` entry matches when the host resolves to the original address.
pub(super) async fn listed(state: &ProxyState, original: SocketAddr) -> Option<String> {
    let policy = state.policy.current();
    let section: &Transparent = policy.transparent.as_ref()?;
    if let Some(entry) = section.passthrough_address(original) {
        return Some(entry.to_string());
    }
    for (host, entry) in section.named_passthrough(original.port()) {
        if resolves_to(state, host, original).await {
            return Some(entry.to_string());
        }
    }
    None
}

/// Whether `host` resolves to `original`'s address (within the connect timeout). A name
/// lets a connection through only to its own addresses: the agent picks the name it
/// sends (an SNI, a `Host`), but not where the kernel says it was going.
pub(super) async fn resolves_to(state: &ProxyState, host: &str, original: SocketAddr) -> bool {
    let wait = state.upstream.settings.connect_timeout;
    let lookup = tokio::time::timeout(wait, tokio::net::lookup_host((host, original.port())));
    match lookup.await {
        Ok(Ok(mut addresses)) => addresses.any(|address| same_ip(address.ip(), original.ip())),
        _ => false,
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Splices `agent` to `original`, which `reason` (a passthrough entry or a tunnel
/// pattern) lets through. The connection counts against the transparent agent's
/// `limits.connections_per_agent` for as long as it lasts; the address passes the egress
/// checks like any other.
pub(super) async fn splice<S>(
    state: &Arc<ProxyState>,
    mut agent: S,
    pass: &Pass,
    original: SocketAddr,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(_slot) = claim_slot(state) else {
        state.metrics.refused_connect();
        return;
    };
    // Counted as the agent's now: no longer a candidate for eviction.
    pass.authenticated();
    if let Err(error) = state.upstream.egress.check(reason, original) {
        state.metrics.refused_connect();
        tracing::warn!(%original, %error, "refusing to splice a redirected connection");
        return;
    }
    let connect = tokio::time::timeout(
        state.upstream.settings.connect_timeout,
        TcpStream::connect(original),
    );
    let mut upstream = match connect.await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            tracing::info!(%original, %error, "could not reach a passthrough destination");
            return;
        }
        Err(_) => {
            tracing::info!(%original, "connecting to a passthrough destination timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    state.metrics.tunnelled_connect();
    tracing::info!(%original, listed = reason, "splicing a redirected connection unread");
    if let Err(error) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
        tracing::debug!(%error, "passthrough closed");
    }
}

/// A slot for the transparent agent under `limits.connections_per_agent`; `None` (and a
/// log line) when the policy names no agent or the agent is at its limit.
fn claim_slot(state: &ProxyState) -> Option<ConnectionSlot> {
    let policy = state.policy.peek();
    let Some(section) = policy.transparent.as_ref() else {
        tracing::warn!("refusing a redirected connection: the policy has no `transparent` section");
        return None;
    };
    let agent = section.identity.agent.clone();
    let limit = policy.limits.connections_per_agent;
    let slot = state.agent_connections.try_claim(&agent, limit);
    if slot.is_none() {
        tracing::warn!(%agent, limit, "agent at its connection limit; refusing a passthrough");
    }
    slot
}
