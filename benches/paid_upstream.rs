//! Stub paid upstream for `benches/paid.sh`: an x402 merchant that always settles.
//!
//! `paid_upstream --listen 127.0.0.1:PORT` answers every request `200 OK` with body
//! `paid\n`, keep-alive. A request carrying a payment (`PAYMENT-SIGNATURE` or
//! `X-PAYMENT`) also gets a `PAYMENT-RESPONSE` receipt: base64 of
//! `{"success":true,"transaction":"0x…","network":"eip155:84532","payer":"0x…"}` with a
//! transaction hash unique to the request, so Purser commits the reservation.
//!
//! `paid_load` includes this file as a module to run the same upstream inside its own
//! process (approval-latency mode), where [`serve`] also records when each request
//! arrived, on the same clock as the load generator.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"paid\n";
const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";

/// Arrival time of each request, by path (first arrival wins).
pub type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

static RECEIPTS: AtomicU64 = AtomicU64::new(0);

fn receipt() -> HeaderValue {
    let n = RECEIPTS.fetch_add(1, Ordering::Relaxed);
    let json = format!(
        r#"{{"success":true,"transaction":"0x{:016x}{n:048x}","network":"eip155:84532","payer":"{PAYER}"}}"#,
        std::process::id()
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

fn answer(req: &Request<Incoming>, arrivals: Option<&Arrivals>) -> Response<Full<Bytes>> {
    if let Some(arrivals) = arrivals {
        let at = Instant::now();
        let path = req.uri().path().to_string();
        arrivals.lock().unwrap().entry(path).or_insert(at);
    }
    let paid =
        req.headers().contains_key("payment-signature") || req.headers().contains_key("x-payment");
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    if paid {
        h.insert("payment-response", receipt());
    }
    resp
}

/// Accepts and serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, arrivals: Option<Arrivals>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("paid_upstream: accept error: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = answer(&req, arrivals.as_ref());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[allow(dead_code)] // unused when paid_load includes this file as a module
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = String::from("127.0.0.1:18290");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            other => panic!("unknown argument: {other} (usage: paid_upstream --listen ADDR)"),
        }
    }
    // One thread: the load generator and Purser need the other cycles of a small box.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&listen).await?;
        eprintln!("paid_upstream listening on {}", listener.local_addr()?);
        serve(listener, None).await;
        Ok(())
    })
}
