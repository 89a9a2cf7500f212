//! Clients and a merchant for `tests/starvation.rs`: a keep-alive HTTP/1.1 agent that
//! sends absolute-form requests to the proxy, an HTTP/2 agent inside an intercepted
//! tunnel, and a merchant whose every answer is a large 402 challenge.

use super::support::{basic, Purser};
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use purser_kit::client::{basic as kit_basic, proxied_get, Conn};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// A keep-alive HTTP/1.1 connection to the proxy, sending absolute-form requests.
pub(crate) struct Agent {
    conn: Conn,
}

impl Agent {
    pub(crate) fn new(proxy: SocketAddr) -> Agent {
        Agent {
            conn: Conn::new(proxy),
        }
    }

    /// `GET url` as `user:token`, with extra headers; the whole answer. A request that
    /// fails (the proxy closed the connection) is sent again on a new connection, up to
    /// three times.
    pub(crate) async fn get(
        &mut self,
        user: &str,
        token: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Response<Bytes> {
        let auth = kit_basic(&format!("{user}:{token}"));
        for _ in 0..3 {
            let request = proxied_get(url, Some(&auth), headers).expect("request");
            if let Ok(answer) = self.conn.send(request, Duration::from_secs(60)).await {
                return answer.into();
            }
        }
        panic!("the proxy did not answer {url}");
    }
}

pub(crate) fn header(response: &Response<Bytes>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A merchant answering every path with a large 402: `/v1/...` a v1 body just under
/// 64 KiB (a hundred offers whose `extra` objects hold many small members: what costs a
/// parser the most memory per byte), anything else a v2 `PAYMENT-REQUIRED` header just
/// under 16 KiB.
pub(crate) async fn challenge_flood_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(big_challenge(request.uri().path()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    address
}

fn offer(n: usize, v1: bool, extra_members: usize) -> Value {
    let extra: serde_json::Map<String, Value> = (0..extra_members)
        .map(|k| (format!("k{k}"), json!(k)))
        .chain([
            ("name".to_string(), json!("USDC")),
            ("version".to_string(), json!("2")),
        ])
        .collect();
    let mut offer = json!({
        "scheme": "exact",
        "network": if v1 { "base-sepolia" } else { "eip155:84532" },
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": format!("0x{:040x}", n + 1),
        "maxTimeoutSeconds": 60,
        "extra": extra,
    });
    let amount = if v1 { "maxAmountRequired" } else { "amount" };
    offer[amount] = json!((1000 + n).to_string());
    if v1 {
        offer["resource"] = json!("http://merchant.example/data");
    }
    offer
}

fn big_challenge(path: &str) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(StatusCode::PAYMENT_REQUIRED);
    let body = if path.starts_with("/v1/") {
        let mut offers = Vec::new();
        let mut body = String::new();
        for n in 0.. {
            offers.push(offer(n, true, 60));
            let next = json!({"x402Version": 1, "error": "pay", "accepts": offers}).to_string();
            if next.len() > 63 * 1024 {
                break;
            }
            body = next;
        }
        body
    } else {
        let mut offers = Vec::new();
        let mut header = String::new();
        for n in 0.. {
            offers.push(offer(n, false, 8));
            let json = json!({"x402Version": 2, "resource": {"url": "http://merchant.example/data"}, "accepts": offers});
            let next = base64::engine::general_purpose::STANDARD.encode(json.to_string());
            if next.len() > 16 * 1024 - 64 {
                break;
            }
            header = next;
        }
        response = response.header("payment-required", header);
        "{}".to_string()
    };
    response.body(Full::new(Bytes::from(body))).unwrap()
}

/// An HTTP/2 connection inside an intercepted `CONNECT` tunnel, as `user`.
pub(crate) async fn h2_agent(
    purser: &Purser,
    authority: &str,
    user: &str,
    token: &str,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tls = purser
        .intercept(authority, Some(&basic(user, token)), &[b"h2"])
        .await;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

pub(crate) async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    url: &str,
    payment: &str,
) -> Response<Bytes> {
    let request = Request::get(url)
        .header("payment-signature", payment)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 answer");
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.expect("body").to_bytes())
}
