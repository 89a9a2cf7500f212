//! Stub paid upstream for `benches/paid.sh`, and the merchant + facilitator stub of
//! `benches/findings.sh`.
//!
//! `paid_upstream --listen 127.0.0.1:PORT [--record]`
//!
//! * Any request answers `200 OK` with body `paid\n`, keep-alive. A request carrying a
//!   payment (`PAYMENT-SIGNATURE` or `X-PAYMENT`) also gets a `PAYMENT-RESPONSE` receipt:
//!   base64 of `{"success":true,"transaction":"0x…","network":"eip155:84532","payer":"0x…"}`
//!   with a transaction hash unique to the request, so Purser commits the reservation.
//!   This is the load path of `paid.sh`.
//! * A request whose query has `price=ATOMIC` is a priced x402 v2 resource (USDC on Base
//!   Sepolia, 6 decimals): without a payment it answers `402` with a `PAYMENT-REQUIRED`
//!   challenge for that amount; with a payment for exactly that amount to the stub's payTo
//!   (and, when recording, a nonce not settled before) it settles and answers `200` with a
//!   receipt; any other payment is refused with `402` and not settled. With `fail=1` as
//!   well, a valid payment is not settled and the answer is `500` (a workflow step that
//!   fails: x402 merchants settle only on success).
//! * `POST /refunds` takes a refund request (Purser's `compensation.endpoint`) and
//!   answers `200`.
//! * `GET /__record` answers the facilitator's record as JSON, with `--record`: every
//!   settled payment (receipt transaction `id`, payer, payTo, amount, asset, network,
//!   nonce, `digest` = SHA-256 hex of the decoded payment header, which is Purser's
//!   `payment_digest`, path, `received_unix_ns`), every failed step, every refused
//!   payment, and every refund request (with its `Idempotency-Key` and JSON body).
//!   Times are wall-clock nanoseconds since the Unix epoch, taken when the request
//!   arrives, so another process on the same host can compare them with its own.
//!   Without `--record` nothing is kept (the load path of `paid.sh` stays lock-free).
//!
//! `paid_load` includes this file as a module to run the same upstream inside its own
//! process (approval-latency mode), where [`serve`] also records when each request
//! arrived, on the same clock as the load generator.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

const BODY: &[u8] = b"paid\n";
const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
/// Who the priced resources ask to be paid.
const PAY_TO: &str = "0x2096000000000000000000000000000000000287";
const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const NETWORK: &str = "eip155:84532";
const MAX_REFUND_BODY: usize = 64 * 1024;

/// Arrival time of each request, by path (first arrival wins).
pub type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

static RECEIPTS: AtomicU64 = AtomicU64::new(0);

/// A payment as the facilitator saw it.
#[derive(Clone, Debug, Default, Serialize)]
struct Seen {
    /// The receipt's transaction hash (settlements only).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    payer: String,
    pay_to: String,
    amount: String,
    asset: String,
    network: String,
    nonce: String,
    digest: String,
    path: String,
    received_unix_ns: u64,
}

#[derive(Debug, Serialize)]
struct Refused {
    #[serde(flatten)]
    payment: Seen,
    reason: String,
}

#[derive(Debug, Serialize)]
struct RefundRequest {
    received_unix_ns: u64,
    idempotency_key: Option<String>,
    body: Value,
}

/// What the facilitator recorded.
#[derive(Debug, Default, Serialize)]
struct Record {
    settlements: Vec<Seen>,
    failures: Vec<Seen>,
    refused: Vec<Refused>,
    refunds: Vec<RefundRequest>,
    #[serde(skip)]
    nonces: HashSet<String>,
}

