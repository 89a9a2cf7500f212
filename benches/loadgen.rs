//! Load generator of `benches/run`: plain and TLS (through a `CONNECT` proxy) load,
//! handshakes, bulk transfer and memory probes against a forward proxy on loopback.
//!
//! Each subcommand prints one `RESULT key=value …` line on stdout (details on stderr):
//!
//! * `load`: `--conns` keep-alive HTTP/1.1 connections send `GET`s to `--target`, either
//!   straight or through `--proxy` (absolute form for `http://`, a `CONNECT` tunnel per
//!   connection then TLS for `https://`). `--rate 0` is a closed loop (each connection
//!   sends its next request when the previous answer is in: saturation); `--rate R` is an
//!   open loop at R requests/s, each request scheduled at a fixed time (connection `i` of
//!   `N` sends at `start + (i + k·N)/R`). Open-loop latency runs from the scheduled time
//!   whenever the connection was still busy with the previous request then (so a stall
//!   counts for every request it delayed: no coordinated omission), and from the actual
//!   send otherwise (the timer's own lateness is the generator's, not the proxy's).
//!   Reports req/s in the measured window (after `--warmup`) and p50/p99/p99.9/max.
//! * `handshakes`: `--conns` workers each open a new connection, `CONNECT`, complete a
//!   full TLS handshake (no resumption) and close, in a loop; with `--request` they also
//!   send one `GET` (`connection: close`) before closing. Reports completions per second.
//! * `first`: one at a time, `--count` handshakes through the proxy to host names never
//!   seen before (`nI-RUN.bench.test`: the proxy mints a leaf for each), then `--count`
//!   to one host it has seen (a cached leaf). No request is sent, so the names need not
//!   resolve. Reports p50/p99/max of both, from TCP connect to the handshake's end.
//! * `bulk`: keep-alive `GET`s of a large body (`/bulk?bytes=N` of `bench_origin`), counts
//!   the body bytes that arrive in the measured window: MB/s (10^6 bytes).
//! * `memory`: the proxy's VmRSS (`/proc/PID/status`) at start, with `--conns` idle
//!   keep-alive connections (one `GET` each, kept open), then with `--leaves` distinct host
//!   names intercepted as well (a handshake to each), then with `--sessions` distinct
//!   sessions (`AGENT.mI` credentials, one unique x402 v2 payment each, to `--paid-target`).
//! * `certs`: writes a test CA and a certificate for `127.0.0.1`/`localhost` it signed
//!   (`ca.pem`, `origin.pem`, `origin.key`) for the TLS origin.

#[path = "bench_payment.rs"]
mod bench_payment;
#[path = "bench_tunnel.rs"]
mod bench_tunnel;

use bench_payment::payment_header;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONNECTION, HOST, PROXY_AUTHORIZATION};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Sender = SendRequest<Empty<Bytes>>;

