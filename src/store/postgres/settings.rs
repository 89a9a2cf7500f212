//! How a replica reaches the fleet store: the `--store` URL (any database that speaks
//! PostgreSQL's protocol), its TLS, this replica's id, and the time limits that keep a
//! slow or unreachable store from holding a payment for long.

use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `purser run --store URL` was given.
#[derive(Clone, Debug)]
pub struct FleetSettings {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require&sslrootcert=FILE]`, or
    /// the `key=value` form.
    pub url: String,
    /// This replica's name in the store: its reservations, holds and proof-log lines carry
    /// it. Unique per replica; a replica started again under its own name takes over what
    /// its previous process left (its reservations become `unknown` at once).
    pub replica: String,
    /// The longest a payment waits on the store before it is refused `ledger_unavailable`.
    pub timeout: Duration,
    /// How long a replica's reservations outlive its last sign of life before another
    /// replica turns them into `unknown` payments.
    pub lease: Duration,
}

impl FleetSettings {
    /// Settings with the default time limits.
    pub fn new(url: &str, replica: &str) -> Self {
        FleetSettings {
            url: url.to_string(),
            replica: replica.to_string(),
            timeout: Duration::from_secs(2),
            lease: Duration::from_secs(10),
        }
    }
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreSetupError {
    /// The URL did not parse.
    #[error("--store: {0} (expected postgres://USER@HOST:PORT/DB)")]
    Url(String),
    /// `sslrootcert` could not be read.
    #[error("--store sslrootcert {path}: {reason}")]
    RootCert {
        /// The file named.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// TLS could not be set up.
    #[error("--store TLS: {0}")]
    Tls(String),
    /// The database could not be reached or refused the schema.
    #[error("--store {url}: {reason}")]
    Database {
        /// The URL without its password.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// The parsed connection settings and the TLS connector.
pub(super) struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Parses `url`: tokio-postgres reads everything but `sslrootcert`, which names extra
/// roots for the server's certificate (beside the webpki and system roots).
pub(super) fn connection(url: &str, timeout: Duration) -> Result<Connection, StoreSetupError> {
    let (url, root_cert) = take_root_cert(url);
    let mut config =
        tokio_postgres::Config::from_str(&url).map_err(|e| StoreSetupError::Url(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("purser");
    }
    // A peer that vanished (a pause, a cut cable) is noticed, not waited on for ever.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreSetupError::Tls(e.to_string()))?
            .with_root_certificates(Arc::new(roots(root_cert)?))
            .with_no_client_auth();
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// The URL without `sslrootcert=...`, and that file.
fn take_root_cert(url: &str) -> (String, Option<PathBuf>) {
    let mut root = None;
    if let Some((base, query)) = url.split_once('?') {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.strip_prefix("sslrootcert=") {
                Some(path) => {
                    root = Some(PathBuf::from(path));
                    false
                }
                None => true,
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (url, root);
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(PathBuf::from(path));
                false
            }
            None => true,
        })
        .collect();
    (kept.join(" "), root)
}

fn roots(extra: Option<PathBuf>) -> Result<RootCertStore, StoreSetupError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = extra {
        let failed = |reason: String| StoreSetupError::RootCert {
            path: path.clone(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .map_err(|e| failed(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| failed(e.to_string()))?;
        if certs.is_empty() {
            return Err(failed("no PEM certificates in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// The URL as logs and errors may show it: the password replaced.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => pair,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_certificate_is_taken_out_of_either_form() {
        let (url, root) = take_root_cert("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem");
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        assert_eq!(root, Some(PathBuf::from("/ca.pem")));
        let (url, root) = take_root_cert("host=h user=u sslrootcert=/ca.pem");
        assert_eq!(url, "host=h user=u");
        assert_eq!(root, Some(PathBuf::from("/ca.pem")));
        assert_eq!(take_root_cert("postgres://u@h/db").1, None);
    }

    #[test]
    fn passwords_never_reach_a_log() {
        assert_eq!(
            redacted("postgres://purser:secret@db:5432/x"),
            "postgres://purser:***@db:5432/x"
        );
        assert_eq!(redacted("host=db password=secret"), "host=db password=***");
    }
}
