//! Log set-up: human-readable by default, JSON lines with `--log-format json`.
//!
//! Every request runs inside a span that carries its session, so each line a request
//! produces names the agent session it belongs to.

use tracing_subscriber::EnvFilter;

/// How log lines are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Keeps the background log writer alive; logs still queued are flushed when it drops.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Lines waiting for the writer thread. The queue is a ring allocated whole up front
/// whose pages become resident as it first goes round, so tracing-appender's default of
/// 128,000 lines (4 MiB) is memory a long-running proxy slowly acquires for nothing: a
/// writer that keeps up never has more than a few hundred lines queued, and a burst
/// beyond this bound is dropped rather than queued.
const QUEUED_LINES: usize = 8_192;

/// Installs the global subscriber. `RUST_LOG` overrides `default_level` when set.
///
/// Lines are handed to a background thread that writes stderr, so a request never waits
/// on a terminal or a pipe. Under a flood the writer drops lines rather than stall the
/// proxy; the proof trace, not this log, is the durable record.
pub fn init(format: LogFormat, default_level: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests calling into the CLI twice) is harmless, so its error is dropped.
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard(installed.ok().map(|_| guard))
}
