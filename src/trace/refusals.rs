//! Refusals beyond a per-agent rate are counted, not written one by one.
//!
//! Every refusal used to be its own fsynced line, so an agent sending refused payments
//! as fast as it could wrote the disk full. Now, per agent and per minute, the first
//! `--trace-refusals-per-minute` refusals are written as before. The next one is written
//! too, marked as opening a summary (`"summary": {"opens": ...}`); every later refusal of
//! that agent in the same minute is only counted, and its `403` cites the opening line's
//! trace id. When the minute is over (or Purser stops), one `summary` line says how many
//! were counted, by rule and session, and refers to the opening line through
//! `decision_trace_id`, so `purser traces show --decision ID` shows both.
//!
//! Only `DENIED` decisions are ever summarised: a payment that leaves, a hold, a
//! settlement or a phase change is always written in full.

use super::decider::Decider;
use super::record::TraceRecord;
use super::vocabulary::{Kind, Verdict};
use crate::policy::SessionId;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window refusals are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Rules (and sessions) named one by one in a summary; the rest are counted together.
const NAMED_IN_SUMMARY: usize = 16;

/// What to do with a refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Write it as it is.
    Write,
    /// Write it, marked as the line later refusals of the window cite.
    Open(serde_json::Value),
    /// Do not write it; the agent's answer cites this trace id.
    Suppress(String),
}

/// Refusal windows per agent.
pub struct RefusalLimiter {
    /// Refusals written in full per agent and window; 0 writes every one.
    per_minute: u32,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    opened: Instant,
    written: u32,
    summary: Option<Summary>,
}

struct Summary {
    /// The opening line: what suppressed refusals cite.
    cited: String,
    session: SessionId,
    policy_digest: Option<String>,
    from: String,
    to: String,
    /// The last suppressed refusal's (unwritten, so unused) trace id: the summary line's.
    last_trace_id: String,
    suppressed: u64,
    by_rule: BTreeMap<String, u64>,
    sessions: BTreeSet<String>,
    other_sessions: u64,
}

