//! The origin stub of the tests and the benches: plain or TLS, HTTP/1.1 (and HTTP/2 when
//! asked), on loopback. Two profiles:
//!
//! * [`Profile::Recording`] (tests): records what actually reached it (method, path,
//!   HTTP version, headers, body length, digest and first bytes) so a test can check
//!   what Purser sent; the default answer is `ok`.
//! * [`Profile::Load`] (benches): records nothing and reads no body it does not need; the
//!   default answer is `hello\n` (`text/plain`, 6 bytes).
//!
//! Routes: `/echo` returns the request body; `/digest` answers its length and SHA-256;
//! `/bytes?n=N` and `/bulk?bytes=N` (16 MiB by default) stream N bytes of `x` in 64 KiB
//! frames cut from one shared buffer; `/slow?ms=N` answers after N ms; `/ws` is a
//! WebSocket echo; `/priced` answers an x402 v2 `402` for 10,000 atomic USDC, or a
//! settled receipt when the request pays; `/settle` always answers with a receipt;
//! `/402/big`, `/402/notjson`, `/402/badheader` are unreadable challenges; anything
//! else is the default answer.

use crate::pki::{server_config, ServerCert};
use crate::x402::{challenge, encode, receipt, resource, usdc_offer, PAYER};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

const CHUNK: usize = 64 * 1024;
const DEFAULT_BULK: u64 = 16 * 1024 * 1024;
/// The receipt transaction of `/settle` and a paid `/priced`.
const SETTLED_TX: &str = "0x5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e77";

/// What the origin is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Tests: record every request; default answer `ok`.
    Recording,
    /// Benches: record nothing; default answer `hello\n`.
    Load,
}

/// One request as it reached the origin.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
    pub body_prefix: Vec<u8>,
}

/// A running origin; it stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted: tells whether the proxy pooled its upstream connections.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    /// Set when the origin runs on its own runtime (for synchronous tests).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Shared {
    profile: Profile,
    seen: Arc<Mutex<Vec<Recorded>>>,
    /// The buffer `/bytes` and `/bulk` frames are cut from.
    chunk: Bytes,
}

impl Origin {
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A recording plain-HTTP origin on a given port, on a runtime of its own.
    pub fn plain_blocking_on(port: u16) -> Origin {
        Origin::blocking(&format!("127.0.0.1:{port}"))
    }

    /// A recording plain-HTTP origin on a runtime of its own, for synchronous tests.
    pub fn plain_blocking() -> Origin {
        Origin::blocking("127.0.0.1:0")
    }

    fn blocking(listen: &str) -> Origin {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut origin = runtime
            .block_on(Origin::start(listen, Profile::Recording, None, true))
            .expect("origin starts");
        origin.runtime = Some(runtime);
        origin
    }

    /// A recording plain-HTTP origin (HTTP/1.1 and h2c prior knowledge).
    pub async fn plain() -> Origin {
        Origin::start("127.0.0.1:0", Profile::Recording, None, true)
            .await
            .expect("origin starts")
    }

    /// A recording TLS origin with ALPN `h2` (if `http2`) and `http/1.1`.
    pub async fn tls(cert: ServerCert, http2: bool) -> Origin {
        let alpn: &[&[u8]] = if http2 {
            &[b"h2", b"http/1.1"]
        } else {
            &[b"http/1.1"]
        };
        let config = server_config(cert, alpn);
        Origin::start("127.0.0.1:0", Profile::Recording, Some(config), http2)
            .await
            .expect("origin starts")
    }

    /// An origin on `listen`, over TLS when `tls` is given, speaking HTTP/2 as well when
    /// `http2` is set; it serves on the current runtime until dropped.
    pub async fn start(
        listen: &str,
        profile: Profile,
        tls: Option<Arc<rustls::ServerConfig>>,
        http2: bool,
    ) -> std::io::Result<Origin> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            profile,
            seen: seen.clone(),
            chunk: Bytes::from(vec![b'x'; CHUNK]),
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                accepted.fetch_add(1, Ordering::SeqCst);
                let (shared, acceptor) = (shared.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, shared, http2).await;
                            }
                        }
                        None => serve(tcp, shared, http2).await,
                    }
                });
            }
        });
        Ok(Origin {
            addr,
            seen,
            connections,
            task,
            runtime: None,
        })
    }
}

async fn serve<S>(stream: S, shared: Arc<Shared>, http2: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(shared.clone(), request));
    let io = TokioIo::new(stream);
    if http2 {
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service)
            .with_upgrades()
            .await;
    }
}