#[derive(Parser)]
struct Cli {
    /// Runtime threads (1, like `wrk -t1`, leaves the rest of the box to the proxy).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Load(LoadArgs),
    Handshakes(HandshakeArgs),
    First(FirstArgs),
    Bulk(LoadArgs),
    Memory(MemoryArgs),
    Certs {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Via {
    /// Forward proxy; without it, straight to the target.
    #[arg(long)]
    proxy: Option<SocketAddr>,
    /// Proxy credentials `USER:TOKEN` (`Proxy-Authorization: Basic`).
    #[arg(long)]
    auth: Option<String>,
    /// PEM roots trusted for TLS (the proxy's interception CA, the origin's CA).
    #[arg(long = "ca")]
    cas: Vec<PathBuf>,
}

#[derive(Args, Clone)]
struct Window {
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    via: Via,
    #[command(flatten)]
    window: Window,
    /// `http://HOST:PORT/PATH` or `https://HOST:PORT/PATH`.
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Requests per second over all connections; 0 is a closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

#[derive(Args)]
struct HandshakeArgs {
    #[command(flatten)]
    via: Via,
    #[command(flatten)]
    window: Window,
    /// `https://HOST:PORT/PATH`.
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Send one `GET` on each connection before closing it.
    #[arg(long)]
    request: bool,
}

#[derive(Args)]
struct FirstArgs {
    #[command(flatten)]
    via: Via,
    #[arg(long, default_value_t = 200)]
    count: usize,
    #[arg(long, default_value = "bench.test")]
    domain: String,
    #[arg(long, default_value_t = 443)]
    port: u16,
}

#[derive(Args)]
struct MemoryArgs {
    #[command(flatten)]
    via: Via,
    /// The proxy's pid.
    #[arg(long)]
    pid: u32,
    /// Plain `http://` URL for the keep-alive connections.
    #[arg(long)]
    target: String,
    /// Paid `http://` URL for the sessions (an upstream that answers with receipts).
    #[arg(long)]
    paid_target: Option<String>,
    #[arg(long, default_value_t = 0)]
    conns: usize,
    #[arg(long, default_value_t = 0)]
    leaves: usize,
    #[arg(long, default_value_t = 0)]
    sessions: usize,
    /// Connections (and workers) used to fill leaves and sessions.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Pause before each reading, for the proxy to settle.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Admin listener, to read the leaf cache size and session count after the readings.
    #[arg(long)]
    admin: Option<SocketAddr>,
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    match cli.command {
        Command::Load(args) => runtime.block_on(load(args)),
        Command::Handshakes(args) => runtime.block_on(handshakes(args)),
        Command::First(args) => runtime.block_on(first(args)),
        Command::Bulk(args) => runtime.block_on(bulk(args)),
        Command::Memory(args) => runtime.block_on(memory(args)),
        Command::Certs { dir } => certs(&dir),
    }
}

// ------------------------------------------------------------------ connections

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// Where requests go: scheme, host, port, and the path to ask for.
#[derive(Clone, Debug)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, Error> {
        let uri: Uri = url.parse()?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url}: only http:// and https:// targets").into()),
        };
        let host = uri.host().ok_or("target needs a host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Target {
            https,
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// How connections are opened: straight or through a proxy, with which TLS roots.
#[derive(Clone)]
struct Dialer {
    proxy: Option<SocketAddr>,
    auth: Option<HeaderValue>,
    tls: Arc<rustls::ClientConfig>,
}

fn basic(credentials: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value")
}

impl Dialer {
    fn new(via: &Via) -> Result<Dialer, Error> {
        Ok(Dialer {
            proxy: via.proxy,
            auth: via.auth.as_deref().map(basic),
            tls: bench_tunnel::tls_client_config(&via.cas, &[b"http/1.1"])?,
        })
    }

    /// A byte stream to `target`: TCP, then `CONNECT` (through a proxy, for TLS), then
    /// TLS with `target.host` as the server name.
    async fn open(&self, target: &Target) -> Result<Stream, Error> {
        if let (true, Some(proxy)) = (target.https, self.proxy) {
            let auth = self.auth.as_ref().map(|v| v.to_str()).transpose()?;
            let tls =
                bench_tunnel::tls_through_proxy(proxy, &target.authority(), auth, self.tls.clone())
                    .await?;
            return Ok(Box::new(tls));
        }
        let tcp = match self.proxy {
            Some(proxy) => TcpStream::connect(proxy).await?,
            None => TcpStream::connect((target.host.as_str(), target.port)).await?,
        };
        tcp.set_nodelay(true)?;
        if !target.https {
            return Ok(Box::new(tcp));
        }
        let name = ServerName::try_from(target.host.clone())?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }

    /// An HTTP/1.1 client connection to `target`.
    async fn http(&self, target: &Target) -> Result<Sender, Error> {
        let stream = self.open(target).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// A `GET` of `target` as it must be written on a connection from [`Dialer::http`]:
    /// absolute form to a proxy for `http://`, origin form otherwise.
    fn get(&self, target: &Target, auth: Option<&HeaderValue>) -> Request<Empty<Bytes>> {
        let absolute = self.proxy.is_some() && !target.https;
        let uri = if absolute {
            target.url()
        } else {
            target.path.clone()
        };
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(HOST, target.authority())
            .body(Empty::new())
            .expect("valid request");
        if absolute {
            if let Some(auth) = auth.or(self.auth.as_ref()) {
                req.headers_mut().insert(PROXY_AUTHORIZATION, auth.clone());
            }
        }
        req
    }
}

/// Sends and reads the whole answer; anything but `200` is an error.
async fn exchange(sender: &mut Sender, req: Request<Empty<Bytes>>) -> Result<u64, Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("{status}: {}", text.trim()).into());
    }
    Ok(body.len() as u64)
}

