//! A network namespace of the test's own: loopback and one veth pair whose two ends both
//! stay inside it (no outside address is ever configured), a hosts file that names the
//! merchant, and the processes started in it, all removed when the guard drops, whether
//! the test passed or not.
//!
//! Everything runs through `ip netns exec`, which also gives each command a mount
//! namespace of its own with `/etc/netns/NAME/hosts` over `/etc/hosts`. The agent runs
//! there as [`AGENT_UID`] (no user is created: `setpriv` switches to the bare uid) with no
//! capabilities, no proxy variables and only a CA variable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// The uid the agent runs as; `purser redirect --agent-uid` names it.
pub(crate) const AGENT_UID: u32 = 64_123;
/// The merchant's addresses, on the inner end of the veth pair.
pub(crate) const MERCHANT_V4: &str = "10.203.0.2";
pub(crate) const MERCHANT_V6: &str = "fd00:203::2";
/// The name the agent's hosts file gives the merchant.
pub(crate) const MERCHANT_NAME: &str = "merchant.test";
/// The transparent listener's port (the namespace is the test's own, so it is free).
pub(crate) const TRANSPARENT_PORT: u16 = 15001;

/// A namespace and what runs in it.
pub(crate) struct Namespace {
    pub name: String,
    children: Mutex<Vec<Child>>,
}

/// Why the machine cannot run these tests; under `CI=true` that is a failure, elsewhere
/// the test says so loudly and passes nothing.
fn unavailable(reason: &str) -> Option<Namespace> {
    let message = format!("transparent-mode tests need root, iproute2 and nftables: {reason}");
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{message} (CI must provide them: .ci/run installs nftables and iproute2)");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
    None
}

impl Namespace {
    /// A fresh namespace named for `label`, with its links up and its hosts file; `None`
    /// (after a loud message) where the machine cannot make one, outside CI.
    pub(crate) fn create(label: &str) -> Option<Namespace> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("purser-{label}-{}-{n}", std::process::id());
        let uid = Command::new("id").arg("-u").output();
        if !uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0") {
            return unavailable("not running as root");
        }
        for tool in ["ip", "nft", "setpriv"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
            {
                return unavailable(&format!("`{tool}` is not installed"));
            }
        }
        if let Err(error) = run(Command::new("ip").args(["netns", "add", &name])) {
            return unavailable(&error);
        }
        // From here on the guard removes what was made, whatever fails next.
        let namespace = Namespace {
            name,
            children: Mutex::new(Vec::new()),
        };
        let hosts_dir = namespace.etc_dir();
        std::fs::create_dir_all(&hosts_dir).expect("create /etc/netns/NAME");
        std::fs::write(
            hosts_dir.join("hosts"),
            format!("127.0.0.1 localhost\n::1 localhost\n{MERCHANT_V4} {MERCHANT_NAME}\n"),
        )
        .expect("write the namespace's hosts file");
        let setup = [
            "ip link set lo up",
            "ip link add pv0 type veth peer name pv1",
            "ip addr add 10.203.0.1/24 dev pv0",
            "ip addr add 10.203.0.2/24 dev pv1",
            "ip -6 addr add fd00:203::1/64 dev pv0 nodad",
            "ip -6 addr add fd00:203::2/64 dev pv1 nodad",
            "ip link set pv0 up",
            "ip link set pv1 up",
        ];
        for step in setup {
            let args: Vec<&str> = step.split(' ').collect();
            namespace
                .run(&args)
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        // The kernel must take an nftables NAT rule; otherwise nothing here can work.
        let probe = "table inet probe {\n\tchain c {\n\t\ttype nat hook output priority -100; policy accept;\n\t}\n}\ndelete table inet probe\n";
        if let Err(error) = namespace.run_with_input(&["nft", "-f", "-"], probe) {
            drop(namespace);
            return unavailable(&format!("this kernel refuses nftables NAT rules: {error}"));
        }
        Some(namespace)
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// `ip netns exec NAME PROGRAM`, with a clean environment.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        command
    }

    /// Runs `args` in the namespace as root: its output, or why it failed.
    pub(crate) fn run(&self, args: &[&str]) -> Result<Output, String> {
        run(self.command(args[0]).args(&args[1..]))
    }

    fn run_with_input(&self, args: &[&str], input: &str) -> Result<Output, String> {
        use std::io::Write;
        let mut child = self
            .command(args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        checked(output)
    }

    /// Keeps `child` (started in the namespace) to be killed when the namespace goes.
    pub(crate) fn keep(&self, child: Child) {
        self.children.lock().unwrap().push(child);
    }

    /// Starts `command` (a server that prints `READY <port>`) and returns its port.
    pub(crate) fn start_server(&self, mut command: Command) -> u16 {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a server in the namespace");
        let stdout = child.stdout.take().expect("stdout");
        self.keep(child);
        crate::support::ready_port(stdout, "a server")
    }

    /// `PROGRAM ARGS` as the agent: uid [`AGENT_UID`], no capabilities (bounding set
    /// emptied, no new privileges), only `env` in its environment beside `PATH` and `HOME`.
    ///
    /// A program that lives under `/root` (pyenv's Python, which the interop venv links
    /// to) is unreachable for another uid, as `/root` is mode 700; in the agent's own
    /// mount namespace, `/root` is replaced by an empty directory holding only that
    /// program's tree, so the agent can run it and sees nothing else of root's.
    pub(crate) fn as_agent(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
        let stage = crate::support::TempDir::new("agent-root");
        let expose_root = real
            .strip_prefix("/root")
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|top| top.as_os_str().to_string_lossy().into_owned());
        let mut script = String::from("set -e\n");
        if let Some(top) = expose_root {
            script.push_str(&format!(
                "mount --bind /root '{stage}'\nmount -t tmpfs -o mode=0755 tmpfs /root\nmkdir -p '/root/{top}'\nmount --bind '{stage}/{top}' '/root/{top}'\n",
                stage = stage.path().display()
            ));
        }
        script.push_str(&format!(
            "exec setpriv --reuid={AGENT_UID} --regid={AGENT_UID} --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \"$@\"\n"
        ));
        let mut command = self.command("sh");
        command
            .args(["-c", &script, "agent"])
            .arg(program)
            .args(args)
            .env("HOME", "/tmp");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run the agent")
    }

    /// `curl ARGS` in the namespace as root (the admin API is on the namespace's
    /// loopback): `(status, body)`.
    pub(crate) fn curl(&self, args: &[&str]) -> (u16, String) {
        let output = self
            .command("curl")
            .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("run curl in the namespace");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for mut child in self.children.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

fn run(command: &mut Command) -> Result<Output, String> {
    let output = command.output().map_err(|e| e.to_string())?;
    checked(output)
}

fn checked(output: Output) -> Result<Output, String> {
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
