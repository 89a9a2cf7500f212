//! Sending one request upstream and streaming the answer back.
//!
//! This is the single exit of the data path: plain `http://` requests and requests inside
//! intercepted TLS both leave here, so header hygiene and error reporting are the same for
//! both.

use super::answers::{self, ErrorCode};
use super::body::{buffer_bounded, full, request_body, with_idle_timeout, Buffered, ProxyBody};
use super::headers::{detach_head, is_upgrade_request, strip_hop_by_hop};
use super::inspect_body::{self, BodyWatch, Inspected};
use super::render;
use super::upstream::classify;
use super::{ProxyState, Target};
use crate::engine::{Engine, Gate, RequestFacts, Ticket, TRANSACTION_HEADER};
use crate::policy::Identity;
use crate::x402;
use http::{header, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// Run by the agent connection's service closure, synchronously as hyper hands the request
/// over and before hyper reads the connection again: a request the engine may hold lets go
/// of hyper's read buffer here, so hyper can reuse it (see [`detach_head`]).
pub fn detach_governed_head<B>(request: &mut Request<B>) {
    if Engine::inspects(request.headers()) {
        detach_head(request);
    }
}

/// An agent's request, its body under the idle timeout, through the engine and upstream,
/// then its access line. A request that carries a payment goes through the engine first,
/// and its answer settles it.
///
/// This is the future a held payment's connection keeps for the whole hold, so it is an
/// async block over owned inputs rather than a chain of async fns: each async fn keeps its
/// by-value arguments beside the locals they are moved into (rust-lang/rust#62958), and a
/// chain of them stored the request three times. Here the request is stored once; the
/// steps that need more room (`on_request`, `send`, `observe_challenge`) are boxed, each
/// only on the path that takes it.
pub fn forward_logged(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
    target: Target,
    identity: Identity,
    scheme: &'static str,
) -> impl std::future::Future<Output = Response<ProxyBody>> + Send + 'static {
    let idle = state.settings.body_idle_timeout;
    let mut request = request.map(|body| request_body(body, idle));
    async move {
        let method = request.method().clone();
        let uri = request.uri().clone();
        // Facts cost allocations; ordinary reads never need them unless a 402 comes back.
        let mut facts = None;
        let response = 'answered: {
            if let Some(reason) = super::upgrade::request_refusal(&method, request.headers()) {
                state.metrics.wire.upgrade_refused();
                tracing::info!(%reason, "refusing a protocol switch");
                break 'answered answers::error(ErrorCode::UpgradeRefused, reason);
            }
            // A JSON body may carry a payment (MCP): its start is read before anything
            // leaves, the rest is scanned as it streams; any other body streams through
            // the scanner unheld (`inspect_body`).
            let watch = if inspect_body::worth_reading(&request) {
                match Box::pin(inspect_body::inspect(&mut request)).await {
                    Inspected::Forward(streaming) => streaming,
                    Inspected::Refuse(refusal) => {
                        let facts = facts.insert(request_facts(&identity, &target, &method, &uri));
                        let refused =
                            Box::pin(state.engine.refuse_undecidable(facts, refusal)).await;
                        break 'answered render::refusal(&refused);
                    }
                    Inspected::Failed(answer) => break 'answered answer,
                }
            } else {
                inspect_body::watch_undeclared(&mut request)
            };
            let mut ticket = None;
            if Engine::inspects(request.headers()) {
                let inspected = facts.insert(request_facts(&identity, &target, &method, &uri));
                inspected.transaction = request
                    .headers()
                    .get(TRANSACTION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(128).collect());
                match Box::pin(state.engine.on_request(inspected, request.headers_mut())).await {
                    Gate::Forward(granted) => ticket = granted,
                    Gate::Refuse(refusal) => break 'answered render::refusal(&refusal),
                }
            }
            let response = Box::pin(send(&state, request, &target, facts.as_ref(), ticket)).await;
            if let Some(found) = watch.as_ref().and_then(BodyWatch::found) {
                // The upstream request was cut off before the payment left.
                let facts =
                    facts.get_or_insert_with(|| request_facts(&identity, &target, &method, &uri));
                let refused = Box::pin(state.engine.refuse_undecidable(facts, found)).await;
                break 'answered render::refusal(&refused);
            }
            if let Some(facts) = facts.as_ref().filter(|f| f.transaction.is_some()) {
                if response.status().is_server_error() {
                    // Boxed: this future is kept for a whole hold, and this path is rare.
                    Box::pin(state.engine.transaction_failed(facts, response.status())).await;
                }
            }
            if response.status() != StatusCode::PAYMENT_REQUIRED {
                break 'answered response;
            }
            let facts =
                facts.get_or_insert_with(|| request_facts(&identity, &target, &method, &uri));
            Box::pin(observe_challenge(&state, facts, response)).await
        };
        super::log_access(
            scheme,
            &identity,
            &method,
            &target.host,
            uri.path(),
            response.status(),
        );
        response
    }
}

