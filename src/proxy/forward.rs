//! Sending one request upstream and streaming the answer back.
//!
//! This is the single exit of the data path: plain `http://` requests and requests inside
//! intercepted TLS both leave here, so header hygiene and error reporting are the same for
//! both.

use super::answers::{self, ErrorCode};
use super::body::{with_idle_timeout, ProxyBody};
use super::headers::{is_upgrade_request, strip_hop_by_hop};
use super::upstream::classify;
use super::{ProxyState, Target};
use http::{header, Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// Forwards `request` to `target` and returns what the agent should see.
pub async fn forward(
    state: &Arc<ProxyState>,
    mut request: Request<ProxyBody>,
    target: &Target,
) -> Response<ProxyBody> {
    let upgrade = is_upgrade_request(request.headers());
    let agent_upgrade = upgrade
        .then(|| request.extensions_mut().remove::<OnUpgrade>())
        .flatten();
    if let Err(reason) = prepare_request(&mut request, target, upgrade) {
        return answers::error(ErrorCode::BadRequest, reason);
    }
    let client = if upgrade {
        &state.upstream.http1_client
    } else {
        &state.upstream.client
    };
    let mut response = match client.request(request).await {
        Ok(response) => response,
        Err(error) => {
            let failure = classify(&error, &target.display());
            state.metrics.upstream_error(failure.code);
            tracing::warn!(target = %target.display(), reason = %failure.detail, "upstream request failed");
            return answers::error(failure.code, failure.detail);
        }
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match (
            agent_upgrade,
            response.extensions_mut().remove::<OnUpgrade>(),
        ) {
            (Some(agent_side), Some(upstream_side)) => splice_upgrade(agent_side, upstream_side),
            _ => {
                return answers::error(
                    ErrorCode::UpstreamFailed,
                    "upstream switched protocols without an upgrade request",
                )
            }
        }
    }
    strip_hop_by_hop(response.headers_mut(), switching);
    let idle = state.settings.body_idle_timeout;
    response.map(|body| with_idle_timeout(body, idle))
}

/// Rewrites the request for the upstream leg: absolute URI for the target, HTTP/1.1 as
/// the logical version (the client picks the wire version), no hop-by-hop headers.
fn prepare_request(
    request: &mut Request<ProxyBody>,
    target: &Target,
    upgrade: bool,
) -> Result<(), String> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let scheme = if target.https { "https" } else { "http" };
    let uri: Uri = format!("{scheme}://{}{path_and_query}", target.uri_authority())
        .parse()
        .map_err(|e| format!("cannot build the upstream URI: {e}"))?;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    // The client derives Host (HTTP/1.1) or :authority (HTTP/2) from the target URI, so
    // what reaches the upstream always names the host Purser checked.
    headers.remove(header::HOST);
    Ok(())
}

/// Joins the agent's and the upstream's upgraded connections once both sides switch.
fn splice_upgrade(agent_side: OnUpgrade, upstream_side: OnUpgrade) {
    tokio::spawn(async move {
        let (agent, upstream) = match tokio::try_join!(agent_side, upstream_side) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "protocol upgrade did not complete");
                return;
            }
        };
        let mut agent = TokioIo::new(agent);
        let mut upstream = TokioIo::new(upstream);
        if let Err(error) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
            tracing::debug!(%error, "upgraded connection ended");
        }
    });
}
