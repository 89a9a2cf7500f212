//! The local certificate authority that signs interception certificates.
//!
//! The CA lives in a directory (`certs/` by default) as `purser-ca.pem` and
//! `purser-ca.key`; the key file is created with mode 0600 and never leaves the machine.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

pub const CA_CERT_FILE: &str = "purser-ca.pem";
pub const CA_KEY_FILE: &str = "purser-ca.key";

/// How long an interception leaf is valid. Leaves are re-minted well before this.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why the CA could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a CA already exists in {0}; pass --force to replace it (agents must then trust the new one)")]
    AlreadyExists(PathBuf),
    #[error("{path}: not a usable CA certificate or key: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("cannot mint a certificate for `{host}`: {reason}")]
    Mint { host: String, reason: String },
}

/// A loaded CA, able to sign leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_path: PathBuf,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// A freshly minted leaf: its chain (leaf first) and its own private key.
pub struct MintedLeaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating one first if there is none. Returns whether it
    /// was created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), CaError> {
        if dir.join(CA_CERT_FILE).exists() || dir.join(CA_KEY_FILE).exists() {
            Ok((Self::load(dir)?, false))
        } else {
            Ok((Self::create(dir, false)?, true))
        }
    }

    /// Creates a new CA in `dir`. Refuses to overwrite one unless `force`.
    pub fn create(dir: &Path, force: bool) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if !force && (cert_path.exists() || key_path.exists()) {
            return Err(CaError::AlreadyExists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let key = KeyPair::generate().map_err(|e| unusable(&key_path, e))?;
        let params = ca_params();
        let cert = params
            .self_signed(&key)
            .map_err(|e| unusable(&cert_path, e))?;
        write_file(&key_path, key.serialize_pem().as_bytes(), 0o600, force)?;
        write_file(&cert_path, cert.pem().as_bytes(), 0o644, force)?;
        Self::load(dir)
    }

    /// Loads an existing CA certificate and key from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem =
            std::fs::read_to_string(&cert_path).map_err(|source| io_error(&cert_path, source))?;
        let key_pem =
            std::fs::read_to_string(&key_path).map_err(|source| io_error(&key_path, source))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| unusable(&key_path, e))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| unusable(&cert_path, e))?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| unusable(&cert_path, e))?;
        Ok(CertificateAuthority {
            issuer,
            cert_der,
            cert_path,
        })
    }

    /// Path of the CA certificate agents must trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Mints a certificate for `host` (a DNS name or an IP literal) with a fresh key.
    pub fn mint_leaf(&self, host: &str) -> Result<MintedLeaf, CaError> {
        let mint_error = |reason: String| CaError::Mint {
            host: host.to_string(),
            reason,
        };
        let key = KeyPair::generate().map_err(|e| mint_error(e.to_string()))?;
        let mut params = CertificateParams::new(vec![host.to_string()])
            .map_err(|e| mint_error(e.to_string()))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        let now = OffsetDateTime::now_utc();
        // Clocks on agents' machines drift; a leaf that starts an hour back still verifies.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| mint_error(e.to_string()))?;
        Ok(MintedLeaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Purser");
    name.push(
        DnType::CommonName,
        format!("Purser interception CA {}", random_hex_suffix()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial());
    params
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS RNG failing is not recoverable in any useful way; fall back to the clock so a
    // serial is still unique per process rather than aborting a request.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_le_bytes();
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = nanos[index % nanos.len()] ^ index as u8;
        }
    }
    bytes
}

fn random_serial() -> SerialNumber {
    let mut bytes = random_bytes::<16>();
    bytes[0] &= 0x7f; // positive, as RFC 5280 asks
    SerialNumber::from_slice(&bytes)
}

fn random_hex_suffix() -> String {
    crate::x402::hex(&random_bytes::<4>())
}

fn write_file(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<(), CaError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .map_err(|source| io_error(path, source))?;
    // `mode` applies only on creation; a replaced key keeps tight permissions too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unusable(path: &Path, reason: impl std::fmt::Display) -> CaError {
    CaError::Unusable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("purser-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn create_writes_a_private_key_and_reloads() {
        let dir = temp_dir("create");
        let (ca, created) = CertificateAuthority::load_or_create(&dir).unwrap();
        assert!(created);
        let mode = std::fs::metadata(dir.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = CertificateAuthority::load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(ca.cert_der(), again.cert_der());
        assert!(matches!(
            CertificateAuthority::create(&dir, false),
            Err(CaError::AlreadyExists(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn leaves_have_distinct_keys() {
        let dir = temp_dir("leaves");
        let (ca, _) = CertificateAuthority::load_or_create(&dir).unwrap();
        let a = ca.mint_leaf("a.example").unwrap();
        let b = ca.mint_leaf("127.0.0.1").unwrap();
        assert_ne!(a.key.secret_der(), b.key.secret_der());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