impl RefusalLimiter {
    pub fn new(per_minute: u32) -> Self {
        RefusalLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides for one refusal, and hands back the summary of the agent's previous
    /// window if that just ended (to be written first).
    pub fn admit(&self, record: &TraceRecord, now: Instant) -> (Admission, Option<TraceRecord>) {
        if self.per_minute == 0 {
            return (Admission::Write, None);
        }
        let mut windows = self.windows();
        let mut closed = None;
        if let Some(window) = windows.get(&record.agent) {
            if now.duration_since(window.opened) >= WINDOW {
                closed = windows
                    .remove(&record.agent)
                    .and_then(|w| summary_line(&record.agent, w, self.per_minute));
            }
        }
        let window = windows
            .entry(record.agent.clone())
            .or_insert_with(|| Window {
                opened: now,
                written: 0,
                summary: None,
            });
        if window.written < self.per_minute {
            window.written += 1;
            return (Admission::Write, closed);
        }
        match &mut window.summary {
            None => {
                window.summary = Some(Summary {
                    cited: record.trace_id.clone(),
                    session: record.session.clone(),
                    policy_digest: record.policy_digest.clone(),
                    from: record.time.clone(),
                    to: record.time.clone(),
                    last_trace_id: String::new(),
                    suppressed: 0,
                    by_rule: BTreeMap::new(),
                    sessions: BTreeSet::new(),
                    other_sessions: 0,
                });
                let marker = serde_json::json!({
                    "opens": true,
                    "limit_per_minute": self.per_minute,
                    "reason": format!(
                        "agent `{}` passed {} refusals in a minute: its further refusals until the minute ends cite this line and are counted in one summary line",
                        record.agent, self.per_minute
                    ),
                });
                (Admission::Open(marker), closed)
            }
            Some(summary) => {
                summary.count(record);
                (Admission::Suppress(summary.cited.clone()), closed)
            }
        }
    }

    /// Whether some window has suppressed refusals to summarise when it ends.
    pub fn has_open_summaries(&self) -> bool {
        self.windows()
            .values()
            .any(|window| window.summary.is_some())
    }

    /// The opening line could not be written: the next refusal opens the summary again.
    pub fn cancel_opening(&self, agent: &str) {
        if let Some(window) = self.windows().get_mut(agent) {
            if window.summary.as_ref().is_some_and(|s| s.suppressed == 0) {
                window.summary = None;
            }
        }
    }

    /// Summary lines of windows that have ended; their agents start afresh.
    pub fn due(&self, now: Instant) -> Vec<TraceRecord> {
        self.close(|window| now.duration_since(window.opened) >= WINDOW)
    }

    /// Summary lines of every open window (Purser is stopping).
    pub fn close_all(&self) -> Vec<TraceRecord> {
        self.close(|_| true)
    }

    fn close(&self, ended: impl Fn(&Window) -> bool) -> Vec<TraceRecord> {
        let mut windows = self.windows();
        let agents: Vec<String> = windows
            .iter()
            .filter(|(_, window)| ended(window))
            .map(|(agent, _)| agent.clone())
            .collect();
        agents
            .into_iter()
            .filter_map(|agent| {
                let window = windows.remove(&agent)?;
                summary_line(&agent, window, self.per_minute)
            })
            .collect()
    }
}

impl Summary {
    fn count(&mut self, record: &TraceRecord) {
        self.suppressed += 1;
        self.to = record.time.clone();
        self.last_trace_id = record.trace_id.clone();
        let rule = record.rule.as_ref().map(Decider::name);
        let rule = rule.as_deref().unwrap_or("unknown");
        if self.by_rule.contains_key(rule) || self.by_rule.len() < NAMED_IN_SUMMARY {
            *self.by_rule.entry(rule.to_string()).or_default() += 1;
        } else {
            *self.by_rule.entry("(other rules)".to_string()).or_default() += 1;
        }
        if self.sessions.contains(record.session.as_str()) {
            return;
        }
        if self.sessions.len() < NAMED_IN_SUMMARY {
            self.sessions.insert(record.session.to_string());
        } else {
            self.other_sessions += 1;
        }
    }
}

/// The `summary` line closing a window, if it suppressed anything.
fn summary_line(agent: &str, window: Window, per_minute: u32) -> Option<TraceRecord> {
    let summary = window.summary.filter(|s| s.suppressed > 0)?;
    let reason = format!(
        "{} more refusals of agent `{agent}` from {} to {} were counted, not written one by one (over {per_minute} a minute); their answers cite {}",
        summary.suppressed, summary.from, summary.to, summary.cited
    );
    Some(TraceRecord {
        trace_id: summary.last_trace_id,
        kind: Kind::Summary,
        time: jiff::Timestamp::now().to_string(),
        session: summary.session,
        agent: agent.to_string(),
        decision: Some(Verdict::Denied),
        rule: Some(Decider::refusal("refusal_rate")),
        reason: Some(reason),
        decision_trace_id: Some(summary.cited),
        summary: Some(serde_json::json!({
            "suppressed": summary.suppressed,
            "by_rule": summary.by_rule,
            "sessions": summary.sessions,
            "other_sessions": summary.other_sessions,
            "from": summary.from,
            "to": summary.to,
            "limit_per_minute": per_minute,
        })),
        policy_digest: summary.policy_digest,
        purser_version: Some(Cow::Borrowed(crate::VERSION)),
        ..TraceRecord::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(n: u32, agent: &str) -> TraceRecord {
        TraceRecord {
            trace_id: format!("tr_{n}"),
            kind: Kind::Decision,
            time: format!("2026-01-01T00:00:{:02}Z", n % 60),
            session: SessionId::new(agent, &format!("s{}", n % 3)),
            agent: agent.to_string(),
            decision: Some(Verdict::Denied),
            rule: Some(Decider::Rule(
                if n % 2 == 0 { "a" } else { "b" }.to_string(),
            )),
            ..TraceRecord::default()
        }
    }

    #[test]
    fn past_the_rate_refusals_cite_the_opening_line_and_end_in_one_summary() {
        let limiter = RefusalLimiter::new(3);
        let start = Instant::now();
        let admissions: Vec<Admission> = (0..10)
            .map(|n| limiter.admit(&refusal(n, "mallory"), start).0)
            .collect();
        assert!(admissions[..3].iter().all(|a| *a == Admission::Write));
        assert!(matches!(admissions[3], Admission::Open(_)));
        assert!(admissions[4..]
            .iter()
            .all(|a| *a == Admission::Suppress("tr_3".into())));
        // Another agent has its own allowance.
        assert_eq!(
            limiter.admit(&refusal(99, "alice"), start).0,
            Admission::Write
        );
        assert!(limiter.due(start).is_empty(), "the minute is not over");
        let (admission, closed) = limiter.admit(&refusal(50, "mallory"), start + WINDOW);
        assert_eq!(admission, Admission::Write, "a new minute starts afresh");
        let closed = closed.expect("the summary of the minute that ended");
        assert_eq!(closed.kind, Kind::Summary);
        assert_eq!(closed.decision_trace_id.as_deref(), Some("tr_3"));
        assert_eq!(closed.trace_id, "tr_9");
        let summary = closed.summary.unwrap();
        assert_eq!(summary["suppressed"], 6);
        assert_eq!(summary["by_rule"]["a"], 3);
        assert!(limiter.close_all().is_empty(), "nothing suppressed since");
    }

    #[test]
    fn zero_writes_every_refusal() {
        let limiter = RefusalLimiter::new(0);
        for n in 0..100 {
            assert_eq!(
                limiter.admit(&refusal(n, "a"), Instant::now()).0,
                Admission::Write
            );
        }
    }
}