/// The stub's state: arrival stamps (for `paid_load`), the facilitator record.
struct Stub {
    arrivals: Option<Arrivals>,
    record: Option<Mutex<Record>>,
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn receipt(payer: &str) -> (String, HeaderValue) {
    let n = RECEIPTS.fetch_add(1, Ordering::Relaxed);
    let transaction = format!("0x{:016x}{n:048x}", std::process::id());
    let json = format!(
        r#"{{"success":true,"transaction":"{transaction}","network":"{NETWORK}","payer":"{payer}"}}"#
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    let value = HeaderValue::from_str(&encoded).expect("base64 is a valid header value");
    (transaction, value)
}

fn text(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = Bytes::from(body.to_string());
    let len = bytes.len();
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// The payment header of a request, if any.
fn payment_of(req: &Request<Incoming>) -> Option<&HeaderValue> {
    req.headers()
        .get("payment-signature")
        .or_else(|| req.headers().get("x-payment"))
}

/// Reads a payment header as the facilitator records it. Unreadable fields stay empty.
fn read_payment(value: &HeaderValue, path: &str, received_unix_ns: u64) -> Seen {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.as_bytes())
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&decoded).unwrap_or(Value::Null);
    let auth = &json["payload"]["authorization"];
    let accepted = &json["accepted"];
    let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let network = match accepted["network"].as_str() {
        Some(n) => n.to_string(),
        None => field(&json["network"]),
    };
    Seen {
        id: None,
        payer: field(&auth["from"]),
        pay_to: field(&auth["to"]),
        amount: field(&auth["value"]),
        asset: field(&accepted["asset"]),
        network,
        nonce: field(&auth["nonce"]).to_ascii_lowercase(),
        digest: Sha256::digest(&decoded)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        path: path.to_string(),
        received_unix_ns,
    }
}

/// `price=` and `fail=` from the query.
fn pricing(query: Option<&str>) -> Option<(u64, bool)> {
    let query = query?;
    let mut price = None;
    let mut fail = false;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("price", v)) => price = v.parse().ok(),
            Some(("fail", v)) => fail = v == "1",
            _ => {}
        }
    }
    price.map(|p| (p, fail))
}

fn challenge(url: &str, price: u64) -> HeaderValue {
    let challenge = json!({
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": url, "description": "priced stub resource", "mimeType": "text/plain"},
        "accepts": [{
            "scheme": "exact", "network": NETWORK, "asset": USDC_BASE_SEPOLIA,
            "amount": price.to_string(), "payTo": PAY_TO, "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"},
        }],
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(challenge.to_string());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

/// The load path: every request is served, a paid one settles.
fn plain_answer(stub: &Stub, req: &Request<Incoming>, received: u64) -> Response<Full<Bytes>> {
    let mut resp = text(StatusCode::OK, BODY);
    if let Some(payment) = payment_of(req) {
        match &stub.record {
            None => {
                resp.headers_mut()
                    .insert("payment-response", receipt(PAYER).1);
            }
            Some(record) => {
                let mut seen = read_payment(payment, &path_of(req), received);
                let payer = if seen.payer.is_empty() {
                    PAYER
                } else {
                    &seen.payer
                };
                let (id, header) = receipt(payer);
                seen.id = Some(id);
                let mut record = record.lock().unwrap();
                record.nonces.insert(seen.nonce.clone());
                record.settlements.push(seen);
                resp.headers_mut().insert("payment-response", header);
            }
        }
    }
    resp
}

fn path_of(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string())
}

/// A priced resource: `402` with a challenge, or settle a payment that answers it.
fn priced_answer(
    stub: &Stub,
    req: &Request<Incoming>,
    price: u64,
    fail: bool,
    received: u64,
) -> Response<Full<Bytes>> {
    let path = path_of(req);
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let url = format!("http://{host}{path}");
    let ask = || {
        let mut resp = text(StatusCode::PAYMENT_REQUIRED, b"payment required\n");
        resp.headers_mut()
            .insert("payment-required", challenge(&url, price));
        resp
    };
    let Some(payment) = payment_of(req) else {
        return ask();
    };
    let mut seen = read_payment(payment, &path, received);
    let problem = if seen.amount != price.to_string() {
        Some(format!("pays {} but the price is {price}", seen.amount))
    } else if !seen.pay_to.eq_ignore_ascii_case(PAY_TO) {
        Some(format!("pays {} instead of {PAY_TO}", seen.pay_to))
    } else if seen.nonce.is_empty() || seen.payer.is_empty() {
        Some("no payer or nonce".to_string())
    } else {
        None
    };
    let Some(record) = &stub.record else {
        if problem.is_some() {
            return ask();
        }
        if fail {
            return text(StatusCode::INTERNAL_SERVER_ERROR, b"step failed\n");
        }
        let mut resp = text(StatusCode::OK, BODY);
        resp.headers_mut()
            .insert("payment-response", receipt(&seen.payer).1);
        return resp;
    };
    let mut record = record.lock().unwrap();
    let problem = problem.or_else(|| {
        record
            .nonces
            .contains(&seen.nonce)
            .then(|| format!("nonce {} was settled before", seen.nonce))
    });
    if let Some(reason) = problem {
        record.refused.push(Refused {
            payment: seen,
            reason,
        });
        drop(record);
        return ask();
    }
    if fail {
        record.failures.push(seen);
        return text(StatusCode::INTERNAL_SERVER_ERROR, b"step failed\n");
    }
    let (id, header) = receipt(&seen.payer);
    seen.id = Some(id);
    record.nonces.insert(seen.nonce.clone());
    record.settlements.push(seen);
    drop(record);
    let mut resp = text(StatusCode::OK, BODY);
    resp.headers_mut().insert("payment-response", header);
    resp
}

async fn refund_answer(
    stub: &Stub,
    req: Request<Incoming>,
    received: u64,
) -> Response<Full<Bytes>> {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_REFUND_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text(StatusCode::BAD_REQUEST, b"unreadable body\n"),
    };
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if let Some(record) = &stub.record {
        record.lock().unwrap().refunds.push(RefundRequest {
            received_unix_ns: received,
            idempotency_key: key,
            body,
        });
    }
    json_response(StatusCode::OK, &json!({"ok": true}))
}

