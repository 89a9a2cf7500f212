//! Load generator for Purser's paid path, driven by `benches/paid.sh`.
//!
//! Subcommands (each prints one `RESULT key=value …` line on stdout, details on stderr):
//!
//! * `load`: C keep-alive HTTP/1.1 connections send absolute-form `GET http://…` requests
//!   through the proxy (`Proxy-Authorization: Basic`), each with a unique, well-formed x402
//!   v2 `PAYMENT-SIGNATURE` (EIP-3009 authorization, USDC on Base Sepolia), all generated
//!   before the clock starts; `--no-payment` sends the same requests without one. Reports
//!   completions per second in the measured window (after `--warmup`), p50/p90/p99
//!   latency, and `sent`, every request issued (warm-up included) for the log check.
//! * `approve`: approval latency. Runs the stub upstream in this process (same clock), and
//!   N times: sends one held payment, polls `GET /v1/approvals` until it is listed, waits
//!   `--think-ms`, approves it, and measures from the approve call returning to the
//!   request reaching the upstream.
//! * `holds`: memory of held requests. Reads the proxy's VmRSS, opens N concurrent held
//!   payments, waits until the admin API lists N, reads VmRSS again, denies them all.
//!   With `--plain`, N idle keep-alive connections instead (what a connection alone costs).
//! * `fsync`: the disk's raw rate of 100-byte appends each followed by `fdatasync`.
//! * `gen-log`: writes a hash-chained proof log of N lines, decision and settlement lines
//!   copied from a real Purser log with fresh ids, sessions, keys and times.
//!
//! `cargo run --release --example paid_load -- load --help` lists the options.

#[path = "bench_payment.rs"]
mod bench_payment;
#[path = "bench_tunnel.rs"]
mod bench_tunnel;
#[path = "paid_upstream.rs"]
mod paid_upstream;

use bench_payment::{payment_header, PAYER};

use std::io::{BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, PROXY_AUTHORIZATION};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Sender = SendRequest<Full<Bytes>>;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Load(LoadArgs),
    Approve(HoldArgs),
    Holds(HoldArgs),
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    GenLog {
        /// A real proof log to copy an ALLOWED decision and its settlement from.
        #[arg(long)]
        template: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
        #[arg(long, default_value_t = 20)]
        agents: usize,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// The payments are spread over this many days before now.
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Purser's proxy listener.
    #[arg(long)]
    proxy: SocketAddr,
    /// `AGENT[.SESSION]:TOKEN`.
    #[arg(long, default_value = "bench.s1:bench-token")]
    auth: String,
    /// Atomic units of USDC per payment (6 decimals: 1 is $0.000001).
    #[arg(long, default_value = "1")]
    amount: String,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Absolute `http://` URL of the paid upstream.
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Payment headers to pregenerate (default: 30,000 per second of the run).
    #[arg(long)]
    pool: Option<usize>,
    /// Plain requests, no payment header.
    #[arg(long)]
    no_payment: bool,
    /// Spread the connections over this many sessions of the agent (`AGENT.sN`).
    #[arg(long, default_value_t = 1)]
    sessions: usize,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// Purser's admin listener.
    #[arg(long)]
    admin: SocketAddr,
    /// Holds: absolute URL of an upstream (approve mode runs its own).
    #[arg(long, default_value = "http://127.0.0.1:9/held")]
    target: String,
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Approve: how long the "human" looks at a hold before approving it.
    #[arg(long, default_value_t = 20)]
    think_ms: u64,
    /// Holds: the proxy's pid, for /proc/PID/status.
    #[arg(long)]
    pid: Option<u32>,
    /// Holds: open plain keep-alive connections (one GET each, left open) instead of
    /// holds: the per-connection part of a hold's cost.
    #[arg(long)]
    plain: bool,
    /// Holds: send each held payment over HTTPS instead, through a `CONNECT` tunnel that
    /// the proxy intercepts, trusting this CA file (the proxy's `purser-ca.pem`). The
    /// target is then `https://` with the same host, port and path.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Holds, with `--tls-ca`: HTTP/2 instead, `--streams` held payments sharing each
    /// tunnel (hyper's server allows 200 concurrent streams per connection).
    #[arg(long)]
    h2: bool,
    #[arg(long, default_value_t = 100)]
    streams: usize,
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    // One thread, like `wrk -t1`: the proxy under test gets the rest of the box.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Load(args) => runtime.block_on(load(args)),
        Command::Approve(args) => runtime.block_on(approve(args)),
        Command::Holds(args) => runtime.block_on(holds(args)),
        Command::Fsync { dir, count } => fsync_probe(&dir, count),
        Command::GenLog {
            template,
            out,
            lines,
            agents,
            sessions,
            days,
        } => gen_log(&template, &out, lines, agents, sessions, days),
    }
}