/// `remaining` bytes, in frames cut from one shared chunk.
pub struct Bulk {
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

fn full(bytes: impl Into<Bytes>) -> Response<Body> {
    Response::new(Either::Left(Full::new(bytes.into())))
}

fn query_number(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// What a request's body came to.
#[derive(Default)]
struct BodySeen {
    len: u64,
    sha256: String,
    prefix: Vec<u8>,
    echo: Vec<u8>,
}

async fn read_body(mut body: Incoming, keep: bool) -> BodySeen {
    let mut seen = BodySeen::default();
    let mut hasher = Sha256::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            seen.len += data.len() as u64;
            if seen.prefix.len() < 4096 {
                let room = 4096 - seen.prefix.len();
                seen.prefix.extend_from_slice(&data[..data.len().min(room)]);
            }
            if keep {
                seen.echo.extend_from_slice(&data);
            }
        }
    }
    seen.sha256 = format!("{:x}", hasher.finalize());
    seen
}

async fn handle(
    shared: Arc<Shared>,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/ws" {
        return Ok(websocket_echo(&shared, &mut request));
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let recording = shared.profile == Profile::Recording;
    // The body is drained by hyper when it is not read here.
    let body = if recording || path == "/echo" || path == "/digest" {
        read_body(body, path == "/echo").await
    } else {
        BodySeen::default()
    };
    if recording {
        shared.seen.lock().unwrap().push(Recorded {
            method: parts.method.to_string(),
            path: path.to_string(),
            version: parts.version,
            headers: parts.headers.clone(),
            body_len: body.len,
            body_sha256: body.sha256.clone(),
            body_prefix: body.prefix,
        });
    }
    let paid = parts.headers.contains_key("payment-signature");
    let bulk = |size: u64| {
        let mut response = Response::new(Either::Right(Bulk {
            chunk: shared.chunk.clone(),
            remaining: size,
        }));
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(size));
        response
    };
    Ok(match path {
        "/echo" => full(body.echo),
        "/bytes" => bulk(query_number(query, "n").unwrap_or(0)),
        "/bulk" => bulk(query_number(query, "bytes").unwrap_or(DEFAULT_BULK)),
        "/slow" => {
            let ms = query_number(query, "ms").unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            full("slow")
        }
        "/digest" => full(format!("{} {}", body.len, body.sha256)),
        "/402/big" => payment_required(vec![b' '; 100 * 1024], None),
        "/402/notjson" => payment_required(b"oops, not json".to_vec(), None),
        "/402/badheader" => payment_required(b"{}".to_vec(), Some("!!!not-base64!!!")),
        "/settle" => settled(),
        "/priced" if paid => settled(),
        "/priced" => priced_offer(),
        _ if recording => full("ok"),
        _ => {
            let mut response = full(Bytes::from_static(b"hello\n"));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
    })
}

/// A 402 answer with the given body and, optionally, a PAYMENT-REQUIRED header.
fn payment_required(body: Vec<u8>, header: Option<&str>) -> Response<Body> {
    let mut response = full(body);
    *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
    if let Some(value) = header {
        response
            .headers_mut()
            .insert("payment-required", value.parse().unwrap());
    }
    response
}

/// The v2 402 of `/priced`: one `exact` offer of 10,000 atomic USDC on Base Sepolia to
/// [`crate::x402::PAY_TO`] (the shape of the SDK's capture in vectors.json).
fn priced_offer() -> Response<Body> {
    let offer = challenge(
        resource("http://127.0.0.1/priced", "paid data", ""),
        vec![usdc_offer(10_000)],
    );
    payment_required(b"{}".to_vec(), Some(&encode(&offer)))
}

/// `200` with a successful v2 receipt, as a merchant answers a payment it settled.
fn settled() -> Response<Body> {
    let mut response = full("settled");
    let header = encode(&receipt(true, SETTLED_TX, PAYER));
    response
        .headers_mut()
        .insert("payment-response", header.parse().unwrap());
    response
}

fn websocket_echo(shared: &Shared, request: &mut Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    if shared.profile == Profile::Recording {
        shared.seen.lock().unwrap().push(Recorded {
            method: request.method().to_string(),
            path: "/ws".into(),
            version: request.version(),
            headers: request.headers().clone(),
            body_len: 0,
            body_sha256: String::new(),
            body_prefix: Vec::new(),
        });
    }
    let Some(key) = request.headers().get("sec-websocket-key") else {
        let mut response = full("not a websocket request");
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() || socket.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = full(Bytes::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("sec-websocket-accept", accept.parse().unwrap());
    response
}
