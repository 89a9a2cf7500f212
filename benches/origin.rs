//! Minimal, fast HTTP/1.1 origin for load benchmarks.
//!
//! `bench_origin --listen 127.0.0.1:PORT [--tls-listen 127.0.0.1:PORT --cert PEM --key PEM]`
//!
//! * Every request answers `200 OK`, `content-length: 6`, body `hello\n`, keep-alive.
//! * `GET /bulk?bytes=N` answers N bytes (default 16 MiB) of `x`, streamed in 64 KiB
//!   frames from one shared buffer, for throughput runs.
//! * With `--tls-listen`, the same answers over TLS (HTTP/1.1, ALPN `http/1.1`) with the
//!   given certificate chain and key (`loadgen certs` writes a test CA and such a pair).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const BODY: &[u8] = b"hello\n";
const CHUNK: usize = 64 * 1024;
const DEFAULT_BULK: u64 = 16 * 1024 * 1024;

/// `remaining` bytes, in frames cut from one shared chunk.
struct Bulk {
    chunk: Bytes,
    remaining: u64,
}

impl http_body::Body for Bulk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

type Body = Either<Full<Bytes>, Bulk>;

struct Options {
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut listen = String::from("127.0.0.1:18080");
    let (mut tls_listen, mut cert, mut key) = (None, None, None);
    let usage = "usage: bench_origin --listen ADDR [--tls-listen ADDR --cert PEM --key PEM]";
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = value(),
            "--tls-listen" => {
                tls_listen = Some(value().parse().expect("--tls-listen must be IP:PORT"))
            }
            "--cert" => cert = Some(PathBuf::from(value())),
            "--key" => key = Some(PathBuf::from(value())),
            other => panic!("unknown argument: {other} ({usage})"),
        }
    }
    Options {
        listen: listen.parse().expect("--listen must be IP:PORT"),
        tls_listen,
        cert,
        key,
    }
}

fn bulk_size(req: &Request<Incoming>) -> Option<u64> {
    if req.uri().path() != "/bulk" {
        return None;
    }
    let size = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("bytes="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_BULK);
    Some(size)
}

async fn handle(chunk: Bytes, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // The request body (if any) is drained by hyper when the response is sent.
    let (body, len) = match bulk_size(&req) {
        Some(size) => (
            Either::Right(Bulk {
                chunk,
                remaining: size,
            }),
            size,
        ),
        None => (
            Either::Left(Full::new(Bytes::from_static(BODY))),
            BODY.len() as u64,
        ),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

fn serve<S>(stream: S, chunk: Bytes)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| handle(chunk.clone(), req)),
            )
            .await;
    });
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> std::io::Result<TlsAcceptor> {
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{}: {e}", cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| bad(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The next accepted connection, with Nagle off; accept errors are reported and skipped.
async fn next_connection(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e) => eprintln!("accept error: {e}"),
        }
    }
}

async fn accept_tls(listener: TcpListener, acceptor: TlsAcceptor, chunk: Bytes) {
    loop {
        let stream = next_connection(&listener).await;
        let acceptor = acceptor.clone();
        let chunk = chunk.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                serve(tls, chunk);
            }
        });
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let opts = options();
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let listener = TcpListener::bind(opts.listen).await?;
    eprintln!("bench_origin listening on {}", listener.local_addr()?);
    if let Some(addr) = opts.tls_listen {
        let (Some(cert), Some(key)) = (&opts.cert, &opts.key) else {
            panic!("--tls-listen needs --cert and --key");
        };
        let acceptor = tls_acceptor(cert, key)?;
        let tls_listener = TcpListener::bind(addr).await?;
        eprintln!(
            "bench_origin (TLS) listening on {}",
            tls_listener.local_addr()?
        );
        tokio::spawn(accept_tls(tls_listener, acceptor, chunk.clone()));
    }
    loop {
        serve(next_connection(&listener).await, chunk.clone());
    }
}
