//! `CONNECT`: splice the tunnel hosts the policy names, intercept everything else.
//!
//! An uninspected tunnel would be a way around governance, so a `CONNECT` is either
//! intercepted or refused unless the policy lists its host under `tunnel`. The leaf for
//! the host is ready before the agent is told `200`, so a host Purser cannot intercept
//! gets a status, not a broken handshake.

use super::answers::{self, ErrorCode};
use super::body::{empty, ProxyBody};
use super::upstream::classify;
use super::{mitm, ProxyState, Target};
use crate::policy::Identity;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Handles one `CONNECT` request from an authenticated agent.
pub async fn handle(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
    identity: Identity,
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
    if policy.is_tunnel(&target.host, target.port) {
        return open_tunnel(state, request, target).await;
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
            match on_upgrade.await {
                Ok(upgraded) => mitm::serve(state, upgraded, target, identity, tls_config).await,
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        },
        span,
    ));
    ok_response()
}

/// Splices a `tunnel` host. The upstream connection is made first so that a dead host is
/// a `502`, as it would be for any other request.
async fn open_tunnel(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
    target: Target,
) -> Response<ProxyBody> {
    let address = target.display();
    let connect = tokio::time::timeout(
        state.upstream.settings.connect_timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await;
    let mut upstream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            let failure = classify(&error, &address);
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
    tracing::info!(target = %address, "splicing tunnel host without interception");
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut agent = TokioIo::new(upgraded);
        if let Err(error) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
            tracing::debug!(%error, "tunnel closed");
        }
    });
    ok_response()
}

fn ok_response() -> Response<ProxyBody> {
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
