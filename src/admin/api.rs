//! The governance API under `/v1`: sessions and phases, policy reload, trace queries.

use super::reply::error;
use super::AdminState;
use crate::engine::{PhaseChangeError, RollbackError};
use crate::holds::{DecideError, HoldOutcome};
use crate::ledger::Account;
use crate::policy::{Phase, SessionId};
use crate::proxy::body::ProxyBody;
use crate::proxy::render::json_answer;
use crate::store::{DecisionCounts, Session, TransitionError};
use crate::trace::filter::TraceFilter;
use crate::trace::TraceRecord;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;
use std::io::{Read, Seek, SeekFrom};

/// Largest admin request body read.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// How far back from the end of the live trace file a query looks.
const TRACE_QUERY_WINDOW: u64 = 8 * 1024 * 1024;

/// Routes `/v1/...`; `None` when the path is not an API path.
pub(super) async fn route(
    state: &AdminState,
    request: Request<Incoming>,
) -> Option<Response<ProxyBody>> {
    let path = request.uri().path().to_string();
    let rest = path.strip_prefix("/v1/")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    Some(match (method, segments.as_slice()) {
        (Method::GET, ["sessions"]) => list_sessions(state).await,
        (Method::GET, ["sessions", id]) => show_session(state, id).await,
        (Method::POST, ["sessions", id, "phase"]) => {
            let id = id.to_string();
            match read_json(request).await {
                Ok(body) => set_phase(state, &id, &body).await,
                Err(answer) => answer,
            }
        }
        (Method::POST, ["sessions", id, "reset"]) => reset_session(state, id).await,
        (Method::POST, ["policy", "reload"]) => reload_policy(state),
        (Method::GET, ["payments"]) => {
            let query = parse_query(request.uri().query().unwrap_or(""));
            super::payments::list(state, &query).await
        }
        (Method::GET, ["payments", "unknown"]) => super::payments::list(state, &[]).await,
        (Method::GET, ["payments", id]) => super::payments::show(state, id).await,
        (Method::POST, ["payments", id, "resolve"]) => {
            let id = id.to_string();
            match read_json(request).await {
                Ok(body) => super::payments::resolve(state, &id, &body).await,
                Err(answer) => answer,
            }
        }
        (Method::POST, ["transactions", id, "rollback"]) => rollback(state, id).await,
        (Method::GET, ["approvals"]) => list_approvals(state).await,
        (Method::POST, ["approvals", id, verb @ ("approve" | "deny")]) => {
            let (id, approve) = (id.to_string(), *verb == "approve");
            match read_json(request).await {
                Ok(body) => decide_hold(state, &id, approve, &body).await,
                Err(answer) => answer,
            }
        }
        (Method::GET, ["traces"]) => {
            let query = request.uri().query().unwrap_or("").to_string();
            let (filter, limit) = match trace_query(&query) {
                Ok(parsed) => parsed,
                Err(answer) => return Some(*answer),
            };
            // A fleet store shows every replica's lines; while it cannot, this one's own.
            if let Some(Ok(lines)) = state.proxy.engine.fleet_traces(&filter, limit).await {
                return Some(list_answer("traces", &lines));
            }
            let log = state.proxy.engine.trace_path().to_path_buf();
            // Reading and parsing up to 8 MiB of log takes tens of milliseconds: not on the
            // thread that also accepts agents' connections (the console polls this).
            tokio::task::spawn_blocking(move || query_traces(&log, &filter, limit))
                .await
                .unwrap_or_else(|failure| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "trace_query_failed",
                        &failure.to_string(),
                    )
                })
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    })
}

/// One session as the API shows it.
#[derive(Serialize)]
struct SessionView {
    id: String,
    agent: String,
    phase: &'static str,
    limit: Option<Decimal>,
    spent: Decimal,
    reserved: Decimal,
    unknown: Decimal,
    ratio: Option<Decimal>,
    gates: GateMarks,
    agent_spent: Decimal,
    fleet_spent: Decimal,
    counts: DecisionCounts,
    challenges: usize,
    created: String,
}

#[derive(Serialize)]
struct GateMarks {
    warning: Option<Decimal>,
    restrict: Option<Decimal>,
    halt: Option<Decimal>,
}

