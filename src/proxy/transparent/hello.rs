//! The first flight of a redirected connection, read before Purser answers: the TLS
//! ClientHello, for the name the agent asked for (SNI), or the start of an HTTP request
//! line ([`request_line`]).
//!
//! Behind `CONNECT` the agent names its host before TLS starts; a redirected connection
//! names it only inside the ClientHello. rustls's [`Acceptor`] parses it (Purser never
//! parses TLS by hand), from a copy of the bytes; the bytes themselves are then handed,
//! unchanged, to the TLS server that terminates the connection ([`Replayed`]), or to the
//! splice when the host is a `tunnel` host. A ClientHello is bounded by [`MAX_HELLO`]
//! and by the handshake timeout.

use rustls::server::Acceptor;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most bytes read while looking for the end of a ClientHello (one with
/// post-quantum key shares is under 2 KiB).
pub(super) const MAX_HELLO: usize = 32 * 1024;

/// What the ClientHello said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Hello {
    /// It asked for this server name (lower-cased).
    Named(String),
    /// A well-formed ClientHello that names no server (a client dialling an IP address).
    Unnamed,
    /// No ClientHello rustls accepts: why.
    Broken(String),
}

/// Reads the agent's ClientHello from `agent`, under `wait`. Returns what it said and
/// every byte read, to be replayed to whoever serves the connection.
pub(super) async fn read<S: AsyncRead + Unpin>(agent: &mut S, wait: Duration) -> (Hello, Vec<u8>) {
    let mut seen = Vec::with_capacity(2048);
    let reading = tokio::time::timeout(wait, read_until_complete(agent, &mut seen)).await;
    let hello = reading.unwrap_or_else(|_| Hello::Broken("no complete ClientHello in time".into()));
    (hello, seen)
}

async fn read_until_complete<S: AsyncRead + Unpin>(agent: &mut S, seen: &mut Vec<u8>) -> Hello {
    let mut acceptor = Acceptor::default();
    let mut chunk = [0u8; 4096];
    loop {
        let read = match agent.read(&mut chunk).await {
            Ok(0) => return Hello::Broken("closed during the ClientHello".into()),
            Ok(read) => read,
            Err(error) => return Hello::Broken(error.to_string()),
        };
        if seen.len() + read > MAX_HELLO {
            return Hello::Broken(format!("ClientHello over {MAX_HELLO} bytes"));
        }
        seen.extend_from_slice(&chunk[..read]);
        let mut fresh = &chunk[..read];
        while !fresh.is_empty() {
            match acceptor.read_tls(&mut fresh) {
                Ok(0) => return Hello::Broken("ClientHello too large to buffer".into()),
                Ok(_) => {}
                Err(error) => return Hello::Broken(error.to_string()),
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return match accepted.client_hello().server_name() {
                    Some(name) => Hello::Named(name.to_ascii_lowercase()),
                    None => Hello::Unnamed,
                };
            }
            Ok(None) => {}
            Err((error, _alert)) => return Hello::Broken(error.to_string()),
        }
    }
}

/// The longest method token [`request_line`] waits for.
const MAX_METHOD: usize = 20;

/// Whether plaintext opens an HTTP/1.1 request line: a method (an upper-case token) and a
/// space, under `wait`. Returns the answer and the bytes read to give it, to be replayed.
///
/// Two upper-case bytes are not enough on a redirected connection, where other protocols
/// arrive too: `SSH-2.0-...` starts like a method, and a spliced passthrough must never
/// carry HTTP Purser could have read.
pub(super) async fn request_line<S: AsyncRead + Unpin>(
    agent: &mut S,
    wait: Duration,
) -> (bool, Vec<u8>) {
    let mut seen: Vec<u8> = Vec::with_capacity(MAX_METHOD + 1);
    let reading = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; MAX_METHOD + 1];
        loop {
            let token = seen.iter().take_while(|b| b.is_ascii_uppercase()).count();
            match seen.get(token) {
                Some(b' ') => return token > 0,
                Some(_) => return false,
                None if token >= MAX_METHOD => return false,
                None => {}
            }
            let room = MAX_METHOD + 1 - seen.len();
            match agent.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return false,
                Ok(read) => seen.extend_from_slice(&chunk[..read]),
            }
        }
    });
    let http = reading.await.unwrap_or(false);
    (http, seen)
}

