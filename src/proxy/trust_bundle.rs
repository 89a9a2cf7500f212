//! The trust bundle agents point at.
//!
//! Agents that replace their trust store (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) still
//! need the public roots for `tunnel` hosts, which Purser does not intercept. So beside
//! the CA, Purser writes `agent-bundle.pem`: the system roots plus its own CA. Both
//! `purser ca init` and `purser run` write it, so it lives with the CA, not in the CLI.

use super::ca::CertificateAuthority;
use std::path::PathBuf;

pub const AGENT_BUNDLE_FILE: &str = "agent-bundle.pem";

/// Where Debian, Alpine, Fedora and friends keep their bundle.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Writes the system roots plus the CA next to the CA; returns its path when written.
pub fn write_agent_bundle(ca: &CertificateAuthority) -> Option<PathBuf> {
    let ca_pem = std::fs::read_to_string(ca.cert_path()).ok()?;
    let system = SYSTEM_BUNDLES
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let path = ca.cert_path().parent()?.join(AGENT_BUNDLE_FILE);
    let contents = format!("{system}\n# Purser interception CA\n{ca_pem}");
    match std::fs::write(&path, contents) {
        Ok(()) => Some(path),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot write the agent trust bundle");
            None
        }
    }
}
