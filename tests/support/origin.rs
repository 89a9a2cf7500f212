//! Origin servers for the tests. Each records what actually reached it (method, path,
//! HTTP version, headers, body length and digest) so tests can check what Purser sent.
//!
//! Routes: `/echo` returns the request body; `/bytes?n=N` streams N bytes; `/slow?ms=N`
//! answers after N ms; `/ws` is a WebSocket echo; anything else answers `ok`.

use super::pki::ServerCert;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

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

pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted: tells whether the proxy pooled its upstream connections.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
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

impl Origin {
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A plain-HTTP origin on a given port, on a runtime of its own.
    pub fn plain_blocking_on(port: u16) -> Origin {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut origin =
            runtime.block_on(Origin::start_at(&format!("127.0.0.1:{port}"), None, true));
        origin.runtime = Some(runtime);
        origin
    }

    /// A plain-HTTP origin on a runtime of its own, for synchronous tests.
    pub fn plain_blocking() -> Origin {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut origin = runtime.block_on(Origin::start(None, true));
        origin.runtime = Some(runtime);
        origin
    }

    /// A plain-HTTP origin (HTTP/1.1 and h2c prior knowledge).
    pub async fn plain() -> Origin {
        Origin::start(None, true).await
    }

    /// A TLS origin with ALPN `h2` (if `http2`) and `http/1.1`.
    pub async fn tls(cert: ServerCert, http2: bool) -> Origin {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)
        .unwrap();
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Origin::start(Some(Arc::new(config)), http2).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, http2: bool) -> Origin {
        Origin::start_at("127.0.0.1:0", tls, http2).await
    }

    async fn start_at(
        address: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        http2: bool,
    ) -> Origin {
        let listener = TcpListener::bind(address).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let record = record.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(record.clone(), request));
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if !http2 {
                        builder = builder.http1_only();
                    }
                    match tls {
                        Some(config) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                            else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                                .await;
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            connections,
            task,
            runtime: None,
        }
    }
}

type OriginBody = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into()).boxed()
}

async fn handle(
    record: Arc<Mutex<Vec<Recorded>>>,
    mut request: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    if path == "/ws" {
        return Ok(websocket_echo(&record, &mut request));
    }
    let method = request.method().to_string();
    let version = request.version();
    let headers = request.headers().clone();
    let paid = headers.contains_key("payment-signature");
    let mut body = request.into_body();
    let mut hasher = Sha256::new();
    let mut body_len = 0u64;
    let mut body_prefix = Vec::new();
    let mut echo = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            body_len += data.len() as u64;
            if body_prefix.len() < 4096 {
                body_prefix.extend_from_slice(&data[..data.len().min(4096 - body_prefix.len())]);
            }
            if path == "/echo" {
                echo.extend_from_slice(&data);
            }
        }
    }
    let body_sha256 = format!("{:x}", hasher.finalize());
    record.lock().unwrap().push(Recorded {
        method,
        path: path.clone(),
        version,
        headers,
        body_len,
        body_sha256: body_sha256.clone(),
        body_prefix,
    });
    let response = match path.as_str() {
        "/echo" => Response::new(full(echo)),
        "/bytes" => Response::new(stream_bytes(query_number(&query, "n"))),
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_millis(query_number(&query, "ms"))).await;
            Response::new(full("slow"))
        }
        "/digest" => Response::new(full(format!("{body_len} {body_sha256}"))),
        "/402/big" => payment_required(vec![b' '; 100 * 1024], None),
        "/402/notjson" => payment_required(b"oops, not json".to_vec(), None),
        "/402/badheader" => payment_required(b"{}".to_vec(), Some("!!!not-base64!!!")),
        "/settle" => settled(),
        "/priced" if paid => settled(),
        "/priced" => priced_offer(),
        _ => Response::new(full("ok")),
    };
    let mut response = response;
    response
        .headers_mut()
        .insert("x-origin", "test".parse().unwrap());
    Ok(response)
}

/// A 402 answer with the given body and, optionally, a PAYMENT-REQUIRED header.
fn payment_required(body: Vec<u8>, header: Option<&str>) -> Response<OriginBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
    if let Some(value) = header {
        response
            .headers_mut()
            .insert("payment-required", value.parse().unwrap());
    }
    response
}

fn query_number(query: &str, key: &str) -> u64 {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// N bytes in 64 KiB frames, generated as they are sent.
fn stream_bytes(total: u64) -> OriginBody {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let frames = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let size = CHUNK.min(total - sent);
            Some((
                Ok::<_, Infallible>(Frame::data(chunk.slice(..size as usize))),
                sent + size,
            ))
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

fn websocket_echo(
    record: &Arc<Mutex<Vec<Recorded>>>,
    request: &mut Request<Incoming>,
) -> Response<OriginBody> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    record.lock().unwrap().push(Recorded {
        method: request.method().to_string(),
        path: "/ws".into(),
        version: request.version(),
        headers: request.headers().clone(),
        body_len: 0,
        body_sha256: String::new(),
        body_prefix: Vec::new(),
    });
    let Some(key) = request.headers().get("sec-websocket-key") else {
        let mut response = Response::new(full("not a websocket request"));
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
            if message.is_close() {
                break;
            }
            if socket.send(message).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-accept", accept)
        .body(full(Bytes::new()))
        .unwrap()
}

/// The v2 402 of `/priced`: one `exact` offer of 10,000 atomic USDC on Base Sepolia to the
/// payTo `crafted_payment` signs for (the shape of the SDK's capture in vectors.json).
fn priced_offer() -> Response<OriginBody> {
    use base64::Engine as _;
    let offer = serde_json::json!({
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": "http://127.0.0.1/priced", "description": "paid data", "mimeType": ""},
        "accepts": [{
            "scheme": "exact",
            "network": "eip155:84532",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "amount": "10000",
            "payTo": "0x2096000000000000000000000000000000000287",
            "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2"}
        }]
    });
    let header = base64::engine::general_purpose::STANDARD.encode(offer.to_string());
    payment_required(b"{}".to_vec(), Some(&header))
}

/// `200` with a successful v2 receipt, as a merchant answers a payment it settled.
fn settled() -> Response<OriginBody> {
    use base64::Engine as _;
    let receipt = serde_json::json!({
        "success": true,
        "transaction": "0x5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e771e5e77",
        "network": "eip155:84532",
        "payer": "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A",
    });
    let mut response = Response::new(full("settled"));
    response.headers_mut().insert(
        "payment-response",
        base64::engine::general_purpose::STANDARD
            .encode(receipt.to_string())
            .parse()
            .unwrap(),
    );
    response
}
