//! The held-payment benches of the paid section of `benches/run`, the disk's raw fsync
//! rate and the proof log of the recovery time. Each prints one `RESULT key=value …` line.
//!
//! * `approve`: approval latency. Runs the stub merchant in this process (same clock) and
//!   N times sends one held payment, polls `GET /v1/approvals` until it is listed, waits
//!   `--think-ms`, approves it, and measures from the approve call returning to the
//!   request reaching the merchant.
//! * `holds`: memory of held requests. Reads the proxy's VmRSS, opens N concurrent held
//!   payments (absolute-form `http://`, or each through its own intercepted `CONNECT`
//!   tunnel with `--tls-ca`, or `--streams` to a tunnel over HTTP/2 with `--h2`), waits
//!   until the admin API lists N, reads VmRSS again, denies them all. With `--plain`, N
//!   idle keep-alive connections instead (what a connection alone costs).
//! * `fsync`: the disk's raw rate of 100-byte appends each followed by `fdatasync`.
//! * `gen-log`: a long hash-chained proof log made from a real one, for the recovery time
//!   (`purser_kit::gen_log`).

use bytes::Bytes;
use clap::Args;
use http::header::HeaderValue;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use purser_kit::admin::Admin;
use purser_kit::client::{authority_of, basic, exchange};
use purser_kit::gen_log::{generate, Shape};
use purser_kit::load::{open_idle, run_id, Dialer, Target};
use purser_kit::merchant::{Arrivals, Merchant};
use purser_kit::process::rss_kb;
use purser_kit::stats::percentile_us;
use purser_kit::tunnel::{tls_config, tls_through_proxy};
use purser_kit::x402::Pay;
use purser_kit::Error;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

#[derive(Args)]
pub(crate) struct HoldArgs {
    /// Purser's proxy listener.
    #[arg(long)]
    proxy: SocketAddr,
    /// `AGENT[.SESSION]:TOKEN`.
    #[arg(long, default_value = "bench.s1:bench-token")]
    auth: String,
    /// Atomic units of USDC per payment (6 decimals: 1 is $0.000001).
    #[arg(long, default_value_t = 1)]
    amount: u64,
    /// Purser's admin listener.
    #[arg(long)]
    admin: SocketAddr,
    /// Holds: absolute URL of an upstream (approve runs its own).
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
    /// Holds: open plain keep-alive connections (one GET each, left open) instead.
    #[arg(long)]
    plain: bool,
    /// Holds: send each held payment over HTTPS through a `CONNECT` tunnel the proxy
    /// intercepts, trusting this CA file (the proxy's `purser-ca.pem`).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Holds, with `--tls-ca`: HTTP/2 instead, `--streams` held payments sharing each
    /// tunnel (hyper's server allows 200 concurrent streams per connection).
    #[arg(long)]
    h2: bool,
    #[arg(long, default_value_t = 100)]
    streams: usize,
}

type Held = JoinHandle<Result<StatusCode, String>>;

impl HoldArgs {
    fn payment(&self, run: u64, i: usize) -> HeaderValue {
        let header = Pay::usdc(self.amount).unique(run, i as u64).header();
        HeaderValue::from_str(&header).expect("base64 is a valid header value")
    }

    /// Through the proxy with the agent's credentials, trusting the proxy's CA for HTTPS.
    fn dialer(&self) -> Result<Dialer, Error> {
        Dialer::new(Some(self.proxy), Some(&self.auth), self.tls_ca.as_slice())
    }
}

/// One held payment on a connection of its own: absolute form for an `http://` target;
/// for `https://`, an intercepted `CONNECT` tunnel, TLS with the proxy's leaf, then the
/// request in origin form, as an SDK client sends it. Resolves to the final status.
fn send_held(dialer: Arc<Dialer>, target: Arc<Target>, payment: HeaderValue) -> Held {
    tokio::spawn(async move {
        let held = async {
            let mut sender = dialer.http(&target).await?;
            let mut req = dialer.get(&target, None);
            req.headers_mut().insert("payment-signature", payment);
            Ok::<_, Error>(exchange(&mut sender, req).await?.status)
        };
        held.await.map_err(|e| e.to_string())
    })
}

