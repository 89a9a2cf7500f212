//! `bench mpp`: MPP credential decisions/s against x402 v2 payments, in one run.
//!
//! One Purser started here (`benches/mpp-policy.yaml`: every payment allowed, room for
//! the challenges), the kit's two stub merchants in process: the x402 one (a receipt for
//! every `PAYMENT-SIGNATURE`) and the MPP one ([`purser_kit::mpp::MppMerchant`]). Then the
//! same closed loop on `--conns` keep-alive connections, each connection its own
//! session, in passes that alternate (x402, MPP, MPP, x402 for `--rounds 2`): in an x402
//! pass every request carries a unique x402 v2 payment, in an MPP pass a unique MPP
//! `evm` charge credential. Each credential answers a challenge its session got through
//! Purser before the clock started (the probes are not measured), so each is bound,
//! priced from its challenge and keyed for replays like any other. Both kinds are built
//! before the clock starts, and both are durable decisions (the decision line on disk
//! before the payment leaves). Prints one `RESULT mode=mpp …` line: each kind's mean
//! decisions/s and latency over its passes, and `ratio` = MPP decisions/s ÷ x402's
//! (target ≥ 0.8).

use crate::dial::Window;
use clap::Args;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::StatusCode;
use purser_kit::client::{basic, exchange, Sender};
use purser_kit::load::{gen_cpu, join_all, run_id, Clock, Dialer, Tally, Target};
use purser_kit::merchant::Merchant;
use purser_kit::mpp::{challenges_of, credential, MppMerchant};
use purser_kit::process::{cpu_seconds, start_purser, terminate, RunDir};
use purser_kit::x402::Pay;
use purser_kit::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const POLICY: &str = include_str!("../mpp-policy.yaml");
/// What each payment costs, in USDC base units (0.01).
const AMOUNT: u64 = 10_000;
/// Challenges in each of the MPP merchant's `402`s: what Purser keeps of one answer.
const PER_ANSWER: usize = 32;

#[derive(Args)]
pub(crate) struct MppArgs {
    #[command(flatten)]
    pub window: Window,
    /// The `purser` binary to run.
    #[arg(long, default_value = "target/release/purser")]
    pub purser: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub conns: usize,
    /// Payments (and credentials) prepared per second of the run, over all connections;
    /// a connection that runs out stops (reported as `pool_exhausted`).
    #[arg(long, default_value_t = 20_000)]
    pub per_second: usize,
    /// One more `purser run` argument (repeatable), e.g. `--purser-arg=--trace-no-fsync`.
    #[arg(long = "purser-arg", allow_hyphen_values = true)]
    pub purser_args: Vec<String>,
    /// Passes of each kind, alternating which goes first (x402, MPP, MPP, x402, …);
    /// the figures are their mean.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Keep the run's directory (policy, proof log, Purser's log).
    #[arg(long)]
    pub keep: bool,
}

/// Which payments a pass sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    X402,
    Mpp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::X402 => "x402",
            Kind::Mpp => "mpp",
        }
    }

    fn header(self) -> HeaderName {
        match self {
            Kind::X402 => HeaderName::from_static("payment-signature"),
            Kind::Mpp => AUTHORIZATION,
        }
    }
}

/// One pass's figures.
struct Figures {
    rps: f64,
    tally: Tally,
}

pub(crate) fn mpp(args: MppArgs, threads: usize) -> Result<(), Error> {
    let dir = RunDir::new("mpp", args.keep)?;
    let policy = dir.path.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let (ca, trace) = (dir.path.join("certs"), dir.path.join("trace.jsonl"));
    let mut purser_args: Vec<&str> = vec!["--policy", path(&policy)?];
    purser_args.extend(["--ca-dir", path(&ca)?, "--trace-log", path(&trace)?]);
    purser_args.extend(args.purser_args.iter().map(String::as_str));
    let log = dir.path.join("purser.log");
    let mut purser = start_purser(&args.purser, &purser_args, "warn", &log)?;
    let x402_merchant = std::sync::Arc::new(Merchant::default()).spawn()?;
    let mpp_merchant = MppMerchant::new(AMOUNT, PER_ANSWER).spawn()?;
    let dialer = Dialer::new(Some(purser.proxy), None, &[])?;
    let (cpu_start, wall) = (cpu_seconds(None), Instant::now());
    let mut passes = Vec::new();
    let ran = crate::block_on(threads, async {
        let x402 = Target::parse(&format!("http://{x402_merchant}/paid"))?;
        let mpp = Target::parse(&format!("http://{mpp_merchant}/mpp"))?;
        // x402, MPP, MPP, x402, …: neither kind always runs on the fresher process.
        for round in 0..args.rounds.max(1) {
            let order = if round % 2 == 0 {
                [Kind::X402, Kind::Mpp]
            } else {
                [Kind::Mpp, Kind::X402]
            };
            for kind in order {
                let target = if kind == Kind::X402 { &x402 } else { &mpp };
                passes.push((kind, pass(&args, &dialer, target, kind, round).await?));
            }
        }
        Ok(())
    });
    terminate(&mut purser.child, Duration::from_secs(5));
    ran?;
    let (mut x402, x402_rps) = merged(&mut passes, Kind::X402);
    let (mut mpp, mpp_rps) = merged(&mut passes, Kind::Mpp);
    let ratio = if x402_rps > 0.0 {
        mpp_rps / x402_rps
    } else {
        0.0
    };
    let errors = x402.errors + mpp.errors;
    let exhausted = u8::from(x402.exhausted || mpp.exhausted);
    println!(
        "RESULT mode=mpp conns={} seconds={} rounds={} x402_rps={x402_rps:.0} \
         mpp_rps={mpp_rps:.0} ratio={ratio:.3} x402_{} mpp_{} errors={errors} \
         pool_exhausted={exhausted} {}",
        args.conns,
        args.window.duration,
        args.rounds.max(1),
        x402.percentiles().replace(' ', " x402_"),
        mpp.percentiles().replace(' ', " mpp_"),
        gen_cpu(cpu_start, wall),
    );
    Ok(())
}