async fn view(state: &AdminState, id: &str, session: &Session) -> SessionView {
    let engine = &state.proxy.engine;
    let policy = engine.policy();
    let agent = session.lock().agent.clone();
    let limits = policy.limits_for(&agent);
    let budget = engine.budget(id, &agent).await;
    let account: Account = budget.session;
    let ratio = limits
        .session
        .filter(|l| !l.is_zero())
        .map(|limit| (account.exposure() / limit).round_dp(6));
    let session = session.lock();
    SessionView {
        id: id.to_string(),
        agent: session.agent.clone(),
        phase: session.phase.as_str(),
        limit: limits.session,
        spent: account.spent().normalize(),
        reserved: account.reserved.normalize(),
        unknown: account.unknown.normalize(),
        ratio,
        gates: GateMarks {
            warning: policy.budget.gates.warning,
            restrict: policy.budget.gates.restrict,
            halt: policy.budget.gates.halt,
        },
        agent_spent: budget.agent.spent().normalize(),
        fleet_spent: budget.fleet.spent().normalize(),
        counts: session.counts,
        challenges: engine.challenges_for(&session.agent, id),
        created: jiff::Timestamp::try_from(session.created)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    }
}

async fn list_sessions(state: &AdminState) -> Response<ProxyBody> {
    let engine = &state.proxy.engine;
    let mut views = Vec::new();
    for id in engine.session_ids().await {
        if let Some(session) = engine.session(&id).await {
            views.push(view(state, &id, &session).await);
        }
    }
    list_answer("sessions", &views)
}

/// `{"<key>": [...]}`, serialized straight from the items. `json!` would first copy every
/// item into a `serde_json::Value` tree, which for a thousand holds or a hundred thousand
/// sessions is a burst of small allocations on the accept thread each time it is polled.
fn list_answer<T: serde::Serialize>(key: &'static str, items: &[T]) -> Response<ProxyBody> {
    json_answer(StatusCode::OK, &Listing { key, items }, None)
}

/// A one-entry JSON object whose value is a list.
struct Listing<'a, T> {
    key: &'static str,
    items: &'a [T],
}

impl<T: serde::Serialize> serde::Serialize for Listing<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.key, self.items)?;
        map.end()
    }
}

/// Pending holds, each with the budgets it would leave if approved.
async fn list_approvals(state: &AdminState) -> Response<ProxyBody> {
    list_answer("approvals", &state.proxy.engine.list_approvals().await)
}

async fn show_session(state: &AdminState, id: &str) -> Response<ProxyBody> {
    match state.proxy.engine.session(id).await {
        Some(session) => json_answer(StatusCode::OK, &view(state, id, &session).await, None),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            &format!("no session `{id}` has been seen"),
        ),
    }
}

/// Sets a session's phase. A session not seen yet is created, so an operator can open
/// COMMIT for an agent before it starts.
async fn set_phase(state: &AdminState, id: &str, body: &serde_json::Value) -> Response<ProxyBody> {
    let Some(text) = body.get("phase").and_then(|v| v.as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "body must be {\"phase\": \"EXPLORE|DECIDE|COMMIT\"}",
        );
    };
    let Some(phase) = Phase::parse(text) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_phase",
            &format!("`{text}` is not a phase: EXPLORE, DECIDE or COMMIT"),
        );
    };
    let Some(id) = SessionId::parse(id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_session",
            "session ids are AGENT.SESSION",
        );
    };
    match state.proxy.engine.set_phase(&id, phase).await {
        Ok(previous) => json_answer(
            StatusCode::OK,
            &json!({"id": id, "phase": phase.as_str(), "previous": previous.as_str()}),
            None,
        ),
        Err(PhaseChangeError::Refused(refused)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            &refused.to_string(),
        ),
        Err(PhaseChangeError::Transition {
            error: unavailable @ TransitionError::Unavailable { .. },
            ..
        }) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            &unavailable.to_string(),
        ),
        Err(PhaseChangeError::Transition { error, current }) => {
            let body = json!({"error": "invalid_transition", "reason": error.to_string(), "id": id, "phase": current.as_str()});
            json_answer(StatusCode::CONFLICT, &body, None)
        }
    }
}

async fn reset_session(state: &AdminState, id: &str) -> Response<ProxyBody> {
    // Sessions are only ever tracked under a well-formed id.
    let reset = match SessionId::parse(id) {
        Some(id) => state.proxy.engine.reset_session(&id).await,
        None => None,
    };
    match reset {
        Some(from) => json_answer(
            StatusCode::OK,
            &json!({"id": id, "phase": "EXPLORE", "previous": from.as_str()}),
            None,
        ),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            &format!("no session `{id}` has been seen"),
        ),
    }
}

