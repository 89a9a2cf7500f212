//! The stub merchant and facilitator of the benches (`bench merchant`, and in process for
//! the soak, the findings and the approval latency).
//!
//! * Any request answers `200 OK` with body `paid\n`, keep-alive. A request carrying a
//!   payment (`PAYMENT-SIGNATURE` or `X-PAYMENT`) also gets a `PAYMENT-RESPONSE` receipt
//!   with a transaction hash unique to the request, so Purser commits the reservation.
//!   This is the paid load path.
//! * A request whose query has `price=ATOMIC` is a priced x402 v2 resource (USDC on Base
//!   Sepolia): without a payment it answers `402` with a `PAYMENT-REQUIRED` challenge for
//!   that amount; with a payment for exactly that amount to [`PAY_TO`] (and, when
//!   recording, a nonce not settled before) it settles and answers `200` with a receipt;
//!   any other payment is refused with `402` and not settled. With `fail=1` as well, a
//!   valid payment is not settled and the answer is `500` (a workflow step that fails:
//!   x402 merchants settle only on success).
//! * `POST /refunds` takes a refund request (Purser's `compensation.endpoint`): `200`.
//! * `GET /__record` answers the facilitator's [`Record`] as JSON when recording.
//!
//! Times in the record are wall-clock nanoseconds since the Unix epoch, taken when the
//! request arrives, so another process on the same host can compare them with its own.
//! Without recording nothing is kept (the load path stays lock-free), except the arrival
//! instants by path when asked ([`Arrivals`], for the approval latency).

use crate::x402::{challenge, decode, encode, receipt, resource, usdc_offer, PAYER, PAY_TO};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use purser::x402::wire::{
    Eip3009Authorization, Eip3009Payload, PaymentPayloadV1, PaymentPayloadV2,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;

const BODY: &[u8] = b"paid\n";
const MAX_REFUND_BODY: usize = 64 * 1024;

/// Arrival instant of each request, by path (the first arrival wins).
pub type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

static RECEIPTS: AtomicU64 = AtomicU64::new(0);

/// A payment as the facilitator saw it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Seen {
    /// The receipt's transaction hash (settlements only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub payer: String,
    pub pay_to: String,
    pub amount: String,
    pub asset: String,
    pub network: String,
    pub nonce: String,
    /// SHA-256 hex of the decoded payment header: Purser's `payment_digest`.
    pub digest: String,
    pub path: String,
    pub received_unix_ns: u64,
}

/// A payment the facilitator would not settle, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refused {
    #[serde(flatten)]
    pub payment: Seen,
    pub reason: String,
}

/// A refund request as it arrived.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefundRequest {
    pub received_unix_ns: u64,
    pub idempotency_key: Option<String>,
    pub body: Value,
}

/// What the facilitator recorded (`GET /__record`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub settlements: Vec<Seen>,
    pub failures: Vec<Seen>,
    pub refused: Vec<Refused>,
    pub refunds: Vec<RefundRequest>,
    #[serde(skip)]
    nonces: HashSet<String>,
}

impl Record {
    /// The settlements by payment digest (a digest settled twice has two).
    pub fn settled_by_digest(&self) -> HashMap<&str, Vec<&Seen>> {
        let mut by_digest: HashMap<&str, Vec<&Seen>> = HashMap::new();
        for s in &self.settlements {
            by_digest.entry(s.digest.as_str()).or_default().push(s);
        }
        by_digest
    }

    /// Σ of the settled amounts in atomic units, and how many amounts did not parse.
    pub fn settled_atomic(&self) -> (u128, u64) {
        let amounts = self.settlements.iter().map(|s| s.amount.parse::<u128>());
        amounts.fold((0, 0), |(sum, bad), a| match a {
            Ok(a) => (sum + a, bad),
            Err(_) => (sum, bad + 1),
        })
    }

    /// How many refund requests name each receipt transaction (`tx_hash`).
    pub fn refunds_by_tx(&self) -> HashMap<&str, usize> {
        let mut by_tx: HashMap<&str, usize> = HashMap::new();
        for r in &self.refunds {
            *by_tx
                .entry(r.body["tx_hash"].as_str().unwrap_or_default())
                .or_default() += 1;
        }
        by_tx
    }
}

/// The stub's state: arrival stamps, the facilitator's record.
#[derive(Default)]
pub struct Merchant {
    arrivals: Option<Arrivals>,
    record: Option<Mutex<Record>>,
}

impl Merchant {
    /// A merchant that records every payment, refund and refusal.
    pub fn recording() -> Merchant {
        Merchant {
            arrivals: None,
            record: Some(Mutex::new(Record::default())),
        }
    }

    /// A merchant that keeps only when each path was first requested.
    pub fn stamping(arrivals: Arrivals) -> Merchant {
        Merchant {
            arrivals: Some(arrivals),
            record: None,
        }
    }

