//! The stage the soak and the findings run on: a stub merchant and facilitator (recording,
//! in process) and a fresh `purser run` in a directory of their own, the machine and
//! commit a report names, and where reports are written.

use purser_kit::merchant::Merchant;
use purser_kit::process::{start_purser, terminate, Launched};
use purser_kit::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A stub merchant and a fresh Purser with its own CA and proof log (`trace/trace.jsonl`,
/// its stderr in `purser.log`), all in one directory.
pub(crate) struct Stage {
    pub merchant: Arc<Merchant>,
    pub stub: SocketAddr,
    pub purser: Launched,
    pub trace: PathBuf,
    pub log: PathBuf,
}

impl Stage {
    /// Starts the stub, has `policy` write the policy for it (it gets the stub's address
    /// and returns the file's path), then starts Purser with it and `extra` arguments.
    pub(crate) fn start(
        purser: &Path,
        dir: &Path,
        policy: impl FnOnce(SocketAddr) -> Result<PathBuf, Error>,
        extra: &[&str],
        rust_log: &str,
    ) -> Result<Stage, Error> {
        std::fs::create_dir_all(dir)?;
        let merchant = Arc::new(Merchant::recording());
        let stub = merchant.clone().spawn()?;
        let policy = policy(stub)?;
        let (trace, log) = (dir.join("trace/trace.jsonl"), dir.join("purser.log"));
        let text = |p: &Path| p.to_string_lossy().into_owned();
        let (policy, ca, trace_log) = (text(&policy), text(&dir.join("ca")), text(&trace));
        let mut args = vec![
            "--policy",
            &policy,
            "--ca-dir",
            &ca,
            "--trace-log",
            &trace_log,
        ];
        args.extend(extra);
        let purser = start_purser(purser, &args, rust_log, &log)?;
        Ok(Stage {
            merchant,
            stub,
            purser,
            trace,
            log,
        })
    }

    /// SIGTERM: Purser drains and flushes its proof log. Its exit code (`None`: killed).
    pub(crate) fn stop(&mut self, grace: Duration) -> Option<i32> {
        terminate(&mut self.purser.child, grace)
    }
}

/// What a report says about where it ran.
pub(crate) struct Machine {
    pub cpus: usize,
    pub cpu: String,
    pub loadavg: String,
    pub commit: String,
    /// cargo or rustc was running when the run started (two shared cores: it moves
    /// numbers by 30% or more).
    pub busy: bool,
}

impl Machine {
    /// The machine now; `dirty_paths` are the paths whose uncommitted changes the commit
    /// mentions.
    pub(crate) fn now(dirty_paths: &[&str]) -> Machine {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |(_, name)| name.trim().to_string());
        let loadavg = read("/proc/loadavg");
        let loadavg = loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let git = |args: &[&str]| Command::new("git").args(args).output().ok();
        let mut commit = git(&["rev-parse", "--short", "HEAD"])
            .filter(|o| o.status.success())
            .map_or("none".into(), |o| {
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            });
        let mut status = vec!["status", "--porcelain", "--"];
        status.extend(dirty_paths);
        status.extend([":!benches/report", ":!benches/REPORT.md"]);
        if commit != "none" && git(&status).is_some_and(|o| !o.stdout.is_empty()) {
            commit.push_str(&format!(
                " + uncommitted changes in {}",
                dirty_paths.join("/")
            ));
        }
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            loadavg,
            commit,
            busy: cargo_busy(),
        }
    }
}

/// Whether cargo or rustc is running now.
pub(crate) fn cargo_busy() -> bool {
    let running = |name| {
        Command::new("pgrep")
            .args(["-x", name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    running("rustc") || running("cargo")
}

/// Writes a report to `benches/results/KIND-DATE.md` and says so (benches/run reads the
/// line).
pub(crate) fn write_report(kind: &str, text: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all("benches/results")?;
    let now = jiff::Zoned::now().strftime("%Y-%m-%d-%H%M%S");
    let path = PathBuf::from(format!("benches/results/{kind}-{now}.md"));
    std::fs::write(&path, text)?;
    eprintln!("==> written to {}", path.display());
    Ok(path)
}
