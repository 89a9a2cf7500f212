//! Starts the real Purser for the demo: this same binary, re-executed as `purser run` on
//! loopback ports the system picks, with the demo's policy, CA directory and proof log.
//! Nothing about Purser's own path is special-cased: the agent talks to exactly what an
//! operator runs. Its log goes to a file in the working directory.

use super::error::DemoError;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long Purser may take to start listening.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long Purser may take to drain and exit after `SIGTERM`.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Where Purser keeps its files for the demo.
#[derive(Clone, Debug)]
pub(super) struct PurserFiles {
    pub policy: PathBuf,
    pub ca_dir: PathBuf,
    pub trace_log: PathBuf,
    pub log: PathBuf,
}

/// A running `purser run`; killed if dropped before [`PurserProcess::stop`].
pub(super) struct PurserProcess {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub pid: u32,
}

impl PurserProcess {
    /// Starts Purser and waits until it announces its addresses.
    pub(super) fn start(files: &PurserFiles) -> Result<PurserProcess, DemoError> {
        let binary = std::env::current_exe()
            .map_err(|e| DemoError::Launch(format!("cannot find this program's own path: {e}")))?;
        let log = std::fs::File::create(&files.log).map_err(|e| {
            DemoError::Launch(format!("cannot create {}: {e}", files.log.display()))
        })?;
        let mut child = Command::new(binary)
            .arg("run")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--policy")
            .arg(&files.policy)
            .arg("--ca-dir")
            .arg(&files.ca_dir)
            .arg("--trace-log")
            .arg(&files.trace_log)
            .args(["--workers", "1", "--drain-timeout", "5"])
            // The demo calls the admin API without a token; one set in the environment
            // would lock it out.
            .env_remove("PURSER_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| DemoError::Launch(format!("cannot start `purser run`: {e}")))?;
        let pid = child.id();
        let banner = child.stdout.take().map(wait_for_banner);
        let addresses = banner
            .and_then(|line| line.recv_timeout(START_WAIT).ok())
            .and_then(|line| parse_banner(&line));
        match addresses {
            Some((proxy, admin)) => Ok(PurserProcess {
                child,
                proxy,
                admin,
                pid,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(DemoError::Launch(format!(
                    "Purser did not start. The end of its log ({}):\n{}",
                    files.log.display(),
                    log_tail(&files.log)
                )))
            }
        }
    }

    /// Stops Purser as an operator would, with `SIGTERM`: it drains and flushes its proof
    /// log. It is killed if it does not exit in time.
    pub(super) async fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // `kill(1)`: the crate binds no libc, and every Unix has the command. Should it
        // fail, the fallback below still ends the process.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PurserProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads Purser's stdout on a thread of its own: the first `listening on` line is sent
/// back, and the rest is drained so Purser never blocks on a full pipe. The channel
/// closes if Purser exits before announcing itself.
fn wait_for_banner(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening on") {
                let _ = sender.send(line);
            }
        }
    });
    receiver
}

/// `purser 0.1.0 listening on http://PROXY (admin http://ADMIN)`.
fn parse_banner(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut addresses = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("http://"))
        .filter_map(|address| address.parse().ok());
    Some((addresses.next()?, addresses.next()?))
}

/// The last lines of Purser's log, to explain a failed start.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::parse_banner;

    #[test]
    fn the_banner_gives_both_addresses() {
        let line = "purser 0.1.0 listening on http://127.0.0.1:4100 (admin http://127.0.0.1:4101)";
        let (proxy, admin) = parse_banner(line).expect("addresses");
        assert_eq!(proxy.port(), 4100);
        assert_eq!(admin.port(), 4101);
        assert!(parse_banner("purser 0.1.0 listening on nothing").is_none());
    }
}
