//! `CONNECT`: splice the tunnel hosts the policy names, intercept everything else.
//!
//! An uninspected tunnel would be a way around governance, so a `CONNECT` is either
//! intercepted or refused unless the policy lists its host under `tunnel` (see
//! [`tunnel`] for what such a splice lets through). The leaf for the host is ready before
//! the agent is told `200`, so a host Purser cannot intercept gets a status, not a broken
//! handshake. A target named by DNS is judged against `egress` when its addresses are
//! connected to ([`super::egress`]), for the splice and for intercepted requests alike.

use super::agent_connections::ConnectionSlot;
use super::answers::{self, ErrorCode};
use super::body::{empty, ProxyBody};
use super::{mitm, tunnel, ProxyState, Target};
use crate::policy::Identity;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use rustls::pki_types::ServerName;
use std::sync::Arc;

/// Handles one `CONNECT` request from an authenticated agent.
pub async fn handle(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
    identity: Identity,
    slot: Option<ConnectionSlot>,
) -> Response<ProxyBody> {
    let target = match connect_target(&request) {
        Ok(target) => target,
        Err(reason) => return answers::error(ErrorCode::BadRequest, reason),
    };
    if state.is_own_address(&target) {
        state.metrics.refused_connect();
        return answers::error(
            ErrorCode::Forbidden,
            "Purser's own listeners are not reachable through the proxy",
        );
    }
    let policy = state.policy.current();
    if let Some(reason) = policy.egress_refusal(&target.host, target.port) {
        state.metrics.refused_connect();
        tracing::warn!(target = %target.display(), %reason, "refusing CONNECT");
        return answers::error(ErrorCode::Forbidden, reason);
    }
    if let Some(entry) = policy.tunnel_entry(&target.host, target.port) {
        return tunnel::open(state, request, target, entry.clone(), slot).await;
    }
    let tls_config = match state.leaves.server_config(&target.host) {
        Ok(config) => config,
        Err(error) => {
            state.metrics.refused_connect();
            tracing::warn!(target = %target.display(), %error, "refusing CONNECT: cannot intercept");
            return answers::error(
                ErrorCode::CannotIntercept,
                format!("cannot intercept {}: {error}", target.display()),
            );
        }
    };
    state.metrics.intercepted_connect();
    let on_upgrade = hyper::upgrade::on(request);
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            // Held for as long as the interception serves the agent.
            let _slot = slot;
            match on_upgrade.await {
                Ok(upgraded) => mitm::serve(state, upgraded, target, identity, tls_config).await,
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        },
        span,
    ));
    ok_response()
}

/// `200` to a `CONNECT`: the tunnel is open.
pub(super) fn ok_response() -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::OK;
    response
}

/// The `host:port` a `CONNECT` names, checked to be something a certificate can name.
fn connect_target(request: &Request<Incoming>) -> Result<Target, String> {
    let authority = request
        .uri()
        .authority()
        .ok_or("CONNECT needs an authority-form target, host:port")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority
        .port_u16()
        .ok_or("CONNECT target needs a port, host:port")?;
    if port == 0 {
        return Err("CONNECT target port 0 is not valid".to_string());
    }
    ServerName::try_from(host)
        .map_err(|_| format!("CONNECT target `{host}` is not a valid host name"))?;
    Ok(Target {
        https: true,
        host: host.to_ascii_lowercase(),
        port,
    })
}
