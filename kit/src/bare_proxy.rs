//! The "bare hyper pass-through" forward proxy: what forwarding costs with nothing on top,
//! the yardstick the benches hold Purser to (`bench bare-proxy`), and a reference a test
//! can compare Purser's forwarding with.
//!
//! HTTP/1.1, absolute-form `http://` requests only (no CONNECT, no TLS). Forwards with the
//! hyper-util legacy pooled client, strips hop-by-hop headers both ways, streams bodies
//! and answers 502 on upstream error. Deliberately minimal: no policy, no logging.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Incoming>;
type Body = Either<Incoming, Full<Bytes>>;

const HOP_BY_HOP: [&str; 8] = [
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        h.remove(name);
    }
    h.remove(CONNECTION);
    for name in HOP_BY_HOP {
        h.remove(name);
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
    *r.status_mut() = code;
    r
}

async fn proxy(
    client: Upstream,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    if req.method() == Method::CONNECT {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    if req.uri().scheme_str() != Some("http") || req.uri().authority().is_none() {
        return Ok(status(StatusCode::BAD_REQUEST));
    }
    strip_hop_by_hop(req.headers_mut());
    // The legacy client rewrites the absolute-form URI to origin-form for HTTP/1.
    match client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

/// Serves on `listen` until killed (on a multi-thread runtime, as hyper users do).
pub async fn run(listen: SocketAddr) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);

    let listener = TcpListener::bind(listen).await?;
    eprintln!("bare_proxy listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept error: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| proxy(client.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
