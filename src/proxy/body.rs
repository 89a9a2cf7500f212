//! The one body type the proxy moves around, and an idle timeout for streams.
//!
//! Bodies stream frame by frame in both directions; nothing here buffers them. A body
//! that stalls longer than its idle timeout ends with an error instead of holding a
//! connection (and its memory) forever.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every request and response body inside the proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body with the given bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An agent's request body: empty bodies (most GETs) skip the idle timer. Trailers lose
/// any payment, credential or control field they carry ([`crate::detect`]): the engine
/// decides on the head, so nothing payment-like may follow the body unseen.
pub fn request_body(body: hyper::body::Incoming, idle: Duration) -> ProxyBody {
    if body.is_end_stream() {
        empty()
    } else {
        with_idle_timeout(body.map_frame(strip_payment_trailers), idle)
    }
}

fn strip_payment_trailers(mut frame: Frame<Bytes>) -> Frame<Bytes> {
    if let Some(trailers) = frame.trailers_mut() {
        crate::detect::strip_payment_fields(trailers);
    }
    frame
}

/// Wraps a streaming body so that a stall longer than `idle` ends it with an error.
pub fn with_idle_timeout<B>(body: B, idle: Duration) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    IdleTimeoutBody {
        inner: body,
        idle,
        deadline: Box::pin(tokio::time::sleep(idle)),
    }
    .boxed_unsync()
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("body stalled: no data for {0:?}")]
pub struct BodyStalled(pub Duration);

struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The result of reading a body up to a bound.
pub enum Buffered {
    /// The whole body, within the bound.
    Complete(Bytes),
    /// Over the bound: what was read, followed by the rest, as one stream again.
    Partial(ProxyBody),
    Failed(BoxError),
}

/// Reads `body` if it fits in `limit` bytes; otherwise hands back an equivalent stream.
pub async fn buffer_bounded(mut body: ProxyBody, limit: usize) -> Buffered {
    let mut collected = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return Buffered::Complete(collected.freeze()),
            Some(Err(error)) => return Buffered::Failed(error),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    collected.extend_from_slice(&data);
                    if collected.len() > limit {
                        let chained = Chained::new(collected.freeze(), body);
                        return Buffered::Partial(chained.boxed_unsync());
                    }
                }
            }
        }
    }
}

/// Bytes already read, then the rest of a body: what a reader that looked at a body's
/// start hands on (a 402 challenge's, a request body inspected for payments).
pub(super) struct Chained<B = ProxyBody> {
    prefix: Option<Bytes>,
    rest: B,
}

impl<B> Chained<B> {
    pub(super) fn new(prefix: Bytes, rest: B) -> Self {
        Chained {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            rest,
        }
    }
}

impl<B> Body for Chained<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}