/// Approves or denies a hold. `by` names the person (it goes into the trace); an optional
/// `digest` must match the held payment's.
async fn decide_hold(
    state: &AdminState,
    id: &str,
    approve: bool,
    body: &serde_json::Value,
) -> Response<ProxyBody> {
    let by = body
        .get("by")
        .and_then(|v| v.as_str())
        .filter(|by| !by.trim().is_empty())
        .unwrap_or("admin-api")
        .chars()
        .take(128)
        .collect::<String>();
    let outcome = if approve {
        HoldOutcome::Approved { by: by.clone() }
    } else {
        let reason = body
            .get("reason")
            .and_then(|v| v.as_str())
            .unwrap_or("denied")
            .chars()
            .take(512)
            .collect();
        HoldOutcome::Denied {
            by: by.clone(),
            reason,
        }
    };
    let digest = body.get("digest").and_then(|v| v.as_str());
    match state.proxy.engine.decide_hold(id, outcome, digest).await {
        Ok(view) => {
            let label = if approve { "approved" } else { "denied" };
            tracing::info!(hold = %id, session = %view.session, by = %by, outcome = label, "hold decided");
            json_answer(
                StatusCode::OK,
                &json!({"id": id, "outcome": label, "by": by, "trace_id": view.trace_id}),
                None,
            )
        }
        Err(failure @ DecideError::Unknown(_)) => {
            error(StatusCode::NOT_FOUND, "unknown_hold", &failure.to_string())
        }
        Err(failure @ DecideError::Unavailable(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            &failure.to_string(),
        ),
        Err(failure) => error(
            StatusCode::CONFLICT,
            "hold_not_pending",
            &failure.to_string(),
        ),
    }
}

async fn rollback(state: &AdminState, id: &str) -> Response<ProxyBody> {
    match state.proxy.engine.rollback(id).await {
        Ok(count) => json_answer(
            StatusCode::OK,
            &json!({"transaction": id, "refunds_requested": count}),
            None,
        ),
        Err(failure @ RollbackError::NotRunning) => error(
            StatusCode::NOT_IMPLEMENTED,
            "no_compensation",
            &failure.to_string(),
        ),
        Err(failure @ RollbackError::Disabled) => error(
            StatusCode::CONFLICT,
            "compensation_disabled",
            &failure.to_string(),
        ),
        Err(failure @ RollbackError::UnknownTransaction(_)) => error(
            StatusCode::NOT_FOUND,
            "unknown_transaction",
            &failure.to_string(),
        ),
    }
}

fn reload_policy(state: &AdminState) -> Response<ProxyBody> {
    match state.proxy.policy.reload() {
        Ok(policy) => {
            tracing::info!(digest = %&policy.digest[..12], "policy reloaded through the admin API");
            json_answer(
                StatusCode::OK,
                &json!({"reloaded": true, "digest": policy.digest, "name": policy.name}),
                None,
            )
        }
        Err(failure) => {
            tracing::error!(error = %failure, "policy reload failed; keeping the previous policy");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_policy",
                &failure.to_string(),
            )
        }
    }
}

/// `GET /v1/traces?session=&agent=&decision=&kind=&limit=`: which lines, and how many.
/// `decision` and `kind` match in any case; a value outside their vocabulary is a 400
/// naming the valid ones (a typo must not look like "no such lines").
fn trace_query(query: &str) -> Result<(TraceFilter, usize), Box<Response<ProxyBody>>> {
    let params = parse_query(query);
    let limit = params
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(100)
        .min(10_000);
    match TraceFilter::from_query(&params) {
        Ok(filter) => Ok((filter, limit)),
        Err(unknown) => {
            let body = json!({"error": "bad_filter", "reason": unknown.to_string(),
                "parameter": unknown.field, "valid": unknown.valid});
            Err(Box::new(json_answer(StatusCode::BAD_REQUEST, &body, None)))
        }
    }
}

/// The latest lines of this process's own log matching `filter`, newest last.
fn query_traces(log: &std::path::Path, filter: &TraceFilter, limit: usize) -> Response<ProxyBody> {
    let text = match read_tail(log) {
        Ok(text) => text,
        Err(failure) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "trace_unreadable",
                &failure.to_string(),
            )
        }
    };
    let mut lines: Vec<TraceRecord> = text
        .lines()
        .filter_map(|line| TraceRecord::from_line(line).ok())
        .filter(|line| filter.matches(line))
        .collect();
    let skip = lines.len().saturating_sub(limit);
    lines.drain(..skip);
    list_answer("traces", &lines)
}

fn read_tail(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let start = length.saturating_sub(TRACE_QUERY_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // Starting mid-file cuts the first line: drop it.
    Ok(if start > 0 {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    })
}

pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match escaped {
            Some(value) => {
                out.push(value);
                index += 3;
            }
            None => {
                out.push(if bytes[index] == b'+' {
                    b' '
                } else {
                    bytes[index]
                });
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read_json(request: Request<Incoming>) -> Result<serde_json::Value, Response<ProxyBody>> {
    let collected = Limited::new(request.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("cannot read the body: {e}"),
            )
        })?;
    let bytes: Bytes = collected.to_bytes();
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            &format!("body is not JSON: {e}"),
        )
    })
}
