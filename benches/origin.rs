//! Minimal, fast HTTP/1.1 origin for load benchmarks.
//!
//! `bench_origin --listen 127.0.0.1:PORT` answers every request with
//! `200 OK`, `content-length: 6`, body `hello\n`, keep-alive.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello\n";

fn listen_addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut listen = String::from("127.0.0.1:18080");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            other => panic!("unknown argument: {other} (usage: bench_origin --listen ADDR)"),
        }
    }
    listen.parse().expect("--listen must be IP:PORT")
}

async fn handle(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The request body (if any) is drained by hyper when the response is sent.
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    Ok(resp)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = listen_addr();
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_origin listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept error: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
