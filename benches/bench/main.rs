//! The one bench binary of `benches/run` (`bench --help`): the servers it starts, the
//! load generators it drives, and the soak and the governance findings, all on loopback
//! and all built on the kit the integration tests share (`purser_kit`).
//!
//! * servers, all the kit's: `origin` (the origin stub), `merchant` (the stub merchant
//!   and facilitator), `bare-proxy` (the bare hyper pass-through), `certs` (a test CA);
//! * load ([`load`], [`memory`], [`paid`], [`mcp`]): `load`, `handshakes`, `first`,
//!   `bulk`, `memory`, `approve`, `holds`, `fsync`, `gen-log`, `mcp`; each prints one
//!   `RESULT key=value …` line on stdout;
//! * whole runs ([`soak`], [`findings`]): `soak`, `findings`, `findings-plan`, each
//!   writing its Markdown report to `benches/results/`;
//! * [`mpp`]: `mpp`, MPP credential decisions/s against x402 v2 through a Purser it
//!   starts itself, in one run (one `RESULT` line with their ratio).
//!
//! The generators run on one thread by default (`--threads 1`, like `wrk -t1`), so the
//! proxy under test gets the rest of the box; the servers on all cores.

mod dial;
mod findings;
mod load;
mod mcp;
mod md;
mod memory;
mod mpp;
mod paid;
mod serve;
mod soak;
mod stage;

use clap::{Parser, Subcommand};
use purser_kit::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Purser's benches: servers, load generators, soak, findings"
)]
struct Cli {
    /// Runtime threads of the load generators.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The origin stub: `hello\n` to every request, `/bulk?bytes=N`; plain and TLS.
    Origin(serve::OriginArgs),
    /// The stub merchant and facilitator: receipts, priced x402 resources, refunds.
    Merchant(serve::MerchantArgs),
    /// The bare hyper pass-through proxy, the yardstick.
    BareProxy {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: SocketAddr,
    },
    /// Writes a test CA and a certificate for 127.0.0.1/localhost: origin-ca.pem,
    /// origin.pem, origin.key.
    Certs {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Keep-alive GETs, closed or open loop, plain, TLS or paid.
    Load(load::LoadArgs),
    /// New TLS handshakes per second through the proxy.
    Handshakes(load::HandshakeArgs),
    /// First handshakes to never-seen hosts, against a cached one.
    First(load::FirstArgs),
    /// Bulk download throughput.
    Bulk(load::LoadArgs),
    /// The proxy's VmRSS with connections, leaves and sessions.
    Memory(memory::MemoryArgs),
    /// Approval latency of held payments.
    Approve(paid::HoldArgs),
    /// The proxy's VmRSS with concurrent held payments (or idle connections).
    Holds(paid::HoldArgs),
    /// An x402-over-MCP paid tool call through Purser against the same call direct.
    Mcp(mcp::McpArgs),
    /// The disk's raw append + fdatasync rate.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Writes a large hash-chained proof log from a real one.
    GenLog(paid::GenLogArgs),
    /// Minutes of mixed traffic through one Purser, then the checks.
    Soak(soak::SoakArgs),
    /// The governance findings: one seeded workload, flat limit vs governed policy.
    Findings(findings::FindingsArgs),
    /// Prints the findings workload and its totals; nothing is sent.
    FindingsPlan(findings::PlanArgs),
    /// MPP credential decisions/s against x402 v2, through a Purser started for it.
    Mpp(mpp::MppArgs),
}

/// Runs `future` on a runtime of `threads` threads (one: the current thread).
fn block_on<F: Future<Output = Result<(), Error>>>(threads: usize, future: F) -> Result<(), Error> {
    let runtime = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(future)
}

/// Runs a server on a runtime with a worker per core.
fn serve<F: Future<Output = Result<(), Error>>>(future: F) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let threads = cli.threads;
    match cli.command {
        Command::Origin(args) => serve(serve::origin(args)),
        Command::BareProxy { listen } => {
            serve(async move { Ok(purser_kit::bare_proxy::run(listen).await?) })
        }
        // One thread: the load generator and Purser need the other cycles of a small box.
        Command::Merchant(args) => block_on(1, serve::merchant(args)),
        Command::Certs { dir } => serve::certs(&dir),
        Command::Load(args) => block_on(threads, load::load(args)),
        Command::Handshakes(args) => block_on(threads, load::handshakes(args)),
        Command::First(args) => block_on(threads, load::first(args)),
        Command::Bulk(args) => block_on(threads, load::bulk(args)),
        Command::Memory(args) => block_on(threads, memory::memory(args)),
        Command::Approve(args) => block_on(threads, paid::approve(args)),
        Command::Holds(args) => block_on(threads, paid::holds(args)),
        Command::Mcp(args) => block_on(threads, mcp::mcp(args)),
        Command::Fsync { dir, count } => paid::fsync_probe(&dir, count),
        Command::GenLog(args) => paid::gen_log(&args),
        Command::Soak(args) => soak::soak(args),
        Command::Findings(args) => findings::findings(args),
        Command::FindingsPlan(args) => findings::plan_command(&args),
        Command::Mpp(args) => mpp::mpp(args, threads),
    }
}