// ------------------------------------------------------------------ requests

fn run_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ ((std::process::id() as u64) << 48)
}

fn basic(auth: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(auth);
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("valid header")
}

fn host_of(url: &str) -> HeaderValue {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    HeaderValue::from_str(host).expect("valid host")
}

/// A request through the proxy: absolute form, proxy credentials, optional payment.
fn proxied(url: &str, auth: &HeaderValue, payment: Option<HeaderValue>) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(HOST, host_of(url))
        .header(PROXY_AUTHORIZATION, auth.clone())
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    if let Some(payment) = payment {
        req.headers_mut().insert("payment-signature", payment);
    }
    req
}

async fn connect(addr: SocketAddr) -> Result<Sender, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends and reads the whole answer: status, `X-Purser-Decision`, body.
async fn exchange(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Option<HeaderValue>, Bytes), Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let decision = resp.headers().get("x-purser-decision").cloned();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, decision, body))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ------------------------------------------------------------------ load

struct Shared {
    url: String,
    pool: Vec<HeaderValue>,
    next: AtomicUsize,
    paid: bool,
    warm_end: Instant,
    end: Instant,
}

#[derive(Default)]
struct ConnStats {
    sent: u64,
    measured: u64,
    errors: u64,
    exhausted: bool,
    latencies_us: Vec<u64>,
    first_error: Option<String>,
}

