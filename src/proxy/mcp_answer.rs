//! The answer to an MCP tool call, watched as it streams to the agent (x402 and MPP over
//! MCP).
//!
//! Streamable HTTP answers a `tools/call` with JSON or server-sent events; the JSON-RPC
//! response in it may carry a challenge (x402's in a tool result, MPP's in a `-32042`
//! error; remembered, so the payment that answers it is priced against it) and, for a
//! paid call, the receipt that settles the payment. The
//! body passes through chunk by chunk as it came; the detector's reader
//! ([`AnswerReader`]) is fed a copy, and the chunk that completes the response is held
//! back until the engine has acted on it, so the agent never sees a receipt before
//! Purser has booked it. The engine's work runs as a task of its own: an agent that hangs
//! up does not cut a settlement short.

use super::body::{BoxError, ProxyBody};
use super::state::ProxyState;
use crate::detect::mcp::answer::{answer_kind, AnswerReader, Answered};
use crate::detect::mcp::{mpp_forms, x402_forms};
use crate::detect::Protocol;
use crate::engine::{RequestFacts, Ticket};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use jsonrpsee_types::Id;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;

/// Whether the answer is one Purser reads a JSON-RPC response from: a success status
/// with a JSON or event-stream body. Any other answer (a `402`, a `5xx`, an HTML error
/// page) is settled from its status and headers, as any HTTP answer.
pub fn readable<B>(response: &Response<B>) -> bool {
    response.status().is_success() && answer_kind(response.headers()).is_some()
}

/// The answer to a paid call: its body settles `ticket` once the response to `id` is
/// whole (or the body ends, or breaks off, without it: `unknown`).
pub fn settling(
    state: Arc<ProxyState>,
    facts: RequestFacts,
    id: Id<'static>,
    ticket: Ticket,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = response.status();
    let job = Job::Settle(Box::new(Settle {
        state,
        facts,
        ticket,
        status,
    }));
    watch(response, id, job)
}

/// The answer to a call without a payment: a challenge in it is remembered for the tool.
pub fn remembering(
    state: Arc<ProxyState>,
    facts: RequestFacts,
    id: Id<'static>,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    watch(response, id, Job::Remember { state, facts })
}

fn watch(response: Response<ProxyBody>, id: Id<'static>, job: Job) -> Response<ProxyBody> {
    let Some(reader) = AnswerReader::new(response.headers(), id) else {
        // Not readable: dropping the job settles a paid call's ticket as unknown.
        return response;
    };
    response.map(|inner| {
        WatchedAnswer {
            inner,
            reader,
            job: Some(job),
            waiting: None,
        }
        .boxed_unsync()
    })
}

/// What to do with the response once it is read.
enum Job {
    /// Boxed: a ticket and the facts are most of a kilobyte.
    Settle(Box<Settle>),
    Remember {
        state: Arc<ProxyState>,
        facts: RequestFacts,
    },
}

/// A paid call's answer settles its ticket.
struct Settle {
    state: Arc<ProxyState>,
    facts: RequestFacts,
    ticket: Ticket,
    status: StatusCode,
}

impl Job {
    /// The engine's work on what the answer said, as a task of its own: the challenges it
    /// carries (x402's or MPP's) are remembered for the tool; a paid call is settled by
    /// the forms of the protocol it paid in.
    fn start(self, answered: Answered) -> Option<JoinHandle<()>> {
        let response = match answered {
            Answered::Response(response) => Ok(response),
            Answered::Unreadable(why) => Err(why),
        };
        let x402 = response
            .as_deref()
            .map(x402_forms::read_answer)
            .map_err(Clone::clone);
        let mpp = response
            .as_deref()
            .map(mpp_forms::read_answer)
            .map_err(Clone::clone);
        let challenge = x402.as_ref().ok().and_then(|a| a.challenge.clone());
        let mpp_challenges = mpp
            .as_ref()
            .map(|a| a.challenges.clone())
            .unwrap_or_default();
        let asks = challenge.is_some() || !mpp_challenges.is_empty();
        let remember = |state: Arc<ProxyState>, facts: RequestFacts| async move {
            if let Some(challenge) = challenge {
                state.engine.on_challenge(&facts, challenge).await;
            }
            if !mpp_challenges.is_empty() {
                state
                    .engine
                    .on_mpp_challenges(&facts, &mpp_challenges)
                    .await;
            }
            (state, facts)
        };
        match self {
            Job::Settle(settle) => Some(tokio::spawn(async move {
                let Settle {
                    state,
                    facts,
                    ticket,
                    status,
                } = *settle;
                let (state, facts) = remember(state, facts).await;
                let engine = &state.engine;
                match ticket.protocol {
                    Protocol::Mpp => engine.on_mpp_call_answer(&facts, ticket, status, mpp).await,
                    _ => engine.on_call_answer(&facts, ticket, status, x402).await,
                }
            })),
            Job::Remember { state, facts } => {
                if !asks {
                    return None;
                }
                Some(tokio::spawn(async move {
                    remember(state, facts).await;
                }))
            }
        }
    }
}

/// What the agent gets once the engine's work is done.
enum Held {
    Frame(Frame<Bytes>),
    End,
    Error(BoxError),
}

struct WatchedAnswer {
    inner: ProxyBody,
    reader: AnswerReader,
    /// Until the response is read.
    job: Option<Job>,
    waiting: Option<(JoinHandle<()>, Held)>,
}

impl WatchedAnswer {
    /// The response is read (or cannot be): start the job and hold `held` until it is done.
    fn answered(
        &mut self,
        answered: Answered,
        held: Held,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.job.take().and_then(|job| job.start(answered)) {
            Some(work) => {
                self.waiting = Some((work, held));
                Poll::Pending
            }
            None => Poll::Ready(release(held)),
        }
    }
}

fn release(held: Held) -> Option<Result<Frame<Bytes>, BoxError>> {
    match held {
        Held::Frame(frame) => Some(Ok(frame)),
        Held::End => None,
        Held::Error(error) => Some(Err(error)),
    }
}

impl Body for WatchedAnswer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some((work, _)) = &mut self.waiting {
                if let Err(error) = std::task::ready!(Pin::new(work).poll(cx)) {
                    tracing::error!(%error, "acting on an MCP tool call's answer failed");
                }
                let held = self.waiting.take().map(|(_, held)| held);
                return Poll::Ready(held.and_then(release));
            }
            let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
            if self.job.is_none() {
                return Poll::Ready(polled);
            }
            let step = match polled {
                Some(Ok(frame)) => match frame.data_ref().and_then(|data| self.reader.feed(data)) {
                    None => return Poll::Ready(Some(Ok(frame))),
                    Some(answered) => self.answered(answered, Held::Frame(frame)),
                },
                None => {
                    let answered = self.reader.finish().unwrap_or_else(|| {
                        Answered::Unreadable("the answer ended without a response".into())
                    });
                    self.answered(answered, Held::End)
                }
                Some(Err(error)) => {
                    let why = format!("the answer broke off: {error}");
                    self.answered(Answered::Unreadable(why), Held::Error(error))
                }
            };
            match step {
                // Work was started: poll it at once, in the loop.
                Poll::Pending => continue,
                ready => return ready,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Until the response is read, the end of the body is news to act on.
        self.job.is_none() && self.waiting.is_none() && self.inner.is_end_stream()
    }
}
