//! The engine and the upstream: the layers of the service ([`super::service`]) that run
//! once a request's destination is known, for one request however it arrived.
//!
//! This is the single exit of the data path: plain `http://` requests and requests inside
//! tunnels all leave here ([`Exchange::send`]), so header hygiene, the engine's part and
//! error reporting are the same for every one. The layers are composed in
//! [`super::service::serve`]; each is a method of [`Exchange`] here.

use super::answers::{self, ErrorCode};
use super::body::{buffer_bounded, full, with_idle_timeout, Buffered, ProxyBody};
use super::headers::{is_upgrade_request, strip_hop_by_hop};
use super::inspect_body::{self, BodyWatch, Inspected};
use super::mcp_answer;
use super::pinned::OriginalDestination;
use super::render;
use super::render_jsonrpc::{self, MCP_SESSION_HEADER};
use super::state::ProxyState;
use super::target::Target;
use super::upstream::classify;
use crate::detect::mcp::McpCall;
use crate::engine::{Gate, Refusal, RequestFacts, Ticket, TRANSACTION_HEADER};
use crate::policy::Identity;
use crate::x402;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use jsonrpsee_types::Id;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One request on its way through the engine and upstream, and what its later layers
/// need to know about it.
///
/// The service's future keeps this for as long as the request lives (minutes, for a
/// held payment), so every step that needs room of its own is boxed, each only on the
/// path that takes it, and a step that takes the request by value is boxed at once:
/// an async fn keeps its by-value arguments beside the locals they are moved into
/// (rust-lang/rust#62958).
pub struct Exchange {
    state: Arc<ProxyState>,
    identity: Identity,
    target: Target,
    method: Method,
    uri: Uri,
    /// What the engine is told. They cost allocations, so they are built only once a
    /// payment, a control header or a `402` needs them: ordinary reads never do.
    facts: Option<RequestFacts>,
    /// The MCP tool call the body is (x402 over MCP), once the body was read.
    mcp: Option<McpCall>,
    /// The call's `mcp-session-id`, echoed on Purser's own answers to it.
    mcp_session: Option<HeaderValue>,
}

impl Exchange {
    pub fn new<B>(
        state: Arc<ProxyState>,
        identity: Identity,
        target: Target,
        request: &Request<B>,
    ) -> Self {
        Exchange {
            state,
            identity,
            target,
            method: request.method().clone(),
            uri: request.uri().clone(),
            facts: None,
            mcp: None,
            mcp_session: None,
        }
    }

    /// Whether the body carries a payment for the engine (an MCP call's `_meta`).
    pub fn carries_body_payment(&self) -> bool {
        self.mcp.as_ref().is_some_and(|call| call.payment.is_some())
    }

    /// The refusal of a protocol switch other than WebSocket ([`super::upgrade`]).
    pub fn refuse_switch(&self, headers: &HeaderMap) -> Option<Response<ProxyBody>> {
        let reason = super::upgrade::request_refusal(&self.method, headers)?;
        self.state.metrics.wire.upgrade_refused();
        tracing::info!(%reason, "refusing a protocol switch");
        Some(answers::error(ErrorCode::UpgradeRefused, reason))
    }

    /// The request body, looked at for payments before it leaves ([`inspect_body`]): a
    /// JSON body's start is read and scanned first, the rest as it streams; any other
    /// body streams through the scanner unheld. A payment found in the start is refused
    /// by the engine, with nothing sent; the watch tells of one found later.
    pub async fn inspect_body(
        &mut self,
        request: &mut Request<ProxyBody>,
    ) -> Result<Option<BodyWatch>, Response<ProxyBody>> {
        if !inspect_body::worth_reading(request) {
            return Ok(inspect_body::watch_undeclared(request));
        }
        let refused = match Box::pin(inspect_body::inspect(request)).await {
            Inspected::Forward(streaming) => return Ok(streaming),
            Inspected::Call(call) => {
                self.mcp_session = request.headers().get(MCP_SESSION_HEADER).cloned();
                self.mcp = Some(call);
                return Ok(None);
            }
            Inspected::Failed(answer) => return Err(answer),
            Inspected::Refuse(refused) => refused,
        };
        self.mcp_session = request.headers().get(MCP_SESSION_HEADER).cloned();
        let (state, facts) = self.facts();
        let refusal = Box::pin(state.engine.refuse_undecidable(facts, refused.undecidable)).await;
        Err(self.render(&refusal, refused.id.as_ref()))
    }

