//! The upstream client as Purser's own [`Outbound`] client: webhooks and refund requests
//! leave through the same connector (and so the same egress rules) as agents' requests.

use super::body::full;
use super::upstream::UpstreamClient;
use crate::outbound::{JsonPost, Outbound, OutboundError, PostResult};
use http::{header, Method, Request};

impl Outbound for UpstreamClient {
    fn post_json<'a>(&'a self, post: JsonPost<'a>) -> PostResult<'a> {
        Box::pin(async move {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(post.url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(
                    header::USER_AGENT,
                    concat!("purser/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(key) = post.idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let request = request
                .body(full(post.body.to_string()))
                .map_err(|error| OutboundError(error.to_string()))?;
            match self.request(request).await {
                Ok(response) => Ok(response.status()),
                Err(error) => Err(OutboundError(error.to_string())),
            }
        })
    }
}
