//! What Purser says about itself, as opposed to what it decides: log lines
//! ([`logs`]) and the counters behind `GET /metrics` ([`metrics`], with the wire-level
//! families in [`wire_metrics`]). Every layer records here; the admin listener only
//! renders it, so nothing below `admin` needs to import `admin`.

mod logs;
pub mod metrics;
mod prometheus;
pub mod wire_metrics;

pub use logs::{init, LogFormat, LogGuard};
