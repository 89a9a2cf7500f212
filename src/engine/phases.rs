//! Phase changes: by the agent (`X-Purser-Phase`, where the policy lets agents move their
//! own session forward) and by an operator (set, or reset to EXPLORE). Each change that
//! moves the phase writes a `phase` line, so a restart rebuilds phases.

use super::context::Shared;
use super::gate::{Refusal, RefusalStatus};
use crate::policy::rules::{phase_name, Phase};
use crate::policy::{Policy, SessionId};
use crate::store::{Session, SessionRefused, TransitionError};
use http::HeaderMap;

const PHASE_HEADER: &str = "x-purser-phase";

/// `X-Purser-Phase`: always stripped; applied where the policy lets agents move their
/// own session forward.
pub(super) async fn apply_phase_header(
    shared: &Shared,
    policy: &Policy,
    session_id: &SessionId,
    session: &Session,
    headers: &mut HeaderMap,
) -> Option<Refusal> {
    let value = headers.remove(PHASE_HEADER)?;
    if !policy.phases.agent_header {
        tracing::warn!("ignoring X-Purser-Phase: the policy does not let agents change phase");
        return None;
    }
    let text = value.to_str().unwrap_or("");
    let Some(target) = Phase::parse(text) else {
        let reason = format!("`{text}` is not a phase: EXPLORE, DECIDE or COMMIT");
        return Some(Refusal::control(
            RefusalStatus::BadRequest,
            "bad_phase",
            reason,
            session_id,
        ));
    };
    match shared
        .store
        .advance_phase(session, target, &policy.phases)
        .await
    {
        Ok(from) => {
            if from != target {
                tracing::info!(
                    from = phase_name(from),
                    to = phase_name(target),
                    "phase changed by the agent"
                );
                trace_phase(shared, session_id, from, target, "agent");
            }
            None
        }
        Err(error) => {
            let mut refusal = Refusal::control(
                RefusalStatus::Conflict,
                "invalid_transition",
                error.to_string(),
                session_id,
            );
            refusal.phase = Some(phase_name(current_phase(&error)));
            Some(refusal)
        }
    }
}

/// Why an operator's phase change was not made.
#[derive(Debug, thiserror::Error)]
pub enum PhaseChangeError {
    /// There is no room to track the session.
    #[error(transparent)]
    Refused(#[from] SessionRefused),
    /// The session cannot move there; it stays in `current`.
    #[error("{error}")]
    Transition {
        error: TransitionError,
        current: Phase,
    },
}

/// An operator's phase change; a session not seen yet is created, so an operator can
/// open COMMIT for an agent before it starts. Returns the phase it left.
pub(super) async fn set_phase(
    shared: &Shared,
    session_id: &SessionId,
    to: Phase,
) -> Result<Phase, PhaseChangeError> {
    let policy = shared.policy.current();
    let session = shared
        .store
        .session(session_id, session_id.agent(), &policy.limits)
        .await?;
    match shared
        .store
        .advance_phase(&session, to, &policy.phases)
        .await
    {
        Ok(previous) => {
            tracing::info!(session = %session_id, from = phase_name(previous), to = phase_name(to), "phase changed by the admin API");
            if previous != to {
                trace_phase(shared, session_id, previous, to, "admin");
            }
            Ok(previous)
        }
        Err(error) => Err(PhaseChangeError::Transition {
            current: current_phase(&error),
            error,
        }),
    }
}

/// Starts a session over in EXPLORE. Returns the session's agent and the phase it left,
/// or `None` for a session not tracked.
pub(super) async fn reset(shared: &Shared, session_id: &SessionId) -> Option<Phase> {
    let session = shared.store.find_session(session_id).await?;
    let from = shared.store.reset_phase(&session).await;
    trace_phase(shared, session_id, from, Phase::Explore, "admin reset");
    tracing::info!(session = %session_id, from = phase_name(from), "session reset to EXPLORE");
    Some(from)
}

/// One `phase` line. Not awaited: losing it in a crash leaves the session in an earlier,
/// stricter phase.
pub(super) fn trace_phase(
    shared: &Shared,
    session_id: &SessionId,
    from: Phase,
    to: Phase,
    by: &str,
) {
    let policy = shared.policy.current();
    let record =
        super::records::phase_record(&policy, shared.next_trace_id(), session_id, from, to, by);
    shared.trace.append(&record);
}

/// The phase a refused change leaves the session in.
fn current_phase(error: &TransitionError) -> Phase {
    match *error {
        TransitionError::Backwards { from, .. }
        | TransitionError::NotAllowed { from, .. }
        | TransitionError::Unavailable { from, .. } => from,
    }
}
