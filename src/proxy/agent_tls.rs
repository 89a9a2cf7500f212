//! The agent's side of an intercepted tunnel: a TLS stream that keeps no buffer while it
//! waits.
//!
//! tokio-rustls drives rustls's buffered connection, which keeps a 4 KiB read buffer for
//! the life of each connection and allocates it, zero-filled, before every read, even one
//! that finds nothing. An intercepted connection spends most of its life waiting: between
//! an agent's requests, and for minutes while a payment is held for a human. On 1,000 held
//! HTTPS payments that buffer was 4 KB of the 26 KB each one cost.
//!
//! This stream drives rustls's unbuffered API instead. TLS bytes are read into a scratch
//! buffer owned by the thread, and between reads a connection keeps only what it must: an
//! incomplete record, decrypted bytes hyper had no room for, or encrypted bytes the socket
//! has not taken yet. Each is freed once empty. rustls does all of TLS; this module only
//! moves bytes between the socket, rustls and hyper.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::ServerConfig;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest TLS record on the wire: 16 KiB of plaintext, the most expansion TLS allows
/// and the 5-byte header. One read takes at most this much.
const MAX_RECORD: usize = 16_384 + 2_048 + 5;
/// The most TLS bytes kept while a record or handshake message is incomplete (rustls
/// itself refuses handshake messages over 64 KiB).
const MAX_INCOMPLETE: usize = 64 * 1024 + MAX_RECORD;
/// Plaintext encrypted per write, so one write cannot grow the outgoing bytes unbounded.
const MAX_WRITE: usize = 64 * 1024;

thread_local! {
    /// Where each read from a socket lands before rustls sees it; one per thread, as a
    /// read is finished (and its leftovers copied out) before the thread polls anything else.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_RECORD].into_boxed_slice());
}

/// The server side of TLS with an agent, over `IO` (the upgraded `CONNECT` stream).
pub struct AgentTlsStream<IO> {
    io: IO,
    tls: Tls,
    /// TLS bytes received that do not yet make a whole record.
    incomplete: Vec<u8>,
}

/// The connection and the bytes waiting on either side of it.
struct Tls {
    conn: UnbufferedServerConnection,
    /// Decrypted bytes the reader has not taken yet.
    plaintext: Queue,
    /// Encrypted bytes (records, alerts, tickets) the socket has not taken yet.
    outgoing: Queue,
    /// The agent sent `close_notify` or closed its end.
    read_closed: bool,
    /// Our `close_notify` is queued; nothing more may be written.
    write_closed: bool,
}

/// Bytes handed on in pieces; freed as soon as the last piece is taken.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    taken: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.taken == self.bytes.len()
    }

    fn unread(&self) -> &[u8] {
        &self.bytes[self.taken..]
    }

    fn take(&mut self, count: usize) {
        self.taken = (self.taken + count).min(self.bytes.len());
        if self.is_empty() {
            *self = Queue::default();
        }
    }

    /// Lets `fill` write at the end, growing by what it says it needs when it is short.
    fn append_with<E>(
        &mut self,
        mut fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
        required: impl Fn(&E) -> Option<usize>,
    ) -> Result<(), E> {
        let start = self.bytes.len();
        loop {
            match fill(&mut self.bytes[start..]) {
                Ok(written) => {
                    self.bytes.truncate(start + written);
                    return Ok(());
                }
                Err(error) => match required(&error) {
                    Some(size) if size > self.bytes.len() - start => {
                        self.bytes.resize(start + size, 0);
                    }
                    _ => {
                        self.bytes.truncate(start);
                        return Err(error);
                    }
                },
            }
        }
    }
}

/// What to send once rustls allows application data.
#[derive(Clone, Copy)]
enum Send<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

impl Tls {
    /// Runs rustls over `tls_bytes` until it needs more input or has nothing to do.
    /// Decrypted data goes to `reader` as far as it has room, the rest to `plaintext`;
    /// what rustls wants sent goes to `outgoing`, along with `send` once rustls allows it.
    /// Returns how many bytes of `tls_bytes` rustls is done with, and whether `send` went.
    fn process(
        &mut self,
        tls_bytes: &mut [u8],
        mut reader: Option<&mut ReadBuf<'_>>,
        mut send: Send<'_>,
    ) -> io::Result<(usize, bool)> {
        let mut consumed = 0;
        let mut sent = false;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut tls_bytes[consumed..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.queue_alert();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            };
            let mut waiting = false;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record =
                            record.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        let mut payload = record.payload;
                        if let Some(reader) = reader.as_deref_mut() {
                            let room = reader.remaining().min(payload.len());
                            reader.put_slice(&payload[..room]);
                            payload = &payload[room..];
                        }
                        if !payload.is_empty() {
                            self.plaintext.bytes.extend_from_slice(payload);
                        }
                        consumed += record.discard;
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => self
                    .outgoing
                    .append_with(|out| encode.encode(out), encode_shortfall)
                    .map_err(io::Error::other)?,
                // The bytes are in `outgoing`; the caller sends them before waiting on input.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::WriteTraffic(mut traffic) => {
                    match std::mem::replace(&mut send, Send::Nothing) {
                        Send::Nothing => waiting = true,
                        Send::Data(data) => {
                            self.outgoing
                                .append_with(|out| traffic.encrypt(data, out), encrypt_shortfall)
                                .map_err(io::Error::other)?;
                            sent = true;
                        }
                        Send::CloseNotify => {
                            self.outgoing
                                .append_with(
                                    |out| traffic.queue_close_notify(out),
                                    encrypt_shortfall,
                                )
                                .map_err(io::Error::other)?;
                            self.write_closed = true;
                            sent = true;
                        }
                    }
                }
                ConnectionState::PeerClosed => self.read_closed = true,
                ConnectionState::Closed => {
                    self.read_closed = true;
                    waiting = true;
                }
                ConnectionState::ReadEarlyData(_) => {
                    // Purser's server configs never accept early data (it could be replayed).
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "agent sent TLS early data, which Purser does not accept",
                    ));
                }
                // BlockedHandshake, and states later rustls versions add: wait for input.
                _ => waiting = true,
            }
            consumed += discard;
            if waiting {
                return Ok((consumed, sent));
            }
        }
    }

    /// After an error rustls queues an alert saying why; queue its bytes so the agent
    /// learns the reason rather than seeing the connection drop.
    fn queue_alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let _ = self
                        .outgoing
                        .append_with(|out| encode.encode(out), encode_shortfall);
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }
}