/// CPU seconds this process used so far (user + system, all threads; USER_HZ is 100 on
/// Linux), so a run can tell when the generator itself was the bottleneck.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Cores the generator used between `cpu_start` and now, over `wall` seconds.
fn gen_cpu(cpu_start: f64, wall: Instant) -> String {
    let secs = wall.elapsed().as_secs_f64().max(1e-3);
    format!("gen_cpu={:.2}", (cpu_seconds() - cpu_start) / secs)
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn run_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() as u64) ^ ((std::process::id() as u64) << 40)
}

/// Per-task tallies, merged at the end.
#[derive(Default)]
struct Tally {
    sent: u64,
    measured: u64,
    errors: u64,
    behind: u64,
    unsent: u64,
    reconnects: u64,
    bytes: u64,
    last_done: Option<Instant>,
    latencies_us: Vec<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.measured += other.measured;
        self.errors += other.errors;
        self.behind += other.behind;
        self.unsent += other.unsent;
        self.reconnects += other.reconnects;
        self.bytes += other.bytes;
        self.last_done = self.last_done.max(other.last_done);
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// `p50_us=… p99_us=… p999_us=… max_us=…` over the sorted latencies.
    fn percentiles(&mut self) -> String {
        self.latencies_us.sort_unstable();
        let l = &self.latencies_us;
        format!(
            "p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
            percentile(l, 0.50),
            percentile(l, 0.90),
            percentile(l, 0.99),
            percentile(l, 0.999),
            l.last().copied().unwrap_or(0)
        )
    }

    fn report_error(&self, mode: &str) {
        if let Some(e) = &self.first_error {
            eprintln!("loadgen {mode}: {} errors; first: {e}", self.errors);
        }
    }
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally, Error> {
    let mut all = Tally::default();
    for task in tasks {
        all.merge(task.await?);
    }
    Ok(all)
}

#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    warm_end: Instant,
    end: Instant,
}

impl Clock {
    fn new(window: &Window) -> Clock {
        let start = Instant::now();
        let warm_end = start + Duration::from_secs_f64(window.warmup);
        Clock {
            start,
            warm_end,
            end: warm_end + Duration::from_secs_f64(window.duration),
        }
    }

    fn measured(&self, at: Instant) -> bool {
        at >= self.warm_end && at <= self.end
    }
}

// ------------------------------------------------------------------ load

/// An open loop stops sending this long after the window ends; what is still unsent then
/// is counted with the time it had waited so far (the percentiles become lower bounds).
const GRACE: Duration = Duration::from_secs(2);

/// One `GET` on the worker's connection. A connection the server closed (tinyproxy closes
/// after every answer) is replaced first, and once more if it turns out closed under the
/// request: the reconnection is part of that request's latency.
async fn send_get(
    dialer: &Dialer,
    target: &Target,
    sender: &mut Option<Sender>,
    tally: &mut Tally,
) -> Result<(), Error> {
    for attempt in 0..2 {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            if sender.is_some() {
                tally.reconnects += 1;
            }
            *sender = Some(dialer.http(target).await?);
        }
        let connection = sender.as_mut().expect("connected");
        match exchange(connection, dialer.get(target, None)).await {
            Ok(_) => return Ok(()),
            Err(_) if attempt == 0 && connection.is_closed() => {
                tally.reconnects += 1;
                *sender = None;
            }
            Err(e) => {
                if connection.is_closed() {
                    *sender = None;
                }
                return Err(e);
            }
        }
    }
    Err("connection closed twice in a row".into())
}

