//! Transparent mode in a real network namespace (issue #18): Purser, a merchant and its
//! facilitator run in a namespace the test makes; `purser redirect --apply` installs the
//! rules; agents run as another uid with no proxy settings and no capabilities. Official
//! x402 clients that ignore `HTTPS_PROXY` (the Python SDK over httpx and over requests,
//! Node's `@x402/fetch` without a dispatcher) are refused in EXPLORE, pay exactly once in
//! COMMIT, and leave their decisions in the proof log; what Purser cannot read is refused.
//!
//! Needs root, iproute2 and nftables: under `CI=true` their absence fails the test,
//! elsewhere it is skipped with a loud message.

#[path = "transparent/namespace.rs"]
mod namespace;
mod support;

use namespace::{Namespace, AGENT_UID, MERCHANT_NAME, MERCHANT_V4, MERCHANT_V6, TRANSPARENT_PORT};
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{node, python, TempDir};

const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
const PURSER: &str = env!("CARGO_BIN_EXE_purser");

/// Purser, the merchant (HTTP and HTTPS) and its facilitator, in one namespace, with the
/// agent's traffic redirected.
struct World {
    ns: Namespace,
    dir: TempDir,
    admin: std::net::SocketAddr,
    http_port: u16,
    https_port: u16,
    settlements: PathBuf,
}

impl World {
    /// Everything up, the rules installed; `extra_policy` is appended to the policy.
    fn start(label: &str, extra_policy: &str) -> Option<World> {
        let ns = Namespace::create(label)?;
        let dir = TempDir::new(&format!("transparent-{label}"));
        let pki = purser_kit::pki::TestPki::new(dir.path(), "merchant");
        let (cert, key) =
            pki.server_cert_files_for(dir.path(), "merchant", &[MERCHANT_NAME, MERCHANT_V4]);
        let settlements = dir.path().join("settlements.jsonl");
        let facilitator = ns.start_server(py_server(
            &ns,
            "facilitator_stub.py",
            &["--quiet", "--record", path(&settlements)],
        ));
        let facilitator = format!("http://127.0.0.1:{facilitator}");
        let merchant = |tls: &[&str]| {
            let mut args = vec!["--host", MERCHANT_V4, "--facilitator", &facilitator];
            args.extend(["--price-atomic", "50000"]);
            args.extend(tls);
            ns.start_server(py_server(&ns, "paid_server.py", &args))
        };
        let http_port = merchant(&[]);
        let https_port = merchant(&["--tls-cert", path(&cert), "--tls-key", path(&key)]);
        let policy = format!(
            "transparent:\n  agent: bot\n  session: main\n  session_header: true\n{extra_policy}"
        );
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).expect("write the policy");
        let mut purser = ns.command(PURSER);
        purser
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--transparent-listen", &format!("[::]:{TRANSPARENT_PORT}")])
            .args(["--policy", path(&policy_path)])
            .args(["--ca-dir", path(&dir.path().join("certs"))])
            .args(["--trace-log", path(&dir.path().join("trace.jsonl"))])
            .args(["--upstream-ca", path(&pki.ca_path)])
            .env("RUST_LOG", "purser=debug,info");
        let launched = purser_kit::process::launch(purser, &dir.path().join("purser.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        ns.keep(launched.child);
        let world = World {
            admin: launched.admin,
            ns,
            dir,
            http_port,
            https_port,
            settlements,
        };
        world
            .redirect(&["--apply"])
            .expect("purser redirect --apply");
        Some(world)
    }

    /// `purser redirect ARGS --agent-uid AGENT_UID --proxy-uid 0`, as root in the namespace.
    fn redirect(&self, args: &[&str]) -> Result<Output, String> {
        let uids = ["--agent-uid", &AGENT_UID.to_string(), "--proxy-uid", "0"].map(String::from);
        let mut all: Vec<&str> = vec![PURSER, "redirect"];
        all.extend(args);
        all.extend(uids.iter().map(String::as_str));
        self.ns.run(&all)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("certs").join("purser-ca.pem")
    }

    fn set_phase(&self, session: &str, phase: &str) {
        let url = format!("http://{}/v1/sessions/{session}/phase", self.admin);
        let body = format!("{{\"phase\":\"{phase}\"}}");
        let (status, answer) = self.ns.curl(&["-X", "POST", "-d", &body, &url]);
        assert_eq!(status, 200, "set phase: {answer}");
    }

    fn settled(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.settlements)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["success"] == true)
            .collect()
    }

    /// The proof log's decision lines for `session`.
    fn decisions(&self, session: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("trace.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["kind"] == "decision" && line["session"] == session)
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("purser.log")).unwrap_or_default()
    }

    /// Whether Purser's log says `text`, waiting (bounded) for its writer to catch up.
    fn logged(&self, text: &str) -> bool {
        for _ in 0..200 {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        false
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn py_server(ns: &Namespace, script: &str, args: &[&str]) -> std::process::Command {
    let mut command = ns.command(python::python());
    command
        .arg(format!("{INTEROP}/{script}"))
        .args(["--port", "0"])
        .args(args);
    command
}

/// An official x402 client, as the agent.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// x402's `requests` adapter (`agent_client.py`).
    Requests,
    /// x402's httpx transport (`httpx_agent.py`), which never reads proxy variables.
    Httpx,
    /// `@x402/fetch` around Node's fetch, with no dispatcher (`x402_fetch_agent.mjs`).
    NodeFetch,
}

/// Runs `client` against `url` as the agent, in `session`: the JSON line it printed.
fn pay_as_agent(world: &World, client: Client, url: &str, session: &str) -> serde_json::Value {
    let ca = world.ca();
    let header = format!("X-Purser-Session: {session}");
    let output = match client {
        Client::Requests => world.ns.as_agent(
            python::python(),
            &[
                &format!("{INTEROP}/agent_client.py"),
                "--url",
                url,
                "--header",
                &header,
            ],
            &[("REQUESTS_CA_BUNDLE", path(&ca))],
        ),
        Client::Httpx => world.ns.as_agent(
            python::python(),
            &[
                &format!("{INTEROP}/httpx_agent.py"),
                "--url",
                url,
                "--header",
                &header,
            ],
            &[("SSL_CERT_FILE", path(&ca))],
        ),
        Client::NodeFetch => world.ns.as_agent(
            Path::new("/usr/bin/node"),
            &[
                path(&node::node_dir().join("x402_fetch_agent.mjs")),
                url,
                &header,
            ],
            &[("NODE_EXTRA_CA_CERTS", path(&ca))],
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|line| line.starts_with('{'));
    line.and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "{client:?} printed no JSON: {stdout}{}\npurser log:\n{}",
                String::from_utf8_lossy(&output.stderr),
                world.log()
            )
        })
}

