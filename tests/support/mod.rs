//! Shared parts of the integration tests: the real `purser` binary on loopback, and
//! clients that speak through the proxy. The origins, the PKI, the x402 payment builder
//! and the admin client come from the kit the benches share (`purser_kit`).
#![allow(dead_code)]

pub(crate) mod mpp;
pub(crate) mod node;
pub(crate) mod pki;
pub(crate) mod postgres;
pub(crate) mod python;
pub(crate) mod webdriver;

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub(crate) use purser_kit::{origin, tunnel::Tunnel};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use purser_kit::x402::{resource, Pay};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

/// A scratch directory removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `purser run`, killed on drop.
pub(crate) struct Purser {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
    pub stderr_path: PathBuf,
    /// The most any file Purser writes may grow to (RLIMIT_FSIZE), from the next (re)start.
    pub file_size_limit_kib: Option<u64>,
    args: Vec<std::ffi::OsString>,
}

pub(crate) struct PurserOptions<'a> {
    pub policy: &'a str,
    pub upstream_ca: Option<&'a Path>,
    pub extra_args: Vec<String>,
    /// Caps the size of every file Purser writes, as a full disk would.
    pub file_size_limit_kib: Option<u64>,
}

impl<'a> PurserOptions<'a> {
    pub(crate) fn new(policy: &'a str) -> Self {
        PurserOptions {
            policy,
            upstream_ca: None,
            extra_args: Vec::new(),
            file_size_limit_kib: None,
        }
    }
}

impl Purser {
    pub(crate) fn start(policy: &str, upstream_ca: Option<&Path>) -> Purser {
        let mut options = PurserOptions::new(policy);
        options.upstream_ca = upstream_ca;
        Purser::start_with(options)
    }