fn request_facts(
    identity: &Identity,
    target: &Target,
    method: &http::Method,
    uri: &Uri,
) -> RequestFacts {
    RequestFacts {
        identity: identity.clone(),
        method: method.to_string(),
        host: target.host.clone(),
        port: target.port,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        transaction: None,
    }
}

async fn send(
    state: &Arc<ProxyState>,
    mut request: Request<ProxyBody>,
    target: &Target,
    facts: Option<&RequestFacts>,
    ticket: Option<Box<Ticket>>,
) -> Response<ProxyBody> {
    let upgrade = is_upgrade_request(request.headers());
    let agent_upgrade = upgrade
        .then(|| request.extensions_mut().remove::<OnUpgrade>())
        .flatten();
    if let Err(reason) = prepare_request(&mut request, target, upgrade) {
        return answers::error(ErrorCode::BadRequest, reason);
    }
    let client = state.upstream.agent_client(upgrade);
    let mut response = match client.request(request).await {
        Ok(response) => response,
        Err(error) => {
            if let (Some(ticket), Some(facts)) = (ticket, facts) {
                // A connect error means the request, and its payment, never left.
                state
                    .engine
                    .on_upstream_failure(facts, *ticket, !error.is_connect());
            }
            let failure = classify(&error, &target.display());
            state.metrics.upstream_error(failure.code);
            tracing::warn!(target = %target.display(), reason = %failure.detail, "upstream request failed");
            return answers::error(failure.code, failure.detail);
        }
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        // Only a switch to WebSocket is spliced (`upgrade`).
        let refused = super::upgrade::switch_refusal(response.headers());
        match (
            refused,
            agent_upgrade,
            response.extensions_mut().remove::<OnUpgrade>(),
        ) {
            (None, Some(agent_side), Some(upstream_side)) => {
                splice_upgrade(agent_side, upstream_side)
            }
            (refused, ..) => {
                if let (Some(ticket), Some(facts)) = (ticket, facts) {
                    // The payment left with the handshake: its outcome is unknown.
                    state.engine.on_upstream_failure(facts, *ticket, true);
                }
                let reason = refused.unwrap_or_else(|| {
                    "upstream switched protocols without an upgrade request".to_string()
                });
                tracing::warn!(%reason, "not splicing a protocol switch");
                return answers::error(ErrorCode::UpstreamFailed, reason);
            }
        }
    }
    strip_hop_by_hop(response.headers_mut(), switching);
    if let (Some(ticket), Some(facts)) = (ticket, facts) {
        let status = response.status();
        state
            .engine
            .on_response(facts, *ticket, status, response.headers_mut())
            .await;
    }
    let idle = state.settings.body_idle_timeout;
    response.map(|body| with_idle_timeout(body, idle))
}

/// Remembers the challenge of a `402` and passes the answer through unchanged. v2 puts
/// it in a header; v1 in the body, which is read (up to a bound) and sent on as it came.
async fn observe_challenge(
    state: &Arc<ProxyState>,
    facts: &RequestFacts,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if let Some(value) = response.headers().get("payment-required") {
        match x402::parse_challenge_v2_header(value.as_bytes()) {
            Ok(challenge) => state.engine.on_challenge(facts, challenge).await,
            Err(error) => {
                tracing::warn!(%error, "unreadable PAYMENT-REQUIRED challenge; passing it through unremembered")
            }
        }
        return response;
    }
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > x402::MAX_CHALLENGE_BODY_BYTES) {
        tracing::warn!(length = ?declared, "402 body over the challenge bound; passing it through unremembered");
        return response;
    }
    let (parts, body) = response.into_parts();
    match buffer_bounded(body, x402::MAX_CHALLENGE_BODY_BYTES).await {
        Buffered::Complete(bytes) => {
            match x402::parse_challenge_v1_body(&bytes) {
                Ok(challenge) => state.engine.on_challenge(facts, challenge).await,
                Err(error) => tracing::info!(%error, "402 body is not a v1 x402 challenge"),
            }
            Response::from_parts(parts, full(bytes))
        }
        Buffered::Partial(body) => {
            tracing::warn!("402 body over the challenge bound; passing it through unremembered");
            Response::from_parts(parts, body)
        }
        Buffered::Failed(error) => {
            tracing::warn!(%error, "402 body could not be read");
            answers::error(
                ErrorCode::UpstreamFailed,
                format!("the upstream's 402 answer broke off: {error}"),
            )
        }
    }
}

/// Rewrites the request for the upstream leg: absolute URI for the target, HTTP/1.1 as
/// the logical version (the client picks the wire version), no hop-by-hop headers.
fn prepare_request(
    request: &mut Request<ProxyBody>,
    target: &Target,
    upgrade: bool,
) -> Result<(), String> {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(if target.https {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(
        target
            .uri_authority()
            .parse()
            .map_err(|e| format!("cannot build the upstream URI: {e}"))?,
    );
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() =
        Uri::from_parts(parts).map_err(|e| format!("cannot build the upstream URI: {e}"))?;
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
