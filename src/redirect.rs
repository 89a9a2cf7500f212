//! `purser redirect`: the nftables rules that hand one uid's outbound TCP to Purser's
//! transparent listener, in the network namespace they are installed in (a pod's, when an
//! init container runs `purser redirect --apply`).
//!
//! The rules live in a table of their own, `inet purser` (IPv4 and IPv6 alike), and are
//! installed as one nft transaction that creates the table, deletes it and writes it
//! anew: applying twice leaves one copy, and a failure changes nothing. They:
//!
//! * leave Purser's own uid alone (`--proxy-uid`), so its upstream connections are never
//!   sent back to it, and every uid but the agent's (`--agent-uid`);
//! * leave DNS alone (TCP port 53; UDP is never redirected);
//! * leave loopback connections to Purser's own listeners alone: the transparent port and
//!   `--direct-ports` (the forward proxy, so `HTTPS_PROXY` keeps working). The admin port
//!   is deliberately not among them: an agent's connection to it is redirected, and Purser
//!   refuses a connection whose original destination is its own listener, so the agent
//!   cannot approve its own holds;
//! * redirect the rest of the agent's TCP (or only `--ports`) to the transparent port;
//! * reject the agent's UDP other than DNS, unless `--allow-udp`: HTTP/3 (QUIC) runs over
//!   UDP, which a TCP listener cannot take, so a client that tries it falls back to TCP
//!   instead of paying around Purser.
//!
//! Generating the text is pure and unit-tested; [`apply`] pipes it to `nft -f -`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The nftables table the rules live in.
pub(crate) const TABLE: &str = "inet purser";

/// What to redirect, and what to leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Redirect {
    /// The uid whose outbound traffic is redirected (the agent's).
    pub(crate) agent_uid: u32,
    /// Purser's own uid, exempt whatever else the rules say.
    pub(crate) proxy_uid: Option<u32>,
    /// The transparent listener's port (`purser run --transparent-listen`).
    pub(crate) port: u16,
    /// Only these destination ports are redirected; `None` for every TCP port but DNS.
    pub(crate) ports: Option<Vec<u16>>,
    /// Loopback ports the agent reaches without redirection (Purser's forward proxy).
    pub(crate) direct_ports: Vec<u16>,
    /// Leave the agent's UDP alone (QUIC then goes around Purser).
    pub(crate) allow_udp: bool,
}

/// Why the rules could not be generated or installed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedirectError {
    #[error("--agent-uid and --proxy-uid are both {0}: Purser must run as a uid of its own, or its own upstream connections would be redirected back to it")]
    SameUid(u32),
    #[error("port 0 is not a port (in --port, --ports or --direct-ports)")]
    PortZero,
    #[error("--ports is empty: name the ports to redirect, or leave the flag out to redirect every TCP port")]
    NoPorts,
    #[error(
        "`nft` was not found: install nftables in this image (Debian: apt-get install nftables)"
    )]
    NftMissing,
    #[error("cannot run nft: {0}")]
    NftSpawn(std::io::Error),
    #[error("nft needs CAP_NET_ADMIN in this network namespace: run as root, or give the init container `securityContext: {{capabilities: {{add: [NET_ADMIN]}}}}` (nft said: {0})")]
    NotPermitted(String),
    #[error("this kernel lacks nftables NAT support (nf_tables, nft_redirect): load the modules or use a kernel with them (nft said: {0})")]
    KernelSupport(String),
    #[error("nft refused the rules: {0}")]
    Nft(String),
}

impl Redirect {
    /// The rules, as one nft script that replaces the table atomically.
    pub(crate) fn ruleset(&self) -> Result<String, RedirectError> {
        self.check()?;
        let mut text = String::new();
        // Create-then-delete makes the delete valid whether or not the table exists, and
        // the whole script is one transaction: re-applying replaces, never stacks.
        let _ = writeln!(
            text,
            "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{"
        );
        let agent = self.agent_uid;
        let _ = writeln!(text, "\tchain redirect_agent {{");
        let _ = writeln!(
            text,
            "\t\ttype nat hook output priority -100; policy accept;"
        );
        if let Some(proxy) = self.proxy_uid {
            let _ = writeln!(text, "\t\tmeta skuid {proxy} return");
        }
        let _ = writeln!(text, "\t\tmeta skuid != {agent} return");
        let _ = writeln!(text, "\t\tmeta l4proto != tcp return");
        let _ = writeln!(text, "\t\ttcp dport 53 return");
        let direct = port_set(&self.direct_with_listener());
        let _ = writeln!(text, "\t\tip daddr 127.0.0.0/8 tcp dport {direct} return");
        let _ = writeln!(text, "\t\tip6 daddr ::1 tcp dport {direct} return");
        let port = self.port;
        match &self.ports {
            Some(ports) => {
                let ports = port_set(ports);
                let _ = writeln!(text, "\t\ttcp dport {ports} redirect to :{port}");
            }
            None => {
                let _ = writeln!(text, "\t\tmeta l4proto tcp redirect to :{port}");
            }
        }
        let _ = writeln!(text, "\t}}");
        if !self.allow_udp {
            let _ = writeln!(text, "\tchain agent_udp {{");
            let _ = writeln!(
                text,
                "\t\ttype filter hook output priority 0; policy accept;"
            );
            let _ = writeln!(
                text,
                "\t\tmeta skuid {agent} meta l4proto udp udp dport != 53 reject"
            );
            let _ = writeln!(text, "\t}}");
        }
        let _ = writeln!(text, "}}");
        Ok(text)
    }

