//! A throwaway PKI for upstream servers: a CA that Purser is told to trust with
//! `--upstream-ca`, and leaves for `localhost` / `127.0.0.1`.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};

pub struct TestPki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    pub ca_path: PathBuf,
}

pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestPki {
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

    /// A server certificate and key for `localhost` and `127.0.0.1`, written as PEM files.
    pub fn server_cert_files(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
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

/// A [`TestPki`] for upstream servers, with the directory its files live in (removed when
/// this is dropped).
pub struct UpstreamPki {
    _dir: super::TempDir,
    pub pki: TestPki,
}

pub fn upstream_pki() -> UpstreamPki {
    let dir = super::TempDir::new("upstream-pki");
    let pki = TestPki::new(dir.path(), "upstream");
    UpstreamPki { _dir: dir, pki }
}
