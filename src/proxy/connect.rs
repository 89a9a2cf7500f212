//! `CONNECT`: splice the tunnel hosts the policy names, intercept everything else.
//!
//! An uninspected tunnel would be a way around governance, so a `CONNECT` is either
//! intercepted or refused unless the policy lists its host under `tunnel` (see
//! [`tunnel`] for what such a splice lets through). The leaf for the host is ready before
//! the agent is told `200`, so a host Purser cannot intercept gets a status, not a broken
//! handshake. The target passed the destination checks before it gets here
//! ([`super::destination`]); a target named by DNS is judged against `egress` again when
//! its addresses are connected to ([`super::egress`]), for the splice and for intercepted
//! requests alike.

use super::agent_connections::ConnectionSlot;
use super::answers::{self, ErrorCode};
use super::arrival::{Service, Tunnel};
use super::body::ProxyBody;
use super::state::ProxyState;
use super::target::Target;
use super::{mitm, tunnel};
use crate::policy::Identity;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// Opens the tunnel an authenticated agent asked for: a splice, or an interception whose
/// requests go to `service`. The answer is the agent's `200` (or why not).
pub async fn open(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
    target: Target,
    identity: Identity,
    slot: Option<ConnectionSlot>,
    service: Service,
) -> Response<ProxyBody> {
    let entry = state
        .policy
        .peek()
        .tunnel_entry(&target.host, target.port)
        .cloned();
    if let Some(entry) = entry {
        return tunnel::open(state, request, target, entry, slot).await;
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
                Ok(upgraded) => {
                    let tunnel = Tunnel { target, identity };
                    mitm::serve(state, upgraded, tunnel, tls_config, service).await
                }
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        },
        span,
    ));
    answers::tunnel_open()
}