    /// The engine's decision on a request that carries a payment or one of Purser's
    /// control headers: forward it (with the ticket its answer settles), or answer now.
    pub async fn decide(
        &mut self,
        request: &mut Request<ProxyBody>,
    ) -> Result<Option<Box<Ticket>>, Response<ProxyBody>> {
        // The facts name the call's tool: built before the call is lent to the engine.
        self.facts_mut();
        let call = self.mcp.take();
        let (state, inspected) = self.facts_for(request.headers());
        let payment = call.as_ref().and_then(|c| c.payment.as_ref());
        let gate = Box::pin(
            state
                .engine
                .on_request(inspected, request.headers_mut(), payment),
        )
        .await;
        self.mcp = call;
        match gate {
            Gate::Forward(granted) => Ok(granted),
            Gate::Refuse(refusal) => Err(self.render(&refusal, None)),
        }
    }

    /// A refusal as the agent reads it: for an MCP tool call (or a body that named its
    /// JSON-RPC id), the JSON-RPC tool result MCP clients show the model
    /// ([`render_jsonrpc`]); otherwise plain HTTP ([`render`]).
    fn render(&self, refusal: &Refusal, id: Option<&Id<'static>>) -> Response<ProxyBody> {
        match id.or(self.mcp.as_ref().map(|call| &call.id)) {
            Some(id) => render_jsonrpc::tool_refusal(refusal, id, self.mcp_session.as_ref()),
            None => render::refusal(refusal),
        }
    }

    /// The request sent upstream and the upstream's answer, its headers cleaned and its
    /// body under the idle timeout; the ticket is settled by the answer.
    pub fn send(
        &self,
        request: Request<ProxyBody>,
        ticket: Option<Box<Ticket>>,
    ) -> Pin<Box<impl Future<Output = Response<ProxyBody>> + Send + '_>> {
        Box::pin(send(
            &self.state,
            request,
            &self.target,
            self.facts.as_ref(),
            ticket,
            self.mcp.as_ref().map(|call| &call.id),
        ))
    }

    /// The answer, looked at before the agent gets it: a payment the body scanner found
    /// after the body began to stream is refused (the upstream request was cut off
    /// before it left); a failed step of a transaction is reported; a `402`'s challenge
    /// is remembered for the payment that answers it. Most answers need none of it and
    /// pass at once.
    pub fn inspect_answer(
        &mut self,
        response: Response<ProxyBody>,
        watch: Option<BodyWatch>,
    ) -> Step<'_, Response<ProxyBody>> {
        if let Some(found) = watch.as_ref().and_then(BodyWatch::found) {
            let (state, facts) = self.facts();
            return Step::Later(Box::pin(async move {
                render::refusal(&state.engine.refuse_undecidable(facts, found).await)
            }));
        }
        let unpaid_call = self
            .mcp
            .as_ref()
            .filter(|call| call.payment.is_none())
            .map(|call| call.id.clone());
        if let Some(id) = unpaid_call.filter(|_| mcp_answer::readable(&response)) {
            // Its answer may carry a challenge for the tool.
            let state = self.state.clone();
            let facts = self.facts().1.clone();
            return Step::Now(Some(mcp_answer::remembering(state, facts, id, response)));
        }
        let in_transaction = self.facts.as_ref().is_some_and(|f| f.transaction.is_some());
        if in_transaction && response.status().is_server_error() {
            // A 5xx is no `402`: once the engine is told, the answer goes on.
            let (state, facts) = (&self.state, self.facts.as_ref());
            return Step::Later(Box::pin(async move {
                if let Some(facts) = facts {
                    let status = response.status();
                    state.engine.transaction_failed(facts, status).await;
                }
                response
            }));
        }
        if response.status() != StatusCode::PAYMENT_REQUIRED {
            return Step::Now(Some(response));
        }
        let (state, facts) = self.facts();
        Step::Later(Box::pin(observe_challenge(state, facts, response)))
    }

    /// One line per request, tagged with its session: at DEBUG for ordinary answers (a
    /// line per request at INFO would cost a fifth of the plain path's throughput), at
    /// INFO when the answer is a server-side failure.
    pub fn log_access(&self, scheme: &str, status: StatusCode) {
        let (identity, method) = (&self.identity, &self.method);
        let (host, path) = (&self.target.host, self.uri.path());
        if status.is_server_error() {
            tracing::info!(session = %identity, %method, host, path, status = status.as_u16(), scheme, "request failed upstream");
        } else {
            tracing::debug!(session = %identity, %method, host, path, status = status.as_u16(), scheme, "request");
        }
    }

    /// The facts, built on first use, beside the state whose engine is told them.
    fn facts(&mut self) -> (&Arc<ProxyState>, &RequestFacts) {
        let (state, facts) = self.facts_mut();
        (state, facts)
    }

    /// The facts with the request's `X-Purser-Transaction`, for the engine's decision.
    fn facts_for(&mut self, headers: &HeaderMap) -> (&Arc<ProxyState>, &RequestFacts) {
        let (state, facts) = self.facts_mut();
        facts.transaction = headers
            .get(TRANSACTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect());
        (state, facts)
    }

    fn facts_mut(&mut self) -> (&Arc<ProxyState>, &mut RequestFacts) {
        let Exchange {
            state,
            identity,
            target,
            method,
            uri,
            facts,
            mcp,
            ..
        } = self;
        let facts = facts.get_or_insert_with(|| {
            let mut facts = request_facts(identity, target, method, uri);
            facts.mcp_tool = mcp.as_ref().map(|call| call.tool.clone());
            facts
        });
        (state, facts)
    }
}