    fn check(&self) -> Result<(), RedirectError> {
        if self.proxy_uid == Some(self.agent_uid) {
            return Err(RedirectError::SameUid(self.agent_uid));
        }
        if let Some(ports) = &self.ports {
            if ports.is_empty() {
                return Err(RedirectError::NoPorts);
            }
        }
        let every = std::iter::once(&self.port)
            .chain(self.ports.iter().flatten())
            .chain(&self.direct_ports);
        if every.into_iter().any(|port| *port == 0) {
            return Err(RedirectError::PortZero);
        }
        Ok(())
    }

    /// The transparent port and the direct ports, sorted, without repeats.
    fn direct_with_listener(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = std::iter::once(self.port)
            .chain(self.direct_ports.iter().copied())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// `80` or `{ 80, 443 }`, sorted, without repeats.
fn port_set(ports: &[u16]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    match ports.as_slice() {
        [one] => one.to_string(),
        many => {
            let list: Vec<String> = many.iter().map(u16::to_string).collect();
            format!("{{ {} }}", list.join(", "))
        }
    }
}

/// The script that removes the rules; removing rules that are not there succeeds.
pub(crate) fn removal() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}

/// Runs `script` through `nft -f -` in the current network namespace.
pub(crate) fn apply(script: &str) -> Result<(), RedirectError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => RedirectError::NftMissing,
            _ => RedirectError::NftSpawn(error),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(RedirectError::NftSpawn)?;
    }
    let output = child.wait_with_output().map_err(RedirectError::NftSpawn)?;
    if output.status.success() {
        return Ok(());
    }
    Err(classify_failure(&String::from_utf8_lossy(&output.stderr)))
}

/// What nft's complaint means for the person running the command.
fn classify_failure(stderr: &str) -> RedirectError {
    let said = stderr
        .trim()
        .lines()
        .take(6)
        .collect::<Vec<_>>()
        .join(" / ");
    let lower = said.to_ascii_lowercase();
    if lower.contains("operation not permitted") || lower.contains("permission denied") {
        RedirectError::NotPermitted(said)
    } else if lower.contains("not supported") || lower.contains("no such file or directory") {
        RedirectError::KernelSupport(said)
    } else {
        RedirectError::Nft(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> Redirect {
        Redirect {
            agent_uid: 1000,
            proxy_uid: Some(1337),
            port: 15001,
            ports: None,
            direct_ports: vec![8402],
            allow_udp: false,
        }
    }

    #[test]
    fn every_tcp_port_of_the_agent_goes_to_the_listener_and_the_rest_is_left_alone() {
        assert_eq!(
            redirect().ruleset().unwrap(),
            "table inet purser\n\
             delete table inet purser\n\
             table inet purser {\n\
             \tchain redirect_agent {\n\
             \t\ttype nat hook output priority -100; policy accept;\n\
             \t\tmeta skuid 1337 return\n\
             \t\tmeta skuid != 1000 return\n\
             \t\tmeta l4proto != tcp return\n\
             \t\ttcp dport 53 return\n\
             \t\tip daddr 127.0.0.0/8 tcp dport { 8402, 15001 } return\n\
             \t\tip6 daddr ::1 tcp dport { 8402, 15001 } return\n\
             \t\tmeta l4proto tcp redirect to :15001\n\
             \t}\n\
             \tchain agent_udp {\n\
             \t\ttype filter hook output priority 0; policy accept;\n\
             \t\tmeta skuid 1000 meta l4proto udp udp dport != 53 reject\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn listed_ports_only_without_a_proxy_uid_and_with_udp_allowed() {
        let only = Redirect {
            proxy_uid: None,
            ports: Some(vec![443, 80, 443]),
            direct_ports: vec![],
            allow_udp: true,
            port: 9000,
            ..redirect()
        };
        let text = only.ruleset().unwrap();
        assert!(!text.contains("1337"), "{text}");
        assert!(
            text.contains("\t\ttcp dport { 80, 443 } redirect to :9000\n"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 127.0.0.0/8 tcp dport 9000 return"),
            "{text}"
        );
        assert!(!text.contains("agent_udp"), "{text}");
        assert!(text.starts_with("table inet purser\ndelete table inet purser\n"));
    }

    #[test]
    fn nonsense_is_refused_before_anything_is_installed() {
        let same = Redirect {
            proxy_uid: Some(1000),
            ..redirect()
        };
        assert!(matches!(same.ruleset(), Err(RedirectError::SameUid(1000))));
        let none = Redirect {
            ports: Some(vec![]),
            ..redirect()
        };
        assert!(matches!(none.ruleset(), Err(RedirectError::NoPorts)));
        let zero = Redirect {
            ports: Some(vec![80, 0]),
            ..redirect()
        };
        assert!(matches!(zero.ruleset(), Err(RedirectError::PortZero)));
    }

    #[test]
    fn removal_is_idempotent_by_construction() {
        assert_eq!(removal(), "table inet purser\ndelete table inet purser\n");
    }

    #[test]
    fn nft_failures_say_what_to_do() {
        let denied = classify_failure(
            "netlink: Error: cache initialization failed: Operation not permitted\n",
        );
        assert!(denied.to_string().contains("CAP_NET_ADMIN"), "{denied}");
        let kernel = classify_failure("Error: Could not process rule: No such file or directory");
        assert!(kernel.to_string().contains("kernel"), "{kernel}");
        let other = classify_failure("Error: syntax error");
        assert!(other.to_string().starts_with("nft refused"), "{other}");
    }
}