async fn load_worker(
    index: usize,
    conns: usize,
    rate: f64,
    clock: Clock,
    dialer: Arc<Dialer>,
    target: Arc<Target>,
    mut sender: Option<Sender>,
) -> Tally {
    let mut tally = Tally::default();
    let open_loop = rate > 0.0;
    let give_up = clock.end + GRACE;
    let mut previous_done = clock.start;
    for k in 0u64.. {
        let scheduled = if open_loop {
            clock.start + Duration::from_secs_f64((index as f64 + (k * conns as u64) as f64) / rate)
        } else {
            Instant::now()
        };
        if scheduled >= clock.end {
            break;
        }
        let now = Instant::now();
        if open_loop && now > give_up {
            if clock.measured(scheduled) {
                tally.measured += 1;
                tally.unsent += 1;
                tally
                    .latencies_us
                    .push((now - scheduled).as_micros() as u64);
            }
            continue;
        }
        if now < scheduled {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let sent_at = Instant::now();
        tally.sent += 1;
        let outcome = send_get(&dialer, &target, &mut sender, &mut tally).await;
        let done = Instant::now();
        // Busy with the previous request at the scheduled time: the wait counts.
        let busy = open_loop && previous_done > scheduled;
        let from = if busy { scheduled } else { sent_at };
        previous_done = done;
        match outcome {
            Ok(()) => {
                let in_window = if open_loop {
                    clock.measured(scheduled)
                } else {
                    clock.measured(done)
                };
                if in_window {
                    tally.measured += 1;
                    tally.behind += u64::from(busy);
                    tally.latencies_us.push((done - from).as_micros() as u64);
                    tally.last_done = tally.last_done.max(Some(done));
                }
            }
            Err(e) => {
                tally.error(e);
                if sender.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    tally
}

async fn load(args: LoadArgs) -> Result<(), Error> {
    let dialer = Arc::new(Dialer::new(&args.via)?);
    let target = Arc::new(Target::parse(&args.target)?);
    // Every connection is open (and its tunnel and TLS session up) before the clock starts.
    let mut senders = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        senders.push(dialer.http(&target).await?);
    }
    let (cpu_start, wall) = (cpu_seconds(), Instant::now());
    let clock = Clock::new(&args.window);
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, sender)| {
            tokio::spawn(load_worker(
                i,
                args.conns,
                args.rate,
                clock,
                dialer.clone(),
                target.clone(),
                Some(sender),
            ))
        })
        .collect();
    let mut all = join_all(tasks).await?;
    all.report_error("load");
    let percentiles = all.percentiles();
    let seconds = args.window.duration;
    // Completions per second: over the window (closed loop), or from the window's start to
    // the last completion of a request scheduled in it (open loop: what was achieved).
    let span = match all.last_done {
        Some(last) if args.rate > 0.0 => (last.max(clock.end) - clock.warm_end).as_secs_f64(),
        _ => seconds,
    };
    println!(
        "RESULT mode=load loop={} rate={} conns={} sent={} measured={} seconds={} rps={:.0} {} behind={} unsent={} reconnects={} errors={} {}",
        if args.rate > 0.0 { "open" } else { "closed" },
        args.rate,
        args.conns,
        all.sent,
        all.measured,
        seconds,
        (all.measured - all.unsent) as f64 / span,
        percentiles,
        all.behind,
        all.unsent,
        all.reconnects,
        all.errors,
        gen_cpu(cpu_start, wall),
    );
    Ok(())
}

// ------------------------------------------------------------------ handshakes

/// One new connection: handshake, optionally one request, then an orderly close.
async fn one_connection(dialer: &Dialer, target: &Target, request: bool) -> Result<(), Error> {
    let mut stream = dialer.open(target).await?;
    if request {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut req = dialer.get(target, None);
        req.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        exchange(&mut sender, req).await?;
        drop(sender);
        let _ = driver.await;
    } else {
        // close_notify, then FIN.
        stream.shutdown().await?;
    }
    Ok(())
}

async fn handshakes(args: HandshakeArgs) -> Result<(), Error> {
    let dialer = Arc::new(Dialer::new(&args.via)?);
    let target = Arc::new(Target::parse(&args.target)?);
    if !target.https {
        return Err("handshakes needs an https:// target".into());
    }
    // One connection first, so that the leaf is cached before the clock starts.
    one_connection(&dialer, &target, args.request).await?;
    let (cpu_start, wall) = (cpu_seconds(), Instant::now());
    let clock = Clock::new(&args.window);
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| {
            let dialer = dialer.clone();
            let target = target.clone();
            let request = args.request;
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < clock.end {
                    let started = Instant::now();
                    tally.sent += 1;
                    match one_connection(&dialer, &target, request).await {
                        Ok(()) => {
                            let done = Instant::now();
                            if clock.measured(done) {
                                tally.measured += 1;
                                tally.latencies_us.push((done - started).as_micros() as u64);
                            }
                        }
                        Err(e) => {
                            tally.error(e);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = join_all(tasks).await?;
    all.report_error("handshakes");
    let percentiles = all.percentiles();
    println!(
        "RESULT mode=handshakes request={} conns={} sent={} measured={} seconds={} per_s={:.0} {} errors={} {}",
        u8::from(args.request),
        args.conns,
        all.sent,
        all.measured,
        args.window.duration,
        all.measured as f64 / args.window.duration,
        percentiles,
        all.errors,
        gen_cpu(cpu_start, wall),
    );
    Ok(())
}

// ------------------------------------------------------------------ first handshake

async fn timed_handshake(dialer: &Dialer, host: &str, port: u16) -> Result<u64, Error> {
    let target = Target {
        https: true,
        host: host.to_string(),
        port,
        path: "/".to_string(),
    };
    let started = Instant::now();
    let mut stream = dialer.open(&target).await?;
    let took = started.elapsed().as_micros() as u64;
    let _ = stream.shutdown().await;
    Ok(took)
}

async fn first(args: FirstArgs) -> Result<(), Error> {
    let dialer = Dialer::new(&args.via)?;
    if dialer.proxy.is_none() {
        return Err("first needs --proxy".into());
    }
    let run = run_id() & 0xffff_ffff;
    let name = |i: usize| format!("n{i}-{run:x}.{}", args.domain);
    let mut new_host = Tally::default();
    for i in 0..args.count {
        match timed_handshake(&dialer, &name(i), args.port).await {
            Ok(us) => new_host.latencies_us.push(us),
            Err(e) => new_host.error(e),
        }
    }
    let mut cached = Tally::default();
    for _ in 0..args.count {
        match timed_handshake(&dialer, &name(0), args.port).await {
            Ok(us) => cached.latencies_us.push(us),
            Err(e) => cached.error(e),
        }
    }
    new_host.report_error("first (new hosts)");
    cached.report_error("first (cached host)");
    let prefix = |tally: &mut Tally, p: &str| {
        tally
            .percentiles()
            .split(' ')
            .map(|kv| format!("{p}_{kv}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "RESULT mode=first n={} {} {} errors={}",
        new_host.latencies_us.len(),
        prefix(&mut new_host, "new"),
        prefix(&mut cached, "cached"),
        new_host.errors + cached.errors,
    );
    Ok(())
}

// ------------------------------------------------------------------ bulk

async fn bulk(args: LoadArgs) -> Result<(), Error> {
    let dialer = Arc::new(Dialer::new(&args.via)?);
    let target = Arc::new(Target::parse(&args.target)?);
    let mut senders = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        senders.push(dialer.http(&target).await?);
    }
    let (cpu_start, wall) = (cpu_seconds(), Instant::now());
    let clock = Clock::new(&args.window);
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let dialer = dialer.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                'requests: while Instant::now() < clock.end {
                    tally.sent += 1;
                    let outcome = async {
                        sender.ready().await?;
                        let resp = sender.send_request(dialer.get(&target, None)).await?;
                        if resp.status() != StatusCode::OK {
                            return Err::<_, Error>(format!("{}", resp.status()).into());
                        }
                        Ok(resp.into_body())
                    }
                    .await;
                    let mut body = match outcome {
                        Ok(body) => body,
                        Err(e) => {
                            tally.error(e);
                            break;
                        }
                    };
                    while let Some(frame) = body.frame().await {
                        let now = Instant::now();
                        match frame {
                            Ok(frame) => {
                                if let Some(data) = frame.data_ref() {
                                    if clock.measured(now) {
                                        tally.bytes += data.len() as u64;
                                    }
                                }
                            }
                            Err(e) => {
                                tally.error(e);
                                break 'requests;
                            }
                        }
                        if now > clock.end {
                            break 'requests;
                        }
                    }
                    tally.measured += 1;
                }
                tally
            })
        })
        .collect();
    let all = join_all(tasks).await?;
    all.report_error("bulk");
    println!(
        "RESULT mode=bulk conns={} bodies={} bytes={} seconds={} mb_per_s={:.1} errors={} {}",
        args.conns,
        all.measured,
        all.bytes,
        args.window.duration,
        all.bytes as f64 / args.window.duration / 1e6,
        all.errors,
        gen_cpu(cpu_start, wall),
    );
    Ok(())
}

// ------------------------------------------------------------------ memory

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `count` jobs over `workers` tasks; job `i` gets `i`. Returns the merged tally.
async fn spread<F, Fut>(count: usize, workers: usize, job: F) -> Result<Tally, Error>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let job = job.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= count {
                        break;
                    }
                    tally.sent += 1;
                    if let Err(e) = job(i).await {
                        tally.error(e);
                    }
                }
                tally
            })
        })
        .collect();
    join_all(tasks).await
}

