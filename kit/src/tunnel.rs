//! HTTPS through a forward proxy: `CONNECT` tunnels and TLS clients that trust given CA
//! files (the proxy's own CA when it intercepts, a test origin's CA when it does not).
//!
//! Two `CONNECT`s: [`connect_tunnel`] goes through hyper and reports the proxy's answer
//! (what tests assert on); [`tunnel`] writes the request head on a raw socket, the lean
//! path the load generators open thousands of tunnels with.

use crate::Error;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The stream inside a tunnel opened by [`connect_tunnel`].
pub type Tunnel = TokioIo<hyper::upgrade::Upgraded>;

/// A TLS 1.2/1.3 client offering `alpn`, trusting only the certificates in `cas`. With
/// `resume` false every handshake is a full one (the handshake benches count those).
pub fn tls_config(
    cas: &[&Path],
    alpn: &[&[u8]],
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for path in cas {
        let certs =
            CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in certs {
            roots.add(cert.map_err(|e| format!("{}: {e}", path.display()))?)?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// TLS over `stream` to `server_name` with `config`.
pub async fn tls_connect<S>(
    stream: S,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// `CONNECT authority` through `proxy` with hyper, with `Proxy-Authorization` when
/// given: the proxy's status and, on `200`, the tunnel.
pub async fn connect_tunnel(
    proxy: SocketAddr,
    authority: &str,
    proxy_authorization: Option<&str>,
) -> Result<(u16, Option<Tunnel>), Error> {
    let tcp = TcpStream::connect(proxy).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn.with_upgrades());
    let mut builder = Request::connect(authority).header("host", authority);
    if let Some(credentials) = proxy_authorization {
        builder = builder.header("proxy-authorization", credentials);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status().as_u16();
    if status != 200 {
        return Ok((status, None));
    }
    let upgraded = hyper::upgrade::on(response).await?;
    Ok((status, Some(TokioIo::new(upgraded))))
}

/// Writes `CONNECT authority` on `tcp` and reads the answer's head; on `200` the stream
/// is the tunnel, anything else is an error naming the answer.
pub async fn tunnel(
    tcp: &mut TcpStream,
    authority: &str,
    proxy_authorization: Option<&str>,
) -> Result<(), Error> {
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = proxy_authorization {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
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
    if text.split_whitespace().nth(1) != Some("200") {
        let first = text.lines().next().unwrap_or("");
        let body = String::from_utf8_lossy(&answer[end..]);
        return Err(format!("CONNECT {authority}: {first} {}", body.trim()).into());
    }
    if end != answer.len() {
        return Err("bytes after the CONNECT answer before TLS".into());
    }
    Ok(())
}

/// The host part of an authority (`host:port`, `[v6]:port`).
pub fn host_of(authority: &str) -> &str {
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// TCP to `proxy`, `CONNECT authority` through it ([`tunnel`]), then TLS to the
/// authority's host inside the tunnel, as a client behind `HTTPS_PROXY` does.
pub async fn tls_through_proxy(
    proxy: SocketAddr,
    authority: &str,
    proxy_authorization: Option<&str>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, Error> {
    let mut tcp = TcpStream::connect(proxy).await?;
    tcp.set_nodelay(true)?;
    tunnel(&mut tcp, authority, proxy_authorization).await?;
    Ok(tls_connect(tcp, host_of(authority), tls).await?)
}
