//! [`Answering`]: the future a request's answer comes in, as the agent-facing HTTP
//! servers poll it.

use super::body::ProxyBody;
use http::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The service future of an agent-facing connection. hyper keeps a slot of its size on
/// every connection, busy or idle, so it is two words; the work is boxed per request, and
/// only as large as that request's path needs (a held payment keeps just its forwarding).
pub struct Answering(Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>);

impl Answering {
    /// An answer known without waiting (refusals).
    pub fn now(response: Response<ProxyBody>) -> Self {
        Answering(Box::pin(std::future::ready(response)))
    }

    /// An answer that has to wait: a tunnel, the engine, the upstream.
    pub fn later(work: impl Future<Output = Response<ProxyBody>> + Send + 'static) -> Self {
        Answering(Box::pin(work))
    }
}

impl From<Response<ProxyBody>> for Answering {
    fn from(response: Response<ProxyBody>) -> Self {
        Answering::now(response)
    }
}

impl Future for Answering {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}
