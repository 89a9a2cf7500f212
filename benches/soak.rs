//! The soak test (issue #6, part 6), driven by `benches/soak.sh`.
//!
//! Subcommands:
//!
//! * `run`: sends a fixed mix of traffic through Purser (`--proxy`) to the stub merchant
//!   and facilitator (`--stub`, `paid_upstream --record`) for `--duration` seconds, at
//!   `--rate` operations per second over `--conns` keep-alive HTTP/1.1 connections (one
//!   agent session each, `soak.cN`). Meanwhile it approves every hold through the admin
//!   API (`--admin`), reloads the policy every `--reload-every` seconds through
//!   `POST /v1/policy/reload` and sends `SIGHUP` to `--pid` halfway between those, and
//!   samples the VmRSS, thread count and open descriptors of `--pid` every
//!   `--sample-every` seconds. At the end it saves what it sent and saw, Purser's
//!   sessions (`GET /v1/sessions`) and the stub's record (`GET /__record`) in `--out`.
//! * `report`: reads that directory, Purser's stderr log and proof log, runs
//!   `purser traces verify`, and prints the Markdown summary with the checks.
//!
//! # The mix
//!
//! A cycle of 20 operations, taken in turn by whichever connection is next:
//!
//! | class | per 20 | request | expected answer |
//! |---|---:|---|---|
//! | plain | 7 | `GET /plain/N`, no payment | `200` |
//! | paid (direct) | 3 | `GET /paid/N` with a fresh v2 payment of $0.001 (1000 atomic USDC) | `200`, `X-Purser-Decision: ALLOWED`, a receipt |
//! | paid (x402) | 3 | `GET /priced/N?price=1000` → `402` with a challenge, then the same `GET` paying exactly that | `402`, then as above |
//! | held | 2 | `GET /premium/N` paying $0.75 (above the $0.50 per-call threshold) | held; the approver approves it (with its digest); `200` ALLOWED |
//! | denied | 2 | alternately $3.00 to `/paid/N` (rule `per-call-max`) and $0.001 to `/forbidden/N` (`forbidden-merchant`) | `403` DENIED naming that rule |
//! | malformed | 3 | `PAYMENT-SIGNATURE` that is not base64, base64 of text, JSON with wrong types, truncated JSON (in turn) | a `4xx` |
//!
//! Every payment has a unique nonce and signature. Each connection paces itself at
//! `rate / conns` operations per second (a held payment keeps its connection waiting,
//! as an agent would wait; ticks missed meanwhile are not made up).
//!
//! # The checks (`report`)
//!
//! 1. **Zero panics**: no line of Purser's stderr log contains `panicked`, Purser was
//!    alive at every sample, and it exited 0 after `SIGTERM`.
//! 2. **RSS flat within 10%**: with W = 60 s (or a fifth of the run if it is shorter than
//!    180 s), the median VmRSS of the samples in the last W seconds is within ±10% of the
//!    median of the samples in [W, 2W) (the second minute: after warm-up).
//! 3. **Every payment accounted for**: every request the driver sent with a payment
//!    (paid, held, denied, and malformed) has a decision line whose `trace_id` is the
//!    answer's `X-Purser-Trace` and whose `payment_digest` is the SHA-256 of the payment
//!    sent (malformed ones have no digest), with the expected decision (held ones also a
//!    `hold` line approving them); every paid and held one has exactly one `committed`
//!    settlement line carrying the stub's receipt transaction; no decision line is left
//!    over; the stub settled exactly the paid and held payments (by digest), once each.
//! 4. **The chain verifies**: `purser traces verify` on the live log (with its rotated
//!    predecessors).
//! 5. **The ledger equals the facilitator's record**: the sum over the agent's sessions of
//!    committed spend (`spent - unknown` in `GET /v1/sessions`) equals the sum of the
//!    stub's settlements and the sum of the `committed` settlement lines, compared as
//!    `rust_decimal` values; nothing is left reserved or unknown.
//!
//! Two more rows: every class got only expected answers, and every reload took effect
//! (each admin reload answered with the digest of the file written; every generation's
//! digest appears in decision lines; Purser logged one reload per `SIGHUP`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, PROXY_AUTHORIZATION};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Sender = SendRequest<Full<Bytes>>;

