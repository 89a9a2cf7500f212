//! The answer to an MCP call, read as it streams: streamable HTTP answers a JSON-RPC
//! POST with one JSON document (`application/json`) or with server-sent events
//! (`text/event-stream`), the response among notifications and requests the server sends
//! first. [`AnswerReader`] is fed each chunk as it passes to the agent and says when the
//! JSON-RPC response to the call is whole, so the caller can act on it before that
//! chunk leaves.
//!
//! It keeps at most [`MAX_ANSWER_BYTES`] of one document or one event, so an answer of any
//! length is read in bounded memory; a response larger than that is
//! [`Answered::Unreadable`], as is anything that is not JSON-RPC. Nothing here knows a
//! payment protocol.

use super::super::json_body::{JsonScanner, Scan};
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http::{header, HeaderMap};
use jsonrpsee_types::{Id, Response};
use serde_json::Value;
use sse_stream::{Sse, SseByteStream};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Most bytes of one JSON answer, or of one server-sent event, kept while reading: the
/// same bound as a 402 challenge body.
pub const MAX_ANSWER_BYTES: usize = crate::x402::MAX_CHALLENGE_BODY_BYTES;

/// What the answer said, once it said it.
#[derive(Debug)]
pub enum Answered {
    /// The JSON-RPC response to the call.
    Response(Box<Response<'static, Value>>),
    /// The answer cannot tell: too large, not JSON-RPC, broken off, or it ended without
    /// a response to the call. Why, for the proof log.
    Unreadable(String),
}

/// Reads one answer for the response with one id.
pub struct AnswerReader {
    id: Id<'static>,
    framing: Framing,
    /// Set once the reader has answered: it reads nothing more.
    done: bool,
}

enum Framing {
    Json {
        kept: BytesMut,
        scanner: JsonScanner,
    },
    Sse {
        input: Pushed,
        events: Box<SseByteStream<Pushed>>,
        /// Bytes fed since the last event ended: what the parser may be holding.
        since_event: usize,
    },
    /// Answered: the buffers are let go while the rest of the answer streams past.
    Done,
}

impl AnswerReader {
    /// A reader for an answer with these headers to the call `id`; `None` when the
    /// answer is neither JSON nor an event stream (a `202`, plain text, an HTML error).
    pub fn new(headers: &HeaderMap, id: Id<'static>) -> Option<Self> {
        let framing = match answer_kind(headers)? {
            AnswerKind::Json => Framing::Json {
                kept: BytesMut::new(),
                scanner: JsonScanner::structure(),
            },
            AnswerKind::EventStream => {
                let input = Pushed::default();
                Framing::Sse {
                    events: Box::new(SseByteStream::new(input.clone())),
                    input,
                    since_event: 0,
                }
            }
        };
        Some(AnswerReader {
            id,
            framing,
            done: false,
        })
    }

    /// Reads the next chunk; the answer once this chunk makes it whole (or unreadable).
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Answered> {
        if self.done || chunk.is_empty() {
            return None;
        }
        let answered = match &mut self.framing {
            Framing::Json { kept, scanner } => feed_json(kept, scanner, chunk, &self.id),
            Framing::Sse {
                input,
                events,
                since_event,
            } => {
                input.push(Bytes::copy_from_slice(chunk));
                feed_events(events, since_event, chunk.len(), &self.id)
            }
            Framing::Done => None,
        };
        if answered.is_some() {
            self.done = true;
            self.framing = Framing::Done;
        }
        answered
    }

    /// The answer has ended: what it said, if it has not said it yet.
    pub fn finish(&mut self) -> Option<Answered> {
        if self.done {
            return None;
        }
        self.done = true;
        let answered = match &mut self.framing {
            Framing::Json { kept, scanner } => match scanner.finish() {
                Scan::Clean if !kept.is_empty() => Some(response(kept, &self.id)),
                _ => None,
            },
            Framing::Sse { input, events, .. } => {
                input.close();
                let mut since = 0;
                feed_events(events, &mut since, 0, &self.id)
            }
            Framing::Done => None,
        };
        self.framing = Framing::Done;
        Some(answered.unwrap_or_else(|| {
            Answered::Unreadable("the answer ended without a response to the call".into())
        }))
    }

