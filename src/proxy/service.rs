//! The proxy's one service: every request, however it arrived ([`Arrival`]), passes the
//! same stack of layers, composed in [`serve`] and nowhere else.
//!
//! The agent's own connection ([`super::server`]) calls it for each request; a `CONNECT`
//! that Purser intercepts ([`super::connect`], [`super::mitm`]) calls it again for each
//! request inside the tunnel, with the tunnel as the arrival. The transparent listener
//! ([`super::transparent`]) calls it for each request on a connection the kernel
//! redirected. The connection servers
//! know nothing of policy, the engine or the upstream; the layers here know nothing of
//! sockets, TLS or how the bytes were framed.
//!
//! Before the first request, two layers run on the agent's connection itself, in
//! [`super::server`]: admission (the connection cap and the cap on unauthenticated
//! connections per peer, [`super::admission`]) and the first-byte timeout.

use super::answering::Answering;
use super::arrival::Arrival;
use super::body::request_body;
use super::forward::Exchange;
use super::headers::detach_head;
use super::pinned::OriginalDestination;
use super::state::ProxyState;
use super::{authenticate, connect, destination};
use crate::policy::transparent::SESSION_HEADER;
use http::{Method, Request};
use hyper::body::Incoming;
use std::sync::Arc;
use tracing::Instrument;

/// One request through the stack, outermost layer first. What is known at once (a
/// refusal) is answered here, synchronously, as hyper hands the request over; what has
/// to wait (a tunnel, the engine, the upstream) runs in the returned future, inside the
/// request's span.
pub fn serve(
    state: &Arc<ProxyState>,
    arrival: Arrival<'_>,
    mut request: Request<Incoming>,
) -> Answering {
    // Detector, on the head: does the request carry a payment, a payment credential or
    // one of Purser's control headers ([`crate::detect`])? Such a request may be held
    // for minutes, so its head lets go of hyper's read buffer now, before hyper reads
    // the connection again, and hyper can reuse the buffer.
    let governed = crate::detect::inspects(request.headers());
    if governed {
        detach_head(&mut request);
    }
    // Identity: the agent's credentials on its own connection, with room under
    // `connections_per_agent`; inside a tunnel, the agent that opened it.
    let identity = match authenticate::identity(state, arrival, &request) {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    // Span: every line the request logs says which agent session it belongs to.
    let span = tracing::debug_span!("request", session = %identity);
    // Destination: never Purser itself, allowed by `egress`, no payment to an untrusted
    // `tunnel` host; inside a tunnel, only the tunnel's host.
    let target = match span.in_scope(|| destination::of(state, arrival, &request)) {
        Ok(target) => target,
        Err(refusal) => return refusal,
    };
    // Tunnel: a `CONNECT` is spliced or intercepted; each request inside an intercepted
    // tunnel comes back to `serve`, as `Arrival::Intercepted` or `Arrival::Plaintext`.
    if let (Arrival::Proxy(connection), &Method::CONNECT) = (arrival, request.method()) {
        let slot = connection.take_slot();
        let tunnel = connect::open(state.clone(), request, target, identity, slot, serve);
        return Answering::later(tunnel.instrument(span));
    }
    // Transparent: the request goes to the address the agent's connection was going to
    // ([`super::pinned`]); the header that picked its session stays here.
    if let Arrival::Transparent(redirected) = arrival {
        request.headers_mut().remove(SESSION_HEADER);
        let original = OriginalDestination(redirected.original);
        request.extensions_mut().insert(original);
    }
    // Metrics: a request counted, by the scheme it leaves with.
    state.metrics.request(target.https);

    let scheme = arrival.scheme();
    let idle = state.settings.body_idle_timeout;
    let mut request = request.map(|body| request_body(body, idle));
    let mut exchange = Exchange::new(state.clone(), identity, target, &request);
    // What waits is one async block over owned inputs, not a chain of async fns (each
    // would keep the request again, rust-lang/rust#62958): a held payment's connection
    // keeps this future for the whole hold.
    let answering = async move {
        let response = 'answered: {
            // Protocol switches: only WebSocket passes; `h2c` or a `CONNECT` inside a
            // tunnel would carry requests Purser never sees.
            if let Some(refusal) = exchange.refuse_switch(request.headers()) {
                break 'answered refusal;
            }
            // Detector, on the body: an MCP tool call is read whole (its payment goes to
            // the engine); any other payment in a JSON body is refused before anything
            // leaves, or the body is cut off before the chunk that carries it.
            let watch = match exchange.inspect_body(&mut request).await {
                Ok(watch) => watch,
                Err(refusal) => break 'answered refusal,
            };
            // Decision: a request the detector flagged (on its head, or an MCP tool call
            // with a payment in its body) goes through the engine, which forwards it
            // with a ticket, holds it, or answers it.
            let mut ticket = None;
            if governed || exchange.carries_body_payment() {
                match exchange.decide(&mut request).await {
                    Ok(granted) => ticket = granted,
                    Err(answer) => break 'answered answer,
                }
            }
            // Forwarding: hop-by-hop headers and credentials stripped, sent upstream,
            // the answer streamed back; the ticket is settled by the answer.
            let response = exchange.send(request, ticket).await;
            // Answer: a payment found in the streamed body, a failed transaction step,
            // a `402`'s challenge to remember.
            exchange.inspect_answer(response, watch).await
        };
        // Access log: one line per request.
        exchange.log_access(scheme, response.status());
        response
    };
    Answering::later(answering.instrument(span))
}
