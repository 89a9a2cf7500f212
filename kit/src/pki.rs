//! A throwaway PKI for upstream servers: a CA a proxy is told to trust (Purser's
//! `--upstream-ca`, the load generators' `--ca`), leaves for `localhost` / `127.0.0.1`,
//! and the rustls server configurations the origins serve them with.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct TestPki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// The CA certificate, PEM (`NAME-ca.pem` in the directory given).
    pub ca_path: PathBuf,
}

/// A leaf and its key, ready for [`server_config`].
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestPki {
    /// A new CA named `NAME test CA`, its certificate written to `dir/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestPki {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign");
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, cert.pem()).expect("write ca");
        TestPki {
            issuer: Issuer::new(params, key),
            ca_der: cert.der().clone(),
            ca_path,
        }
    }

    /// A server certificate and key for `localhost` and `127.0.0.1`, written as PEM files
    /// `dir/NAME.pem` and `dir/NAME.key`.
    pub fn server_cert_files(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self.server_cert_files_for(dir, name, &["localhost", "127.0.0.1"])
    }

    /// A server certificate and key for `hosts` (names or IP addresses), written as PEM
    /// files `dir/NAME.pem` and `dir/NAME.key`.
    pub fn server_cert_files_for(
        &self,
        dir: &Path,
        name: &str,
        hosts: &[&str],
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
        let params = CertificateParams::new(hosts).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// A server certificate for `localhost` and `127.0.0.1` (and any extra names).
    pub fn server_cert(&self, extra_names: &[&str]) -> ServerCert {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        names.extend(extra_names.iter().map(|n| n.to_string()));
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(names).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        ServerCert {
            chain: vec![cert.der().clone(), self.ca_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

impl ServerCert {
    /// A certificate chain and key read from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> std::io::Result<ServerCert> {
        let bad = |path: &Path, e: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: {e}", path.display()),
            )
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(cert, e.to_string()))?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
        Ok(ServerCert {
            chain,
            key: key_der,
        })
    }
}

/// A TLS server configuration for `cert`, offering `alpn` in order.
pub fn server_config(cert: ServerCert, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(cert.chain, cert.key)
    .expect("certificate and key match");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