fn encode_shortfall(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

fn encrypt_shortfall(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// Runs `read` with the thread's scratch buffer (or, should it be in use, a fresh one).
fn with_scratch<T>(read: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => read(&mut scratch[..]),
        Err(_) => read(&mut vec![0; MAX_RECORD]),
    })
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AgentTlsStream<IO> {
    /// Completes the TLS handshake with the agent over `io`.
    pub async fn accept(io: IO, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut stream = AgentTlsStream {
            io,
            tls: Tls {
                conn,
                plaintext: Queue::default(),
                outgoing: Queue::default(),
                read_closed: false,
                write_closed: false,
            },
            incomplete: Vec::new(),
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    /// The protocol the agent and Purser agreed by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let closed = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "agent closed the connection during the TLS handshake",
            )
        };
        loop {
            // rustls answers what it has been given before anything more is read.
            ready!(self.poll_send(cx))?;
            if !self.tls.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.tls.read_closed {
                return Poll::Ready(Err(closed()));
            }
            match ready!(self.poll_receive(cx, None)) {
                Ok(0) => return Poll::Ready(Err(closed())),
                Ok(_) => {}
                Err(error) => {
                    // Best effort: the alert says why, if the socket takes it now.
                    let _ = self.poll_send(cx);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }

    /// Reads what the socket has and runs rustls over it; `Ready(Ok(0))` at end of stream.
    fn poll_receive(
        &mut self,
        cx: &mut Context<'_>,
        reader: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<usize>> {
        with_scratch(|scratch| {
            let mut landed = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut landed))?;
            let count = landed.filled().len();
            if count == 0 {
                return Poll::Ready(Ok(0));
            }
            if self.incomplete.is_empty() {
                let (used, _) = self
                    .tls
                    .process(&mut scratch[..count], reader, Send::Nothing)?;
                self.incomplete.extend_from_slice(&scratch[used..count]);
            } else {
                if self.incomplete.len() + count > MAX_INCOMPLETE {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "agent sent an oversized TLS message",
                    )));
                }
                self.incomplete.extend_from_slice(&scratch[..count]);
                let (used, _) = self
                    .tls
                    .process(&mut self.incomplete, reader, Send::Nothing)?;
                self.discard_incomplete(used);
            }
            Poll::Ready(Ok(count))
        })
    }

    /// Writes out the encrypted bytes waiting; `Ready` once the socket has taken them all.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tls.outgoing.is_empty() {
            let written =
                ready!(Pin::new(&mut self.io).poll_write(cx, self.tls.outgoing.unread()))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tls.outgoing.take(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Hands `send` to rustls once it allows application data; false if it never will.
    fn queue(&mut self, send: Send<'_>) -> io::Result<bool> {
        let (used, sent) = self.tls.process(&mut self.incomplete, None, send)?;
        self.discard_incomplete(used);
        Ok(sent)
    }

    fn discard_incomplete(&mut self, used: usize) {
        self.incomplete.drain(..used.min(self.incomplete.len()));
        if self.incomplete.is_empty() {
            self.incomplete = Vec::new();
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for AgentTlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.tls.plaintext.is_empty() {
                let unread = this.tls.plaintext.unread();
                let count = unread.len().min(buf.remaining());
                buf.put_slice(&unread[..count]);
                this.tls.plaintext.take(count);
                return Poll::Ready(Ok(()));
            }
            if this.tls.read_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // What rustls queued meanwhile (tickets, key-update answers) goes out now; a
            // socket that is not ready to take it does not stop the read.
            if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
            let before = buf.filled().len();
            if ready!(this.poll_receive(cx, Some(buf)))? == 0 {
                this.tls.read_closed = true;
                if !this.incomplete.is_empty() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "agent closed the connection inside a TLS record",
                    )));
                }
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for AgentTlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Encrypted bytes the socket has not taken come first: that is the backpressure.
        ready!(this.poll_send(cx))?;
        if this.tls.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let chunk = &data[..data.len().min(MAX_WRITE)];
        if !this.queue(Send::Data(chunk))? {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the TLS connection no longer takes application data",
            )));
        }
        if let Poll::Ready(Err(error)) = this.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(chunk.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.tls.write_closed {
            // A connection rustls already closed has no close_notify left to send.
            let _ = this.queue(Send::CloseNotify);
            this.tls.write_closed = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