async fn answer(stub: Arc<Stub>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let received = unix_ns();
    if let Some(arrivals) = &stub.arrivals {
        let at = Instant::now();
        let path = req.uri().path().to_string();
        arrivals.lock().unwrap().entry(path).or_insert(at);
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/refunds") => return refund_answer(&stub, req, received).await,
        (&Method::GET, "/__record") => {
            return match &stub.record {
                Some(record) => json_response(StatusCode::OK, &json!(&*record.lock().unwrap())),
                None => text(
                    StatusCode::NOT_FOUND,
                    b"not recording (start with --record)\n",
                ),
            }
        }
        _ => {}
    }
    match pricing(req.uri().query()) {
        Some((price, fail)) => priced_answer(&stub, &req, price, fail, received),
        None => plain_answer(&stub, &req, received),
    }
}

async fn serve_stub(listener: TcpListener, stub: Arc<Stub>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("paid_upstream: accept error: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stub = stub.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let stub = stub.clone();
                async move { Ok::<_, Infallible>(answer(stub, req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Accepts and serves connections until the task is dropped; records nothing but the
/// arrival stamps, when given.
pub async fn serve(listener: TcpListener, arrivals: Option<Arrivals>) {
    let stub = Stub {
        arrivals,
        record: None,
    };
    serve_stub(listener, Arc::new(stub)).await
}

#[allow(dead_code)] // unused when paid_load includes this file as a module
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = String::from("127.0.0.1:18290");
    let mut record = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            "--record" => record = true,
            other => {
                panic!("unknown argument: {other} (usage: paid_upstream --listen ADDR [--record])")
            }
        }
    }
    // One thread: the load generator and Purser need the other cycles of a small box.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&listen).await?;
        eprintln!(
            "paid_upstream listening on {}{}",
            listener.local_addr()?,
            if record { ", recording" } else { "" }
        );
        let stub = Stub {
            arrivals: None,
            record: record.then(|| Mutex::new(Record::default())),
        };
        serve_stub(listener, Arc::new(stub)).await;
        Ok(())
    })
}
