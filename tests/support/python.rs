//! The official x402 Python SDK, driven from the tests: a venv built on first use under
//! `target/`, a facilitator stub, a paid FastAPI server and a paying `requests` client
//! (`tests/interop/*.py`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// The venv's python, building the venv the first time (about a minute, PyPI only).
pub(crate) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv");
        let output = Command::new("bash")
            .arg(format!("{INTEROP}/setup_venv.sh"))
            .arg(&venv)
            .stderr(Stdio::inherit())
            .output()
            .expect("run setup_venv.sh");
        assert!(
            output.status.success(),
            "setting up the x402 SDK venv failed"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(stdout.lines().last().expect("python path").trim())
    })
}

/// A Python server that printed `READY <port>`; killed on drop.
pub(crate) struct PyServer {
    child: Child,
    pub port: u16,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyServer {
    pub(crate) fn start(script: &str, args: &[String]) -> PyServer {
        let mut child = Command::new(python())
            .arg(format!("{INTEROP}/{script}"))
            .args(["--port", "0"])
            .args(args)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python server");
        let stdout = child.stdout.take().expect("stdout");
        let port = super::ready_port(stdout, script);
        PyServer { child, port }
    }

    pub(crate) fn url(&self, scheme: &str, path: &str) -> String {
        let host = if scheme == "https" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

/// The facilitator stub and where it records settlements.
pub(crate) struct Facilitator {
    pub server: PyServer,
    pub record: PathBuf,
}

impl Facilitator {
    pub(crate) fn start(dir: &Path) -> Facilitator {
        let record = dir.join("settlements.jsonl");
        let server = PyServer::start(
            "facilitator_stub.py",
            &[
                "--quiet".into(),
                "--record".into(),
                record.display().to_string(),
            ],
        );
        Facilitator { server, record }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Successful settlements, as recorded by the stub.
    pub(crate) fn settlements(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["success"] == serde_json::Value::Bool(true))
            .collect()
    }

    /// The sum of settled amounts, in atomic units.
    pub(crate) fn settled_atomic(&self) -> u128 {
        self.settlements()
            .iter()
            .filter_map(|s| s["amount"].as_str().and_then(|a| a.parse::<u128>().ok()))
            .sum()
    }
}

/// A paid server in front of the facilitator.
pub(crate) fn paid_server(facilitator: &Facilitator, extra: &[&str]) -> PyServer {
    let mut args = vec!["--facilitator".to_string(), facilitator.url()];
    args.extend(extra.iter().map(|s| s.to_string()));
    PyServer::start("paid_server.py", &args)
}

/// What the client printed for one request.
#[derive(Debug)]
pub(crate) struct AgentResult {
    pub status: u16,
    pub headers: serde_json::Value,
    pub body: String,
    /// The credential the agent sent, if it printed one.
    pub authorization: Option<String>,
}

impl AgentResult {
    /// One line a client printed.
    pub(crate) fn from_line(value: &serde_json::Value) -> AgentResult {
        AgentResult {
            status: value["status"].as_u64().unwrap_or(0) as u16,
            headers: value["headers"].clone(),
            body: value["body"].as_str().unwrap_or("").to_string(),
            authorization: value["authorization"].as_str().map(str::to_string),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Runs the paying client through `proxy`, trusting `ca` (if given).
pub(crate) fn agent(url: &str, proxy: &str, ca: Option<&Path>, extra: &[&str]) -> Vec<AgentResult> {
    agent_client(python(), url, proxy, ca, extra)
}

/// Runs `agent_client.py` under the interpreter `python` (the x402 venv's, or another
/// with the same SDK).
pub(crate) fn agent_client(
    python: &Path,
    url: &str,
    proxy: &str,
    ca: Option<&Path>,
    extra: &[&str],
) -> Vec<AgentResult> {
    let mut command = Command::new(python);
    command
        .arg(format!("{INTEROP}/agent_client.py"))
        .args(["--url", url])
        .args(extra);
    super::through_proxy(&mut command, proxy);
    if let Some(ca) = ca {
        command.env("REQUESTS_CA_BUNDLE", ca);
    }
    let (lines, _) = super::printed_json(&mut command, "agent_client.py");
    lines.iter().map(AgentResult::from_line).collect()
}
