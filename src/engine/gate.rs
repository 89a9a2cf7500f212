//! What the engine tells the proxy to do with a request: forward it (with a [`Ticket`]
//! when it carries a payment that was allowed), or refuse it with a typed [`Refusal`].
//!
//! The engine knows no wire format. A refusal carries the facts every front end needs
//! (status class, stable code, the decision and its rule, reason, trace id, session);
//! turning it into bytes is the proxy's business (`proxy::render`), once per protocol.

use super::evaluate::Verdict;
use super::ticket::Ticket;

/// What to do with a request.
pub enum Gate {
    /// Send it upstream (with a ticket if it carries an allowed payment).
    Forward(Option<Box<Ticket>>),
    /// Answer the agent instead. Boxed: the common case, a forward, stays small.
    Refuse(Box<Refusal>),
}

/// The class of a refusal; each front end maps it to its own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalStatus {
    /// A payment was decided against (HTTP `403`).
    Forbidden,
    /// A control header Purser cannot read (`400`).
    BadRequest,
    /// A session change the session cannot make (`409`).
    Conflict,
    /// No room to track the request's session (`429`).
    TooManyRequests,
    /// The decision could not be made durable, so nothing was decided (`503`).
    Unavailable,
}

impl RefusalStatus {
    /// The HTTP status code.
    pub fn http_code(self) -> u16 {
        match self {
            RefusalStatus::Forbidden => 403,
            RefusalStatus::BadRequest => 400,
            RefusalStatus::Conflict => 409,
            RefusalStatus::TooManyRequests => 429,
            RefusalStatus::Unavailable => 503,
        }
    }
}

/// Why a request does not go upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: RefusalStatus,
    /// The stable code a program branches on (`denied`, `hold_limit`, `bad_phase`, ...).
    pub code: &'static str,
    /// `Some(Denied)` when a payment decision refused it: the answer then names the
    /// decision and its trace id (`X-Purser-Decision`, `X-Purser-Trace`).
    pub decision: Option<Verdict>,
    /// The check that decided; `None` when no decision line could be written.
    pub rule: Option<String>,
    /// Human-readable; for a payment decision it starts with its rule or code
    /// (`approval_required: ...`).
    pub reason: String,
    /// The proof-log line that records the decision, when there is one.
    pub trace_id: Option<String>,
    pub session: String,
    /// The session's phase, for a phase change that was refused.
    pub phase: Option<&'static str>,
}

/// A header a refusal asks the front end to add, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalHeader<'a> {
    /// `X-Purser-Decision`.
    Decision(&'static str),
    /// `X-Purser-Trace`.
    Trace(&'a str),
    /// `X-Purser-Error`: the code, for a refusal for lack of room.
    Error(&'static str),
}

impl Refusal {
    /// A payment refused by a decision that has a line in the proof log: `rule` decided,
    /// and the agent reads `"{rule}: {message}"`.
    pub fn denied(
        code: &'static str,
        rule: &str,
        message: &str,
        trace_id: &str,
        session: &str,
    ) -> Self {
        Refusal {
            status: RefusalStatus::Forbidden,
            code,
            decision: Some(Verdict::Denied),
            rule: Some(rule.to_string()),
            reason: format!("{rule}: {message}"),
            trace_id: Some(trace_id.to_string()),
            session: session.to_string(),
            phase: None,
        }
    }

    /// A payment refused before any rule: the code is the rule.
    pub fn rejected(code: &'static str, message: &str, trace_id: &str, session: &str) -> Self {
        Refusal::denied(code, code, message, trace_id, session)
    }

    /// The decision line could not be made durable: the payment is refused, and no
    /// rule decided it.
    pub fn trace_unavailable(error: &dyn std::fmt::Display, trace_id: &str, session: &str) -> Self {
        Refusal {
            status: RefusalStatus::Unavailable,
            code: "trace_unavailable",
            decision: Some(Verdict::Denied),
            rule: None,
            reason: format!("trace_unavailable: {error}"),
            trace_id: Some(trace_id.to_string()),
            session: session.to_string(),
            phase: None,
        }
    }

    /// A refusal that is not a payment decision (a control header, the session table).
    pub fn control(
        status: RefusalStatus,
        code: &'static str,
        reason: String,
        session: &str,
    ) -> Self {
        Refusal {
            status,
            code,
            decision: None,
            rule: None,
            reason,
            trace_id: None,
            session: session.to_string(),
            phase: None,
        }
    }

    /// The headers the answer carries besides its body.
    pub fn headers(&self) -> impl Iterator<Item = RefusalHeader<'_>> {
        let decision = self
            .decision
            .zip(self.trace_id.as_deref())
            .map(|(verdict, trace)| {
                [
                    RefusalHeader::Decision(verdict.as_str()),
                    RefusalHeader::Trace(trace),
                ]
            });
        let error = (self.status == RefusalStatus::TooManyRequests)
            .then_some(RefusalHeader::Error(self.code));
        decision.into_iter().flatten().chain(error)
    }
}
