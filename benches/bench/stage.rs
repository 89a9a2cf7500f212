//! The stage the soak and the findings run on: a run directory (kept on request or on
//! failure), a fresh `purser run` on loopback ports of its own, the machine and commit
//! a report names, and where reports are written.

use purser_kit::process::{launch, terminate, Launched};
use purser_kit::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A scratch directory under the system's temp dir, removed on drop unless kept.
pub(crate) struct RunDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl RunDir {
    pub(crate) fn new(label: &str, keep: bool) -> Result<RunDir, Error> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("purser-{label}.{}.{stamp:x}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(RunDir { path, keep })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("==> kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `purser run` with `args` on ports of its own, its stderr in `log`, `RUST_LOG` as given;
/// returns once the admin API answers `/healthz`.
pub(crate) fn start_purser(
    purser: &Path,
    args: &[&str],
    rust_log: &str,
    log: &Path,
) -> Result<Launched, Error> {
    let mut command = Command::new(purser);
    command
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("RUST_LOG", rust_log);
    let mut launched = launch(command, log)?;
    let started = Instant::now();
    while !healthy(launched.admin) {
        if started.elapsed() > Duration::from_secs(60) || launched.child.try_wait()?.is_some() {
            terminate(&mut launched.child, Duration::from_secs(1));
            return Err(format!("purser never answered /healthz: {}", tail(log)).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(launched)
}

fn healthy(admin: std::net::SocketAddr) -> bool {
    purser_kit::admin::call_blocking(admin, "GET", "/healthz", None).is_ok_and(|(s, _)| s == 200)
}

/// The last lines of a log, for an error message.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs `purser ARGS` to completion; an error with its output when it fails.
pub(crate) fn purser_command(purser: &Path, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(purser).args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!("purser {}: {text}", args.join(" ")).into());
    }
    Ok(text)
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

/// `benches/results/KIND-DATE.md`, its directory created.
pub(crate) fn results_path(kind: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all("benches/results")?;
    let now = jiff::Zoned::now().strftime("%Y-%m-%d-%H%M%S").to_string();
    Ok(PathBuf::from(format!("benches/results/{kind}-{now}.md")))
}

/// Writes a report where `results_path` says and says so (benches/run reads the line).
pub(crate) fn write_report(kind: &str, text: &str) -> Result<PathBuf, Error> {
    let path = results_path(kind)?;
    std::fs::write(&path, text)?;
    eprintln!("==> written to {}", path.display());
    Ok(path)
}
