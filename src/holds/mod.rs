//! Holds: payments waiting for a human (SPEC §3 "Holds").
//!
//! A held payment's request stays open in the proxy while its hold sits here. A hold is
//! decided once: by a person through the admin API, by its timeout (denied), by the end
//! of its veto window (goes ahead), or by shutdown (denied). Whoever takes the hold out
//! of the registry first decides it, so a timeout and a click can never both win, and an
//! approval is bound to the hold it names (and, when given, to the payment's digest).

pub(crate) mod networks;
pub(crate) mod notify;

use dashmap::DashMap;
use networks::NetworkKind;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Decided holds remembered, to answer a second decision with 409 rather than 404.
const DECIDED_REMEMBERED: usize = 4096;

/// How a hold is resolved when nobody acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// Waits for a human; denied at the deadline.
    Explicit,
    /// Goes ahead at the deadline unless vetoed.
    Veto,
}

/// What the API shows of a hold.
#[derive(Clone, Debug, Serialize)]
pub struct HoldView {
    pub id: String,
    pub session: String,
    pub agent: String,
    pub trace_id: String,
    pub created: String,
    pub deadline: String,
    pub kind: HoldKind,
    pub amount_usd: String,
    pub amount: String,
    pub asset_symbol: String,
    pub pay_to: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub tier: Option<String>,
    /// The checks that asked for approval.
    pub rules: Vec<String>,
    pub reason: String,
    /// SHA-256 of the held payment.
    pub digest: String,
    /// The network as the payment names it (a v1 name or a CAIP-2 id).
    pub network: String,
    /// Its CAIP-2 id, when it has one.
    pub network_id: Option<String>,
    /// A readable name, for networks Purser knows.
    pub network_name: Option<&'static str>,
    /// `mainnet`, `testnet`, or `unknown` (never guessed).
    pub network_kind: NetworkKind,
    /// The signer, when the payment names one (Solana payments do not).
    pub payer: Option<String>,
    /// The recipient's trust when the payment was decided: `verified`, `known`, `unknown`.
    pub trust: &'static str,
    /// The check that decided the hold.
    pub rule: String,
    /// Each check in `rules` with its own message.
    pub rule_messages: Vec<RuleMessage>,
    /// The payment's value in USD, typed (`amount_usd` is its text).
    #[serde(skip)]
    pub cost_usd: Decimal,
}

/// A check that asked for approval, and what it says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMessage {
    pub id: String,
    /// `null` for a policy rule written without a message.
    pub message: Option<String>,
}

/// How a hold ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    Approved {
        by: String,
    },
    Denied {
        by: String,
        reason: String,
    },
    TimedOut,
    /// A veto window passed with no veto.
    VetoWindowPassed,
    ShuttingDown,
}

impl HoldOutcome {
    pub fn approved(&self) -> bool {
        matches!(
            self,
            HoldOutcome::Approved { .. } | HoldOutcome::VetoWindowPassed
        )
    }

    /// Who decided.
    pub fn by(&self) -> &str {
        match self {
            HoldOutcome::Approved { by } | HoldOutcome::Denied { by, .. } => by,
            HoldOutcome::TimedOut => "timeout",
            HoldOutcome::VetoWindowPassed => "veto-window",
            HoldOutcome::ShuttingDown => "shutdown",
        }
    }

    /// `approved`, `denied`, `timed_out`, `veto_window_passed`, `shutdown`.
    pub fn label(&self) -> &'static str {
        match self {
            HoldOutcome::Approved { .. } => "approved",
            HoldOutcome::Denied { .. } => "denied",
            HoldOutcome::TimedOut => "timed_out",
            HoldOutcome::VetoWindowPassed => "veto_window_passed",
            HoldOutcome::ShuttingDown => "shutdown",
        }
    }
}

/// Why a hold could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    #[error("hold_limit: session {session} already has {limit} payments waiting for approval")]
    SessionFull { session: String, limit: usize },
    #[error("hold_limit: {limit} payments are already waiting for approval across all agents")]
    AllFull { limit: usize },
    /// The fleet store, where holds are kept, did not answer.
    #[error("ledger_unavailable: the fleet store did not take the hold ({0}); the payment is refused, send it again later")]
    Unavailable(String),
}

