//! The load generators of `benches/run`. Each prints one
//! `RESULT key=value …` line on stdout (details on stderr).
//!
//! * `load`: `--conns` keep-alive HTTP/1.1 connections send `GET`s to `--target`. `--rate
//!   0` is a closed loop (each connection sends its next request when the previous answer
//!   is in: saturation); `--rate R` is an open loop at R requests/s, each request
//!   scheduled at a fixed time (connection `i` of `N` sends at `start + (i + k·N)/R`).
//!   Open-loop latency runs from the scheduled time whenever the connection was still busy
//!   with the previous request then (a stall counts for every request it delayed: no
//!   coordinated omission), and from the actual send otherwise. With `--pay AMOUNT` every
//!   request carries a unique x402 v2 payment, all generated before the clock starts, and
//!   must be answered `200` with `X-Purser-Decision: ALLOWED`; `--sessions N` spreads the
//!   connections over N sessions of the agent. Reports req/s in the measured window
//!   (after `--warmup`), p50/p90/p99/p99.9/max, and `sent` (warm-up included).
//! * `handshakes`: `--conns` workers each open a new connection, `CONNECT`, complete a
//!   full TLS handshake (no resumption) and close, in a loop; with `--request` they also
//!   send one `GET` (`connection: close`) first. Reports completions per second.
//! * `first`: one at a time, `--count` handshakes through the proxy to host names never
//!   seen before (`nI-RUN.bench.test`: the proxy mints a leaf for each), then `--count`
//!   to one host it has seen (a cached leaf). The names need not resolve. Reports
//!   p50/p99/max of both, from TCP connect to the handshake's end.
//! * `bulk`: keep-alive `GET`s of a large body (`/bulk?bytes=N` of `bench origin`),
//!   counting the body bytes that arrive in the measured window: MB/s (10^6 bytes).

use crate::dial::{Via, Window};
use clap::Args;
use http::header::{HeaderValue, CONNECTION};
use http::StatusCode;
use http_body_util::BodyExt;
use purser_kit::client::{exchange, handshake, Sender};
use purser_kit::load::{gen_cpu, get_ok, join_all, run_id, Clock, Dialer, Tally, Target};
use purser_kit::process::cpu_seconds;
use purser_kit::x402::Pay;
use purser_kit::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    pub via: Via,
    #[command(flatten)]
    pub window: Window,
    /// `http://HOST:PORT/PATH` or `https://HOST:PORT/PATH`.
    #[arg(long)]
    pub target: String,
    #[arg(long, default_value_t = 16)]
    pub conns: usize,
    /// Requests per second over all connections; 0 is a closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Pay this many atomic USDC units with every request (a unique x402 v2 payment).
    #[arg(long)]
    pub pay: Option<u64>,
    /// Payments to pregenerate (default: 30,000 per second of the run).
    #[arg(long)]
    pub pool: Option<usize>,
    /// Spread the connections over this many sessions of the agent (`AGENT.sN`).
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
}

/// An open loop stops sending this long after the window ends; what is still unsent then
/// is counted with the time it had waited so far (the percentiles become lower bounds).
const GRACE: Duration = Duration::from_secs(2);

/// What every connection of a `load` run shares.
struct Shared {
    dialer: Dialer,
    target: Target,
    clock: Clock,
    conns: usize,
    rate: f64,
    /// Pregenerated payment headers, one per request, taken in turn.
    payments: Vec<HeaderValue>,
    next_payment: AtomicUsize,
}

