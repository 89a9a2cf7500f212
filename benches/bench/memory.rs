//! `memory`: the proxy's VmRSS (`/proc/PID/status`) at start, with `--conns` idle
//! keep-alive connections (one `GET` each, kept open), then with `--leaves` distinct
//! host names intercepted as well (a handshake to each), then with `--sessions` distinct
//! sessions (`AGENT.mI` credentials, one unique x402 v2 payment each, to
//! `--paid-target`). One `RESULT` line.

use crate::dial::Via;
use crate::load::timed_handshake;
use clap::Args;
use purser_kit::admin::Admin;
use purser_kit::load::{get_ok, open_idle, run_id, spread, Dialer, Target};
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

pub(crate) async fn memory(args: MemoryArgs) -> Result<(), Error> {
    let dialer = Arc::new(args.via.dialer()?);
    let target = Target::parse(&args.target)?;
    let (pid, settle) = (args.pid, Duration::from_millis(args.settle_ms));
    let mut out = vec![format!("rss_start_kb={}", rss_kb(pid))];
    let mut errors = 0;
    let started = Instant::now();
    let held = open_idle(&dialer, &target, args.conns).await?;
    if args.conns > 0 {
        let (n, took) = (held.len(), started.elapsed());
        eprintln!("bench memory: {n} keep-alive connections open after {took:.1?}");
        tokio::time::sleep(settle).await;
        out.push(format!("rss_conns_kb={}", rss_kb(pid)));
    }
    if args.leaves > 0 {
        errors += leaves(args.leaves, args.workers, dialer.clone()).await?;
        tokio::time::sleep(settle).await;
        out.push(format!("rss_leaves_kb={}", rss_kb(pid)));
        // The proxy closes idle connections after a while: say how many the reading had.
        if !held.is_empty() {
            let open = held.iter().filter(|s| !s.is_closed()).count();
            out.push(format!("conns_open_at_leaves={open}"));
        }
    }
    if args.sessions > 0 {
        errors += sessions(&args, dialer.clone()).await?;
        tokio::time::sleep(settle).await;
        out.push(format!("rss_sessions_kb={}", rss_kb(pid)));
    }
    // Counted after the readings: listing 100,000 sessions allocates.
    if let Some(addr) = args.admin {
        let mut admin = Admin::new(addr);
        if let Ok(Some(entries)) = admin.metric("purser_leaf_cache_entries").await {
            out.push(format!("leaf_entries={entries}"));
        }
        if args.sessions > 0 {
            let listed = admin.get_json("/v1/sessions").await.ok();
            if let Some(n) = listed.and_then(|l| l["sessions"].as_array().map(Vec::len)) {
                out.push(format!("sessions_listed={n}"));
            }
        }
    }
    let (conns, leaves, sessions, out) = (held.len(), args.leaves, args.sessions, out.join(" "));
    println!("RESULT mode=memory conns={conns} leaves={leaves} sessions={sessions} {out} errors={errors}");
    Ok(())
}

/// A handshake to each of `count` host names never seen (the proxy mints a leaf for
/// each), over `workers` connections at a time: the number of errors.
async fn leaves(count: usize, workers: usize, dialer: Arc<Dialer>) -> Result<u64, Error> {
    let (run, started) = (run_id() & 0xffff_ffff, Instant::now());
    let tally = spread(count, workers, move |i| {
        let dialer = dialer.clone();
        async move {
            timed_handshake(&dialer, &format!("leaf{i}-{run:x}.bench.test"), 443).await?;
            Ok(())
        }
    })
    .await?;
    tally.report_error("memory (leaves)");
    eprintln!(
        "bench memory: {count} hosts intercepted after {:.1?}",
        started.elapsed()
    );
    Ok(tally.errors)
}

/// `--sessions` sessions (`AGENT.mI`), one paid request each, over one keep-alive
/// connection per worker: the number of errors.
async fn sessions(args: &MemoryArgs, dialer: Arc<Dialer>) -> Result<u64, Error> {
    let paid_target = args.paid_target.as_deref();
    let paid = Arc::new(Target::parse(
        paid_target.ok_or("--sessions needs --paid-target")?,
    )?);
    let (via, run, started) = (args.via.clone(), run_id(), Instant::now());
    let mut pool = Vec::with_capacity(args.workers);
    for _ in 0..args.workers.max(1) {
        pool.push(tokio::sync::Mutex::new(dialer.http(&paid).await?));
    }
    let pool = Arc::new(pool);
    let tally = spread(args.sessions, args.workers, move |i| {
        let (d, paid, pool) = (dialer.clone(), paid.clone(), pool.clone());
        let auth = via.session_auth(&format!("m{i}"));
        async move {
            let mut req = d.get(&paid, Some(&auth?));
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
    let (n, took) = (args.sessions, started.elapsed());
    eprintln!("bench memory: {n} sessions paid once each after {took:.1?}");
    Ok(tally.errors)
}
