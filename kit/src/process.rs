//! Processes: starting `purser run` and reading where it listens (or waiting for its
//! `/healthz`), running a `purser` command to completion, stopping it the way an operator
//! does (SIGTERM, then its exit status), what `/proc` says about a process (VmRSS,
//! threads, descriptors, CPU time), and a scratch directory for a run's files.

use crate::Error;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A started `purser run` and the addresses its banner named.
pub struct Launched {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

/// Spawns `command` (a `purser run` on port 0 or any other), its stderr appended to
/// `stderr_path`, and waits for the `listening on` banner on stdout; stdout is drained
/// afterwards so Purser never blocks on a full pipe. On failure the error carries the
/// stderr log.
pub fn launch(mut command: Command, stderr_path: &std::path::Path) -> Result<Launched, String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_path)
        .map_err(|e| format!("{}: {e}", stderr_path.display()))?;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("spawning purser: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let banner = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on") => break line,
            Some(Ok(_)) => continue,
            _ => {
                let _ = child.wait();
                let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
                return Err(format!("purser did not start: {log}"));
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (proxy, admin) = parse_banner(&banner)?;
    Ok(Launched {
        child,
        proxy,
        admin,
    })
}

/// `purser X listening on http://PROXY (admin http://ADMIN)`.
fn parse_banner(line: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let addresses: Vec<SocketAddr> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("http://"))
        .filter_map(|addr| addr.parse().ok())
        .collect();
    match addresses[..] {
        [proxy, admin] => Ok((proxy, admin)),
        _ => Err(format!("unexpected banner: {line}")),
    }
}

/// `purser run` with `args` on ports of its own, its stderr in `log`, `RUST_LOG` as given;
/// returns once the admin API answers `/healthz`.
pub fn start_purser(
    purser: &Path,
    args: &[&str],
    rust_log: &str,
    log: &Path,
) -> Result<Launched, Error> {
    let mut command = Command::new(purser);
    let ports = [
        "run",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    command.args(ports).args(args).env("RUST_LOG", rust_log);
    let mut launched = launch(command, log)?;
    let started = Instant::now();
    let healthy = |admin| {
        crate::admin::call_blocking(admin, "GET", "/healthz", None).is_ok_and(|(s, _)| s == 200)
    };
    while !healthy(launched.admin) {
        if started.elapsed() > Duration::from_secs(60) || launched.child.try_wait()?.is_some() {
            terminate(&mut launched.child, Duration::from_secs(1));
            return Err(format!("purser never answered /healthz: {}", tail(log)).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(launched)
}

/// The last 20 lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs `purser ARGS` to completion: what it printed, or an error with it when it failed.
pub fn purser_command(purser: &Path, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(purser).args(args).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(format!("purser {}: {text}", args.join(" ")).into());
    }
    Ok(text)
}

/// A scratch directory under the system's temp dir, removed on drop unless kept.
pub struct RunDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl RunDir {
    pub fn new(label: &str, keep: bool) -> Result<RunDir, Error> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let name = format!(
            "purser-{label}.{}.{:x}",
            std::process::id(),
            stamp.as_nanos()
        );
        let path = std::env::temp_dir().join(name);
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

/// Sends `signal` (`TERM`, `HUP`, …) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("kill -{signal}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid}: {status}"))
    }
}

/// SIGTERM, then up to `grace` for the process to exit (SIGKILL after): its exit code,
/// `None` when it had to be killed or died of a signal.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<i32> {
    if signal(child.id(), "TERM").is_ok() {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "pid {} still running {grace:?} after SIGTERM; SIGKILL",
            child.id()
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// One `/proc/PID/status` figure in kB or a count (`VmRSS`, `VmHWM`, `Threads`, with or
/// without the colon); 0 when the process or the field is gone.
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let name = field.trim_end_matches(':');
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A process's resident set in kB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// A process's footprint at one moment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds since the start of what is being sampled.
    pub t_s: f64,
    pub alive: bool,
    pub rss_kb: u64,
    pub threads: u64,
    pub fds: u64,
}

/// Samples `pid` now.
pub fn sample(pid: u32, t_s: f64) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Sample {
        t_s,
        alive: std::path::Path::new(&format!("/proc/{pid}/status")).exists(),
        rss_kb: rss_kb(pid),
        threads: status_field(pid, "Threads:"),
        fds,
    }
}

/// CPU seconds a process used so far (user + system, all threads; USER_HZ is 100 on
/// Linux). `None` reads this process.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/stat".into(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
