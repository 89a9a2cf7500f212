//! The upstream client as the [`ChainRpc`] chain reconciliation is given: each `eth_call`
//! one JSON-RPC POST to the node the policy names, its answer read up to a bound. It
//! leaves through the internal client: the node is the operator's, like the webhook.

use super::body::full;
use super::upstream::UpstreamClient;
use crate::chain_rpc::jsonrpc::{eth_call_request, eth_call_result, MAX_ANSWER_BYTES};
use crate::chain_rpc::{CallResult, ChainRpc, EthCall, RpcError};
use http::{header, Method, Request};
use http_body_util::{BodyExt, Limited};
use std::sync::atomic::{AtomicU64, Ordering};

/// `eth_call`s over the upstream client, each with its own JSON-RPC id.
pub struct ChainClient {
    client: UpstreamClient,
    next_id: AtomicU64,
}

impl ChainClient {
    pub fn new(client: UpstreamClient) -> Self {
        ChainClient {
            client,
            next_id: AtomicU64::new(1),
        }
    }
}

impl ChainRpc for ChainClient {
    fn eth_call<'a>(&'a self, call: EthCall<'a>) -> CallResult<'a> {
        Box::pin(async move {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let request = Request::builder()
                .method(Method::POST)
                .uri(call.url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json")
                .header(
                    header::USER_AGENT,
                    concat!("purser/", env!("CARGO_PKG_VERSION")),
                )
                .body(full(eth_call_request(id, &call.to, call.data)))
                .map_err(|error| RpcError::Unreachable(error.to_string()))?;
            let response =
                self.client.request(request).await.map_err(|error| {
                    RpcError::Unreachable(super::upstream::describe_chain(&error))
                })?;
            if !response.status().is_success() {
                return Err(RpcError::Status(response.status().as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|error| {
                    RpcError::BadAnswer(format!("the answer could not be read: {error}"))
                })?
                .to_bytes();
            eth_call_result(&body, id)
        })
    }
}