/// A stream with bytes already read from it put back in front; the copy is freed once
/// handed on, so a connection that lives for minutes keeps nothing of it.
pub(super) struct Replayed<S> {
    prefix: Vec<u8>,
    taken: usize,
    inner: S,
}

impl<S> Replayed<S> {
    pub(super) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Replayed {
            prefix,
            taken: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.prefix.len() {
            let unread = &this.prefix[this.taken..];
            let count = unread.len().min(buf.remaining());
            buf.put_slice(&unread[..count]);
            this.taken += count;
            if this.taken == this.prefix.len() {
                this.prefix = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    /// The ClientHello a rustls client sends for `name` (an IP address sends no SNI).
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).unwrap();
        bytes
    }

    async fn hello_of(bytes: Vec<u8>, chunk: usize) -> (Hello, Vec<u8>) {
        let (mut agent, mut purser) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(chunk) {
                agent.write_all(piece).await.unwrap();
            }
            // Dropped here: the agent closes after its bytes, as a broken client would.
        });
        let outcome = read(&mut purser, Duration::from_secs(5)).await;
        writer.await.unwrap();
        outcome
    }

    #[tokio::test]
    async fn the_server_name_comes_from_the_hello_and_every_byte_is_kept() {
        let bytes = client_hello("Merchant.Example");
        let (hello, seen) = hello_of(bytes.clone(), 7).await;
        assert_eq!(hello, Hello::Named("merchant.example".into()));
        assert_eq!(seen, bytes, "read in small pieces, kept whole");
        let (hello, _) = hello_of(client_hello("10.0.0.2"), 4096).await;
        assert_eq!(hello, Hello::Unnamed);
    }

    #[tokio::test]
    async fn what_is_no_hello_is_broken() {
        let (hello, _) = hello_of(vec![0x16, 0x03, 0x01, 0x00, 0x02, 0x01, 0x00], 64).await;
        assert!(matches!(hello, Hello::Broken(_)), "{hello:?}");
        let (hello, _) = hello_of(vec![0x16, 0x03, 0x01, 0x40, 0x00], 64).await;
        assert!(
            matches!(hello, Hello::Broken(_)),
            "a truncated record: {hello:?}"
        );
    }

    #[tokio::test]
    async fn only_a_method_and_a_space_open_a_request_line() {
        for (bytes, http) in [
            (&b"GET / HTTP/1.1\r\n"[..], true),
            (b"PROPFIND /x HTTP/1.1\r\n", true),
            (b"SSH-2.0-OpenSSH_9.2\r\n", false),
            (b"get / HTTP/1.1\r\n", false),
            (b" GET", false),
            (b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false),
            (b"GET", false),
        ] {
            let (mut agent, mut purser) = tokio::io::duplex(64);
            agent.write_all(bytes).await.unwrap();
            drop(agent);
            let (found, seen) = request_line(&mut purser, Duration::from_secs(5)).await;
            assert_eq!(found, http, "{bytes:?}");
            assert!(
                bytes.starts_with(&seen),
                "only bytes the agent sent are kept"
            );
        }
    }

    #[tokio::test]
    async fn replayed_bytes_come_first_then_the_stream() {
        let (mut agent, purser) = tokio::io::duplex(64);
        agent.write_all(b" world").await.unwrap();
        drop(agent);
        let mut replayed = Replayed::new(b"hello".to_vec(), purser);
        let mut everything = String::new();
        replayed.read_to_string(&mut everything).await.unwrap();
        assert_eq!(everything, "hello world");
    }
}