#[test]
fn sdk_agents_that_ignore_proxies_are_refused_in_explore_and_pay_once_in_commit() {
    let Some(world) = World::start("sdk", "") else {
        return;
    };
    let https = format!("https://{MERCHANT_NAME}:{}/paid/data", world.https_port);
    let plain_by_ip = format!("http://{MERCHANT_V4}:{}/paid/data", world.http_port);
    let plain_by_name = format!("http://{MERCHANT_NAME}:{}/paid/data", world.http_port);
    let cases = [
        (Client::Requests, "requests", https.as_str()),
        (Client::Httpx, "httpx", plain_by_ip.as_str()),
        (Client::NodeFetch, "node", https.as_str()),
        (Client::Httpx, "httpx-tls", https.as_str()),
        (Client::NodeFetch, "node-plain", plain_by_name.as_str()),
    ];
    for (paid_before, (client, session, url)) in cases.into_iter().enumerate() {
        let session_id = format!("bot.{session}");
        let explore = pay_as_agent(&world, client, url, session);
        assert_eq!(explore["status"], 403, "{client:?} in EXPLORE: {explore}");
        assert_eq!(
            explore["headers"]["x-purser-decision"], "DENIED",
            "{explore}"
        );
        assert_eq!(
            world.settled().len(),
            paid_before,
            "{client:?}: nothing settles in EXPLORE"
        );

        world.set_phase(&session_id, "COMMIT");
        let commit = pay_as_agent(&world, client, url, session);
        assert_eq!(
            commit["status"],
            200,
            "{client:?} in COMMIT: {commit}\n{}",
            world.log()
        );
        assert_eq!(
            commit["headers"]["x-purser-decision"], "ALLOWED",
            "{commit}"
        );
        assert_eq!(
            world.settled().len(),
            paid_before + 1,
            "{client:?} pays exactly once in COMMIT"
        );

        let decisions = world.decisions(&session_id);
        let verdicts: Vec<&str> = decisions
            .iter()
            .filter_map(|d| d["decision"].as_str())
            .collect();
        assert_eq!(verdicts, ["DENIED", "ALLOWED"], "{client:?}: {decisions:?}");
        assert_eq!(decisions[0]["rule"], "phase");
        assert_eq!(decisions[1]["agent"], "bot");
    }
    // The session the policy names, untouched by the header-chosen ones.
    assert!(world.decisions("bot.main").is_empty());
}

/// Runs `script` with bash as the agent (for raw `/dev/tcp` connections): its output.
fn bash_as_agent(world: &World, script: &str) -> Output {
    world
        .ns
        .as_agent(Path::new("/bin/bash"), &["-c", script], &[])
}