const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
const PAY_TO: &str = "0x2096000000000000000000000000000000000287";
const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const NETWORK: &str = "eip155:84532";
/// $0.001: a paid call.
const PAID_ATOMIC: u64 = 1_000;
/// $0.75: above the soak policy's $0.50 per-call threshold, so held.
const HELD_ATOMIC: u64 = 750_000;
/// $3.00: above the soak policy's `per-call-max` ($2.00), so denied.
const OVER_MAX_ATOMIC: u64 = 3_000_000;
const RULE_OVER_MAX: &str = "per-call-max";
const RULE_FORBIDDEN: &str = "forbidden-merchant";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(RunArgs),
    Report(ReportArgs),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Purser's proxy listener.
    #[arg(long)]
    proxy: SocketAddr,
    /// Purser's admin listener.
    #[arg(long)]
    admin: SocketAddr,
    /// The stub merchant and facilitator (`paid_upstream --record`).
    #[arg(long)]
    stub: SocketAddr,
    /// Purser's pid: samples from /proc, and the target of SIGHUP.
    #[arg(long)]
    pid: u32,
    /// The policy file Purser runs with; rewritten (a generation comment appended to its
    /// text as it was at the start) before each reload.
    #[arg(long)]
    policy: PathBuf,
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Operations per second, all connections together (an x402 operation is 2 requests).
    #[arg(long, default_value_t = 250.0)]
    rate: f64,
    #[arg(long, default_value_t = 8)]
    conns: usize,
    #[arg(long, default_value = "soak")]
    agent: String,
    #[arg(long, default_value = "soak-token")]
    token: String,
    /// Seconds between admin-API reloads; a SIGHUP goes halfway between them.
    #[arg(long, default_value_t = 30)]
    reload_every: u64,
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
    /// How often the approver polls `GET /v1/approvals`.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// A request not answered in this many seconds counts as a failure.
    #[arg(long, default_value_t = 60)]
    request_timeout: u64,
    /// Directory for run.json, sessions.json, record.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct ReportArgs {
    /// The directory `run` wrote.
    #[arg(long)]
    dir: PathBuf,
    /// The purser binary (for `purser traces verify`).
    #[arg(long)]
    purser: PathBuf,
    /// Purser's stderr log.
    #[arg(long)]
    purser_log: PathBuf,
    /// Purser's live proof log (rotated predecessors `FILE.N` are read too).
    #[arg(long)]
    trace: PathBuf,
    /// Purser's exit status after SIGTERM, if known.
    #[arg(long)]
    purser_exit: Option<i32>,
    /// Lines to print under the title.
    #[arg(long)]
    note: Vec<String>,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            // One thread: Purser gets the rest of the box.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run_command(args))
        }
        Command::Report(args) => {
            let (text, passed) = report_command(&args)?;
            print!("{text}");
            if let Some(out) = &args.out {
                std::fs::write(out, &text)?;
            }
            if !passed {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

// ================================================================== shared

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Class {
    Plain,
    /// The `402` probe of a paid x402 exchange.
    Challenge,
    Paid,
    Held,
    Denied,
    Malformed,
}

impl Class {
    const ALL: [Class; 6] = [
        Class::Plain,
        Class::Challenge,
        Class::Paid,
        Class::Held,
        Class::Denied,
        Class::Malformed,
    ];

    fn label(self) -> &'static str {
        match self {
            Class::Plain => "plain GET, no payment",
            Class::Challenge => "x402 probe (answered 402)",
            Class::Paid => "paid, $0.001",
            Class::Held => "held ($0.75), then approved",
            Class::Denied => "denied by the policy",
            Class::Malformed => "malformed payment header",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Class::Plain => "200",
            Class::Challenge => "402 + PAYMENT-REQUIRED",
            Class::Paid | Class::Held => "200 ALLOWED + receipt",
            Class::Denied => "403 DENIED, the rule",
            Class::Malformed => "4xx",
        }
    }
}

/// One request that carried a payment, as sent and answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sent {
    class: Class,
    variant: String,
    session: String,
    /// SHA-256 hex of the decoded payment (Purser's `payment_digest`); none for headers
    /// that do not decode.
    digest: Option<String>,
    amount_atomic: u64,
    /// Milliseconds since the start of the run.
    t_ms: u64,
    /// 0: no answer (transport error or timeout).
    status: u16,
    decision: Option<String>,
    trace: Option<String>,
    rule: Option<String>,
    code: Option<String>,
    ok: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ClassStats {
    sent: u64,
    unexpected: u64,
    statuses: BTreeMap<String, u64>,
    /// Malformed: the `code` of each answer; denied: the rule.
    codes: BTreeMap<String, u64>,
    examples: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sample {
    t_s: f64,
    alive: bool,
    rss_kb: u64,
    threads: u64,
    fds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ReloadEvent {
    t_s: f64,
    /// `api` or `sighup`.
    via: String,
    generation: u64,
    /// SHA-256 of the file text written before the reload.
    digest: String,
    /// API: the status and the digest Purser answered.
    status: Option<u16>,
    answered_digest: Option<String>,
    error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ApprovalStats {
    approved: u64,
    approve_failed: u64,
    unexpected_holds: u64,
    examples: Vec<String>,
    /// Hold listed → approve call answered, milliseconds.
    latency_ms_p50: f64,
    latency_ms_p99: f64,
}

#[derive(Serialize, Deserialize)]
struct RunFile {
    started_unix_ms: u64,
    duration_s: u64,
    traffic_s: f64,
    rate: f64,
    conns: usize,
    agent: String,
    requests: u64,
    reconnects: u64,
    classes: BTreeMap<Class, ClassStats>,
    payments: Vec<Sent>,
    samples: Vec<Sample>,
    reloads: Vec<ReloadEvent>,
    base_policy_digest: String,
    approvals: ApprovalStats,
    pending_holds_at_end: usize,
    errors: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ================================================================== run

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One keep-alive HTTP/1.1 connection that reconnects after it breaks (the request that
/// broke it is not retried).
struct Conn {
    addr: SocketAddr,
    sender: Option<Sender>,
    reconnects: u64,
    connected_once: bool,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            sender: None,
            reconnects: 0,
            connected_once: false,
        }
    }

    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let result = tokio::time::timeout(timeout, self.exchange(req)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs()).into()),
        };
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Error> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            if self.connected_once {
                self.reconnects += 1;
            }
            self.connected_once = true;
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected");
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers: parts.headers,
            body,
        })
    }

    /// A call to an origin-form API (admin, stub record).
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Error> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        self.send(req, Duration::from_secs(60)).await
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Plain,
    PaidDirect,
    PaidX402,
    Held,
    Denied,
    Malformed,
}

/// The fixed mix: 7 plain, 3 direct paid, 3 paid x402 exchanges, 2 held, 2 denied, 3
/// malformed, interleaved.
const CYCLE: [Op; 20] = [
    Op::Plain,
    Op::PaidDirect,
    Op::Malformed,
    Op::Plain,
    Op::PaidX402,
    Op::Denied,
    Op::Plain,
    Op::PaidDirect,
    Op::Plain,
    Op::PaidX402,
    Op::Malformed,
    Op::Held,
    Op::Plain,
    Op::PaidDirect,
    Op::Denied,
    Op::Plain,
    Op::PaidX402,
    Op::Malformed,
    Op::Plain,
    Op::Held,
];

const MALFORMED: [(&str, &str); 4] = [
    ("not base64", "!!!not base64!!!"),
    ("base64 of text", "hello, merchant"),
    (
        "JSON with wrong types",
        r#"{"x402Version":2,"payload":"oops","accepted":7}"#,
    ),
    (
        "truncated JSON",
        r#"{"x402Version":2,"payload":{"authorization":{"from":"0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A","#,
    ),
];

struct Ctx {
    args: RunArgs,
    run: u64,
    start: Instant,
    end: Instant,
    stop: AtomicBool,
    next_op: AtomicU64,
    next_payment: AtomicU64,
    next_path: AtomicU64,
    /// Digests of held payments sent and not yet approved.
    held_digests: Mutex<HashSet<String>>,
}

impl Ctx {
    fn t_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    classes: BTreeMap<Class, ClassStats>,
    payments: Vec<Sent>,
    reconnects: u64,
}

impl Tally {
    fn count(&mut self, class: Class, status: u16, code: Option<&str>, problem: Option<String>) {
        self.requests += 1;
        let stats = self.classes.entry(class).or_default();
        stats.sent += 1;
        let key = if status == 0 {
            "no answer".to_string()
        } else {
            status.to_string()
        };
        *stats.statuses.entry(key).or_default() += 1;
        if let Some(code) = code {
            *stats.codes.entry(code.to_string()).or_default() += 1;
        }
        if let Some(problem) = problem {
            stats.unexpected += 1;
            if stats.examples.len() < 5 {
                stats.examples.push(problem);
            }
        }
    }
}

/// The v2 payment JSON an x402 client signs (fields as `paid_load` crafts them, but valid
/// for the next hour).
fn payment_json(
    ctx: &Ctx,
    seq: u64,
    amount: u64,
    offer: Option<&Value>,
    resource: &Value,
) -> String {
    let accepted = match offer {
        Some(offer) => offer.clone(),
        None => json!({"scheme": "exact", "network": NETWORK, "asset": USDC_BASE_SEPOLIA,
                       "amount": amount.to_string(), "payTo": PAY_TO, "maxTimeoutSeconds": 60,
                       "extra": {}}),
    };
    // As the official SDK signs it: valid for the offer's maxTimeoutSeconds from now.
    // Purser keeps a payment's replay keys until then, so this sets the replay set's size.
    let timeout = accepted["maxTimeoutSeconds"].as_u64().unwrap_or(60);
    let valid_before = (unix_ms() / 1000 + timeout).to_string();
    let mut payment = json!({
        "x402Version": 2,
        "payload": {
            "authorization": {"from": PAYER, "to": PAY_TO, "value": amount.to_string(),
                              "validAfter": "0", "validBefore": valid_before,
                              "nonce": format!("0x{:016x}{seq:048x}", ctx.run)},
            "signature": format!("0x{:016x}{seq:016x}{}", ctx.run, "cd".repeat(49)),
        },
        "accepted": accepted,
    });
    if !resource.is_null() {
        payment["resource"] = resource.clone();
    }
    payment.to_string()
}

fn proxied(
    ctx: &Ctx,
    auth: &HeaderValue,
    path: &str,
    payment: Option<&str>,
) -> Result<Request<Full<Bytes>>, Error> {
    let stub = ctx.args.stub;
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{stub}{path}"))
        .header(HOST, stub.to_string())
        .header(PROXY_AUTHORIZATION, auth.clone());
    if let Some(payment) = payment {
        builder = builder.header("payment-signature", payment);
    }
    Ok(builder.body(Full::new(Bytes::new()))?)
}

