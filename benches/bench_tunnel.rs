//! HTTPS through a proxy for the load generators (`loadgen.rs`, `paid_load.rs`, each
//! includes this file with `#[path]`): a `CONNECT` tunnel, then a TLS client that trusts
//! given CA files (the proxy's own CA, when it intercepts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A TLS 1.2/1.3 client offering the ALPN protocols `alpn`, trusting only the certificates
/// in `cas`. No resumption: every handshake is a full one.
pub fn tls_client_config(
    cas: &[PathBuf],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for path in cas {
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?
        {
            roots.add(cert.map_err(|e| format!("{}: {e}", path.display()))?)?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Sends `CONNECT authority` (with `Proxy-Authorization` when given) and reads the answer
/// head; on `200` the stream is the tunnel.
pub async fn tunnel(
    tcp: &mut TcpStream,
    authority: &str,
    proxy_authorization: Option<&str>,
) -> Result<(), Error> {
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = proxy_authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err("the proxy closed the connection during CONNECT".into());
        }
        answer.extend_from_slice(&chunk[..n]);
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if answer.len() > 16 * 1024 {
            return Err("CONNECT answer head too long".into());
        }
    };
    let text = String::from_utf8_lossy(&answer);
    let status_ok = text
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code == "200");
    if !status_ok {
        let first = text.lines().next().unwrap_or("").to_string();
        let body = String::from_utf8_lossy(&answer[end..]);
        return Err(format!("CONNECT {authority}: {first} {}", body.trim()).into());
    }
    if end != answer.len() {
        return Err("bytes after the CONNECT answer before TLS".into());
    }
    Ok(())
}

/// TCP to `proxy`, `CONNECT authority` through it, then TLS to the authority's host inside
/// the tunnel, as a client behind `HTTPS_PROXY` does.
pub async fn tls_through_proxy(
    proxy: SocketAddr,
    authority: &str,
    proxy_authorization: Option<&str>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, Error> {
    let mut tcp = TcpStream::connect(proxy).await?;
    tcp.set_nodelay(true)?;
    tunnel(&mut tcp, authority, proxy_authorization).await?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    Ok(tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?)
}