/// One `GET` on the worker's connection, with `payment` when given. A connection the
/// server closed (tinyproxy closes after every answer) is replaced first, and, for a
/// request without a payment, once more if it turns out closed under the request: the
/// reconnection is part of that request's latency. A payment is never sent twice.
async fn send_get(
    shared: &Shared,
    auth: Option<&HeaderValue>,
    payment: Option<HeaderValue>,
    sender: &mut Option<Sender>,
    tally: &mut Tally,
) -> Result<(), Error> {
    let paid = payment.is_some();
    let attempts = if paid { 1 } else { 2 };
    for attempt in 1..=attempts {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            if sender.is_some() {
                tally.reconnects += 1;
            }
            *sender = Some(shared.dialer.http(&shared.target).await?);
        }
        let connection = sender.as_mut().expect("connected");
        let mut req = shared.dialer.get(&shared.target, auth);
        if let Some(payment) = &payment {
            req.headers_mut()
                .insert("payment-signature", payment.clone());
        }
        match exchange(connection, req).await {
            Ok(answer) if answer.status != StatusCode::OK => {
                return Err(format!("{}: {}", answer.status, answer.excerpt()).into())
            }
            Ok(answer)
                if paid && answer.header("x-purser-decision").as_deref() != Some("ALLOWED") =>
            {
                let decision = answer.header("x-purser-decision");
                return Err(
                    format!("200 without X-Purser-Decision: ALLOWED ({decision:?})").into(),
                );
            }
            Ok(_) => return Ok(()),
            Err(_) if attempt < attempts && connection.is_closed() => {
                tally.reconnects += 1;
                *sender = None;
            }
            Err(e) => {
                if paid || connection.is_closed() {
                    *sender = None;
                }
                return Err(format!("transport: {e}").into());
            }
        }
    }
    Err("connection closed twice in a row".into())
}

