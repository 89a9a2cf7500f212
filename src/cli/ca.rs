//! `purser ca init`, and the trust bundle agents point at.
//!
//! Agents that replace their trust store (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) still
//! need the public roots for `tunnel` hosts, which Purser does not intercept. So beside
//! the CA, Purser writes `agent-bundle.pem`: the system roots plus its own CA.

use crate::proxy::ca::CertificateAuthority;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const AGENT_BUNDLE_FILE: &str = "agent-bundle.pem";

/// Where Debian, Alpine, Fedora and friends keep their bundle.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

pub fn init(dir: &Path, force: bool, proxy: &str) -> ExitCode {
    match CertificateAuthority::create(dir, force) {
        Ok(ca) => {
            let bundle = write_agent_bundle(&ca);
            print_agent_env(&ca, bundle.as_deref(), proxy);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("purser: {error}");
            ExitCode::FAILURE
        }
    }
}

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

fn print_agent_env(ca: &CertificateAuthority, bundle: Option<&Path>, proxy: &str) {
    let absolute = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let ca_path = absolute(ca.cert_path());
    let bundle_path = bundle.map(absolute).unwrap_or_else(|| ca_path.clone());
    println!("# Purser CA written to {}", ca_path.display());
    println!("# Point agents at Purser and make them trust its CA:");
    println!("export HTTPS_PROXY=http://AGENT:TOKEN@{proxy}");
    println!("export HTTP_PROXY=http://AGENT:TOKEN@{proxy}");
    println!("export SSL_CERT_FILE={}", bundle_path.display());
    // curl prefers its own variable, and a set SSL_CERT_DIR would add roots beside the file.
    println!("export CURL_CA_BUNDLE={}", bundle_path.display());
    println!("unset SSL_CERT_DIR");
    println!("export REQUESTS_CA_BUNDLE={}", bundle_path.display());
    println!("export NODE_EXTRA_CA_CERTS={}", ca_path.display());
}
