//! Counters the data path bumps and `/metrics` renders in Prometheus text format.
//!
//! Plain atomics: recording a metric on the hot path is one relaxed add, and nothing here
//! allocates per request.

use super::prometheus::{escape_label, family, single};
use crate::codes::ErrorCode;
use dashmap::DashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the decision-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.05,
];

/// Upper bounds (seconds) of the hold-wait histogram buckets.
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0,
];

/// A Prometheus histogram with fixed buckets, in microseconds internally.
struct Histogram {
    bounds: &'static [f64; 12],
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64; 12]) -> Self {
        Histogram {
            bounds,
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const UPSTREAM_ERROR_CODES: [ErrorCode; 5] = [
    ErrorCode::UpstreamRefused,
    ErrorCode::UpstreamDns,
    ErrorCode::UpstreamTls,
    ErrorCode::UpstreamTimeout,
    ErrorCode::UpstreamFailed,
];

/// Process-wide counters.
pub struct Metrics {
    requests_http: AtomicU64,
    requests_https: AtomicU64,
    auth_failures: AtomicU64,
    connects_intercepted: AtomicU64,
    connects_tunnelled: AtomicU64,
    connects_refused: AtomicU64,
    connections_open: AtomicI64,
    upstream_errors: [AtomicU64; UPSTREAM_ERROR_CODES.len()],
    /// Decisions by `(verdict, rule)`.
    decisions: DashMap<(&'static str, String), AtomicU64>,
    decision_latency: Histogram,
    /// Settlements by outcome.
    settlements: DashMap<&'static str, AtomicU64>,
    holds_pending: AtomicI64,
    hold_outcomes: DashMap<&'static str, AtomicU64>,
    hold_wait: Histogram,
    /// What the wire guards turned away (connection caps, upgrades).
    pub wire: super::wire_metrics::WireMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests_http: AtomicU64::new(0),
            requests_https: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            connects_intercepted: AtomicU64::new(0),
            connects_tunnelled: AtomicU64::new(0),
            connects_refused: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            upstream_errors: Default::default(),
            decisions: DashMap::new(),
            decision_latency: Histogram::new(&LATENCY_BUCKETS),
            settlements: DashMap::new(),
            holds_pending: AtomicI64::new(0),
            hold_outcomes: DashMap::new(),
            hold_wait: Histogram::new(&WAIT_BUCKETS),
            wire: Default::default(),
        }
    }
}

impl Metrics {
    pub fn request(&self, https: bool) {
        let counter = if https {
            &self.requests_https
        } else {
            &self.requests_http
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn intercepted_connect(&self) {
        self.connects_intercepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tunnelled_connect(&self) {
        self.connects_tunnelled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_connect(&self) {
        self.connects_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn upstream_error(&self, code: ErrorCode) {
        if let Some(index) = UPSTREAM_ERROR_CODES.iter().position(|c| *c == code) {
            self.upstream_errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a payment decision and how long it took.
    pub fn decision(&self, verdict: &'static str, rule: &str, took: Duration) {
        let key = (verdict, rule.to_string());
        self.decisions
            .entry(key)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
        if !took.is_zero() {
            self.decision_latency.observe(took);
        }
    }

    /// Sets the number of payments held now.
    pub fn holds_pending(&self, count: usize) {
        self.holds_pending.store(count as i64, Ordering::Relaxed);
    }

    /// Counts a finished hold and how long it waited.
    pub fn hold_finished(&self, outcome: &'static str, waited: Duration) {
        self.hold_outcomes
            .entry(outcome)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
        self.hold_wait.observe(waited);
    }

    /// Counts a settlement.
    pub fn settlement(&self, outcome: &'static str) {
        self.settlements
            .entry(outcome)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    fn render_holds(&self, out: &mut String) {
        family(
            out,
            "purser_holds_pending",
            "gauge",
            "Payments held for approval now.",
        );
        let _ = writeln!(
            out,
            "purser_holds_pending {}",
            self.holds_pending.load(Ordering::Relaxed)
        );
        family(
            out,
            "purser_holds_total",
            "counter",
            "Finished holds, by outcome.",
        );
        let mut holds: Vec<(&'static str, u64)> = self
            .hold_outcomes
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        holds.sort();
        for (outcome, count) in holds {
            let _ = writeln!(out, "purser_holds_total{{outcome=\"{outcome}\"}} {count}");
        }
        family(
            out,
            "purser_hold_wait_seconds",
            "histogram",
            "How long held payments waited for their outcome.",
        );
        self.hold_wait.render(out, "purser_hold_wait_seconds");
    }

    fn render_decisions(&self, out: &mut String) {
        family(
            out,
            "purser_decisions_total",
            "counter",
            "Payment decisions, by outcome and deciding rule.",
        );
        let mut rows: Vec<(&'static str, String, u64)> = self
            .decisions
            .iter()
            .map(|entry| {
                (
                    entry.key().0,
                    entry.key().1.clone(),
                    entry.value().load(Ordering::Relaxed),
                )
            })
            .collect();
        rows.sort();
        for (verdict, rule, count) in rows {
            let _ = writeln!(
                out,
                "purser_decisions_total{{decision=\"{verdict}\",rule=\"{}\"}} {count}",
                escape_label(&rule)
            );
        }
        family(
            out,
            "purser_decision_seconds",
            "histogram",
            "Time to decide a payment.",
        );
        self.decision_latency.render(out, "purser_decision_seconds");
        self.render_holds(out);
        family(
            out,
            "purser_settlements_total",
            "counter",
            "Settled payments, by outcome.",
        );
        let mut settled: Vec<(&'static str, u64)> = self
            .settlements
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        settled.sort();
        for (outcome, count) in settled {
            let _ = writeln!(
                out,
                "purser_settlements_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
    }

    /// The Prometheus text exposition, with the leaf-cache figures passed in.
    pub fn render(&self, leaves: LeafFigures) -> String {
        let mut out = String::with_capacity(2048);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            &mut out,
            "purser_requests_total",
            "counter",
            "Requests forwarded, by scheme.",
        );
        let _ = writeln!(
            out,
            "purser_requests_total{{scheme=\"http\"}} {}",
            load(&self.requests_http)
        );
        let _ = writeln!(
            out,
            "purser_requests_total{{scheme=\"https\"}} {}",
            load(&self.requests_https)
        );
        single(
            &mut out,
            "purser_proxy_auth_failures_total",
            "counter",
            "Requests refused with 407.",
            load(&self.auth_failures),
        );
        family(
            &mut out,
            "purser_connects_total",
            "counter",
            "CONNECT requests, by outcome.",
        );
        let _ = writeln!(
            out,
            "purser_connects_total{{outcome=\"intercepted\"}} {}",
            load(&self.connects_intercepted)
        );
        let _ = writeln!(
            out,
            "purser_connects_total{{outcome=\"tunnelled\"}} {}",
            load(&self.connects_tunnelled)
        );
        let _ = writeln!(
            out,
            "purser_connects_total{{outcome=\"refused\"}} {}",
            load(&self.connects_refused)
        );
        single(
            &mut out,
            "purser_agent_connections_open",
            "gauge",
            "Agent connections open now.",
            self.connections_open.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "purser_upstream_errors_total",
            "counter",
            "Upstream failures, by reason.",
        );
        for (code, counter) in UPSTREAM_ERROR_CODES.iter().zip(&self.upstream_errors) {
            let _ = writeln!(
                out,
                "purser_upstream_errors_total{{reason=\"{}\"}} {}",
                code.as_str(),
                load(counter)
            );
        }
        single(
            &mut out,
            "purser_leaf_certs_minted_total",
            "counter",
            "Interception certificates minted.",
            leaves.minted,
        );
        single(
            &mut out,
            "purser_leaf_cache_hits_total",
            "counter",
            "Interception certificates served from the cache.",
            leaves.hits,
        );
        single(
            &mut out,
            "purser_leaf_cache_entries",
            "gauge",
            "Hosts with a cached interception certificate.",
            leaves.entries,
        );
        self.render_decisions(&mut out);
        self.wire.render(&mut out);
        out
    }
}

/// Leaf-cache figures, read from the cache at render time.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeafFigures {
    pub minted: u64,
    pub hits: u64,
    pub entries: u64,
}
