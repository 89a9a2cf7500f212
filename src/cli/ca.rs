//! `purser ca init`: creates the CA, writes the agents' trust bundle
//! ([`crate::proxy::trust_bundle`]) and prints the variables agents need.

use crate::proxy::ca::CertificateAuthority;
use crate::proxy::trust_bundle::write_agent_bundle;
use std::path::Path;
use std::process::ExitCode;

/// Creates the CA in `dir` (replacing one only when `force`), writes the agents' trust
/// bundle, and prints the variables agents running against `proxy` need.
pub(crate) fn init(dir: &Path, force: bool, proxy: &str) -> ExitCode {
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
