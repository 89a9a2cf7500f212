//! What an agent opens a `CONNECT` tunnel with: TLS, plaintext, or nothing.
//!
//! A tunnel is not always TLS. Node's undici (`EnvHttpProxyAgent`, the default way a Node
//! agent uses a proxy) and `curl -p` send `http://` requests as `CONNECT` followed by
//! plaintext HTTP. Purser reads the first bytes to tell: a TLS record starts with content
//! type 22 (handshake) and major version 3; anything else is plaintext. The bytes read to
//! decide are handed back through [`Prefixed`], so whoever serves the tunnel (the TLS
//! interceptor, the HTTP server, or a splice) sees the stream from its first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What the agent opened the tunnel with. The bytes read so far are in the stream
/// ([`Prefixed`]), not lost.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A TLS record header.
    Tls,
    /// Anything else: plaintext, HTTP or not.
    Plaintext,
    /// Gone, or silent past the wait, before saying anything.
    Closed,
}

/// Reads the first two bytes the agent sends, under `wait`: a client speaks first in TLS
/// and in HTTP alike, so silence ends the tunnel. Returns the opening and the stream with
/// those bytes put back in front.
pub async fn opening<S: AsyncRead + Unpin>(mut agent: S, wait: Duration) -> (Opening, Prefixed<S>) {
    let mut prefix = [0u8; 2];
    let mut have = 0;
    let read = tokio::time::timeout(wait, async {
        while have < prefix.len() {
            match agent.read(&mut prefix[have..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    have += n;
                    if prefix[0] != 0x16 {
                        return true;
                    }
                }
            }
        }
        true
    })
    .await;
    let opening = match read {
        Ok(true) if prefix[..have] == [0x16, 0x03] => Opening::Tls,
        Ok(true) => Opening::Plaintext,
        Ok(false) | Err(_) => Opening::Closed,
    };
    let stream = Prefixed {
        prefix,
        start: 0,
        end: have as u8,
        inner: agent,
    };
    (opening, stream)
}

/// Whether plaintext that opened a tunnel can be the start of an HTTP/1.1 request: a
/// method is an uppercase token. (`PRI`, HTTP/2's preface, is refused by the HTTP/1.1
/// server that reads it: h2c is not served.)
pub fn looks_like_http(stream: &Prefixed<impl AsyncRead>) -> bool {
    stream.prefix[..stream.end as usize]
        .iter()
        .all(|b| b.is_ascii_uppercase())
}

/// A stream with the bytes [`opening`] read put back in front. Two bytes inline: an
/// intercepted connection may live for minutes, so nothing is allocated for them.
pub struct Prefixed<S> {
    prefix: [u8; 2],
    start: u8,
    end: u8,
    inner: S,
}

impl<S> Prefixed<S> {
    /// The bytes read to decide, not yet handed on.
    pub fn unread(&self) -> &[u8] {
        &self.prefix[self.start as usize..self.end as usize]
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let unread = &this.prefix[this.start as usize..this.end as usize];
            let n = unread.len().min(buf.remaining());
            buf.put_slice(&unread[..n]);
            this.start += n as u8;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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
    use tokio::io::AsyncWriteExt;

    async fn open(bytes: &'static [u8]) -> (Opening, Vec<u8>) {
        let (mut agent, purser) = tokio::io::duplex(64);
        agent.write_all(bytes).await.unwrap();
        drop(agent);
        let (opening, mut stream) = super::opening(purser, Duration::from_secs(5)).await;
        let mut everything = Vec::new();
        stream.read_to_end(&mut everything).await.unwrap();
        (opening, everything)
    }

    #[tokio::test]
    async fn a_tls_record_header_is_tls_and_every_byte_is_handed_on() {
        assert_eq!(
            open(&[0x16, 0x03, 0x01, 0x02]).await,
            (Opening::Tls, vec![0x16, 0x03, 0x01, 0x02])
        );
        let (opening, bytes) = open(b"GET / HTTP/1.1\r\n").await;
        assert_eq!(opening, Opening::Plaintext);
        assert_eq!(bytes, b"GET / HTTP/1.1\r\n");
        assert_eq!(open(&[0x16, 0x00]).await.0, Opening::Plaintext);
        assert_eq!(open(b"G").await.0, Opening::Plaintext);
        assert_eq!(open(&[0x16]).await.0, Opening::Closed);
        assert_eq!(open(b"").await.0, Opening::Closed);
    }

    #[tokio::test]
    async fn only_an_uppercase_token_looks_like_http() {
        for (bytes, http) in [
            (&b"GET /"[..], true),
            (b"POST", true),
            (b"\x00\x01", false),
            (b"get", false),
            (b"SSH-2.0", true),
        ] {
            let (mut agent, purser) = tokio::io::duplex(64);
            agent.write_all(bytes).await.unwrap();
            let (_, stream) = super::opening(purser, Duration::from_secs(5)).await;
            assert_eq!(looks_like_http(&stream), http, "{bytes:?}");
        }
    }
}
