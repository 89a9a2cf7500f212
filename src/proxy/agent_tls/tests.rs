//! The stream against a real rustls client (tokio-rustls), over in-memory pipes small
//! enough that records arrive in pieces.

use super::*;
use crate::proxy::ca::CertificateAuthority;
use crate::proxy::leaf_cache::LeafCache;
use rustls::pki_types::ServerName;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::client::TlsStream as ClientTls;
use tokio_rustls::TlsConnector;

const HOST: &str = "agent-tls.test";

struct Pki {
    leaves: LeafCache,
    client: Arc<rustls::ClientConfig>,
}

fn pki(name: &str, alpn: &[&[u8]]) -> Pki {
    let dir = std::env::temp_dir().join(format!("purser-agent-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = CertificateAuthority::create(&dir, true).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let leaves = LeafCache::new(ca, 4);
    let _ = std::fs::remove_dir_all(&dir);
    Pki {
        leaves,
        client: Arc::new(client),
    }
}

/// A handshake over a pipe of `pipe` bytes: Purser's end and the agent's.
async fn connected(
    pki: &Pki,
    pipe: usize,
) -> (AgentTlsStream<DuplexStream>, ClientTls<DuplexStream>) {
    let (server_io, client_io) = duplex(pipe);
    let config = pki.leaves.server_config(HOST).unwrap();
    let connector = TlsConnector::from(pki.client.clone());
    let name = ServerName::try_from(HOST).unwrap();
    let (server, client) = tokio::join!(
        AgentTlsStream::accept(server_io, config),
        connector.connect(name, client_io)
    );
    (server.unwrap(), client.unwrap())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn large_transfers_arrive_intact_both_ways_through_a_small_pipe() {
    let pki = pki("large", &[b"http/1.1"]);
    let (mut server, mut client) = connected(&pki, 512).await;
    let upload = pattern(300_000);
    let download = pattern(700_001);
    let (sent, received) = tokio::join!(
        async {
            client.write_all(&upload).await.unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0; download.len()];
            client.read_exact(&mut got).await.unwrap();
            got
        },
        async {
            let mut got = vec![0; upload.len()];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(&download).await.unwrap();
            server.flush().await.unwrap();
            got
        }
    );
    assert!(received == upload, "the upload arrived altered");
    assert!(sent == download, "the download arrived altered");
}

#[tokio::test]
async fn a_waiting_connection_keeps_no_buffers() {
    let pki = pki("idle", &[b"http/1.1"]);
    let (mut server, mut client) = connected(&pki, 64 * 1024).await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    client.flush().await.unwrap();
    let mut request = [0u8; 18];
    server.read_exact(&mut request).await.unwrap();
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    server.flush().await.unwrap();
    let mut response = [0u8; 19];
    client.read_exact(&mut response).await.unwrap();
    assert_eq!(&response, b"HTTP/1.1 200 OK\r\n\r\n");

    // A read with nothing to read (how hyper watches a connection while a payment is held).
    let mut spare = [0u8; 64];
    let pending = tokio::time::timeout(std::time::Duration::from_millis(50), async {
        server.read(&mut spare).await
    })
    .await;
    assert!(pending.is_err(), "nothing was sent, yet the read finished");
    assert_eq!(server.incomplete.capacity(), 0);
    assert_eq!(server.tls.plaintext.bytes.capacity(), 0);
    assert_eq!(server.tls.outgoing.bytes.capacity(), 0);
}

#[tokio::test]
async fn alpn_choice_is_visible() {
    let pki = pki("alpn", &[b"h2"]);
    let (server, client) = connected(&pki, 4096).await;
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn close_notify_reads_as_end_of_stream_each_way() {
    let pki = pki("close", &[b"http/1.1"]);
    let (mut server, mut client) = connected(&pki, 4096).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");

    server.write_all(b"goodbye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"goodbye");
}

#[tokio::test]
async fn a_client_that_does_not_speak_tls_is_refused_with_an_error() {
    let pki = pki("garbage", &[b"http/1.1"]);
    let (server_io, mut client_io) = duplex(4096);
    let config = pki.leaves.server_config(HOST).unwrap();
    client_io
        .write_all(b"GET / HTTP/1.1\r\nHost: agent-tls.test\r\n\r\n")
        .await
        .unwrap();
    let accepted = AgentTlsStream::accept(server_io, config).await;
    assert_eq!(
        accepted.err().map(|e| e.kind()),
        Some(io::ErrorKind::InvalidData)
    );
    // rustls's alert reaches the client: a TLS alert record (content type 21).
    let mut alert = [0u8; 1];
    client_io.read_exact(&mut alert).await.unwrap();
    assert_eq!(alert[0], 21);
}

#[tokio::test]
async fn a_client_that_leaves_mid_handshake_is_an_error_not_a_hang() {
    let pki = pki("leaves", &[b"http/1.1"]);
    let (server_io, client_io) = duplex(4096);
    let config = pki.leaves.server_config(HOST).unwrap();
    drop(client_io);
    let accepted = AgentTlsStream::accept(server_io, config).await;
    assert_eq!(
        accepted.err().map(|e| e.kind()),
        Some(io::ErrorKind::UnexpectedEof)
    );
}
