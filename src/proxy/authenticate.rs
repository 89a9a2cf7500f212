//! Who is asking: the agent a request speaks for, however it arrived.
//!
//! On the agent's own connection every request is authenticated on its own
//! ([`crate::policy::AgentDirectory`]; a `CONNECT` carries the credentials for its whole
//! tunnel) and must find room under `limits.connections_per_agent`
//! ([`super::agent_connections`]). A request inside a tunnel speaks for the agent that
//! opened it. On a connection the kernel redirected, the policy's `transparent` section
//! speaks for the agent, which has no credentials to give.

use super::answering::Answering;
use super::answers::{self, ErrorCode};
use super::arrival::{AgentConnection, Arrival};
use super::state::ProxyState;
use crate::policy::transparent::SESSION_HEADER;
use crate::policy::Identity;
use http::{header, Request};

/// The identity `request` speaks for; the refusal to answer with otherwise.
pub fn identity<B>(
    state: &ProxyState,
    arrival: Arrival<'_>,
    request: &Request<B>,
) -> Result<Identity, Answering> {
    match arrival {
        Arrival::Proxy(connection) => {
            let identity = agent_with_room(state, connection, request)?;
            // No longer a candidate for eviction ([`super::admission`]).
            connection.pass.authenticated();
            Ok(identity)
        }
        Arrival::Intercepted(tunnel) | Arrival::Plaintext(tunnel) => Ok(tunnel.identity.clone()),
        Arrival::Transparent(redirected) => {
            let identity = redirected_identity(state, request)?;
            let identity = with_room(state, &redirected.connection, identity)?;
            redirected.connection.pass.authenticated();
            Ok(identity)
        }
    }
}

/// The identity of a request on a redirected connection: the policy's `transparent`
/// section, whose session `X-Purser-Session` may pick where the section allows it.
fn redirected_identity<B>(state: &ProxyState, request: &Request<B>) -> Result<Identity, Answering> {
    let policy = state.policy.peek();
    let Some(section) = policy.transparent.as_ref() else {
        tracing::warn!("refusing a redirected connection: the policy has no `transparent` section");
        return Err(answers::error(
            ErrorCode::Forbidden,
            "this connection was redirected to Purser's transparent listener, but the policy has no `transparent` section naming the agent it speaks for",
        )
        .into());
    };
    let named = request.headers().get(SESSION_HEADER).map(|v| v.as_bytes());
    let named = match named {
        Some(_) if !section.session_header => {
            tracing::warn!("ignoring X-Purser-Session: the policy's transparent section does not let agents pick a session");
            None
        }
        named => named,
    };
    section
        .identity(named)
        .map_err(|error| answers::error(ErrorCode::BadRequest, error).into())
}

/// The agent's identity, once its credentials pass and it has room for this connection.
fn agent_with_room<B>(
    state: &ProxyState,
    connection: &AgentConnection,
    request: &Request<B>,
) -> Result<Identity, Answering> {
    let policy = state.policy.peek();
    let credentials = request
        .headers()
        .get(header::PROXY_AUTHORIZATION)
        .map(|v| v.as_bytes());
    let identity = match policy.agents.authenticate(credentials) {
        Ok(identity) => identity,
        Err(error) => {
            state.metrics.auth_failure();
            tracing::info!(%error, method = %request.method(), "proxy authentication failed");
            return Err(answers::error(ErrorCode::ProxyAuthRequired, error).into());
        }
    };
    drop(policy);
    with_room(state, connection, identity)
}

/// `identity`, once its agent has room for this connection under
/// `limits.connections_per_agent`.
fn with_room(
    state: &ProxyState,
    connection: &AgentConnection,
    identity: Identity,
) -> Result<Identity, Answering> {
    let limit = state.policy.peek().limits.connections_per_agent;
    if !super::agent_connections::claim_for(
        &state.agent_connections,
        &connection.claim,
        &identity.agent,
        limit,
    ) {
        tracing::warn!(agent = %identity.agent, limit, "agent at its connection limit; refusing");
        let mut answer = answers::error(
            ErrorCode::TooManyConnections,
            format!(
                "agent `{}` already holds {limit} open connections (limits.connections_per_agent)",
                identity.agent
            ),
        );
        answer
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return Err(answer.into());
    }
    Ok(identity)
}
