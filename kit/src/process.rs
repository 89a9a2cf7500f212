//! Processes: starting `purser run` and reading where it listens, stopping it the way an
//! operator does (SIGTERM, then its exit status), and what `/proc` says about a process
//! (VmRSS, threads, descriptors, CPU time).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
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