async fn connection(proxy: SocketAddr, auth: HeaderValue, shared: Arc<Shared>) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut sender = None;
    while Instant::now() < shared.end {
        let payment = if shared.paid {
            let index = shared.next.fetch_add(1, Ordering::Relaxed);
            let Some(header) = shared.pool.get(index) else {
                stats.exhausted = true;
                break;
            };
            Some(header.clone())
        } else {
            None
        };
        if sender.is_none() {
            match connect(proxy).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error.get_or_insert(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let req = proxied(&shared.url, &auth, payment);
        stats.sent += 1;
        let started = Instant::now();
        let outcome = exchange(sender.as_mut().expect("connected"), req).await;
        let done = Instant::now();
        let problem = match outcome {
            Ok((StatusCode::OK, decision, _)) => match (shared.paid, decision) {
                (false, _) => None,
                (true, Some(d)) if d == "ALLOWED" => None,
                (true, d) => Some(format!("200 without X-Purser-Decision: ALLOWED ({d:?})")),
            },
            Ok((status, _, body)) => Some(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Err(e) => {
                sender = None;
                Some(format!("transport: {e}"))
            }
        };
        if let Some(problem) = problem {
            stats.errors += 1;
            stats.first_error.get_or_insert(problem);
        } else if done >= shared.warm_end && done <= shared.end {
            stats.measured += 1;
            stats.latencies_us.push((done - started).as_micros() as u64);
        }
    }
    stats
}

async fn load(args: LoadArgs) -> Result<(), Error> {
    let total_s = args.duration + args.warmup;
    let paid = !args.no_payment;
    let pool_size = if paid {
        args.pool.unwrap_or(30_000 * total_s as usize)
    } else {
        0
    };
    let run = run_id();
    let built = Instant::now();
    let pool: Vec<HeaderValue> = (0..pool_size as u64)
        .map(|i| payment_header(run, i, &args.common.amount))
        .collect();
    if paid {
        eprintln!(
            "paid_load: {pool_size} payment headers ({} bytes each) generated in {:.1}s",
            pool[0].len(),
            built.elapsed().as_secs_f64()
        );
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        url: args.target.clone(),
        pool,
        next: AtomicUsize::new(0),
        paid,
        warm_end: start + Duration::from_secs(args.warmup),
        end: start + Duration::from_secs(total_s),
    });
    let (user, token) = args
        .common
        .auth
        .split_once(':')
        .ok_or("--auth is USER:TOKEN")?;
    let agent = user.split('.').next().unwrap_or(user);
    let tasks: Vec<_> = (0..args.conns)
        .map(|i| {
            let auth = match args.sessions {
                0 | 1 => basic(&args.common.auth),
                n => basic(&format!("{agent}.s{}:{token}", i % n)),
            };
            tokio::spawn(connection(args.common.proxy, auth, shared.clone()))
        })
        .collect();
    let mut all = ConnStats::default();
    for task in tasks {
        let s = task.await?;
        all.sent += s.sent;
        all.measured += s.measured;
        all.errors += s.errors;
        all.exhausted |= s.exhausted;
        all.latencies_us.extend(s.latencies_us);
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    if let Some(e) = &all.first_error {
        eprintln!("paid_load: first error: {e}");
    }
    all.latencies_us.sort_unstable();
    let l = &all.latencies_us;
    println!(
        "RESULT mode={} conns={} sessions={} sent={} measured={} seconds={} rps={:.0} p50_us={} p90_us={} p99_us={} max_us={} errors={} pool_exhausted={}",
        if paid { "paid" } else { "plain" },
        args.conns,
        args.sessions.max(1),
        all.sent,
        all.measured,
        args.duration,
        all.measured as f64 / args.duration as f64,
        percentile(l, 0.50),
        percentile(l, 0.90),
        percentile(l, 0.99),
        l.last().copied().unwrap_or(0),
        all.errors,
        u8::from(all.exhausted),
    );
    Ok(())
}

// ------------------------------------------------------------------ admin API

/// A keep-alive connection to the admin API that reconnects when it breaks.
struct Admin {
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl Admin {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<(StatusCode, serde_json::Value), Error> {
        for attempt in 0..2 {
            if self.sender.is_none() {
                self.sender = Some(connect(self.addr).await?);
            }
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.addr.to_string())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))?;
            match exchange(self.sender.as_mut().expect("connected"), req).await {
                Ok((status, _, body)) => {
                    return Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
                }
                Err(e) if attempt == 0 => {
                    eprintln!("paid_load: admin connection dropped ({e}); reconnecting");
                    self.sender = None;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    async fn holds(&mut self) -> Result<Vec<serde_json::Value>, Error> {
        let (_, body) = self.call(Method::GET, "/v1/approvals", None).await?;
        Ok(body["approvals"].as_array().cloned().unwrap_or_default())
    }

    async fn decide(&mut self, id: &str, verb: &str) -> Result<StatusCode, Error> {
        let path = format!("/v1/approvals/{id}/{verb}");
        let body = r#"{"by":"bench","reason":"bench cleanup"}"#;
        Ok(self.call(Method::POST, &path, Some(body)).await?.0)
    }
}

/// One held payment on its own connection; resolves to the final status.
fn send_held(
    proxy: SocketAddr,
    url: String,
    auth: HeaderValue,
    payment: HeaderValue,
) -> tokio::task::JoinHandle<Result<StatusCode, String>> {
    tokio::spawn(async move {
        let mut sender = connect(proxy).await.map_err(|e| e.to_string())?;
        let req = proxied(&url, &auth, Some(payment));
        let (status, _, _) = exchange(&mut sender, req)
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
    })
}

/// One held payment over HTTPS: `CONNECT` to the target's authority, TLS with the proxy's
/// leaf (trusted through `tls`), then the request in origin form, as an SDK client sends it.
fn send_held_tls(
    proxy: SocketAddr,
    url: String,
    auth: HeaderValue,
    payment: HeaderValue,
    tls: Arc<rustls::ClientConfig>,
) -> tokio::task::JoinHandle<Result<StatusCode, String>> {
    tokio::spawn(async move {
        let held = async {
            let authority = host_of(&url);
            let authority = authority.to_str()?;
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
                .unwrap_or("/");
            let stream =
                bench_tunnel::tls_through_proxy(proxy, authority, Some(auth.to_str()?), tls)
                    .await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::builder()
                .uri(path)
                .header(HOST, authority)
                .header("payment-signature", payment)
                .body(Full::new(Bytes::new()))?;
            let (status, _, _) = exchange(&mut sender, req).await?;
            Ok::<_, Error>(status)
        };
        held.await.map_err(|e| e.to_string())
    })
}

// ------------------------------------------------------------------ approve

async fn approve(args: HoldArgs) -> Result<(), Error> {
    // The upstream runs on its own thread, so its arrival stamps are not delayed by this
    // runtime, and on the same monotonic clock as the approve calls.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let upstream = listener.local_addr()?;
    let arrivals = paid_upstream::Arrivals::default();
    let recorded = arrivals.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            paid_upstream::serve(listener, Some(recorded)).await;
        });
    });
    let mut admin = Admin {
        addr: args.admin,
        sender: None,
    };
    let auth = basic(&args.common.auth);
    let run = run_id();
    let payments: Vec<HeaderValue> = (0..args.count as u64)
        .map(|i| payment_header(run, i, &args.common.amount))
        .collect();
    let mut deltas_ns: Vec<i128> = Vec::with_capacity(args.count);
    let mut approve_rtt_us: Vec<u64> = Vec::with_capacity(args.count);
    for (i, payment) in payments.into_iter().enumerate() {
        let path = format!("/held/{i}");
        let url = format!("http://{upstream}{path}");
        let request = send_held(args.common.proxy, url, auth.clone(), payment);
        let listed = Instant::now();
        let id = loop {
            let holds = admin.holds().await?;
            if let Some(hold) = holds.iter().find(|h| h["path"] == path.as_str()) {
                break hold["id"].as_str().unwrap_or_default().to_string();
            }
            if listed.elapsed() > Duration::from_secs(10) {
                return Err(format!("hold {i} never listed").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        tokio::time::sleep(Duration::from_millis(args.think_ms)).await;
        let called = Instant::now();
        let status = admin.decide(&id, "approve").await?;
        let t0 = Instant::now();
        if status != StatusCode::OK {
            return Err(format!("approve {id} answered {status}").into());
        }
        approve_rtt_us.push((t0 - called).as_micros() as u64);
        let final_status = request
            .await?
            .map_err(|e| format!("held request {i}: {e}"))?;
        if final_status != StatusCode::OK {
            return Err(format!("approved request {i} answered {final_status}").into());
        }
        let arrived = arrivals
            .lock()
            .unwrap()
            .remove(&path)
            .ok_or_else(|| format!("request {i} never reached the upstream"))?;
        let delta = if arrived >= t0 {
            (arrived - t0).as_nanos() as i128
        } else {
            -((t0 - arrived).as_nanos() as i128)
        };
        deltas_ns.push(delta);
    }
    let negatives = deltas_ns.iter().filter(|d| **d < 0).count();
    let min_ns = deltas_ns.iter().copied().min().unwrap_or(0);
    let mut clamped: Vec<u64> = deltas_ns.iter().map(|d| (*d).max(0) as u64).collect();
    clamped.sort_unstable();
    approve_rtt_us.sort_unstable();
    println!(
        "RESULT mode=approve n={} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} negatives={} min_raw_us={:.1} approve_rtt_p50_us={} think_ms={}",
        clamped.len(),
        percentile(&clamped, 0.50) as f64 / 1e3,
        percentile(&clamped, 0.90) as f64 / 1e3,
        percentile(&clamped, 0.99) as f64 / 1e3,
        clamped.last().copied().unwrap_or(0) as f64 / 1e3,
        negatives,
        min_ns as f64 / 1e3,
        percentile(&approve_rtt_us, 0.50),
        args.think_ms,
    );
    Ok(())
}

// ------------------------------------------------------------------ holds (RSS)

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Opens `count` holds, waits until all are listed, returns their tasks.
async fn open_holds(
    args: &HoldArgs,
    admin: &mut Admin,
    run: u64,
    count: usize,
) -> Result<Vec<tokio::task::JoinHandle<Result<StatusCode, String>>>, Error> {
    let auth = basic(&args.common.auth);
    if args.h2 {
        let ca = args.tls_ca.as_ref().ok_or("--h2 needs --tls-ca")?;
        let tls = bench_tunnel::tls_client_config(std::slice::from_ref(ca), &[b"h2"])?;
        let tasks = send_held_h2(args, &auth, run, count, tls).await?;
        return wait_listed(admin, count, tasks).await;
    }
    let tls = args
        .tls_ca
        .as_ref()
        .map(|ca| bench_tunnel::tls_client_config(std::slice::from_ref(ca), &[b"http/1.1"]))
        .transpose()?;
    let tasks: Vec<_> = (0..count as u64)
        .map(|i| {
            let payment = payment_header(run, i, &args.common.amount);
            let (proxy, url, auth) = (args.common.proxy, args.target.clone(), auth.clone());
            match &tls {
                Some(tls) => send_held_tls(proxy, url, auth, payment, tls.clone()),
                None => send_held(proxy, url, auth, payment),
            }
        })
        .collect();
    wait_listed(admin, count, tasks).await
}

/// Held payments as HTTP/2 streams, `--streams` to each intercepted tunnel: the tunnels are
/// opened first, then every request is sent at once.
async fn send_held_h2(
    args: &HoldArgs,
    auth: &HeaderValue,
    run: u64,
    count: usize,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Vec<tokio::task::JoinHandle<Result<StatusCode, String>>>, Error> {
    let authority = host_of(&args.target);
    let authority = authority.to_str()?;
    let mut senders = Vec::new();
    for _ in 0..count.div_ceil(args.streams.max(1)) {
        let stream = bench_tunnel::tls_through_proxy(
            args.common.proxy,
            authority,
            Some(auth.to_str()?),
            tls.clone(),
        )
        .await?;
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        senders.push(sender);
    }
    let tasks = (0..count)
        .map(|i| {
            let mut sender = senders[i / args.streams.max(1)].clone();
            let payment = payment_header(run, i as u64, &args.common.amount);
            let req = Request::builder()
                .uri(args.target.as_str())
                .header("payment-signature", payment)
                .body(Full::new(Bytes::new()));
            tokio::spawn(async move {
                let req = req.map_err(|e| e.to_string())?;
                sender.ready().await.map_err(|e| e.to_string())?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                Ok(status)
            })
        })
        .collect();
    Ok(tasks)
}

/// Waits until the admin API lists `count` holds.
async fn wait_listed(
    admin: &mut Admin,
    count: usize,
    tasks: Vec<tokio::task::JoinHandle<Result<StatusCode, String>>>,
) -> Result<Vec<tokio::task::JoinHandle<Result<StatusCode, String>>>, Error> {
    let started = Instant::now();
    loop {
        let listed = admin.holds().await?.len();
        if listed >= count {
            eprintln!(
                "paid_load: {listed} holds listed after {:.2}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(tasks);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("only {listed} of {count} holds listed after 60s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Denies every listed hold and waits for the held requests to answer.
async fn deny_all(
    admin: &mut Admin,
    tasks: Vec<tokio::task::JoinHandle<Result<StatusCode, String>>>,
) -> Result<usize, Error> {
    for hold in admin.holds().await? {
        admin
            .decide(hold["id"].as_str().unwrap_or_default(), "deny")
            .await?;
    }
    let mut refused = 0;
    for task in tasks {
        if task.await? == Ok(StatusCode::FORBIDDEN) {
            refused += 1;
        }
    }
    Ok(refused)
}

/// Opens `count` connections through the proxy, one plain GET on each, kept open.
async fn open_plain(args: &HoldArgs, count: usize) -> Result<Vec<Sender>, Error> {
    let auth = basic(&args.common.auth);
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sender = connect(args.common.proxy).await?;
        let (status, _, _) = exchange(&mut sender, proxied(&args.target, &auth, None)).await?;
        if status != StatusCode::OK {
            return Err(format!("plain GET through the proxy answered {status}").into());
        }
        senders.push(sender);
    }
    Ok(senders)
}

async fn holds(args: HoldArgs) -> Result<(), Error> {
    let pid = args.pid.ok_or("--pid is required")?;
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    if args.plain {
        let rss_start = rss_kb(pid);
        drop(open_plain(&args, 10).await?);
        settle().await;
        let rss_idle = rss_kb(pid);
        let open = open_plain(&args, args.count).await?;
        settle().await;
        let rss_held = rss_kb(pid);
        drop(open);
        settle().await;
        let rss_after = rss_kb(pid);
        println!(
            "RESULT mode=conns n={} rss_start_kb={rss_start} rss_idle_kb={rss_idle} rss_held_kb={rss_held} rss_after_kb={rss_after} extra_kb={} per_conn_bytes={}",
            args.count,
            rss_held.saturating_sub(rss_idle),
            rss_held.saturating_sub(rss_idle) * 1024 / args.count.max(1) as u64,
        );
        return Ok(());
    }
    let mut admin = Admin {
        addr: args.admin,
        sender: None,
    };
    let rss_start = rss_kb(pid);
    // Warm the hold path once, so its code and first allocations are not counted.
    let warm = open_holds(&args, &mut admin, run_id(), 10).await?;
    deny_all(&mut admin, warm).await?;
    settle().await;
    let rss_idle = rss_kb(pid);
    let tasks = open_holds(&args, &mut admin, run_id(), args.count).await?;
    settle().await;
    let rss_held = rss_kb(pid);
    let refused = deny_all(&mut admin, tasks).await?;
    settle().await;
    let rss_after = rss_kb(pid);
    println!(
        "RESULT mode=holds transport={} n={} rss_start_kb={rss_start} rss_idle_kb={rss_idle} rss_held_kb={rss_held} rss_after_kb={rss_after} extra_kb={} per_hold_bytes={} denied={refused}",
        match (&args.tls_ca, args.h2) {
            (Some(_), true) => "https-h2",
            (Some(_), false) => "https",
            (None, _) => "http",
        },
        args.count,
        rss_held.saturating_sub(rss_idle),
        rss_held.saturating_sub(rss_idle) * 1024 / args.count.max(1) as u64,
    );
    Ok(())
}

// ------------------------------------------------------------------ fsync probe

/// Appends 100 bytes and `fdatasync`s, `count` times, in `dir` (like the trace writer).
fn fsync_probe(dir: &std::path::Path, count: usize) -> Result<(), Error> {
    let path = dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let line = [b'x'; 100];
    let mut each_us = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(&line)?;
        file.sync_data()?;
        each_us.push(t.elapsed().as_micros() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    each_us.sort_unstable();
    println!(
        "RESULT mode=fsync n={count} per_s={:.0} p50_us={} p99_us={}",
        count as f64 / seconds,
        percentile(&each_us, 0.50),
        percentile(&each_us, 0.99),
    );
    Ok(())
}

// ------------------------------------------------------------------ proof log generator

/// A line cut at the values that change: literal, slot, literal, slot, …, literal.
struct Template {
    pieces: Vec<String>,
    slots: Vec<usize>,
}

impl Template {
    /// Replaces each `"key":"value"` (or bare `"value"` when `key` is empty) of `line` by
    /// slot `i`; each must occur exactly once.
    fn new(line: &str, fields: &[(&str, String)]) -> Result<Template, Error> {
        let mut marked = line.to_string();
        for (i, (key, value)) in fields.iter().enumerate() {
            let old = if key.is_empty() {
                format!("\"{value}\"")
            } else {
                format!("\"{key}\":\"{value}\"")
            };
            if marked.matches(&old).count() != 1 {
                return Err(format!("template: {old} must occur exactly once").into());
            }
            let new = if key.is_empty() {
                format!("\"\u{0}{i}\u{0}\"")
            } else {
                format!("\"{key}\":\"\u{0}{i}\u{0}\"")
            };
            marked = marked.replacen(&old, &new, 1);
        }
        let mut pieces = Vec::new();
        let mut slots = Vec::new();
        for (n, part) in marked.split('\u{0}').enumerate() {
            if n % 2 == 0 {
                pieces.push(part.to_string());
            } else {
                slots.push(part.parse()?);
            }
        }
        Ok(Template { pieces, slots })
    }

    fn fill(&self, out: &mut String, values: &[&str]) {
        out.push_str(&self.pieces[0]);
        for (slot, piece) in self.slots.iter().zip(&self.pieces[1..]) {
            out.push_str(values[*slot]);
            out.push_str(piece);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn gen_log(
    template: &std::path::Path,
    out: &std::path::Path,
    lines: usize,
    agents: usize,
    sessions: usize,
    days: i64,
) -> Result<(), Error> {
    // The first ALLOWED decision that has a committed settlement, and that settlement.
    let mut decisions = std::collections::HashMap::new();
    let mut pair = None;
    for line in std::io::BufReader::new(std::fs::File::open(template)?).lines() {
        let line = line?;
        let value: serde_json::Value = serde_json::from_str(&line)?;
        match (value["kind"].as_str(), value["decision"].as_str()) {
            (Some("decision"), Some("ALLOWED")) => {
                decisions.insert(value["trace_id"].as_str().unwrap_or("").to_string(), line);
            }
            (Some("settlement"), _) if value["outcome"] == "committed" => {
                if let Some(d) = decisions.remove(value["decision_trace_id"].as_str().unwrap_or(""))
                {
                    pair = Some((d, line));
                    break;
                }
            }
            _ => {}
        }
    }
    let (decision, settlement) = pair.ok_or("template has no committed ALLOWED payment")?;
    // The chain is recomputed: drop `"prev_hash":"…",` and keep the rest as written.
    let unchained = |line: &str| -> Result<String, Error> {
        let rest = line
            .strip_prefix("{\"prev_hash\":\"")
            .and_then(|r| r.get(64..))
            .and_then(|r| r.strip_prefix("\","))
            .ok_or("template line does not start with prev_hash")?;
        Ok(rest.to_string())
    };
    let dv: serde_json::Value = serde_json::from_str(&decision)?;
    let sv: serde_json::Value = serde_json::from_str(&settlement)?;
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let keys: Vec<String> = dv["replay_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if keys.len() != 2 {
        return Err(format!("expected 2 replay keys, found {keys:?}").into());
    }
    // Slots: 0 trace_id, 1 time, 2 session, 3 agent, 4 digest / decision_trace_id,
    // 5 replay key 1 / transaction, 6 replay key 2.
    let decision_t = Template::new(
        &unchained(&decision)?,
        &[
            ("trace_id", s(&dv, "trace_id")),
            ("time", s(&dv, "time")),
            ("session", s(&dv, "session")),
            ("agent", s(&dv, "agent")),
            ("payment_digest", s(&dv, "payment_digest")),
            ("", keys[0].clone()),
            ("", keys[1].clone()),
        ],
    )?;
    let settlement_t = Template::new(
        &unchained(&settlement)?,
        &[
            ("trace_id", s(&sv, "trace_id")),
            ("time", s(&sv, "time")),
            ("session", s(&sv, "session")),
            ("agent", s(&sv, "agent")),
            ("decision_trace_id", s(&sv, "decision_trace_id")),
            ("transaction", s(&sv, "transaction")),
        ],
    )?;
    let kinds: Vec<String> = keys
        .iter()
        .map(|k| k.split(':').next().unwrap_or("").to_string())
        .collect();
    if kinds
        .iter()
        .any(|k| k != "payer_nonce" && k != "signature_sha256")
    {
        return Err(format!("unexpected replay key kinds {kinds:?}").into());
    }
    let replay_key = |kind: &str, nonce: &str| match kind {
        "payer_nonce" => format!("payer_nonce:{PAYER}:{nonce}").to_lowercase(),
        _ => format!(
            "signature_sha256:{}",
            hex(&Sha256::digest(nonce.as_bytes()))
        ),
    };
    let payments = lines / 2;
    let now = jiff::Timestamp::now().as_millisecond();
    let first = now - days * 86_400_000;
    let step = ((now - first) / payments.max(1) as i64).max(1);
    let mut writer = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut prev = "0".repeat(64);
    let mut line = String::with_capacity(4096);
    let mut written = 0;
    let mut emit = |body: &str, prev: &mut String| -> std::io::Result<()> {
        line.clear();
        line.push_str("{\"prev_hash\":\"");
        line.push_str(prev);
        line.push_str("\",");
        line.push_str(body);
        *prev = hex(&Sha256::digest(line.as_bytes()));
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")
    };
    let mut body = String::with_capacity(4096);
    for p in 0..payments {
        let agent = format!("bench-{}", p % agents);
        let session = format!("{agent}.s{}", p % sessions);
        let at = jiff::Timestamp::from_millisecond(first + p as i64 * step)?;
        let decided = at.to_string();
        let settled = (at + jiff::SignedDuration::from_millis(3)).to_string();
        let trace = format!("tr_bench{:08x}", 2 * p);
        let trace_settle = format!("tr_bench{:08x}", 2 * p + 1);
        let nonce = format!("0x{p:064x}");
        let (k1, k2) = (replay_key(&kinds[0], &nonce), replay_key(&kinds[1], &nonce));
        let digest = hex(&Sha256::digest(format!("payment {p}").as_bytes()));
        body.clear();
        decision_t.fill(
            &mut body,
            &[&trace, &decided, &session, &agent, &digest, &k1, &k2],
        );
        emit(&body, &mut prev)?;
        let tx = format!("0x{:064x}", p as u64 ^ 0xbeef);
        body.clear();
        settlement_t.fill(
            &mut body,
            &[&trace_settle, &settled, &session, &agent, &trace, &tx],
        );
        emit(&body, &mut prev)?;
        written += 2;
    }
    writer.flush()?;
    drop(writer);
    let bytes = std::fs::metadata(out)?.len();
    println!("RESULT mode=gen-log lines={written} bytes={bytes} agents={agents} sessions={sessions} days={days}");
    Ok(())
}
