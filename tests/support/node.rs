//! Pinned Node clients (`tests/interop/node/`), installed on first use under `target/`
//! by `tests/interop/setup_node.sh` and run as real processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The folder holding `node_modules` and the scripts, installing them the first time.
pub(crate) fn node_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-node");
        let output = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/setup_node.sh"
            ))
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("run setup_node.sh");
        assert!(
            output.status.success(),
            "installing the pinned Node clients failed (needs node and npm)"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(stdout.lines().last().expect("node dir").trim())
    })
}

/// What `undici_agent.mjs` saw: `{"status", "headers", "body"}` or `{"status": 0, "error"}`.
pub(crate) fn undici_fetch(
    proxy: &str,
    ca: Option<&Path>,
    url: &str,
    headers: &[String],
) -> serde_json::Value {
    let mut command = Command::new("node");
    command
        .arg(node_dir().join("undici_agent.mjs"))
        .arg(url)
        .args(headers);
    super::through_proxy(&mut command, proxy);
    if let Some(ca) = ca {
        command.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let output = command.output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "undici_agent.mjs printed no JSON: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