/// One kind's passes merged, and its mean decisions/s over them.
fn merged(passes: &mut [(Kind, Figures)], kind: Kind) -> (Tally, f64) {
    let mut all = Tally::default();
    let mut rates = Vec::new();
    for (_, figures) in passes.iter_mut().filter(|(k, _)| *k == kind) {
        rates.push(figures.rps);
        all.merge(std::mem::take(&mut figures.tally));
    }
    all.report_error(&format!("mpp ({} passes)", kind.name()));
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    (all, mean)
}

fn path(path: &std::path::Path) -> Result<&str, Error> {
    path.to_str().ok_or_else(|| "non-UTF-8 path".into())
}

/// One pass: prepare every connection's payments, then the closed loop.
async fn pass(
    args: &MppArgs,
    dialer: &Dialer,
    target: &Target,
    kind: Kind,
    round: usize,
) -> Result<Figures, Error> {
    let seconds = (args.window.duration + args.window.warmup).ceil() as usize;
    let per_conn = (args.per_second * seconds / args.conns.max(1)).max(PER_ANSWER);
    let run = run_id();
    let prepared = Instant::now();
    let mut tasks = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let (dialer, target) = (dialer.clone(), target.clone());
        let auth = basic(&format!("bench.{}{round}c{i}:bench-token", kind.name()));
        tasks.push(tokio::spawn(async move {
            let mut sender = dialer.http(&target).await?;
            let first = (i * per_conn) as u64;
            let payments = match kind {
                Kind::X402 => (0..per_conn as u64)
                    .map(|n| Pay::usdc(AMOUNT).unique(run, first + n).header())
                    .map(|h| HeaderValue::from_str(&h).map_err(Error::from))
                    .collect::<Result<Vec<_>, _>>()?,
                Kind::Mpp => {
                    let got = (&dialer, &target, &auth);
                    credentials(got, &mut sender, per_conn, run, first).await?
                }
            };
            Ok::<_, Error>((sender, auth, payments))
        }));
    }
    let mut connections = Vec::with_capacity(args.conns);
    for task in tasks {
        connections.push(task.await??);
    }
    eprintln!(
        "bench mpp: {} {} payments prepared in {:.1?}",
        per_conn * args.conns,
        kind.name(),
        prepared.elapsed()
    );
    let clock = args.window.clock();
    let workers = connections.into_iter().map(|(sender, auth, payments)| {
        let (dialer, target) = (dialer.clone(), target.clone());
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let worker = Worker {
                dialer: &dialer,
                target: &target,
                auth: &auth,
                header: kind.header(),
                clock,
            };
            worker.run(sender, payments, &mut tally).await;
            tally
        })
    });
    let tally = join_all(workers.collect()).await?;
    let rps = tally.measured as f64 / args.window.duration;
    Ok(Figures { rps, tally })
}

/// `count` credentials for `(dialer, target, auth)`'s session, each answering a challenge
/// the session got through Purser on `sender`.
async fn credentials(
    (dialer, target, auth): (&Dialer, &Target, &HeaderValue),
    sender: &mut Sender,
    count: usize,
    run: u64,
    first: u64,
) -> Result<Vec<HeaderValue>, Error> {
    let mut built = Vec::with_capacity(count);
    while built.len() < count {
        let answer = exchange(sender, dialer.get(target, Some(auth))).await?;
        if answer.status != StatusCode::PAYMENT_REQUIRED {
            return Err(format!("probe: {} {}", answer.status, answer.excerpt()).into());
        }
        for challenge in challenges_of(&answer.headers) {
            if built.len() == count {
                break;
            }
            let value = credential(&challenge, run, first + built.len() as u64);
            built.push(HeaderValue::from_str(&value)?);
        }
    }
    Ok(built)
}

/// One connection's closed loop.
struct Worker<'a> {
    dialer: &'a Dialer,
    target: &'a Target,
    auth: &'a HeaderValue,
    header: HeaderName,
    clock: Clock,
}

impl Worker<'_> {
    async fn run(&self, mut sender: Sender, payments: Vec<HeaderValue>, tally: &mut Tally) {
        let mut payments = payments.into_iter();
        while Instant::now() < self.clock.end {
            let Some(payment) = payments.next() else {
                tally.exhausted = true;
                break;
            };
            let mut request = self.dialer.get(self.target, Some(self.auth));
            request.headers_mut().insert(self.header.clone(), payment);
            let sent = Instant::now();
            tally.sent += 1;
            let outcome = exchange(&mut sender, request).await;
            let done = Instant::now();
            let allowed = match &outcome {
                Ok(answer) => {
                    answer.status == StatusCode::OK
                        && answer.header("x-purser-decision").as_deref() == Some("ALLOWED")
                }
                Err(_) => false,
            };
            if !allowed {
                match outcome {
                    Ok(answer) => tally.error(format!("{}: {}", answer.status, answer.excerpt())),
                    Err(e) => tally.error(format!("transport: {e}")),
                }
                match self.dialer.http(self.target).await {
                    Ok(fresh) => sender = fresh,
                    Err(e) => {
                        tally.error(e);
                        break;
                    }
                }
                continue;
            }
            if self.clock.measured(done) {
                tally.measured += 1;
                tally.latencies_us.push((done - sent).as_micros() as u64);
            }
        }
    }
}
