//! The official Machine Payments Protocol Python SDK (pympp 0.16.0), driven from the
//! tests: a venv of its own under `target/` (its pins conflict with the x402 lock), a
//! pympp merchant whose payment backends are loopback stubs (the x402 facilitator stub
//! settles `evm` charges, a Tempo JSON-RPC stub takes `tempo` broadcasts), and a pympp
//! agent that pays through a proxy (`tests/interop/mpp/`); the same over MCP (a pympp
//! MCP server and an MCP session paying through pympp's `McpClient`); and the official
//! TypeScript SDK (mppx 0.11.0, `tests/interop/node/`): its merchant and its agent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// The payer every script signs with (the public test key's address).
pub(crate) const PAYER: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

/// The MPP venv's python, building the venv the first time (about a minute, PyPI only).
pub(crate) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-mpp-venv");
        let output = Command::new("bash")
            .arg(format!("{INTEROP}/setup_venv.sh"))
            .arg(&venv)
            .arg(format!("{INTEROP}/mpp/requirements.txt"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run setup_venv.sh");
        assert!(output.status.success(), "setting up the pympp venv failed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(stdout.lines().last().expect("python path").trim())
    })
}

/// A Python server of the MPP venv that printed `READY <port>`; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(script: &str, args: &[String]) -> Server {
        let mut child = Command::new(python())
            .arg(format!("{INTEROP}/{script}"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python server");
        let stdout = child.stdout.take().expect("stdout");
        let port = super::ready_port(stdout, script);
        Server { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A pympp merchant with its two payment backends.
pub(crate) struct Merchant {
    server: Server,
    /// Kept alive for the merchant's `evm` settlements.
    _facilitator: Server,
    chain: Server,
    settlements: PathBuf,
    chain_log: PathBuf,
}

impl Merchant {
    pub(crate) fn start(dir: &Path) -> Merchant {
        let settlements = dir.join("settlements.jsonl");
        let chain_log = dir.join("chain.jsonl");
        let facilitator = Server::start(
            "facilitator_stub.py",
            &[
                "--quiet".into(),
                "--record".into(),
                settlements.display().to_string(),
            ],
        );
        let chain = Server::start(
            "mpp/tempo_rpc_stub.py",
            &[
                "--log".into(),
                chain_log.display().to_string(),
                "--sender".into(),
                PAYER.into(),
            ],
        );
        let server = Server::start(
            "mpp/mpp_server.py",
            &[
                "--facilitator".into(),
                facilitator.url(),
                "--tempo-rpc".into(),
                chain.url(),
            ],
        );
        Merchant {
            server,
            _facilitator: facilitator,
            chain,
            settlements,
            chain_log,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// The Tempo node's URL, for the agent's `--rpc`.
    pub(crate) fn chain_url(&self) -> String {
        self.chain.url()
    }

    /// The amounts the facilitator settled (evm charges), in base units.
    pub(crate) fn evm_settled(&self) -> Vec<u128> {
        read_lines(&self.settlements)
            .iter()
            .filter(|line| line["success"] == true)
            .filter_map(|line| line["amount"].as_str()?.parse().ok())
            .collect()
    }

    /// How many transactions were broadcast to the Tempo node (tempo charges).
    pub(crate) fn tempo_broadcasts(&self) -> usize {
        read_lines(&self.chain_log)
            .iter()
            .filter(|line| {
                let method = line["request"]["method"].as_str().unwrap_or("");
                method.starts_with("eth_sendRawTransaction")
            })
            .count()
    }
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// What the agent printed for one request.
pub(crate) use super::python::AgentResult as Paid;

/// Runs the pympp agent against `url` through `proxy` (`mpp_client.py`'s arguments in
/// `extra`), one result per request it made.
pub(crate) fn agent(url: &str, proxy: &str, extra: &[&str]) -> Vec<Paid> {
    let mut command = Command::new(python());
    command
        .arg(format!("{INTEROP}/mpp/mpp_client.py"))
        .args(["--url", url, "--proxy", proxy])
        .args(extra);
    let (lines, _) = super::printed_json(&mut command, "mpp_client.py");
    lines.iter().map(Paid::from_line).collect()
}

/// Runs the official x402 client (`tests/interop/agent_client.py`, x402 2.25.0 is in the
/// MPP venv's lock too) against `url` through `proxy`.
pub(crate) fn x402_agent(url: &str, proxy: &str) -> Vec<Paid> {
    super::python::agent_client(python(), url, proxy, None, &[])
}

/// An mppx merchant (`tests/interop/node/mppx_server.mjs`) and the facilitator stub it
/// settles through; killed on drop.
pub(crate) struct MppxMerchant {
    child: Child,
    port: u16,
    _facilitator: Server,
    settlements: PathBuf,
}

impl Drop for MppxMerchant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MppxMerchant {
    pub(crate) fn start(dir: &Path) -> MppxMerchant {
        let settlements = dir.join("mppx-settlements.jsonl");
        let facilitator = Server::start(
            "facilitator_stub.py",
            &[
                "--quiet".into(),
                "--record".into(),
                settlements.display().to_string(),
            ],
        );
        let mut child = Command::new("node")
            .arg(super::node::node_dir().join("mppx_server.mjs"))
            .arg(facilitator.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node (mppx_server.mjs)");
        let stdout = child.stdout.take().expect("stdout");
        let port = super::ready_port(stdout, "mppx_server.mjs");
        MppxMerchant {
            child,
            port,
            _facilitator: facilitator,
            settlements,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The amounts the facilitator settled, in base units.
    pub(crate) fn settled(&self) -> Vec<u128> {
        read_lines(&self.settlements)
            .iter()
            .filter(|line| line["success"] == true)
            .filter_map(|line| line["amount"].as_str()?.parse().ok())
            .collect()
    }
}

/// Runs the mppx agent (`tests/interop/node/mppx_agent.mjs`) against `url`, with
/// `HTTP_PROXY=proxy`.
pub(crate) fn mppx_agent(url: &str, proxy: &str) -> Paid {
    let mut command = Command::new("node");
    command
        .arg(super::node::node_dir().join("mppx_agent.mjs"))
        .arg(url);
    let output = super::through_proxy(&mut command, proxy)
        .output()
        .expect("run node (mppx_agent.mjs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "mppx_agent.mjs printed no JSON: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(value.get("error").is_none(), "mppx agent: {value}");
    Paid::from_line(&value)
}

/// A pympp MCP server (`tests/interop/mpp/mpp_mcp_server.py`: `ping` free, `premium_echo`
/// 0.01 USDC as an evm charge) and the facilitator stub that settles its charges.
pub(crate) struct McpMerchant {
    server: Server,
    _facilitator: Server,
    settlements: PathBuf,
}

impl McpMerchant {
    /// `json`: JSON answers instead of server-sent events.
    pub(crate) fn start(dir: &Path, json: bool) -> McpMerchant {
        let settlements = dir.join("mcp-settlements.jsonl");
        let facilitator = Server::start(
            "facilitator_stub.py",
            &[
                "--quiet".into(),
                "--record".into(),
                settlements.display().to_string(),
            ],
        );
        let mut args = vec!["--facilitator".to_string(), facilitator.url()];
        if json {
            args.push("--json".into());
        }
        let server = Server::start("mpp/mpp_mcp_server.py", &args);
        McpMerchant {
            server,
            _facilitator: facilitator,
            settlements,
        }
    }

    /// The MCP endpoint. Starlette's `Mount("/mcp")` answers `/mcp` with a `307` to
    /// `/mcp/`; a challenge is remembered for the tool at the path that answered it, so
    /// the agent is given the path that answers.
    pub(crate) fn url(&self) -> String {
        format!("{}/mcp/", self.server.url())
    }

    /// The amounts the facilitator settled, in base units.
    pub(crate) fn settled(&self) -> Vec<u128> {
        read_lines(&self.settlements)
            .iter()
            .filter(|line| line["success"] == true)
            .filter_map(|line| line["amount"].as_str()?.parse().ok())
            .collect()
    }
}

/// One MCP session paying through pympp's `McpClient` (`mpp_mcp_agent.py`), running
/// `steps` against `url` with `HTTP_PROXY=proxy`: a line per step, then whether the
/// session closed cleanly.
pub(crate) fn mcp_agent(
    url: &str,
    proxy: &str,
    steps: &[&str],
) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut command = Command::new(python());
    command
        .arg(format!("{INTEROP}/mpp/mpp_mcp_agent.py"))
        .args(["--url", url])
        .args(steps);
    super::through_proxy(&mut command, proxy);
    super::mcp_session_lines(&mut command, "mpp_mcp_agent.py")
}

/// Every line of the proof log validates under the published schema (MPP decisions carry
/// `protocol` where x402 ones carry `x402_version`).
pub(crate) fn assert_schema_valid(purser: &super::Purser) {
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/trace-line.schema.json"
    );
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
validator = Draft202012Validator(json.load(open(sys.argv[1])))
bad = [f"{n}: {e.message}" for n, line in enumerate(open(sys.argv[2]), 1)
       for e in validator.iter_errors(json.loads(line))]
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#;
    let output = Command::new(python())
        .args(["-c", script, schema])
        .arg(purser.trace_path())
        .output()
        .expect("run the schema check");
    assert!(
        output.status.success(),
        "trace lines off the schema: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