    pub(crate) fn start_with(options: PurserOptions<'_>) -> Purser {
        let dir = TempDir::new("purser");
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, options.policy).expect("write policy");
        let stderr_path = dir.path().join("stderr.log");
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(["--policy".into(), policy_path.into_os_string()]);
        args.extend(["--ca-dir".into(), dir.path().join("certs").into_os_string()]);
        args.extend([
            "--trace-log".into(),
            dir.path().join("trace.jsonl").into_os_string(),
        ]);
        args.extend(options.extra_args.iter().map(Into::into));
        if let Some(ca) = options.upstream_ca {
            args.extend(["--upstream-ca".into(), ca.as_os_str().to_owned()]);
        }
        let (child, proxy, admin) = spawn_purser(&args, &stderr_path, options.file_size_limit_kib);
        Purser {
            child,
            proxy,
            admin,
            dir,
            stderr_path,
            file_size_limit_kib: options.file_size_limit_kib,
            args,
        }
    }

    /// SIGKILL: no drain, no flush, nothing Purser can do about it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts Purser again on the same policy, CA and proof log (new ports).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let (child, proxy, admin) =
            spawn_purser(&self.args, &self.stderr_path, self.file_size_limit_kib);
        self.child = child;
        self.proxy = proxy;
        self.admin = admin;
    }

    pub(crate) fn trace_path(&self) -> PathBuf {
        self.dir.path().join("trace.jsonl")
    }

    /// The proof log's complete lines, parsed. A last line still being appended (no
    /// '\n' yet) is left out; every complete line must be JSON.
    pub(crate) fn trace_lines(&self) -> Vec<serde_json::Value> {
        let bytes = std::fs::read(self.trace_path()).unwrap_or_default();
        bytes
            .split_inclusive(|&byte| byte == b'\n')
            .filter_map(|line| line.strip_suffix(b"\n"))
            .map(|line| serde_json::from_slice(line).expect("trace line is JSON"))
            .collect()
    }

    pub(crate) fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("certs").join("purser-ca.pem")
    }

    pub(crate) fn proxy_url(&self, user: Option<(&str, &str)>) -> String {
        match user {
            Some((name, token)) => format!("http://{name}:{token}@{}", self.proxy),
            None => format!("http://{}", self.proxy),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/PID/status` figure in kB (VmRSS, VmHWM).
    pub(crate) fn memory_kb(&self, field: &str) -> u64 {
        let kb = purser_kit::process::status_field(self.pid(), field);
        assert!(kb > 0, "no {field} in /proc/{}/status", self.pid());
        kb
    }

    /// The admin `/metrics` text.
    pub(crate) fn metrics(&self) -> String {
        self.admin("GET", "/metrics", None).1
    }

    /// Calls the admin API: `(status, body)`; status 0 when no answer came.
    pub(crate) fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        purser_kit::admin::call_blocking(self.admin, method, path, body)
            .unwrap_or_else(|e| (0, e.to_string()))
    }

    /// Moves a session to `phase` through the admin API.
    pub(crate) fn set_phase(&self, session: &str, phase: &str) {
        let (status, body) = self.admin(
            "POST",
            &format!("/v1/sessions/{session}/phase"),
            Some(&format!("{{\"phase\":\"{phase}\"}}")),
        );
        assert_eq!(status, 200, "set phase: {body}");
    }

    /// The value of one metric line, e.g. `purser_leaf_certs_minted_total`.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub(crate) fn signal(&self, signal: &str) {
        purser_kit::process::signal(self.pid(), signal).expect("kill");
    }

    /// A `CONNECT` tunnel to `authority` (which must answer 200), then TLS inside it to
    /// the authority's host trusting Purser's CA: an intercepted connection, offering
    /// `alpn`.
    pub(crate) async fn intercept(
        &self,
        authority: &str,
        credentials: Option<&str>,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<Tunnel> {
        self.tls_tunnel(authority, credentials, &self.ca_pem(), alpn)
            .await
    }

    /// A `CONNECT` tunnel to `authority` (which must answer 200), then TLS inside it
    /// trusting only `ca_pem`: Purser's CA when it intercepts, the origin's when it
    /// splices.
    pub(crate) async fn tls_tunnel(
        &self,
        authority: &str,
        credentials: Option<&str>,
        ca_pem: &Path,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<Tunnel> {
        let (status, tunnel) = connect_tunnel(self.proxy, authority, credentials).await;
        assert_eq!(status, 200, "CONNECT {authority}");
        let host = purser_kit::tunnel::host_of(authority);
        tls_connect(tunnel.unwrap(), host, ca_pem, alpn)
            .await
            .expect("TLS inside the tunnel")
    }
}

impl Drop for Purser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_purser(
    args: &[std::ffi::OsString],
    stderr_path: &Path,
    file_size_limit_kib: Option<u64>,
) -> (Child, SocketAddr, SocketAddr) {
    let binary = env!("CARGO_BIN_EXE_purser");
    let mut command = match file_size_limit_kib {
        // bash sets the limit and execs Purser; SIGXFSZ is ignored across exec, so a write
        // past the limit fails with EFBIG instead of killing the process.
        Some(kib) => {
            let mut command = Command::new("bash");
            command
                .arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
                .arg(binary);
            command
        }
        None => Command::new(binary),
    };
    // Under a file size limit the debug log would fill its file first: warnings only.
    let log_level = match file_size_limit_kib {
        Some(_) => "warn",
        None => "purser=debug,info",
    };
    command.args(args).env("RUST_LOG", log_level);
    let launched =
        purser_kit::process::launch(command, stderr_path).unwrap_or_else(|e| panic!("{e}"));
    (launched.child, launched.proxy, launched.admin)
}

/// `Basic base64(user:token)`.
pub(crate) fn basic(user: &str, token: &str) -> String {
    let value = purser_kit::client::basic(&format!("{user}:{token}"));
    value.to_str().expect("base64").to_string()
}

/// The HTTP status curl gets for `args` (its URL, proxy and headers), as curl prints it
/// ("000" if none).
pub(crate) fn http_status(args: &[&str]) -> String {
    let output = curl(&[&["-s", "-o", "/dev/null", "-w", "%{http_code}"], args].concat());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Reads until the peer closes (or resets) the connection, failing the test if that
/// takes longer than `deadline`.
pub(crate) async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(deadline, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection must be closed; read so far: {}",
        String::from_utf8_lossy(&answer)
    );
    answer
}

/// Runs curl with `args` and returns `(status, what it printed)`: the body, or with `-i`
/// the head and body. The status is 0 when curl got no answer.
pub(crate) fn curl_answer(args: &[&str]) -> (u16, String) {
    let output = curl(&[&["-s", "-w", "\n%{http_code}"], args].concat());
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Runs curl with no proxy settings from the environment.
pub(crate) fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run curl")
}

/// [`curl`] on the blocking pool, for async tests.
pub(crate) async fn curl_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs)
    })
    .await
    .unwrap()
}

/// Points a client process at `proxy` alone: `HTTP_PROXY` and `HTTPS_PROXY` are `proxy`,
/// and no proxy variable from the environment (lower case, `ALL_PROXY`, `NO_PROXY`) can
/// send it elsewhere.
pub(crate) fn through_proxy<'c>(command: &'c mut Command, proxy: &str) -> &'c mut Command {
    command
        .env("HTTP_PROXY", proxy)
        .env("HTTPS_PROXY", proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
}

/// Runs a client script (`what`, for messages) to its end, which must be a success, and
/// returns the JSON lines it printed and its whole output.
pub(crate) fn printed_json(command: &mut Command, what: &str) -> (Vec<serde_json::Value>, String) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("run {what}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (lines, stdout)
}

/// [`printed_json`] for an MCP session script: a line per step, then the closing line,
/// which must say whether the session closed.
pub(crate) fn mcp_session_lines(
    command: &mut Command,
    what: &str,
) -> (Vec<serde_json::Value>, serde_json::Value) {
    let (mut lines, stdout) = printed_json(command, what);
    let closed = lines.pop().expect("the closing line");
    assert!(closed.get("closed").is_some(), "{stdout}");
    (lines, closed)
}

/// Opens a `CONNECT` tunnel through the proxy. Returns the status and, on 200, the stream.
pub(crate) async fn connect_tunnel(
    proxy: SocketAddr,
    authority: &str,
    credentials: Option<&str>,
) -> (u16, Option<Tunnel>) {
    purser_kit::tunnel::connect_tunnel(proxy, authority, credentials)
        .await
        .expect("CONNECT through the proxy")
}

/// TLS over `stream`, trusting only `ca_pem`, offering `alpn`.
pub(crate) async fn tls_connect<S>(
    stream: S,
    server_name: &str,
    ca_pem: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    purser_kit::tunnel::tls_connect(stream, server_name, client_tls_config(ca_pem, alpn)).await
}

pub(crate) fn client_tls_config(ca_pem: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    purser_kit::tunnel::tls_config(&[ca_pem], alpn, true).expect("read CA")
}

/// Sends one request over an established stream with HTTP/1.1 or HTTP/2, collecting the
/// whole answer.
pub(crate) async fn send_over<S>(
    stream: S,
    http2: bool,
    request: Request<Full<Bytes>>,
) -> Response<Bytes>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let response = if http2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        sender.send_request(request).await.expect("h2 request")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        sender.send_request(request).await.expect("h1 request")
    };
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("response body").to_bytes();
    Response::from_parts(parts, bytes)
}

/// Waits (bounded) for a condition that other tasks make true.
pub(crate) async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    condition()
}

/// A well-formed x402 v2 `PAYMENT-SIGNATURE` value for `amount` atomic USDC on Base
/// Sepolia, unique by `nonce` (its nonce and signature differ). The signature is not
/// valid; Purser does not verify signatures, the facilitator does.
pub(crate) fn crafted_payment(nonce: u8, amount: u64) -> String {
    crafted(u64::from(nonce), amount).header()
}

/// [`crafted_payment`] before it is encoded, for a test that changes one field.
pub(crate) fn crafted(nonce: u64, amount: u64) -> Pay {
    Pay::usdc(amount)
        .numbered(nonce)
        .resource(Some(resource("http://127.0.0.1/paid", "", "")))
}

/// Sends `payment` through the proxy as `agent.SESSION:t0ken`: `(status, body)`.
pub(crate) fn pay(purser: &Purser, session: &str, url: &str, payment: &str) -> (u16, String) {
    let proxy = purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")));
    let header = format!("PAYMENT-SIGNATURE: {payment}");
    curl_answer(&["-x", &proxy, "-H", &header, url])
}

/// Runs `purser ARGS...` (no server): its output.
pub(crate) fn purser_cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(args)
        .output()
        .expect("run purser")
}

/// The text of the proof log and its rotated files, concatenated.
pub(crate) fn log_files_text(purser: &Purser) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(purser.dir.path())
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("trace.jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect()
}

/// Waits (bounded) until `count` holds are pending and returns them.
pub(crate) fn pending_holds(purser: &Purser, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let (_, body) = purser.admin("GET", "/v1/approvals", None);
        let holds = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()
            ["approvals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if holds.len() >= count {
            return holds;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("expected {count} pending holds");
}

/// The port a server child announced with its `READY <port>` line on `stdout` (the kit's,
/// the Python and Node stubs' convention); the rest of its output is drained on a thread
/// so it never blocks writing. Panics, naming `what`, when it exits first.
pub(crate) fn ready_port(stdout: std::process::ChildStdout, what: &str) -> u16 {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(port) = line.strip_prefix("READY ") {
                    break port.trim().parse().expect("port");
                }
            }
            _ => panic!("{what} exited before it was ready"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    port
}
