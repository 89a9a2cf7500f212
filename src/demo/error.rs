//! Why the demo stopped: one error type every step and stub reports with.

use std::path::PathBuf;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    #[error("cannot prepare the working directory {path}: {source}")]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} already holds a proof log from an earlier run; give --dir an empty or new directory"
    )]
    UsedDirectory(PathBuf),
    #[error("cannot listen on loopback for the {what}: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Launch(String),
    #[error("{what}: {message}")]
    Http { what: String, message: String },
    #[error("step {step} did not behave as expected: {detail}")]
    Step { step: u8, detail: String },
    #[error("the proof log does not verify: {0}")]
    ProofLog(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Policy(String),
}