/// A layer's result: at once, with nothing allocated (the common case), or after a
/// wait that is boxed because it needs room of its own (see [`Exchange`]).
pub enum Step<'a, T> {
    Now(Option<T>),
    Later(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<T: Unpin> Future for Step<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Step::Now(ready) => match ready.take() {
                Some(value) => Poll::Ready(value),
                None => panic!("a Step polled after it completed"),
            },
            Step::Later(waiting) => waiting.as_mut().poll(cx),
        }
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
        mcp_tool: None,
    }
}

async fn send(
    state: &Arc<ProxyState>,
    mut request: Request<ProxyBody>,
    target: &Target,
    facts: Option<&RequestFacts>,
    ticket: Option<Box<Ticket>>,
    mcp_call: Option<&Id<'static>>,
) -> Response<ProxyBody> {
    let upgrade = is_upgrade_request(request.headers());
    let agent_upgrade = upgrade
        .then(|| request.extensions_mut().remove::<OnUpgrade>())
        .flatten();
    if let Err(reason) = prepare_request(&mut request, target, upgrade) {
        return answers::error(ErrorCode::BadRequest, reason);
    }
    // From the transparent listener: to the address the agent's connection was going to.
    let pinned = request.extensions().get::<OriginalDestination>().copied();
    let client = match pinned {
        Some(OriginalDestination(address)) => {
            std::borrow::Cow::Owned(state.upstream.pinned_client(address, upgrade))
        }
        None => std::borrow::Cow::Borrowed(state.upstream.agent_client(upgrade)),
    };
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
    let idle = state.settings.body_idle_timeout;
    let (Some(ticket), Some(facts)) = (ticket, facts) else {
        return response.map(|body| with_idle_timeout(body, idle));
    };
    if let Some(id) = mcp_call.filter(|_| mcp_answer::readable(&response)) {
        // A paid MCP tool call: the receipt is in the JSON-RPC response, read as the
        // body streams ([`mcp_answer`]).
        state.engine.answer_headers(&ticket, response.headers_mut());
        let response = response.map(|body| with_idle_timeout(body, idle));
        return mcp_answer::settling(state.clone(), facts.clone(), id.clone(), *ticket, response);
    }
    let status = response.status();
    state
        .engine
        .on_response(facts, *ticket, status, response.headers_mut())
        .await;
    response.map(|body| with_idle_timeout(body, idle))
}

/// Remembers the challenge of a `402` and passes the answer through unchanged. v2 puts
/// it in a header; v1 in the body, which is read (up to a bound) and sent on as it came.
/// MPP's challenges (`WWW-Authenticate: Payment`) are remembered beside either.
async fn observe_challenge(
    state: &Arc<ProxyState>,
    facts: &RequestFacts,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    observe_mpp_challenges(state, facts, response.headers()).await;
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

/// Remembers the `Payment` challenges of a `402`'s `WWW-Authenticate` fields, if any.
async fn observe_mpp_challenges(
    state: &Arc<ProxyState>,
    facts: &RequestFacts,
    headers: &HeaderMap,
) {
    let values = headers.get_all(header::WWW_AUTHENTICATE);
    if values.iter().next().is_none() {
        return;
    }
    let parsed = crate::mpp::parse_www_authenticate(values.iter().map(|v| v.as_bytes()));
    for error in &parsed.errors {
        tracing::warn!(%error, "unreadable MPP challenge; a credential answering it will be refused");
    }
    if !parsed.challenges.is_empty() {
        state
            .engine
            .on_mpp_challenges(facts, &parsed.challenges)
            .await;
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