    /// Whether the reader has said what the answer says.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// How an answer is framed, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    /// `application/json`: one JSON-RPC message.
    Json,
    /// `text/event-stream`: server-sent events, one JSON-RPC message in each.
    EventStream,
}

/// Whether an answer is JSON or server-sent events (one content type, not compressed).
pub fn answer_kind(headers: &HeaderMap) -> Option<AnswerKind> {
    if headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        return None;
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let value = types.next()?;
    if types.next().is_some() {
        return None;
    }
    let essence = value.to_str().ok()?.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Some(AnswerKind::EventStream)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(AnswerKind::Json)
    } else {
        None
    }
}

fn feed_json(
    kept: &mut BytesMut,
    scanner: &mut JsonScanner,
    chunk: &[u8],
    id: &Id<'static>,
) -> Option<Answered> {
    if kept.len() + chunk.len() > MAX_ANSWER_BYTES {
        return Some(too_large());
    }
    kept.extend_from_slice(chunk);
    match scanner.feed(chunk) {
        Scan::Unreadable(why) => Some(Answered::Unreadable(format!(
            "the answer is not JSON: {why}"
        ))),
        _ if scanner.complete() => Some(response(kept, id)),
        _ => None,
    }
}

fn feed_events(
    events: &mut SseByteStream<Pushed>,
    since_event: &mut usize,
    fed: usize,
    id: &Id<'static>,
) -> Option<Answered> {
    let mut context = Context::from_waker(Waker::noop());
    let mut ended_event = false;
    loop {
        match Pin::new(&mut *events).poll_next(&mut context) {
            Poll::Ready(Some(Ok(event))) => {
                ended_event = true;
                if let Some(answered) = event_response(&event, id) {
                    return Some(answered);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                return Some(Answered::Unreadable(format!(
                    "the answer's event stream is broken: {error}"
                )))
            }
            Poll::Ready(None) | Poll::Pending => break,
        }
    }
    *since_event = if ended_event { 0 } else { *since_event + fed };
    (*since_event > MAX_ANSWER_BYTES).then(too_large)
}

/// The response to the call, if this event is it. Other events (notifications,
/// requests from the server, answers to other ids, keep-alives) are passed over.
fn event_response(event: &Sse, id: &Id<'static>) -> Option<Answered> {
    let data = event.data.as_deref()?;
    if data.len() > MAX_ANSWER_BYTES {
        return None;
    }
    let response: Response<'_, Value> = serde_json::from_str(data).ok()?;
    (response.id == *id).then(|| Answered::Response(Box::new(response.into_owned())))
}

fn response(kept: &[u8], id: &Id<'static>) -> Answered {
    match serde_json::from_slice::<Response<'_, Value>>(kept) {
        Ok(response) if response.id == *id => Answered::Response(Box::new(response.into_owned())),
        Ok(response) => Answered::Unreadable(format!(
            "the answer is the response to another call (id {})",
            response.id
        )),
        Err(error) => {
            Answered::Unreadable(format!("the answer is not a JSON-RPC response: {error}"))
        }
    }
}

fn too_large() -> Answered {
    Answered::Unreadable(format!(
        "the answer's response is larger than the {MAX_ANSWER_BYTES} bytes Purser reads"
    ))
}

/// Chunks handed to the event parser as they arrive; it reads them through the stream
/// interface `sse-stream` decodes from, and is polled only when a chunk was pushed.
#[derive(Clone, Default)]
struct Pushed(Arc<Mutex<PushedState>>);

#[derive(Default)]
struct PushedState {
    chunks: VecDeque<Bytes>,
    closed: bool,
}

impl Pushed {
    fn push(&self, chunk: Bytes) {
        self.lock().chunks.push_back(chunk);
    }

    fn close(&self) {
        self.lock().closed = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PushedState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Stream for Pushed {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.lock();
        match state.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(chunk))),
            None if state.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}