/// A TCP server that is not HTTP (`echo_server.py`) on `port` (0: any); its port.
fn echo_server(world: &World, port: u16, log: &Path) -> u16 {
    let mut command = world.ns.command(python::python());
    command.arg(format!("{INTEROP}/echo_server.py")).args([
        "--host",
        MERCHANT_V4,
        "--port",
        &port.to_string(),
        "--log",
        path(log),
    ]);
    world.ns.start_server(command)
}

#[test]
fn what_purser_cannot_read_is_refused_unless_listed_and_nothing_loops() {
    let dir = TempDir::new("transparent-wire-logs");
    // The policy is written before anything listens, so the listed destination has a
    // fixed port (the namespace is the test's own).
    // `bank.invalid` is a tunnel host that resolves nowhere: an SNI naming it must not
    // splice a connection to the merchant.
    let policy = "  passthrough: ['10.203.0.2:7001']\ntunnel: ['bank.invalid']\n";
    let Some(world) = World::start("wire", policy) else {
        return;
    };
    let refused_log = dir.path().join("refused.log");
    let listed_log = dir.path().join("listed.log");
    let refused_port = echo_server(&world, 0, &refused_log);
    echo_server(&world, 7001, &listed_log);

    let raw = |port: u16| {
        let script = format!(
            "exec 3<>/dev/tcp/{MERCHANT_V4}/{port}; printf '\\000\\001raw bytes\\n' >&3; timeout 20 cat <&3"
        );
        bash_as_agent(&world, &script)
    };
    // Neither TLS nor HTTP, to a port nobody listed: closed, and the server never sees it.
    let refused = raw(refused_port);
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(
        std::fs::read_to_string(&refused_log)
            .unwrap_or_default()
            .is_empty(),
        "the refused connection never reached its destination"
    );
    assert!(world.logged("refusing a redirected connection Purser cannot read"));
    // The same bytes to the listed destination are spliced, unread.
    let listed = raw(7001);
    assert_eq!(listed.stdout, b"\x00\x01raw bytes\n", "{listed:?}");

    // IPv6: the original destination comes from IPv6's conntrack, and a payment is governed.
    let payment = support::crafted_payment(1, 50_000);
    let v6 = format!("http://[{MERCHANT_V6}]:{}/paid/data", world.http_port);
    let curl_v6 = format!(
        "curl -sS -o /dev/null -w '%{{http_code}} %header{{x-purser-decision}}' -H 'PAYMENT-SIGNATURE: {payment}' '{v6}'"
    );
    let answer = bash_as_agent(&world, &curl_v6);
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout),
        "403 DENIED",
        "{answer:?}\n{}",
        world.log()
    );
    assert!(world.settled().is_empty());

    // A TLS connection to the merchant whose SNI names a tunnel host is not spliced: the
    // SNI is the agent's to choose, the address is not. (Spliced, the payment inside would
    // reach the merchant unread.)
    let tunnel_sni = format!(
        "curl -sS -k -o /dev/null -w '%{{http_code}}' --resolve 'bank.invalid:{port}:{MERCHANT_V4}' \
         -H 'PAYMENT-SIGNATURE: {payment}' 'https://bank.invalid:{port}/paid/data'",
        port = world.https_port
    );
    let answer = bash_as_agent(&world, &tunnel_sni);
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "000", "{answer:?}");
    assert!(world.logged("its SNI names a tunnel host"));
    assert!(world.settled().is_empty());

    // Purser's own listeners are not reachable through the redirect: no loop, no admin API.
    let loop_back = format!(
        "curl -sS -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{}/healthz",
        world.admin.port()
    );
    let looped = bash_as_agent(&world, &loop_back);
    assert_eq!(String::from_utf8_lossy(&looped.stdout), "000", "{looped:?}");
    assert!(world.logged("refusing a redirected connection to Purser's own listener"));

    // The agent cannot take the rules out; applying them again does not stack them.
    let removal = world
        .ns
        .as_agent(Path::new(PURSER), &["redirect", "--remove"], &[]);
    assert!(!removal.status.success());
    assert!(String::from_utf8_lossy(&removal.stderr).contains("CAP_NET_ADMIN"));
    world.redirect(&["--apply"]).expect("apply again");
    let table = world
        .ns
        .run(&["nft", "list", "table", "inet", "purser"])
        .expect("the table is there");
    let rules = String::from_utf8_lossy(&table.stdout);
    assert_eq!(rules.matches("redirect to :15001").count(), 1, "{rules}");
    world
        .ns
        .run(&[PURSER, "redirect", "--remove"])
        .expect("remove");
    assert!(world
        .ns
        .run(&["nft", "list", "table", "inet", "purser"])
        .is_err());
}
