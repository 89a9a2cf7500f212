//! `memory`: the proxy's VmRSS (`/proc/PID/status`) at start, with `--conns` idle
//! keep-alive connections (one `GET` each, kept open), then with `--leaves` distinct
//! host names intercepted as well (a handshake to each), then with `--sessions` distinct
//! sessions (`AGENT.mI` credentials, one unique x402 v2 payment each, to
//! `--paid-target`). One `RESULT` line.

use crate::dial::Via;
use crate::load::timed_handshake;
use clap::Args;
use purser_kit::admin::Admin;
use purser_kit::client::{basic, Sender};
use purser_kit::load::{get_ok, run_id, spread, Dialer, Target};
use purser_kit::process::rss_kb;
use purser_kit::x402::Pay;
use purser_kit::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub(crate) struct MemoryArgs {
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

/// `count` connections to `target`, each after one `GET` answered `200`, kept open.
pub(crate) async fn open_idle(
    dialer: &Dialer,
    target: &Target,
    count: usize,
) -> Result<Vec<Sender>, Error> {
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sender = dialer.http(target).await?;
        get_ok(&mut sender, dialer.get(target, None)).await?;
        open.push(sender);
    }
    Ok(open)
}

pub(crate) async fn memory(args: MemoryArgs) -> Result<(), Error> {
    let dialer = Arc::new(args.via.dialer()?);
    let target = Target::parse(&args.target)?;
    let settle = || tokio::time::sleep(Duration::from_millis(args.settle_ms));
    let mut out = vec![format!("rss_start_kb={}", rss_kb(args.pid))];
    let mut errors = 0;
    let started = Instant::now();
    let held = open_idle(&dialer, &target, args.conns).await?;
    if args.conns > 0 {
        eprintln!(
            "bench memory: {} keep-alive connections open after {:.1}s",
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
            "bench memory: {} hosts intercepted after {:.1}s",
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
        errors += sessions(&args, dialer.clone()).await?;
        settle().await;
        out.push(format!("rss_sessions_kb={}", rss_kb(args.pid)));
    }
    // Counted after the readings: listing 100,000 sessions allocates.
    if let Some(addr) = args.admin {
        let mut admin = Admin::new(addr);
        if let Ok(Some(entries)) = admin.metric("purser_leaf_cache_entries").await {
            out.push(format!("leaf_entries={entries}"));
        }
        if args.sessions > 0 {
            if let Ok(listed) = admin.get_json("/v1/sessions").await {
                if let Some(n) = listed["sessions"].as_array().map(Vec::len) {
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
    Ok(())
}

/// `--sessions` sessions, one paid request each, over one keep-alive connection per
/// worker: the number of errors.
async fn sessions(args: &MemoryArgs, dialer: Arc<Dialer>) -> Result<u64, Error> {
    let paid_target = args.paid_target.as_deref();
    let paid = Arc::new(Target::parse(
        paid_target.ok_or("--sessions needs --paid-target")?,
    )?);
    let credentials = args.via.auth.clone();
    let credentials = credentials.ok_or("--sessions needs --auth AGENT[.SESSION]:TOKEN")?;
    let (user, token) = credentials.split_once(':').ok_or("--auth is USER:TOKEN")?;
    let agent = user.split('.').next().unwrap_or(user).to_string();
    let token = token.to_string();
    let run = run_id();
    let started = Instant::now();
    let mut pool = Vec::with_capacity(args.workers);
    for _ in 0..args.workers.max(1) {
        pool.push(tokio::sync::Mutex::new(dialer.http(&paid).await?));
    }
    let pool = Arc::new(pool);
    let tally = spread(args.sessions, args.workers, move |i| {
        let (d, paid, pool) = (dialer.clone(), paid.clone(), pool.clone());
        let auth = basic(&format!("{agent}.m{i}:{token}"));
        async move {
            let mut req = d.get(&paid, Some(&auth));
            let payment = Pay::usdc(1).unique(run, i as u64).header();
            req.headers_mut()
                .insert("payment-signature", payment.parse()?);
            let mut sender = pool[i % pool.len()].lock().await;
            if sender.is_closed() {
                *sender = d.http(&paid).await?;
            }
            get_ok(&mut sender, req).await.map(|_| ())
        }
    })
    .await?;
    tally.report_error("memory (sessions)");
    eprintln!(
        "bench memory: {} sessions paid once each after {:.1}s",
        args.sessions,
        started.elapsed().as_secs_f64()
    );
    Ok(tally.errors)
}