/// A value from the admin API's Prometheus text.
async fn metric(dialer: &Dialer, admin: SocketAddr, name: &str) -> Option<String> {
    let text = admin_get(dialer, admin, "/metrics").await.ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
}

async fn admin_get(dialer: &Dialer, admin: SocketAddr, path: &str) -> Result<String, Error> {
    let direct = Dialer {
        proxy: None,
        auth: None,
        tls: dialer.tls.clone(),
    };
    let target = Target {
        https: false,
        host: admin.ip().to_string(),
        port: admin.port(),
        path: path.to_string(),
    };
    let mut sender = direct.http(&target).await?;
    sender.ready().await?;
    let resp = sender.send_request(direct.get(&target, None)).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn memory(args: MemoryArgs) -> Result<(), Error> {
    let dialer = Arc::new(Dialer::new(&args.via)?);
    let target = Arc::new(Target::parse(&args.target)?);
    let settle = || tokio::time::sleep(Duration::from_millis(args.settle_ms));
    let mut out = vec![format!("rss_start_kb={}", rss_kb(args.pid))];
    let mut errors = 0;
    let mut held = Vec::with_capacity(args.conns);
    if args.conns > 0 {
        let started = Instant::now();
        for _ in 0..args.conns {
            let mut sender = dialer.http(&target).await?;
            exchange(&mut sender, dialer.get(&target, None)).await?;
            held.push(sender);
        }
        eprintln!(
            "loadgen memory: {} keep-alive connections open after {:.1}s",
            held.len(),
            started.elapsed().as_secs_f64()
        );
        settle().await;
        out.push(format!("rss_conns_kb={}", rss_kb(args.pid)));
    }
    if args.leaves > 0 {
        let run = run_id() & 0xffff_ffff;
        let started = Instant::now();
        let d = dialer.clone();
        let tally = spread(args.leaves, args.workers, move |i| {
            let d = d.clone();
            async move {
                timed_handshake(&d, &format!("leaf{i}-{run:x}.bench.test"), 443).await?;
                Ok(())
            }
        })
        .await?;
        tally.report_error("memory (leaves)");
        errors += tally.errors;
        eprintln!(
            "loadgen memory: {} hosts intercepted after {:.1}s",
            args.leaves,
            started.elapsed().as_secs_f64()
        );
        settle().await;
        out.push(format!("rss_leaves_kb={}", rss_kb(args.pid)));
        // The proxy closes idle connections after a while: say how many the reading had.
        if !held.is_empty() {
            let open = held.iter().filter(|s| !s.is_closed()).count();
            out.push(format!("conns_open_at_leaves={open}"));
        }
    }
    if args.sessions > 0 {
        let paid = Arc::new(Target::parse(
            args.paid_target
                .as_deref()
                .ok_or("--sessions needs --paid-target")?,
        )?);
        let credentials = args
            .via
            .auth
            .clone()
            .ok_or("--sessions needs --auth AGENT[.SESSION]:TOKEN")?;
        let (user, token) = credentials.split_once(':').ok_or("--auth is USER:TOKEN")?;
        let agent = user.split('.').next().unwrap_or(user).to_string();
        let token = token.to_string();
        let run = run_id();
        let started = Instant::now();
        // One keep-alive connection per worker, each request with its own session.
        let mut pool = Vec::with_capacity(args.workers);
        for _ in 0..args.workers.max(1) {
            pool.push(tokio::sync::Mutex::new(dialer.http(&paid).await?));
        }
        let pool = Arc::new(pool);
        let d = dialer.clone();
        let tally = spread(args.sessions, args.workers, move |i| {
            let (d, paid, pool) = (d.clone(), paid.clone(), pool.clone());
            let auth = basic(&format!("{agent}.m{i}:{token}"));
            async move {
                let mut req = d.get(&paid, Some(&auth));
                req.headers_mut()
                    .insert("payment-signature", payment_header(run, i as u64, "1"));
                let mut sender = pool[i % pool.len()].lock().await;
                if sender.is_closed() {
                    *sender = d.http(&paid).await?;
                }
                exchange(&mut sender, req).await.map(|_| ())
            }
        })
        .await?;
        tally.report_error("memory (sessions)");
        errors += tally.errors;
        eprintln!(
            "loadgen memory: {} sessions paid once each after {:.1}s",
            args.sessions,
            started.elapsed().as_secs_f64()
        );
        settle().await;
        out.push(format!("rss_sessions_kb={}", rss_kb(args.pid)));
    }
    // Counted after the readings: listing 100,000 sessions allocates.
    if let Some(admin) = args.admin {
        if let Some(entries) = metric(&dialer, admin, "purser_leaf_cache_entries").await {
            out.push(format!("leaf_entries={entries}"));
        }
        if args.sessions > 0 {
            if let Ok(text) = admin_get(&dialer, admin, "/v1/sessions").await {
                let listed = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["sessions"].as_array().map(Vec::len));
                if let Some(n) = listed {
                    out.push(format!("sessions_listed={n}"));
                }
            }
        }
    }
    println!(
        "RESULT mode=memory conns={} leaves={} sessions={} {} errors={errors}",
        held.len(),
        args.leaves,
        args.sessions,
        out.join(" ")
    );
    drop(held);
    Ok(())
}

// ------------------------------------------------------------------ certificates

fn certs(dir: &Path) -> Result<(), Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "purser bench origin CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("origin.pem"), cert.pem())?;
    std::fs::write(dir.join("origin.key"), key.serialize_pem())?;
    println!("RESULT mode=certs dir={}", dir.display());
    Ok(())
}