/// A payment header to send, with what identifies it.
struct Outgoing {
    header: String,
    /// SHA-256 hex of the decoded header (Purser's `payment_digest`).
    digest: Option<String>,
    amount_atomic: u64,
}

impl Outgoing {
    fn signed(json: &str, amount_atomic: u64) -> Outgoing {
        Outgoing {
            header: b64(json.as_bytes()),
            digest: Some(sha256_hex(json.as_bytes())),
            amount_atomic,
        }
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    conn: Conn,
    auth: HeaderValue,
    session: String,
    tally: Tally,
}

impl Worker {
    async fn request(&mut self, path: &str, payment: Option<&str>) -> Result<Answer, String> {
        let req = proxied(&self.ctx, &self.auth, path, payment).map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(self.ctx.args.request_timeout);
        self.conn
            .send(req, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    fn path(&self, prefix: &str) -> String {
        let n = self.ctx.next_path.fetch_add(1, Ordering::Relaxed);
        format!("/{prefix}/{n}")
    }

    async fn plain(&mut self) {
        let path = self.path("plain");
        let (status, problem) = match self.request(&path, None).await {
            Ok(a) if a.status == StatusCode::OK => (200, None),
            Ok(a) => (
                a.status.as_u16(),
                Some(format!("{path}: {} {}", a.status, body_text(&a.body))),
            ),
            Err(e) => (0, Some(format!("{path}: {e}"))),
        };
        self.tally.count(Class::Plain, status, None, problem);
    }

    /// Sends one payment and checks the answer against what its class expects.
    async fn pay(
        &mut self,
        class: Class,
        variant: &str,
        path: &str,
        out: Outgoing,
        expect_rule: Option<&str>,
    ) {
        let t_ms = self.ctx.t_ms();
        let header = out.header;
        let mut sent = Sent {
            class,
            variant: variant.to_string(),
            session: self.session.clone(),
            digest: out.digest,
            amount_atomic: out.amount_atomic,
            t_ms,
            status: 0,
            decision: None,
            trace: None,
            rule: None,
            code: None,
            ok: false,
        };
        let problem = match self.request(path, Some(&header)).await {
            Err(e) => Some(format!("{variant} {path}: {e}")),
            Ok(answer) => {
                sent.status = answer.status.as_u16();
                sent.decision = header_str(&answer.headers, "x-purser-decision");
                sent.trace = header_str(&answer.headers, "x-purser-trace");
                let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
                sent.rule = body["rule"].as_str().map(str::to_string);
                sent.code = body["code"].as_str().map(str::to_string);
                let decision = sent.decision.as_deref();
                let why = match class {
                    Class::Paid | Class::Held => {
                        if answer.status != StatusCode::OK || decision != Some("ALLOWED") {
                            Some("expected 200 ALLOWED")
                        } else if !answer.headers.contains_key("payment-response") {
                            Some("no PAYMENT-RESPONSE receipt")
                        } else {
                            None
                        }
                    }
                    Class::Denied => {
                        if answer.status != StatusCode::FORBIDDEN || decision != Some("DENIED") {
                            Some("expected 403 DENIED")
                        } else if sent.rule.as_deref() != expect_rule {
                            Some("denied by another rule")
                        } else {
                            None
                        }
                    }
                    Class::Malformed => {
                        if !answer.status.is_client_error() {
                            Some("expected a 4xx")
                        } else {
                            None
                        }
                    }
                    Class::Plain | Class::Challenge => None,
                };
                why.map(|why| {
                    format!(
                        "{variant} {path}: {why}, got {} {:?} {}",
                        answer.status,
                        decision,
                        body_text(&answer.body)
                    )
                })
            }
        };
        sent.ok = problem.is_none();
        let code = match class {
            Class::Denied => sent.rule.clone(),
            Class::Malformed => sent.code.clone(),
            _ => None,
        };
        self.tally
            .count(class, sent.status, code.as_deref(), problem);
        self.tally.payments.push(sent);
    }

    fn next_seq(&self) -> u64 {
        self.ctx.next_payment.fetch_add(1, Ordering::Relaxed)
    }

    async fn paid_direct(&mut self) {
        let path = self.path("paid");
        let json = payment_json(&self.ctx, self.next_seq(), PAID_ATOMIC, None, &Value::Null);
        self.pay(
            Class::Paid,
            "direct",
            &path,
            Outgoing::signed(&json, PAID_ATOMIC),
            None,
        )
        .await;
    }

    async fn paid_x402(&mut self) {
        let path = format!("{}?price={PAID_ATOMIC}", self.path("priced"));
        let challenge = match self.request(&path, None).await {
            Ok(a) => {
                let decoded = a
                    .headers
                    .get("payment-required")
                    .and_then(|v| {
                        base64::engine::general_purpose::STANDARD
                            .decode(v.as_bytes())
                            .ok()
                    })
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                match (a.status, decoded) {
                    (StatusCode::PAYMENT_REQUIRED, Some(c)) => {
                        self.tally.count(Class::Challenge, 402, None, None);
                        Some(c)
                    }
                    (status, _) => {
                        self.tally.count(
                            Class::Challenge,
                            status.as_u16(),
                            None,
                            Some(format!("{path}: {status} without a challenge")),
                        );
                        None
                    }
                }
            }
            Err(e) => {
                self.tally
                    .count(Class::Challenge, 0, None, Some(format!("{path}: {e}")));
                None
            }
        };
        let Some(challenge) = challenge else { return };
        let offer = &challenge["accepts"][0];
        let amount: u64 = offer["amount"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let json = payment_json(
            &self.ctx,
            self.next_seq(),
            amount,
            Some(offer),
            &challenge["resource"],
        );
        self.pay(
            Class::Paid,
            "x402",
            &path,
            Outgoing::signed(&json, amount),
            None,
        )
        .await;
    }

    async fn held(&mut self) {
        let path = self.path("premium");
        let json = payment_json(&self.ctx, self.next_seq(), HELD_ATOMIC, None, &Value::Null);
        let out = Outgoing::signed(&json, HELD_ATOMIC);
        let digest = out.digest.clone().unwrap_or_default();
        self.ctx.held_digests.lock().unwrap().insert(digest);
        self.pay(Class::Held, "above threshold", &path, out, None)
            .await;
    }

    async fn denied(&mut self, turn: u64) {
        let seq = self.next_seq();
        let (variant, path, amount, rule) = if turn % 2 == 0 {
            (
                "over per-call max",
                self.path("paid"),
                OVER_MAX_ATOMIC,
                RULE_OVER_MAX,
            )
        } else {
            (
                "forbidden merchant",
                self.path("forbidden"),
                PAID_ATOMIC,
                RULE_FORBIDDEN,
            )
        };
        let json = payment_json(&self.ctx, seq, amount, None, &Value::Null);
        self.pay(
            Class::Denied,
            variant,
            &path,
            Outgoing::signed(&json, amount),
            Some(rule),
        )
        .await;
    }

    async fn malformed(&mut self, turn: u64) {
        let (variant, text) = MALFORMED[turn as usize % MALFORMED.len()];
        let header = if variant == "not base64" {
            text.to_string()
        } else {
            b64(text.as_bytes())
        };
        let path = self.path("paid");
        let out = Outgoing {
            header,
            digest: None,
            amount_atomic: 0,
        };
        self.pay(Class::Malformed, variant, &path, out, None).await;
    }
}

fn body_text(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).replace('\n', " ")
}

async fn worker(ctx: Arc<Ctx>, index: usize) -> Tally {
    let session = format!("{}.c{index}", ctx.args.agent);
    let credentials = b64(format!("{session}:{}", ctx.args.token).as_bytes());
    let auth = HeaderValue::from_str(&format!("Basic {credentials}")).expect("valid header");
    let mut w = Worker {
        conn: Conn::new(ctx.args.proxy),
        auth,
        session,
        tally: Tally::default(),
        ctx: ctx.clone(),
    };
    let period = Duration::from_secs_f64(ctx.args.conns as f64 / ctx.args.rate);
    let offset = period.mul_f64(index as f64 / ctx.args.conns as f64);
    let mut ticks = tokio::time::interval_at((ctx.start + offset).into(), period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if Instant::now() >= ctx.end || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let slot = ctx.next_op.fetch_add(1, Ordering::Relaxed);
        let turn = slot / CYCLE.len() as u64;
        match CYCLE[slot as usize % CYCLE.len()] {
            Op::Plain => w.plain().await,
            Op::PaidDirect => w.paid_direct().await,
            Op::PaidX402 => w.paid_x402().await,
            Op::Held => w.held().await,
            // Two denied and three malformed slots per cycle: `slot` varies the variant.
            Op::Denied => w.denied(turn * 2 + u64::from(slot % 20 > 10)).await,
            Op::Malformed => w.malformed(turn * 3 + slot % 20 / 7).await,
        }
    }
    w.tally.reconnects = w.conn.reconnects;
    w.tally
}

/// The human at the console: approves every hold whose digest the driver sent as a held
/// payment, denies (and reports) any other.
async fn approver(ctx: Arc<Ctx>, stop: Arc<AtomicBool>) -> ApprovalStats {
    let mut conn = Conn::new(ctx.args.admin);
    let mut stats = ApprovalStats {
        approved: 0,
        approve_failed: 0,
        unexpected_holds: 0,
        examples: Vec::new(),
        latency_ms_p50: 0.0,
        latency_ms_p99: 0.0,
    };
    let mut latencies = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    let note = |stats: &mut ApprovalStats, text: String| {
        if stats.examples.len() < 5 {
            stats.examples.push(text);
        }
    };
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let holds = match conn.call(Method::GET, "/v1/approvals", None).await {
            Ok(a) if a.status == StatusCode::OK => {
                let body: Value = serde_json::from_slice(&a.body).unwrap_or_default();
                body["approvals"].as_array().cloned().unwrap_or_default()
            }
            Ok(a) => {
                stats.approve_failed += 1;
                note(&mut stats, format!("GET /v1/approvals: {}", a.status));
                Vec::new()
            }
            Err(e) => {
                stats.approve_failed += 1;
                note(&mut stats, format!("GET /v1/approvals: {e}"));
                Vec::new()
            }
        };
        let fresh: Vec<Value> = holds
            .into_iter()
            .filter(|h| !done.contains(h["id"].as_str().unwrap_or_default()))
            .collect();
        if fresh.is_empty() && stopping {
            break;
        }
        for hold in fresh {
            let listed = Instant::now();
            let id = hold["id"].as_str().unwrap_or_default().to_string();
            let digest = hold["digest"].as_str().unwrap_or_default().to_string();
            done.insert(id.clone());
            let expected = ctx.held_digests.lock().unwrap().remove(&digest);
            let (verb, body) = if expected {
                ("approve", json!({"by": "soak-approver", "digest": digest}))
            } else {
                stats.unexpected_holds += 1;
                note(&mut stats, format!("unexpected hold {id}: {hold}"));
                (
                    "deny",
                    json!({"by": "soak-approver", "reason": "not a payment the soak held"}),
                )
            };
            let path = format!("/v1/approvals/{id}/{verb}");
            match conn.call(Method::POST, &path, Some(body)).await {
                Ok(a) if a.status == StatusCode::OK => {
                    if expected {
                        stats.approved += 1;
                        latencies.push(listed.elapsed().as_secs_f64() * 1e3);
                    }
                }
                Ok(a) => {
                    stats.approve_failed += 1;
                    note(
                        &mut stats,
                        format!("{path}: {} {}", a.status, body_text(&a.body)),
                    );
                }
                Err(e) => {
                    stats.approve_failed += 1;
                    note(&mut stats, format!("{path}: {e}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(ctx.args.poll_ms)).await;
    }
    latencies.sort_by(f64::total_cmp);
    stats.latency_ms_p50 = percentile(&latencies, 0.50);
    stats.latency_ms_p99 = percentile(&latencies, 0.99);
    stats
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sample(pid: u32, t_s: f64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Sample {
        t_s,
        alive: !status.is_empty(),
        rss_kb: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
    }
}

async fn sampler(ctx: Arc<Ctx>) -> Vec<Sample> {
    let every = Duration::from_secs(ctx.args.sample_every.max(1));
    let mut samples = Vec::new();
    let mut at = ctx.start;
    loop {
        samples.push(sample(ctx.args.pid, ctx.start.elapsed().as_secs_f64()));
        at += every;
        if at > ctx.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
    }
    // The last sample, at the end of the traffic.
    tokio::time::sleep_until(ctx.end.into()).await;
    if samples
        .last()
        .is_some_and(|s| s.t_s + 0.5 < ctx.args.duration as f64)
    {
        samples.push(sample(ctx.args.pid, ctx.start.elapsed().as_secs_f64()));
    }
    samples
}

/// Writes generation `n` of the policy file (atomically) and returns its digest.
fn write_generation(path: &Path, base: &str, generation: u64) -> Result<String, Error> {
    let text = format!("{base}\n# soak generation {generation}\n");
    let tmp = path.with_extension(format!("gen{generation}.tmp"));
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, path)?;
    Ok(sha256_hex(text.as_bytes()))
}

async fn reloader(ctx: Arc<Ctx>, base: String) -> Vec<ReloadEvent> {
    let half = Duration::from_secs_f64(ctx.args.reload_every as f64 / 2.0);
    let mut events = Vec::new();
    let mut admin = Conn::new(ctx.args.admin);
    for generation in 1u64.. {
        let at = ctx.start + half * generation as u32;
        if at + Duration::from_secs(1) >= ctx.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let via = if generation % 2 == 0 { "api" } else { "sighup" };
        let mut event = ReloadEvent {
            t_s: ctx.start.elapsed().as_secs_f64(),
            via: via.to_string(),
            generation,
            digest: String::new(),
            status: None,
            answered_digest: None,
            error: None,
        };
        match write_generation(&ctx.args.policy, &base, generation) {
            Ok(digest) => event.digest = digest,
            Err(e) => {
                event.error = Some(format!("writing the policy: {e}"));
                events.push(event);
                continue;
            }
        }
        if via == "api" {
            match admin.call(Method::POST, "/v1/policy/reload", None).await {
                Ok(a) => {
                    event.status = Some(a.status.as_u16());
                    let body: Value = serde_json::from_slice(&a.body).unwrap_or_default();
                    event.answered_digest = body["digest"].as_str().map(str::to_string);
                }
                Err(e) => event.error = Some(e.to_string()),
            }
        } else {
            let pid = ctx.args.pid.to_string();
            let sent = tokio::task::spawn_blocking(move || {
                std::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
            })
            .await;
            match sent {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => event.error = Some(format!("kill -HUP: {status}")),
                Ok(Err(e)) => event.error = Some(format!("kill -HUP: {e}")),
                Err(e) => event.error = Some(format!("kill -HUP: {e}")),
            }
        }
        events.push(event);
    }
    events
}

async fn run_command(args: RunArgs) -> Result<(), Error> {
    if args.rate <= 0.0 || args.conns == 0 {
        return Err("--rate and --conns must be positive".into());
    }
    std::fs::create_dir_all(&args.out)?;
    let base = std::fs::read_to_string(&args.policy)?;
    let base = base.trim_end().to_string();
    // Generation 0 is the file as Purser loaded it.
    let base_policy_digest = sha256_hex(std::fs::read(&args.policy)?.as_slice());
    let started_unix_ms = unix_ms();
    let start = Instant::now() + Duration::from_millis(100);
    let run = (started_unix_ms << 16) ^ u64::from(std::process::id());
    let ctx = Arc::new(Ctx {
        end: start + Duration::from_secs(args.duration),
        start,
        run,
        stop: AtomicBool::new(false),
        next_op: AtomicU64::new(0),
        next_payment: AtomicU64::new(0),
        next_path: AtomicU64::new(0),
        held_digests: Mutex::new(HashSet::new()),
        args: args.clone(),
    });
    eprintln!(
        "soak: {} s at {} operations/s over {} connections (Purser pid {})",
        args.duration, args.rate, args.conns, args.pid
    );
    let approver_stop = Arc::new(AtomicBool::new(false));
    let approver_task = tokio::spawn(approver(ctx.clone(), approver_stop.clone()));
    let sampler_task = tokio::spawn(sampler(ctx.clone()));
    let reloader_task = tokio::spawn(reloader(ctx.clone(), base));
    let progress_ctx = ctx.clone();
    let progress = tokio::spawn(async move {
        let ctx = progress_ctx;
        let mut at = ctx.start;
        loop {
            at += Duration::from_secs(60);
            if at >= ctx.end {
                return;
            }
            tokio::time::sleep_until(at.into()).await;
            let s = sample(ctx.args.pid, 0.0);
            eprintln!(
                "soak: t={:.0}s ops={} payments={} rss={:.1} MiB alive={}",
                ctx.start.elapsed().as_secs_f64(),
                ctx.next_op.load(Ordering::Relaxed),
                ctx.next_payment.load(Ordering::Relaxed),
                s.rss_kb as f64 / 1024.0,
                s.alive
            );
        }
    });
    let workers: Vec<_> = (0..args.conns)
        .map(|i| tokio::spawn(worker(ctx.clone(), i)))
        .collect();
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    for w in workers {
        match w.await {
            Ok(t) => {
                tally.requests += t.requests;
                tally.reconnects += t.reconnects;
                for (class, s) in t.classes {
                    let all = tally.classes.entry(class).or_default();
                    all.sent += s.sent;
                    all.unexpected += s.unexpected;
                    for (k, v) in s.statuses {
                        *all.statuses.entry(k).or_default() += v;
                    }
                    for (k, v) in s.codes {
                        *all.codes.entry(k).or_default() += v;
                    }
                    for e in s.examples {
                        if all.examples.len() < 5 {
                            all.examples.push(e);
                        }
                    }
                }
                tally.payments.extend(t.payments);
            }
            Err(e) => errors.push(format!("a connection task failed: {e}")),
        }
    }
    let traffic_s = ctx.start.elapsed().as_secs_f64();
    ctx.stop.store(true, Ordering::Release);
    approver_stop.store(true, Ordering::Release);
    progress.abort();
    let approvals = approver_task.await?;
    let samples = sampler_task.await?;
    let reloads = reloader_task.await?;
    eprintln!(
        "soak: traffic done after {traffic_s:.1}s: {} requests, {} payments, {} approvals",
        tally.requests,
        tally.payments.len(),
        approvals.approved
    );
    // Snapshots: what is still held, the ledger, the facilitator's record.
    let mut admin = Conn::new(args.admin);
    let pending = admin.call(Method::GET, "/v1/approvals", None).await?;
    let pending: Value = serde_json::from_slice(&pending.body).unwrap_or_default();
    let pending_holds_at_end = pending["approvals"].as_array().map_or(0, Vec::len);
    let sessions = admin.call(Method::GET, "/v1/sessions", None).await?;
    if sessions.status != StatusCode::OK {
        errors.push(format!("GET /v1/sessions answered {}", sessions.status));
    }
    std::fs::write(args.out.join("sessions.json"), &sessions.body)?;
    let mut stub = Conn::new(args.stub);
    let record = stub.call(Method::GET, "/__record", None).await?;
    if record.status != StatusCode::OK {
        errors.push(format!("GET /__record answered {}", record.status));
    }
    std::fs::write(args.out.join("record.json"), &record.body)?;
    tally.payments.sort_by_key(|p| p.t_ms);
    let file = RunFile {
        started_unix_ms,
        duration_s: args.duration,
        traffic_s,
        rate: args.rate,
        conns: args.conns,
        agent: args.agent.clone(),
        requests: tally.requests,
        reconnects: tally.reconnects,
        classes: tally.classes,
        payments: tally.payments,
        samples,
        reloads,
        base_policy_digest,
        approvals,
        pending_holds_at_end,
        errors,
    };
    std::fs::write(args.out.join("run.json"), serde_json::to_vec(&file)?)?;
    Ok(())
}

// ================================================================== report

/// One check's verdict.
struct Check {
    name: &'static str,
    passed: bool,
    detail: String,
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The live log's rotated predecessors (`FILE.N`, oldest first), then the live log.
fn trace_files(live: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u128, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (live.parent(), live.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some(stamp) = file
                    .strip_prefix(&prefix)
                    .and_then(|s| s.parse::<u128>().ok())
                {
                    rotated.push((stamp, entry.path()));
                }
            }
        }
    }
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if live.exists() {
        files.push(live.to_path_buf());
    }
    files
}

/// Accounting failures: what, how many, a few examples.
#[derive(Default)]
struct Problems(BTreeMap<&'static str, (u64, Vec<String>)>);

impl Problems {
    fn add(&mut self, what: &'static str, example: String, n: u64) {
        let e = self.0.entry(what).or_default();
        e.0 += n;
        if e.1.len() < 3 {
            e.1.push(example);
        }
    }
}

#[derive(Default)]
struct DecisionLine {
    decision: String,
    digest: Option<String>,
    rule: Option<String>,
}

#[derive(Default)]
struct LogView {
    files: usize,
    bytes: u64,
    lines: u64,
    kinds: BTreeMap<String, u64>,
    decisions: HashMap<String, DecisionLine>,
    /// decision trace id → hold outcomes (the `decision` of each `hold` line)
    holds: HashMap<String, Vec<String>>,
    /// decision trace id → (outcome, receipt transaction)
    settlements: HashMap<String, Vec<(String, Option<String>)>>,
    committed_usd: Decimal,
    /// policy digest → decision lines under it
    policy_digests: HashMap<String, u64>,
    unparsable: u64,
}

fn decimal_of(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => Decimal::from_str(s).ok(),
        // Never through a float: the number's own text.
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

fn read_log(live: &Path) -> Result<LogView, Error> {
    use std::io::BufRead;
    let mut view = LogView::default();
    for path in trace_files(live) {
        view.files += 1;
        view.bytes += std::fs::metadata(&path)?.len();
        let file = std::io::BufReader::new(std::fs::File::open(&path)?);
        for line in file.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            view.lines += 1;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                view.unparsable += 1;
                continue;
            };
            let text = |k: &str| v[k].as_str().map(str::to_string);
            let kind = text("kind").unwrap_or_default();
            *view.kinds.entry(kind.clone()).or_default() += 1;
            match kind.as_str() {
                "decision" => {
                    if let Some(d) = text("policy_digest") {
                        *view.policy_digests.entry(d).or_default() += 1;
                    }
                    view.decisions.insert(
                        text("trace_id").unwrap_or_default(),
                        DecisionLine {
                            decision: text("decision").unwrap_or_default(),
                            digest: text("payment_digest"),
                            rule: text("rule"),
                        },
                    );
                }
                "hold" => view
                    .holds
                    .entry(text("decision_trace_id").unwrap_or_default())
                    .or_default()
                    .push(text("decision").unwrap_or_default()),
                "settlement" => {
                    let outcome = text("outcome").unwrap_or_default();
                    if outcome == "committed" {
                        view.committed_usd += decimal_of(&v["amount_usd"]).unwrap_or_default();
                    }
                    view.settlements
                        .entry(text("decision_trace_id").unwrap_or_default())
                        .or_default()
                        .push((outcome, text("transaction")));
                }
                _ => {}
            }
        }
    }
    Ok(view)
}

fn usd(atomic: u128) -> Decimal {
    Decimal::from_i128_with_scale(atomic as i128, 6)
}

fn mib(kb: f64) -> String {
    format!("{:.1}", kb / 1024.0)
}

fn report_command(args: &ReportArgs) -> Result<(String, bool), Error> {
    let run: RunFile = serde_json::from_slice(&std::fs::read(args.dir.join("run.json"))?)?;
    let sessions: Value =
        serde_json::from_slice(&std::fs::read(args.dir.join("sessions.json"))?).unwrap_or_default();
    let record: Value =
        serde_json::from_slice(&std::fs::read(args.dir.join("record.json"))?).unwrap_or_default();
    let log = read_log(&args.trace)?;
    let mut checks = Vec::new();

    // 1. Panics.
    let purser_log = std::fs::read_to_string(&args.purser_log).unwrap_or_default();
    let panics: Vec<&str> = purser_log
        .lines()
        .filter(|l| l.contains("panicked"))
        .collect();
    let dead = run.samples.iter().filter(|s| !s.alive).count();
    let exit_ok = args.purser_exit.is_none_or(|c| c == 0);
    checks.push(Check {
        name: "zero panics",
        passed: panics.is_empty() && dead == 0 && exit_ok,
        detail: format!(
            "{} `panicked` lines in Purser's stderr log ({} lines){}; alive at {}/{} samples; exit status after SIGTERM: {}",
            panics.len(),
            purser_log.lines().count(),
            panics
                .first()
                .map(|l| format!(", first: `{}`", l.chars().take(200).collect::<String>()))
                .unwrap_or_default(),
            run.samples.len() - dead,
            run.samples.len(),
            args.purser_exit
                .map_or_else(|| "not given".to_string(), |c| c.to_string())
        ),
    });

    // 2. RSS.
    let d = run.traffic_s;
    let w = if d >= 180.0 { 60.0 } else { d / 5.0 };
    let alive: Vec<&Sample> = run.samples.iter().filter(|s| s.alive).collect();
    let mut baseline: Vec<f64> = alive
        .iter()
        .filter(|s| s.t_s >= w && s.t_s < 2.0 * w)
        .map(|s| s.rss_kb as f64)
        .collect();
    let mut last: Vec<f64> = alive
        .iter()
        .filter(|s| s.t_s > d - w)
        .map(|s| s.rss_kb as f64)
        .collect();
    let (nb, nl) = (baseline.len(), last.len());
    let rss_check = match (median(&mut baseline), median(&mut last)) {
        (Some(b), Some(l)) if b > 0.0 => {
            let change = (l - b) / b * 100.0;
            // Payments forwarded between the middles of the two windows: what the change
            // comes to per payment, if it is all theirs.
            let (from_ms, to_ms) = ((1.5 * w * 1e3) as u64, ((d - w / 2.0) * 1e3) as u64);
            let forwarded = run
                .payments
                .iter()
                .filter(|p| matches!(p.class, Class::Paid | Class::Held) && p.ok)
                .filter(|p| p.t_ms >= from_ms && p.t_ms < to_ms)
                .count();
            Check {
                name: "RSS flat within 10%",
                passed: change.abs() <= 10.0,
                detail: format!(
                    "median of the last {w:.0} s ({nl} samples) {} MiB vs median of [{w:.0} s, {:.0} s) ({nb} samples) {} MiB: {change:+.1}% (rule: |change| ≤ 10%); {forwarded} payments forwarded between the windows' middles, {:.0} bytes of change per payment",
                    mib(l),
                    2.0 * w,
                    mib(b),
                    (l - b) * 1024.0 / forwarded.max(1) as f64
                ),
            }
        }
        _ => Check {
            name: "RSS flat within 10%",
            passed: false,
            detail: format!(
                "not enough samples ({nb} in [{w:.0}, {:.0}) s, {nl} in the last {w:.0} s)",
                2.0 * w
            ),
        },
    };
    checks.push(rss_check);

    // 3. Accounting.
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let stub_settlements = record["settlements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut stub_by_digest: HashMap<String, Vec<(String, u128)>> = HashMap::new();
    let mut stub_atomic: u128 = 0;
    let mut stub_bad_amounts = 0;
    for s in &stub_settlements {
        let amount = text(s, "amount").parse::<u128>();
        match amount {
            Ok(a) => stub_atomic += a,
            Err(_) => stub_bad_amounts += 1,
        }
        stub_by_digest
            .entry(text(s, "digest"))
            .or_default()
            .push((text(s, "id"), *amount.as_ref().unwrap_or(&0)));
    }
    let mut problems = Problems::default();
    let mut flag = |what: &'static str, example: String| problems.add(what, example, 1);
    let mut matched_traces: HashSet<&str> = HashSet::new();
    let mut accounted: BTreeMap<Class, (u64, u64)> = BTreeMap::new();
    let mut expected_settled: HashSet<&str> = HashSet::new();
    for p in &run.payments {
        let entry = accounted.entry(p.class).or_default();
        entry.0 += 1;
        let who = format!(
            "{:?} {} t={}ms status {} trace {:?} digest {}",
            p.class,
            p.variant,
            p.t_ms,
            p.status,
            p.trace,
            p.digest.as_deref().map_or("-", |d| &d[..12.min(d.len())])
        );
        let Some(trace) = p.trace.as_deref() else {
            flag("answer without X-Purser-Trace", who);
            continue;
        };
        let Some(line) = log.decisions.get(trace) else {
            flag("no decision line for the answer's trace id", who);
            continue;
        };
        matched_traces.insert(trace);
        if p.digest.is_some() && line.digest != p.digest {
            flag("decision line with another payment_digest", who.clone());
            continue;
        }
        let want = match p.class {
            Class::Paid => "ALLOWED",
            Class::Held => "PENDING_APPROVAL",
            _ => "DENIED",
        };
        if line.decision != want {
            flag(
                "unexpected decision in the log",
                format!("{who}: {} by {:?}", line.decision, line.rule),
            );
            continue;
        }
        if p.class == Class::Held {
            let holds = log.holds.get(trace).map(Vec::as_slice).unwrap_or(&[]);
            if holds != ["ALLOWED"] {
                flag(
                    "held payment without one approving hold line",
                    format!("{who}: {holds:?}"),
                );
                continue;
            }
        }
        if matches!(p.class, Class::Paid | Class::Held) {
            let digest = p.digest.as_deref().unwrap_or_default();
            expected_settled.insert(digest);
            let stub = stub_by_digest.get(digest).map(Vec::as_slice).unwrap_or(&[]);
            let settled = log.settlements.get(trace).map(Vec::as_slice).unwrap_or(&[]);
            match (stub, settled) {
                ([(tx, amount)], [(outcome, Some(logged_tx))])
                    if outcome == "committed"
                        && logged_tx == tx
                        && *amount == u128::from(p.amount_atomic) => {}
                ([], _) => {
                    flag("paid, but the stub never settled it", who);
                    continue;
                }
                ([_, _, ..], _) => {
                    flag("settled more than once at the stub", who);
                    continue;
                }
                _ => {
                    flag(
                        "settlement line missing or not matching the stub's receipt",
                        format!("{who}: log {settled:?}, stub {stub:?}"),
                    );
                    continue;
                }
            }
        } else if let Some(d) = &p.digest {
            if stub_by_digest.contains_key(d) {
                flag("a refused payment reached the stub and settled", who);
                continue;
            }
        }
        entry.1 += 1;
    }
    let extra_decisions: Vec<&String> = log
        .decisions
        .keys()
        .filter(|t| !matched_traces.contains(t.as_str()))
        .collect();
    if let Some(first) = extra_decisions.first() {
        problems.add(
            "decision line no request of the driver accounts for",
            first.to_string(),
            extra_decisions.len() as u64,
        );
    }
    let stub_extra: Vec<&String> = stub_by_digest
        .keys()
        .filter(|d| !expected_settled.contains(d.as_str()))
        .collect();
    if let Some(first) = stub_extra.first() {
        problems.add(
            "the stub settled a payment the driver did not expect to settle",
            first.to_string(),
            stub_extra.len() as u64,
        );
    }
    let refused_at_stub = record["refused"].as_array().map_or(0, Vec::len);
    if refused_at_stub > 0 {
        problems.add(
            "the stub refused payments",
            record["refused"][0].to_string(),
            refused_at_stub as u64,
        );
    }
    if stub_bad_amounts > 0 {
        problems.add(
            "stub settlements with unreadable amounts",
            String::new(),
            stub_bad_amounts,
        );
    }
    let sent_payments = run.payments.len() as u64;
    let ok_payments: u64 = accounted.values().map(|a| a.1).sum();
    let mut detail = format!(
        "{ok_payments} of {sent_payments} payments sent have their decision line (trace id + digest) with the expected decision ({}); {} decision lines in the log, {} settlement lines; the stub settled {} payments, {} expected",
        accounted
            .iter()
            .map(|(c, (n, ok))| format!("{c:?} {ok}/{n}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
        log.kinds.get("decision").copied().unwrap_or(0),
        log.kinds.get("settlement").copied().unwrap_or(0),
        stub_settlements.len(),
        expected_settled.len(),
    );
    for (what, (n, examples)) in &problems.0 {
        let _ = write!(detail, "; **{n} × {what}** (e.g. {})", examples.join(" | "));
    }
    checks.push(Check {
        name: "every payment accounted for in the log",
        passed: problems.0.is_empty() && ok_payments == sent_payments && log.unparsable == 0,
        detail,
    });

    // 4. Chain.
    let verify = std::process::Command::new(&args.purser)
        .arg("traces")
        .arg("verify")
        .arg(&args.trace)
        .output()?;
    let verify_text = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout).trim(),
        String::from_utf8_lossy(&verify.stderr).trim()
    );
    checks.push(Check {
        name: "`purser traces verify`",
        passed: verify.status.success() && log.lines > 0,
        detail: format!(
            "`{}` ({} file(s), {:.1} MiB)",
            verify_text,
            log.files,
            log.bytes as f64 / 1048576.0
        ),
    });

    // 5. Ledger vs stub.
    let mut ledger_committed = Decimal::ZERO;
    let mut reserved = Decimal::ZERO;
    let mut unknown = Decimal::ZERO;
    let mut fleet: Option<Decimal> = None;
    let mut session_count = 0;
    let mut unreadable = 0;
    for s in sessions["sessions"].as_array().cloned().unwrap_or_default() {
        if s["agent"].as_str() != Some(run.agent.as_str()) {
            continue;
        }
        session_count += 1;
        match (
            decimal_of(&s["spent"]),
            decimal_of(&s["unknown"]),
            decimal_of(&s["reserved"]),
        ) {
            (Some(spent), Some(u), Some(r)) => {
                ledger_committed += spent - u;
                unknown += u;
                reserved += r;
            }
            _ => unreadable += 1,
        }
        if let Some(f) = decimal_of(&s["fleet_spent"]) {
            fleet = Some(f);
        }
    }
    let stub_usd = usd(stub_atomic);
    let ledger_ok = ledger_committed == stub_usd
        && log.committed_usd == stub_usd
        && fleet.is_none_or(|f| f == stub_usd)
        && reserved.is_zero()
        && unknown.is_zero()
        && unreadable == 0
        && session_count > 0;
    checks.push(Check {
        name: "ledger equals the facilitator stub's record",
        passed: ledger_ok,
        detail: format!(
            "ledger (Σ spent − unknown over {session_count} sessions of `{}`) ${} {} stub Σ of {} settlements ${} {} proof log Σ committed settlement lines ${}; fleet spent ${}; reserved ${}, unknown ${}{}",
            run.agent,
            ledger_committed.normalize(),
            if ledger_committed == stub_usd { "=" } else { "**≠**" },
            stub_settlements.len(),
            stub_usd.normalize(),
            if log.committed_usd == stub_usd { "=" } else { "**≠**" },
            log.committed_usd.normalize(),
            fleet.map_or_else(|| "?".to_string(), |f| f.normalize().to_string()),
            reserved.normalize(),
            unknown.normalize(),
            if unreadable > 0 { format!("; {unreadable} sessions unreadable") } else { String::new() }
        ),
    });

    // Extra: traffic as expected.
    let unexpected: u64 = run.classes.values().map(|c| c.unexpected).sum();
    let approvals = &run.approvals;
    let traffic_ok = unexpected == 0
        && approvals.approve_failed == 0
        && approvals.unexpected_holds == 0
        && run.pending_holds_at_end == 0
        && run.errors.is_empty();
    let mut detail = format!(
        "{unexpected} unexpected answers; {} holds approved (approve call p50 {:.1} ms, p99 {:.1} ms), {} failed admin calls, {} unexpected holds, {} still pending at the end; {} reconnects",
        approvals.approved,
        approvals.latency_ms_p50,
        approvals.latency_ms_p99,
        approvals.approve_failed,
        approvals.unexpected_holds,
        run.pending_holds_at_end,
        run.reconnects
    );
    for (class, stats) in &run.classes {
        if !stats.examples.is_empty() {
            let _ = write!(detail, "; {class:?}: {}", stats.examples.join(" | "));
        }
    }
    for e in approvals.examples.iter().chain(&run.errors) {
        let _ = write!(detail, "; {e}");
    }
    checks.push(Check {
        name: "every class got its expected answers",
        passed: traffic_ok,
        detail,
    });

    // Extra: reloads.
    let api: Vec<&ReloadEvent> = run.reloads.iter().filter(|r| r.via == "api").collect();
    let hup: Vec<&ReloadEvent> = run.reloads.iter().filter(|r| r.via == "sighup").collect();
    let api_ok = api
        .iter()
        .filter(|r| {
            r.status == Some(200) && r.answered_digest.as_deref() == Some(r.digest.as_str())
        })
        .count();
    let hup_sent = hup.iter().filter(|r| r.error.is_none()).count();
    let logged_hup = purser_log
        .lines()
        .filter(|l| l.contains("policy reloaded") && !l.contains("admin API"))
        .count();
    let logged_api = purser_log
        .lines()
        .filter(|l| l.contains("policy reloaded through the admin API"))
        .count();
    let failed_reloads = purser_log
        .lines()
        .filter(|l| l.contains("policy reload failed"))
        .count();
    let mut generations: Vec<(u64, &str)> = vec![(0, run.base_policy_digest.as_str())];
    generations.extend(
        run.reloads
            .iter()
            .map(|r| (r.generation, r.digest.as_str())),
    );
    let unseen: Vec<u64> = generations
        .iter()
        .filter(|(_, d)| !log.policy_digests.contains_key(*d))
        .map(|(g, _)| *g)
        .collect();
    let reload_errors: Vec<String> = run
        .reloads
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("gen {}: {e}", r.generation))
        })
        .collect();
    checks.push(Check {
        name: "every reload took effect",
        passed: api_ok == api.len()
            && hup_sent == hup.len()
            && logged_hup == hup.len()
            && logged_api == api.len()
            && failed_reloads == 0
            && unseen.is_empty(),
        detail: format!(
            "{api_ok}/{} admin reloads answered 200 with the new file's digest; {hup_sent}/{} SIGHUPs sent, {logged_hup} `policy reloaded` lines logged for them ({logged_api} for the API), {failed_reloads} failed reloads; {} of {} policy generations appear in decision lines{}{}",
            api.len(),
            hup.len(),
            generations.len() - unseen.len(),
            generations.len(),
            if unseen.is_empty() { String::new() } else { format!(" (missing: {unseen:?})") },
            if reload_errors.is_empty() { String::new() } else { format!("; {}", reload_errors.join("; ")) }
        ),
    });

    // ------------------------------------------------------------ the Markdown
    let passed = checks.iter().all(|c| c.passed);
    let mut out = String::new();
    let started = jiff::Timestamp::from_millisecond(run.started_unix_ms as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "# Purser soak, {started}\n");
    for n in &args.note {
        let _ = writeln!(out, "{n}  ");
    }
    let payments_per_s = run.payments.len() as f64 / run.traffic_s;
    let _ = writeln!(
        out,
        "\n{:.0} s of mixed traffic, {} requests ({:.0} req/s, {:.0} with a payment) over {} keep-alive connections (one session each) at a target of {} operations/s; policy reloaded through the admin API every {} s and by SIGHUP halfway between ({} reloads); VmRSS sampled every {} s.\n",
        run.traffic_s,
        run.requests,
        run.requests as f64 / run.traffic_s,
        payments_per_s,
        run.conns,
        run.rate,
        run.reloads.first().map_or(0.0, |r| r.t_s * 2.0).round(),
        run.reloads.len(),
        run.samples
            .get(1)
            .map_or(0.0, |s| (s.t_s - run.samples[0].t_s).round()),
    );
    let _ = writeln!(
        out,
        "**Result: {}**\n",
        if passed { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(out, "## Checks\n");
    let _ = writeln!(out, "| # | check | result | detail |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (i, c) in checks.iter().enumerate() {
        let n = if i < 5 {
            (i + 1).to_string()
        } else {
            "+".to_string()
        };
        let _ = writeln!(
            out,
            "| {n} | {} | **{}** | {} |",
            c.name,
            if c.passed { "PASS" } else { "FAIL" },
            c.detail.replace('|', "\\|").replace('\n', " ")
        );
    }
    let _ = writeln!(out, "\n## Requests per class\n");
    let _ = writeln!(
        out,
        "| class | sent | per s | statuses | expected | unexpected | rules / codes |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|---:|---|");
    for class in Class::ALL {
        let Some(s) = run.classes.get(&class) else {
            continue;
        };
        let statuses = s
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let codes = s
            .codes
            .iter()
            .map(|(k, v)| format!("`{k}`: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} |",
            class.label(),
            s.sent,
            s.sent as f64 / run.traffic_s,
            statuses,
            class.expected(),
            s.unexpected,
            if codes.is_empty() {
                "-".to_string()
            } else {
                codes
            }
        );
    }
    let _ = writeln!(
        out,
        "| **all** | {} | {:.1} | | | {unexpected} | |",
        run.requests,
        run.requests as f64 / run.traffic_s
    );
    let _ = writeln!(out, "\n## Purser's resources\n");
    let _ = writeln!(
        out,
        "| sampled every {} s | first | min | median | max | last |",
        run.samples
            .get(1)
            .map_or(0.0, |s| (s.t_s - run.samples[0].t_s).round())
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    type Field = fn(&Sample) -> f64;
    let fields: [(&str, Field, bool); 3] = [
        ("VmRSS (MiB)", |s| s.rss_kb as f64, true),
        ("threads", |s| s.threads as f64, false),
        ("open descriptors", |s| s.fds as f64, false),
    ];
    for (name, get, is_kb) in fields {
        let mut values: Vec<f64> = alive.iter().map(|s| get(s)).collect();
        if values.is_empty() {
            continue;
        }
        let (first, last) = (values[0], values[values.len() - 1]);
        let fmt = |v: f64| if is_kb { mib(v) } else { format!("{v:.0}") };
        let med = median(&mut values).unwrap_or(0.0);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} |",
            fmt(first),
            fmt(values[0]),
            fmt(med),
            fmt(values[values.len() - 1]),
            fmt(last)
        );
    }
    let per_minute: Vec<String> = alive
        .iter()
        .filter(|s| (s.t_s.round() as u64) % 60 == 0 || s.t_s + 0.5 >= d)
        .map(|s| format!("{:.0} s: {}", s.t_s, mib(s.rss_kb as f64)))
        .collect();
    let _ = writeln!(
        out,
        "\nVmRSS (MiB) at each minute: {}.",
        per_minute.join(", ")
    );
    let _ = writeln!(
        out,
        "\nProof log: {} lines in {} file(s), {:.1} MiB ({}); {} policy digests in decision lines.",
        log.lines,
        log.files,
        log.bytes as f64 / 1048576.0,
        log.kinds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        log.policy_digests.len()
    );
    let _ = writeln!(
        out,
        "\nRSS rule: W = {w:.0} s (60 s, or a fifth of the run when it is shorter than 180 s); PASS when the median VmRSS of the samples in the last W seconds is within ±10% of the median of the samples in [W, 2W), the minute after warm-up. Accounting: a payment is accounted for when the decision line with the answer's `X-Purser-Trace` carries its SHA-256 as `payment_digest` and the expected decision (held: PENDING_APPROVAL and one approving `hold` line); paid and held ones also need exactly one `committed` settlement line with the stub's receipt transaction. Amounts are compared as `rust_decimal` values."
    );
    Ok((out, passed))
}