    /// A copy of the record so far (empty when not recording).
    pub fn record(&self) -> Record {
        self.record
            .as_ref()
            .map(|r| r.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Accepts and serves connections on the current runtime until the task is dropped.
    pub async fn serve(self: Arc<Merchant>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("merchant: accept error: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let merchant = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let merchant = merchant.clone();
                    async move { Ok::<_, Infallible>(merchant.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Serves on a thread and current-thread runtime of its own (as a separate process
    /// would); returns the address it listens on.
    pub fn spawn(self: Arc<Merchant>) -> std::io::Result<std::net::SocketAddr> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => self.serve(listener).await,
                    Err(e) => eprintln!("merchant: {e}"),
                }
            })
        });
        Ok(addr)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let received = unix_ns();
        if let Some(arrivals) = &self.arrivals {
            let at = Instant::now();
            let path = req.uri().path().to_string();
            arrivals.lock().unwrap().entry(path).or_insert(at);
        }
        match (req.method(), req.uri().path()) {
            (&Method::POST, "/refunds") => return self.refund(req, received).await,
            (&Method::GET, "/__record") => {
                return match &self.record {
                    Some(record) => json_response(&json!(&*record.lock().unwrap())),
                    None => text(StatusCode::NOT_FOUND, b"not recording\n"),
                }
            }
            _ => {}
        }
        match pricing(req.uri().query()) {
            Some((price, fail)) => self.priced(&req, price, fail, received),
            None => self.unpriced(&req, received),
        }
    }

    /// The load path: every request is served, a paid one settles.
    fn unpriced(&self, req: &Request<Incoming>, received: u64) -> Response<Full<Bytes>> {
        let mut resp = text(StatusCode::OK, BODY);
        let Some(payment) = payment_of(req) else {
            return resp;
        };
        let header = match &self.record {
            None => receipt_header(PAYER).1,
            Some(record) => {
                let mut seen = read_payment(payment, &path_of(req), received);
                let payer = if seen.payer.is_empty() {
                    PAYER
                } else {
                    &seen.payer
                };
                let (id, header) = receipt_header(payer);
                seen.id = Some(id);
                let mut record = record.lock().unwrap();
                record.nonces.insert(seen.nonce.clone());
                record.settlements.push(seen);
                header
            }
        };
        resp.headers_mut().insert("payment-response", header);
        resp
    }

    /// A priced resource: `402` with a challenge, or settle a payment that answers it.
    fn priced(
        &self,
        req: &Request<Incoming>,
        price: u64,
        fail: bool,
        received: u64,
    ) -> Response<Full<Bytes>> {
        let path = path_of(req);
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let ask = || {
            let mut offer = usdc_offer(price);
            offer.max_timeout_seconds = Some(60);
            let what = resource(
                &format!("http://{host}{path}"),
                "priced stub resource",
                "text/plain",
            );
            let mut resp = text(StatusCode::PAYMENT_REQUIRED, b"payment required\n");
            let header = encode(&challenge(what, vec![offer]));
            resp.headers_mut().insert(
                "payment-required",
                HeaderValue::from_str(&header).expect("base64"),
            );
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
        let Some(record) = &self.record else {
            return match (problem, fail) {
                (Some(_), _) => ask(),
                (None, true) => text(StatusCode::INTERNAL_SERVER_ERROR, b"step failed\n"),
                (None, false) => paid(receipt_header(&seen.payer).1),
            };
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
        let (id, header) = receipt_header(&seen.payer);
        seen.id = Some(id);
        record.nonces.insert(seen.nonce.clone());
        record.settlements.push(seen);
        paid(header)
    }

    async fn refund(&self, req: Request<Incoming>, received: u64) -> Response<Full<Bytes>> {
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
        if let Some(record) = &self.record {
            record.lock().unwrap().refunds.push(RefundRequest {
                received_unix_ns: received,
                idempotency_key: key,
                body,
            });
        }
        json_response(&json!({"ok": true}))
    }
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A receipt with a transaction hash unique to this process and request.
fn receipt_header(payer: &str) -> (String, HeaderValue) {
    let n = RECEIPTS.fetch_add(1, Ordering::Relaxed);
    let transaction = format!("0x{:016x}{n:048x}", std::process::id());
    let header = encode(&receipt(true, &transaction, payer));
    let value = HeaderValue::from_str(&header).expect("base64 is a valid header value");
    (transaction, value)
}

fn text(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn paid(receipt: HeaderValue) -> Response<Full<Bytes>> {
    let mut resp = text(StatusCode::OK, BODY);
    resp.headers_mut().insert("payment-response", receipt);
    resp
}

fn json_response(body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn payment_of(req: &Request<Incoming>) -> Option<&HeaderValue> {
    req.headers()
        .get("payment-signature")
        .or_else(|| req.headers().get("x-payment"))
}

fn path_of(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string())
}

/// `price=` and `fail=` from the query.
fn pricing(query: Option<&str>) -> Option<(u64, bool)> {
    let mut price = None;
    let mut fail = false;
    for pair in query?.split('&') {
        match pair.split_once('=') {
            Some(("price", v)) => price = v.parse().ok(),
            Some(("fail", v)) => fail = v == "1",
            _ => {}
        }
    }
    price.map(|p| (p, fail))
}

/// A payment header as the facilitator records it, read through Purser's wire types (v2,
/// else v1). What cannot be read stays empty.
fn read_payment(value: &HeaderValue, path: &str, received_unix_ns: u64) -> Seen {
    let bytes = value.as_bytes();
    let digest = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bytes)
        .map(crate::x402::sha256_hex)
        .unwrap_or_else(|_| crate::x402::sha256_hex(b""));
    let mut seen = Seen {
        digest,
        path: path.to_string(),
        received_unix_ns,
        ..Seen::default()
    };
    let authorization = |payload| {
        serde_json::from_value::<Eip3009Payload>(Value::Object(payload))
            .ok()
            .map(|p: Eip3009Payload| p.authorization)
    };
    let signed: Option<Eip3009Authorization> = if let Some(v2) = decode::<PaymentPayloadV2>(bytes) {
        seen.asset = v2.accepted.asset;
        seen.network = v2.accepted.network;
        authorization(v2.payload)
    } else if let Some(v1) = decode::<PaymentPayloadV1>(bytes) {
        seen.network = v1.network;
        authorization(v1.payload)
    } else {
        None
    };
    if let Some(auth) = signed {
        seen.payer = auth.from;
        seen.pay_to = auth.to;
        seen.amount = auth.value;
        seen.nonce = auth.nonce.to_ascii_lowercase();
    }
    seen
}