/// Held payments as HTTP/2 streams, `--streams` to each intercepted tunnel: the tunnels
/// are opened first, then every request is sent at once.
async fn send_held_h2(
    args: &HoldArgs,
    run: u64,
    count: usize,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Vec<Held>, Error> {
    let auth = basic(&args.auth);
    let authority = authority_of(&args.target);
    let per_tunnel = args.streams.max(1);
    let mut senders = Vec::new();
    for _ in 0..count.div_ceil(per_tunnel) {
        let stream =
            tls_through_proxy(args.proxy, authority, Some(auth.to_str()?), tls.clone()).await?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        senders.push(sender);
    }
    let tasks = (0..count)
        .map(|i| {
            let mut sender = senders[i / per_tunnel].clone();
            let req = Request::get(args.target.as_str())
                .header("payment-signature", args.payment(run, i))
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

/// Opens `count` holds and waits until the admin API lists them all.
async fn open_holds(
    args: &HoldArgs,
    admin: &mut Admin,
    run: u64,
    count: usize,
) -> Result<Vec<Held>, Error> {
    let tasks = match (&args.tls_ca, args.h2) {
        (Some(ca), true) => {
            send_held_h2(args, run, count, tls_config(&[ca], &[b"h2"], false)?).await?
        }
        _ => {
            let (dialer, target) = (
                Arc::new(args.dialer()?),
                Arc::new(Target::parse(&args.target)?),
            );
            let held = |i| send_held(dialer.clone(), target.clone(), args.payment(run, i));
            (0..count).map(held).collect()
        }
    };
    let started = Instant::now();
    loop {
        let listed = admin.holds().await?.len();
        if listed >= count {
            eprintln!(
                "bench holds: {listed} listed after {:.2}s",
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

/// Denies every listed hold and waits for the held requests: how many answered `403`.
async fn deny_all(admin: &mut Admin, tasks: Vec<Held>) -> Result<usize, Error> {
    let reason = json!({"by": "bench", "reason": "bench cleanup"});
    for hold in admin.holds().await? {
        admin
            .decide(hold["id"].as_str().unwrap_or_default(), "deny", &reason)
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

/// RSS before, at and after: `rss_start_kb`, `rss_idle_kb`, `rss_held_kb`, `rss_after_kb`,
/// `extra_kb` and the extra per one under `per_key`.
fn rss_line(n: usize, readings: [u64; 4], per_key: &str) -> String {
    let [start, idle, held, after] = readings;
    let extra = held.saturating_sub(idle);
    format!(
        "n={n} rss_start_kb={start} rss_idle_kb={idle} rss_held_kb={held} rss_after_kb={after} extra_kb={extra} {per_key}={}",
        extra * 1024 / n.max(1) as u64
    )
}

pub(crate) async fn holds(args: HoldArgs) -> Result<(), Error> {
    let pid = args.pid.ok_or("--pid is required")?;
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    if args.plain {
        let dialer = args.dialer()?;
        let target = Target::parse(&args.target)?;
        let rss_start = rss_kb(pid);
        drop(open_idle(&dialer, &target, 10).await?);
        settle().await;
        let rss_idle = rss_kb(pid);
        let open = open_idle(&dialer, &target, args.count).await?;
        settle().await;
        let rss_held = rss_kb(pid);
        drop(open);
        settle().await;
        let readings = [rss_start, rss_idle, rss_held, rss_kb(pid)];
        println!(
            "RESULT mode=conns {}",
            rss_line(args.count, readings, "per_conn_bytes")
        );
        return Ok(());
    }
    let mut admin = Admin::new(args.admin);
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
    let readings = [rss_start, rss_idle, rss_held, rss_kb(pid)];
    let transport = match (&args.tls_ca, args.h2) {
        (Some(_), true) => "https-h2",
        (Some(_), false) => "https",
        (None, _) => "http",
    };
    println!(
        "RESULT mode=holds transport={transport} {} denied={refused}",
        rss_line(args.count, readings, "per_hold_bytes")
    );
    Ok(())
}

pub(crate) async fn approve(args: HoldArgs) -> Result<(), Error> {
    // The merchant runs on its own thread, so its arrival stamps are not delayed by this
    // runtime, and on the same monotonic clock as the approve calls.
    let arrivals = Arrivals::default();
    let upstream = Arc::new(Merchant::stamping(arrivals.clone())).spawn()?;
    let mut admin = Admin::new(args.admin);
    let dialer = Arc::new(args.dialer()?);
    let run = run_id();
    let approval = json!({"by": "bench", "reason": "bench cleanup"});
    let mut deltas_ns: Vec<i128> = Vec::with_capacity(args.count);
    let mut approve_rtt_us: Vec<u64> = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let path = format!("/held/{i}");
        let target = Arc::new(Target::parse(&format!("http://{upstream}{path}"))?);
        let request = send_held(dialer.clone(), target, args.payment(run, i));
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
        let status = admin.decide(&id, "approve", &approval).await?.status;
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
        let arrived = arrivals.lock().unwrap().remove(&path);
        let arrived = arrived.ok_or_else(|| format!("request {i} never reached the upstream"))?;
        deltas_ns.push(if arrived >= t0 {
            (arrived - t0).as_nanos() as i128
        } else {
            -((t0 - arrived).as_nanos() as i128)
        });
    }
    let negatives = deltas_ns.iter().filter(|d| **d < 0).count();
    let min_ns = deltas_ns.iter().copied().min().unwrap_or(0);
    let mut clamped: Vec<u64> = deltas_ns.iter().map(|d| (*d).max(0) as u64).collect();
    clamped.sort_unstable();
    approve_rtt_us.sort_unstable();
    let us = |q: f64| percentile_us(&clamped, q) as f64 / 1e3;
    println!(
        "RESULT mode=approve n={} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} negatives={negatives} min_raw_us={:.1} approve_rtt_p50_us={} think_ms={}",
        clamped.len(),
        us(0.50),
        us(0.90),
        us(0.99),
        clamped.last().copied().unwrap_or(0) as f64 / 1e3,
        min_ns as f64 / 1e3,
        percentile_us(&approve_rtt_us, 0.50),
        args.think_ms,
    );
    Ok(())
}

/// Appends 100 bytes and `fdatasync`s, `count` times, in `dir` (like the trace writer).
pub(crate) fn fsync_probe(dir: &Path, count: usize) -> Result<(), Error> {
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
        percentile_us(&each_us, 0.50),
        percentile_us(&each_us, 0.99),
    );
    Ok(())
}

#[derive(Args)]
pub(crate) struct GenLogArgs {
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
}

pub(crate) fn gen_log(args: &GenLogArgs) -> Result<(), Error> {
    let GenLogArgs {
        lines,
        agents,
        sessions,
        days,
        ..
    } = *args;
    let shape = Shape {
        lines,
        agents,
        sessions,
        days,
    };
    let bytes = generate(&args.template, &args.out, &shape)?;
    let lines = lines / 2 * 2;
    println!("RESULT mode=gen-log lines={lines} bytes={bytes} agents={agents} sessions={sessions} days={days}");
    Ok(())
}