async fn load_worker(
    index: usize,
    shared: Arc<Shared>,
    auth: Option<HeaderValue>,
    mut sender: Option<Sender>,
) -> Tally {
    let mut tally = Tally::default();
    let clock = shared.clock;
    let open_loop = shared.rate > 0.0;
    let give_up = clock.end + GRACE;
    let mut previous_done = clock.start;
    for k in 0u64.. {
        let scheduled = if open_loop {
            let slot = index as f64 + (k * shared.conns as u64) as f64;
            clock.start + Duration::from_secs_f64(slot / shared.rate)
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
        let payment = if shared.payments.is_empty() {
            None
        } else {
            let i = shared.next_payment.fetch_add(1, Ordering::Relaxed);
            let Some(header) = shared.payments.get(i) else {
                tally.exhausted = true;
                break;
            };
            Some(header.clone())
        };
        if now < scheduled {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let sent_at = Instant::now();
        tally.sent += 1;
        let outcome = send_get(&shared, auth.as_ref(), payment, &mut sender, &mut tally).await;
        let done = Instant::now();
        // Busy with the previous request at the scheduled time: the wait counts.
        let busy = open_loop && previous_done > scheduled;
        let from = if busy { scheduled } else { sent_at };
        previous_done = done;
        match outcome {
            Ok(()) => {
                let at = if open_loop { scheduled } else { done };
                if clock.measured(at) {
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

/// The pregenerated payment headers of a `--pay` run: one unique payment per request.
fn payment_pool(args: &LoadArgs, amount: u64) -> Vec<HeaderValue> {
    let seconds = (args.window.duration + args.window.warmup).ceil() as usize;
    let count = args.pool.unwrap_or(30_000 * seconds);
    let (run, built) = (run_id(), Instant::now());
    let pool: Vec<HeaderValue> = (0..count as u64)
        .map(|i| Pay::usdc(amount).unique(run, i).header())
        .map(|h| HeaderValue::from_str(&h).expect("base64 is a valid header value"))
        .collect();
    let (bytes, took) = (pool.first().map_or(0, HeaderValue::len), built.elapsed());
    eprintln!("bench load: {count} payment headers ({bytes} bytes each) generated in {took:.1?}");
    pool
}

pub(crate) async fn load(args: LoadArgs) -> Result<(), Error> {
    let dialer = args.via.dialer()?;
    let target = Target::parse(&args.target)?;
    let payments = args
        .pay
        .map_or_else(Vec::new, |amount| payment_pool(&args, amount));
    // Every connection is open (and its tunnel and TLS session up) before the clock starts.
    let senders = open_all(&dialer, &target, args.conns).await?;
    let (cpu_start, wall) = (cpu_seconds(None), Instant::now());
    let (conns, rate, seconds) = (args.conns, args.rate, args.window.duration);
    let clock = args.window.clock();
    let next_payment = AtomicUsize::new(0);
    let shared = Arc::new(Shared {
        dialer,
        target,
        clock,
        conns,
        rate,
        payments,
        next_payment,
    });
    let mut tasks = Vec::with_capacity(conns);
    for (i, sender) in senders.into_iter().enumerate() {
        // Spread over N sessions, connection i speaks as the agent's session `s(i mod N)`.
        let auth = match args.sessions {
            0 | 1 => None,
            n => Some(args.via.session_auth(&format!("s{}", i % n))?),
        };
        tasks.push(tokio::spawn(load_worker(
            i,
            shared.clone(),
            auth,
            Some(sender),
        )));
    }
    let mut all = join_all(tasks).await?;
    all.report_error("load");
    let percentiles = all.percentiles();
    // Completions per second: over the window (closed loop), or from the window's start to
    // the last completion of a request scheduled in it (open loop: what was achieved).
    let span = match all.last_done {
        Some(last) if rate > 0.0 => (last.max(clock.end) - clock.warm_end).as_secs_f64(),
        _ => seconds,
    };
    let (kind, paid) = (
        if rate > 0.0 { "open" } else { "closed" },
        u8::from(args.pay.is_some()),
    );
    let rps = (all.measured - all.unsent) as f64 / span;
    let Tally {
        sent,
        measured,
        behind,
        unsent,
        reconnects,
        errors,
        exhausted,
        ..
    } = all;
    let (sessions, exhausted, gen_cpu) = (
        args.sessions.max(1),
        u8::from(exhausted),
        gen_cpu(cpu_start, wall),
    );
    println!(
        "RESULT mode=load loop={kind} rate={rate} paid={paid} conns={conns} sessions={sessions} sent={sent} \
         measured={measured} seconds={seconds} rps={rps:.0} {percentiles} behind={behind} unsent={unsent} \
         reconnects={reconnects} errors={errors} pool_exhausted={exhausted} {gen_cpu}"
    );
    Ok(())
}

/// `count` HTTP/1.1 connections to `target`, each open before anything is measured.
async fn open_all(dialer: &Dialer, target: &Target, count: usize) -> Result<Vec<Sender>, Error> {
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count {
        senders.push(dialer.http(target).await?);
    }
    Ok(senders)
}

#[derive(Args)]
pub(crate) struct HandshakeArgs {
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

/// One new connection: handshake, optionally one request, then an orderly close.
async fn one_connection(dialer: &Dialer, target: &Target, request: bool) -> Result<(), Error> {
    let mut stream = dialer.open(target).await?;
    if !request {
        // close_notify, then FIN.
        stream.shutdown().await?;
        return Ok(());
    }
    let mut sender = handshake(stream).await?;
    let mut req = dialer.get(target, None);
    req.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    get_ok(&mut sender, req).await?;
    Ok(())
}

/// New connections one after the other until the clock ends.
async fn handshake_worker(
    dialer: Arc<Dialer>,
    target: Arc<Target>,
    request: bool,
    clock: Clock,
) -> Tally {
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
}

pub(crate) async fn handshakes(args: HandshakeArgs) -> Result<(), Error> {
    let dialer = Arc::new(args.via.dialer()?);
    let target = Arc::new(Target::parse(&args.target)?);
    if !target.https {
        return Err("handshakes needs an https:// target".into());
    }
    // One connection first, so that the leaf is cached before the clock starts.
    one_connection(&dialer, &target, args.request).await?;
    let (cpu_start, wall) = (cpu_seconds(None), Instant::now());
    let (clock, request, conns, seconds) = (
        args.window.clock(),
        args.request,
        args.conns,
        args.window.duration,
    );
    let worker = |_| {
        tokio::spawn(handshake_worker(
            dialer.clone(),
            target.clone(),
            request,
            clock,
        ))
    };
    let mut all = join_all((0..conns).map(worker).collect()).await?;
    all.report_error("handshakes");
    let (percentiles, request) = (all.percentiles(), u8::from(request));
    let (sent, measured, errors, gen_cpu) =
        (all.sent, all.measured, all.errors, gen_cpu(cpu_start, wall));
    let per_s = measured as f64 / seconds;
    println!(
        "RESULT mode=handshakes request={request} conns={conns} sent={sent} measured={measured} \
         seconds={seconds} per_s={per_s:.0} {percentiles} errors={errors} {gen_cpu}"
    );
    Ok(())
}

#[derive(Args)]
pub(crate) struct FirstArgs {
    #[command(flatten)]
    via: Via,
    #[arg(long, default_value_t = 200)]
    count: usize,
    #[arg(long, default_value = "bench.test")]
    domain: String,
    #[arg(long, default_value_t = 443)]
    port: u16,
}

/// A TLS handshake through the proxy to `host` (no request): how long it took, µs.
pub(crate) async fn timed_handshake(dialer: &Dialer, host: &str, port: u16) -> Result<u64, Error> {
    let (host, path) = (host.to_string(), "/".to_string());
    let target = Target {
        https: true,
        host,
        port,
        path,
    };
    let started = Instant::now();
    let mut stream = dialer.open(&target).await?;
    let took = started.elapsed().as_micros() as u64;
    let _ = stream.shutdown().await;
    Ok(took)
}

/// One handshake after the other, to each host in turn: their latencies as `P_p50_us=…`.
async fn handshake_series(
    dialer: &Dialer,
    hosts: impl Iterator<Item = String>,
    port: u16,
    p: &str,
) -> (String, u64) {
    let mut tally = Tally::default();
    for host in hosts {
        match timed_handshake(dialer, &host, port).await {
            Ok(us) => tally.latencies_us.push(us),
            Err(e) => tally.error(e),
        }
    }
    tally.report_error(&format!("first ({p})"));
    let keys: Vec<String> = tally
        .percentiles()
        .split(' ')
        .map(|kv| format!("{p}_{kv}"))
        .collect();
    (keys.join(" "), tally.errors)
}

pub(crate) async fn first(args: FirstArgs) -> Result<(), Error> {
    let dialer = args.via.dialer()?;
    if dialer.proxy.is_none() {
        return Err("first needs --proxy".into());
    }
    let run = run_id() & 0xffff_ffff;
    let name = |i: usize| format!("n{i}-{run:x}.{}", args.domain);
    let (n, port) = (args.count, args.port);
    let (new_host, new_errors) = handshake_series(&dialer, (0..n).map(name), port, "new").await;
    let (cached, cached_errors) =
        handshake_series(&dialer, (0..n).map(|_| name(0)), port, "cached").await;
    let (n, errors) = (n as u64 - new_errors, new_errors + cached_errors);
    println!("RESULT mode=first n={n} {new_host} {cached} errors={errors}");
    Ok(())
}

/// Bodies back to back on one connection until the clock ends, counting the bytes that
/// arrive in the measured window.
async fn bulk_worker(
    dialer: Arc<Dialer>,
    target: Arc<Target>,
    mut sender: Sender,
    clock: Clock,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < clock.end {
        tally.sent += 1;
        let answer = async {
            sender.ready().await?;
            let resp = sender.send_request(dialer.get(&target, None)).await?;
            match resp.status() {
                StatusCode::OK => Ok(resp.into_body()),
                status => Err::<_, Error>(status.to_string().into()),
            }
        };
        let mut body = match answer.await {
            Ok(body) => body,
            Err(e) => {
                tally.error(e);
                return tally;
            }
        };
        while let Some(frame) = body.frame().await {
            let now = Instant::now();
            match frame {
                Ok(frame) if clock.measured(now) => {
                    tally.bytes += frame.data_ref().map_or(0, |data| data.len() as u64);
                }
                Ok(_) => {}
                Err(e) => {
                    tally.error(e);
                    return tally;
                }
            }
            if now > clock.end {
                return tally;
            }
        }
        tally.measured += 1;
    }
    tally
}

pub(crate) async fn bulk(args: LoadArgs) -> Result<(), Error> {
    let dialer = Arc::new(args.via.dialer()?);
    let target = Arc::new(Target::parse(&args.target)?);
    let senders = open_all(&dialer, &target, args.conns).await?;
    let (cpu_start, wall) = (cpu_seconds(None), Instant::now());
    let clock = args.window.clock();
    let worker = |sender| tokio::spawn(bulk_worker(dialer.clone(), target.clone(), sender, clock));
    let all = join_all(senders.into_iter().map(worker).collect()).await?;
    all.report_error("bulk");
    let (conns, seconds, gen_cpu) = (args.conns, args.window.duration, gen_cpu(cpu_start, wall));
    let (bodies, bytes, errors) = (all.measured, all.bytes, all.errors);
    let mb_per_s = bytes as f64 / seconds / 1e6;
    println!(
        "RESULT mode=bulk conns={conns} bodies={bodies} bytes={bytes} seconds={seconds} \
         mb_per_s={mb_per_s:.1} errors={errors} {gen_cpu}"
    );
    Ok(())
}
