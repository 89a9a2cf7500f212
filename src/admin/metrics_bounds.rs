//! `/metrics` figures of what agents can make Purser keep: remembered challenges (bytes,
//! count, evictions), sessions (tracked, per-agent evictions, refusals) and the proof log
//! on disk (bytes, lines, suppressed refusals, rotations, the disk alarm). Read from the
//! engine when `/metrics` is asked for, not counted on the data path.

use crate::engine::Engine;
use std::fmt::Write;

/// Appends the figures to the Prometheus text.
pub fn render(out: &mut String, engine: &Engine) {
    let challenges = engine.challenge_figures();
    let policy = engine.policy();
    let sessions = engine.session_figures();
    let figures: [(&str, &str, &str, u64); 10] = [
        ("purser_challenge_bytes", "gauge", "Memory charged to remembered 402 challenges.", challenges.bytes),
        ("purser_challenge_bytes_limit", "gauge", "x402.challenge_memory: the most remembered challenges may take.", policy.x402.challenge_memory as u64),
        ("purser_challenges_remembered", "gauge", "402 challenges remembered now.", challenges.count),
        ("purser_challenges_evicted_total", "counter", "Remembered challenges forgotten to stay within a bound.", challenges.evicted),
        ("purser_challenges_refused_total", "counter", "Challenges too large to remember at all.", challenges.refused),
        ("purser_challenge_offers_dropped_total", "counter", "Offers not kept past x402.max_offers_per_challenge (or malformed).", challenges.offers_dropped),
        ("purser_sessions_tracked", "gauge", "Sessions in memory.", sessions.tracked),
        ("purser_session_agents", "gauge", "Agents with sessions in memory.", sessions.agents),
        ("purser_sessions_evicted_total", "counter", "Idle EXPLORE sessions forgotten to make room (their agent's own, or an agent's past its fair share).", sessions.evicted),
        ("purser_sessions_refused_total", "counter", "New sessions refused (429 too_many_sessions).", sessions.refused),
    ];
    for (name, kind, help, value) in figures.into_iter().chain(engine.trace_figures().snapshot()) {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}