/// Why a decision was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("no pending hold `{0}`")]
    Unknown(String),
    #[error("hold `{id}` was already decided ({outcome}); an approval cannot be reused")]
    AlreadyDecided { id: String, outcome: String },
    #[error(
        "hold `{id}` holds payment {actual}, not {given}: an approval is bound to one payment"
    )]
    DigestMismatch {
        id: String,
        actual: String,
        given: String,
    },
    /// The fleet store, where holds are kept, did not answer: nothing was decided.
    #[error("the fleet store did not answer ({0}); the hold was not decided: try again")]
    Unavailable(String),
}

struct Pending {
    /// Shared so that listing holds (the console polls every second) copies pointers,
    /// not every hold's strings.
    view: Arc<HoldView>,
    resolve: oneshot::Sender<HoldOutcome>,
}

/// The registry of pending holds.
#[derive(Default)]
pub(crate) struct Holds {
    pending: DashMap<String, Pending>,
    per_session: DashMap<String, usize>,
    total: AtomicUsize,
    next_id: AtomicU64,
    decided: Mutex<VecDeque<(String, &'static str)>>,
}

/// A hold's limits.
#[derive(Clone, Copy, Debug)]
pub struct HoldLimits {
    pub per_session: usize,
    pub total: usize,
}

impl Holds {
    /// Registers a hold; the receiver yields its outcome once someone decides.
    pub(crate) fn open(
        &self,
        mut view: HoldView,
        limits: HoldLimits,
    ) -> Result<(String, oneshot::Receiver<HoldOutcome>), HoldRefused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(HoldRefused::AllFull {
                limit: limits.total,
            });
        }
        {
            let mut count = self.per_session.entry(view.session.clone()).or_default();
            if *count >= limits.per_session {
                drop(count);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(HoldRefused::SessionFull {
                    session: view.session,
                    limit: limits.per_session,
                });
            }
            *count += 1;
        }
        let id = format!(
            "hold_{}_{}",
            view.trace_id.trim_start_matches("tr_"),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        view.id = id.clone();
        let (resolve, outcome) = oneshot::channel();
        let view = Arc::new(view);
        self.pending.insert(id.clone(), Pending { view, resolve });
        Ok((id, outcome))
    }

    /// Whether a hold for `session` would fit now (`open` checks again, atomically).
    pub(crate) fn check_room(&self, session: &str, limits: HoldLimits) -> Result<(), HoldRefused> {
        if self.total.load(Ordering::Acquire) >= limits.total {
            return Err(HoldRefused::AllFull {
                limit: limits.total,
            });
        }
        if self
            .per_session
            .get(session)
            .is_some_and(|count| *count >= limits.per_session)
        {
            return Err(HoldRefused::SessionFull {
                session: session.to_string(),
                limit: limits.per_session,
            });
        }
        Ok(())
    }

    /// Pending holds, oldest first.
    pub(crate) fn list(&self) -> Vec<Arc<HoldView>> {
        let mut views: Vec<Arc<HoldView>> = self
            .pending
            .iter()
            .map(|entry| Arc::clone(&entry.view))
            .collect();
        views.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        views
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// A person's decision. `digest`, when given, must be the held payment's.
    pub(crate) fn decide(
        &self,
        id: &str,
        outcome: HoldOutcome,
        digest: Option<&str>,
    ) -> Result<HoldView, DecideError> {
        if let (Some(given), Some(pending)) = (digest, self.pending.get(id)) {
            if !given.eq_ignore_ascii_case(&pending.view.digest) {
                return Err(DecideError::DigestMismatch {
                    id: id.to_string(),
                    actual: pending.view.digest.clone(),
                    given: given.to_string(),
                });
            }
        }
        match self.resolve(id, outcome) {
            Some(view) => Ok(view),
            None => Err(self.why_not_pending(id)),
        }
    }

    /// Takes the hold out and delivers `outcome`. `None` if someone else already did.
    pub(crate) fn resolve(&self, id: &str, outcome: HoldOutcome) -> Option<HoldView> {
        let (_, pending) = self.pending.remove(id)?;
        self.release_slot(&pending.view.session);
        self.remember(id, outcome.label());
        // The waiting request may have gone away (agent hung up); nothing to tell then.
        let _ = pending.resolve.send(outcome);
        Some(Arc::unwrap_or_clone(pending.view))
    }

    /// Denies every pending hold (shutdown).
    pub(crate) fn resolve_all(&self, outcome: HoldOutcome) -> usize {
        let ids: Vec<String> = self.pending.iter().map(|e| e.key().clone()).collect();
        ids.iter()
            .filter(|id| self.resolve(id, outcome.clone()).is_some())
            .count()
    }

    fn release_slot(&self, session: &str) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(mut count) = self.per_session.get_mut(session) {
            *count = count.saturating_sub(1);
        }
        self.per_session.remove_if(session, |_, count| *count == 0);
    }

