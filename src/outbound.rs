//! The small client Purser's own calls out go through: webhook notifications and refund
//! requests. Both POST a JSON body and only need the status back.
//!
//! It is a trait so the engine and the approval notifier are *given* a client instead of
//! reaching up into the proxy for one: the proxy's upstream client implements it
//! (`proxy::outbound`), and a test or a fleet deployment can hand in another.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One JSON POST.
#[derive(Clone, Copy, Debug)]
pub struct JsonPost<'a> {
    /// Where to POST: an absolute `http://` or `https://` URL.
    pub url: &'a http::Uri,
    /// The JSON body, already serialized; sent as `application/json`.
    pub body: &'a str,
    /// Sent as `Idempotency-Key`, so a retried request is recognised as the same one.
    pub idempotency_key: Option<&'a str>,
}

/// Why a POST got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutboundError(pub String);

/// The answer's status, or why there was none.
pub type PostResult<'a> =
    Pin<Box<dyn Future<Output = Result<http::StatusCode, OutboundError>> + Send + 'a>>;

/// Sends Purser's own requests. Timeouts and retries are the caller's: each caller knows
/// how long its event is worth waiting for.
pub trait Outbound: Send + Sync + 'static {
    /// POSTs `post` once and resolves to the answer's status, or why there was none.
    fn post_json<'a>(&'a self, post: JsonPost<'a>) -> PostResult<'a>;
}

/// How the client is shared between the notifier and the refund task.
pub type SharedOutbound = Arc<dyn Outbound>;