    fn remember(&self, id: &str, outcome: &'static str) {
        let mut decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        if decided.len() >= DECIDED_REMEMBERED {
            decided.pop_front();
        }
        decided.push_back((id.to_string(), outcome));
    }

    fn why_not_pending(&self, id: &str) -> DecideError {
        let decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        match decided.iter().rev().find(|(known, _)| known == id) {
            Some((_, outcome)) => DecideError::AlreadyDecided {
                id: id.to_string(),
                outcome: outcome.to_string(),
            },
            None => DecideError::Unknown(id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(session: &str, trace: &str) -> HoldView {
        HoldView {
            id: String::new(),
            session: session.into(),
            agent: "a".into(),
            trace_id: trace.into(),
            created: "2026-01-01T00:00:00Z".into(),
            deadline: "2026-01-01T00:05:00Z".into(),
            kind: HoldKind::Explicit,
            amount_usd: "0.75".into(),
            amount: "0.75".into(),
            asset_symbol: "USDC".into(),
            pay_to: "0x1".into(),
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            tier: None,
            rules: vec![],
            reason: "r".into(),
            digest: "abc".into(),
            network: "eip155:84532".into(),
            network_id: Some("eip155:84532".into()),
            network_name: Some("Base Sepolia"),
            network_kind: NetworkKind::Testnet,
            payer: Some("0x2".into()),
            trust: "unknown",
            rule: "r".into(),
            rule_messages: vec![],
            cost_usd: Decimal::new(75, 2),
        }
    }

    const LIMITS: HoldLimits = HoldLimits {
        per_session: 2,
        total: 3,
    };

    #[test]
    fn a_hold_is_decided_once() {
        let holds = Holds::default();
        let (id, mut outcome) = holds.open(view("s", "tr_1"), LIMITS).unwrap();
        holds
            .decide(
                &id,
                HoldOutcome::Approved { by: "alice".into() },
                Some("ABC"),
            )
            .unwrap();
        assert_eq!(
            outcome.try_recv().unwrap(),
            HoldOutcome::Approved { by: "alice".into() }
        );
        let again = holds.decide(&id, HoldOutcome::Approved { by: "bob".into() }, None);
        assert!(matches!(again, Err(DecideError::AlreadyDecided { .. })));
        assert!(matches!(
            holds.decide("nope", HoldOutcome::TimedOut, None),
            Err(DecideError::Unknown(_))
        ));
    }

    #[test]
    fn an_approval_for_another_payment_is_refused() {
        let holds = Holds::default();
        let (id, _outcome) = holds.open(view("s", "tr_1"), LIMITS).unwrap();
        let wrong = holds.decide(&id, HoldOutcome::Approved { by: "a".into() }, Some("def"));
        assert!(matches!(wrong, Err(DecideError::DigestMismatch { .. })));
        assert_eq!(holds.len(), 1, "the hold is still pending");
    }

    #[test]
    fn holds_are_bounded_per_session_and_in_total() {
        let holds = Holds::default();
        let (first, _a) = holds.open(view("s", "tr_1"), LIMITS).unwrap();
        let _b = holds.open(view("s", "tr_2"), LIMITS).unwrap();
        assert!(matches!(
            holds.open(view("s", "tr_3"), LIMITS),
            Err(HoldRefused::SessionFull { .. })
        ));
        let _c = holds.open(view("t", "tr_4"), LIMITS).unwrap();
        assert!(matches!(
            holds.open(view("u", "tr_5"), LIMITS),
            Err(HoldRefused::AllFull { .. })
        ));
        holds.resolve(&first, HoldOutcome::TimedOut);
        assert!(
            holds.open(view("s", "tr_6"), LIMITS).is_ok(),
            "a decided hold frees its slot"
        );
    }
}
