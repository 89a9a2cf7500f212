//! The `purser` command line: a thin layer that parses flags and calls the library.
//!
//! `run`, `ca`, `policy` and `redirect` work locally; `approvals`, `payments`, `sessions` and
//! `traces` are the operator's view of a running Purser, through its admin API.

mod admin_client;
mod approvals;
mod ca;
mod fleet;
mod format;
mod payments;
mod redirect;
mod sessions;
mod tables;
mod trace_files;
mod traces;

use crate::app::{self, RunConfig};
use crate::policy::Policy;
use crate::proxy::upstream::UpstreamSettings;
use crate::proxy::ProxySettings;
use crate::store::FleetSettings;
use crate::telemetry::{self, LogFormat};
use crate::trace::TraceLimits;
use admin_client::{AdminClient, AdminError};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "purser",
    version,
    about = "An x402-aware forward proxy that governs agent payments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy and its admin listener.
    Run(Box<RunArgs>),
    /// Manage the interception CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Check policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Payments held for a human: list, approve, deny.
    Approvals(ApprovalsArgs),
    /// Payments whose outcome is unknown: list, show, resolve.
    Payments(PaymentsArgs),
    /// Sessions: budgets, phases, counts.
    Sessions(SessionsArgs),
    /// The proof log, as the admin API serves it.
    Traces(TracesArgs),
    /// A governed x402 workflow end to end on this machine: no network, no money.
    Demo(crate::demo::DemoArgs),
    /// The nftables rules that send an agent uid's outbound TCP to the transparent
    /// listener: printed, installed (--apply) or removed (--remove).
    Redirect(redirect::RedirectArgs),
}

/// Where the admin API is, for the operator commands.
#[derive(Args, Debug)]
struct AdminArgs {
    /// Base URL of the admin API.
    #[arg(
        long = "admin",
        value_name = "URL",
        default_value = "http://127.0.0.1:8403",
        global = true
    )]
    url: String,
    /// Bearer token for the admin API.
    #[arg(
        long,
        env = "PURSER_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
}

#[derive(Args, Debug)]
struct ApprovalsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: approvals::ApprovalsCommand,
}

#[derive(Args, Debug)]
struct PaymentsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: payments::PaymentsCommand,
}

#[derive(Args, Debug)]
struct SessionsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: sessions::SessionsCommand,
}

#[derive(Args, Debug)]
struct TracesArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: TracesCommand,
}

#[derive(Subcommand, Debug)]
enum TracesCommand {
    /// The latest trace lines; `--follow` keeps printing new ones.
    Tail(traces::TailArgs),
    /// Check the hash chain of trace log files; names the first broken line.
    Verify(trace_files::VerifyArgs),
    /// A readable table of trace lines from the log file.
    Show(trace_files::ShowArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Address agents connect to.
    #[arg(long, default_value = "127.0.0.1:8402")]
    listen: SocketAddr,
    /// Address of the admin API (loopback unless a token is set).
    #[arg(long, default_value = "127.0.0.1:8403")]
    admin_listen: SocketAddr,
    /// Policy file.
    #[arg(long, default_value = "policies/default.yaml")]
    policy: PathBuf,
    /// Directory holding the interception CA (created on first start).
    #[arg(long, default_value = "certs")]
    ca_dir: PathBuf,
    /// Proof-trace log file (JSON lines, hash-chained).
    #[arg(long, default_value = "traces/purser-trace.jsonl")]
    trace_log: PathBuf,
    /// Start a new trace file past this size (`256MiB`, `64KiB`, or bytes); the hash
    /// chain continues across files.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    trace_rotate_size: u64,
    /// Skip fsync on trace writes (measurements only: decisions are then not durable).
    #[arg(long)]
    trace_no_fsync: bool,
    /// Refusals per agent and minute written one by one; past it they are counted into
    /// one summary line a minute (payments that leave are always written). 0: no limit.
    #[arg(long, default_value_t = 600)]
    trace_refusals_per_minute: u32,
    /// Warn, and raise `purser_trace_disk_alarm`, once the proof log and its rotated
    /// files pass this size (`1GiB`, `512MiB`, or bytes; 0: never).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    trace_alarm_size: u64,
    /// Extra PEM roots to trust for upstream TLS, beside the webpki and system roots.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Bearer token required by the admin API.
    #[arg(long, env = "PURSER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Log format.
    #[arg(long, value_enum, ignore_case = true, default_value = "human")]
    log_format: LogFormat,
    /// Log level when RUST_LOG is not set.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Seconds an agent has to send request headers (and to reuse an idle connection).
    #[arg(long, default_value_t = 30)]
    header_timeout: u64,
    /// Seconds a streaming body may stall before the request is cut.
    #[arg(long, default_value_t = 60)]
    body_idle_timeout: u64,
    /// Seconds SIGTERM waits for in-flight requests.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Agent connections open at once; 0 means half of what the open-files limit
    /// leaves after 256 for Purser itself. Over it, the oldest unauthenticated
    /// connection is closed to make room; if every one has authenticated, the new one
    /// gets 503.
    #[arg(long, env = "PURSER_MAX_CONNECTIONS", default_value_t = 0)]
    max_connections: usize,
    /// Connections one peer address may hold before they authenticate; past it, that
    /// address's oldest unauthenticated connection is closed.
    #[arg(long, default_value_t = 512)]
    max_unauthenticated_per_peer: usize,
    /// Seconds a new connection has to send its first byte.
    #[arg(long, default_value_t = 10)]
    first_byte_timeout: u64,
    /// Threads serving agent connections; 0 means one per core.
    #[arg(long, env = "PURSER_WORKERS", default_value_t = 0)]
    workers: usize,
    /// The fleet store: replicas given the same PostgreSQL database (or any that speaks
    /// its protocol) share budgets, phases, the replay set, holds and the proof log.
    /// Without it, state is kept in this process and rebuilt from its proof log.
    #[arg(
        long,
        env = "PURSER_STORE",
        hide_env_values = true,
        value_name = "postgres://USER@HOST/DB"
    )]
    store: Option<String>,
    /// This replica's name in the fleet store; unique per replica (default: the host
    /// name and the listen port).
    #[arg(long, env = "PURSER_REPLICA_ID")]
    replica_id: Option<String>,
    /// Seconds a payment waits on the fleet store before it is refused
    /// (ledger_unavailable).
    #[arg(long, default_value_t = 2)]
    store_timeout: u64,
    /// Seconds a replica's reservations outlive its last sign of life before another
    /// replica makes them `unknown` (still counted).
    #[arg(long, default_value_t = 10)]
    store_lease: u64,
    /// Also accept connections the kernel redirected here (`purser redirect`), e.g.
    /// `[::]:15001`; the policy's `transparent` section names their agent.
    #[arg(long)]
    transparent_listen: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create the CA and print the environment lines agents need.
    Init {
        /// Directory to write the CA into.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
        /// The proxy address to print in HTTPS_PROXY.
        #[arg(long, default_value = "127.0.0.1:8402")]
        proxy: String,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validate a policy file; errors name file:line:column.
    Check {
        /// The policy file (YAML).
        file: PathBuf,
    },
    /// Run decision cases against a policy; exits non-zero on any mismatch.
    Test {
        /// The policy file (YAML).
        file: PathBuf,
        /// The cases file (YAML): payments and the decision each must get.
        cases: PathBuf,
    },
}

/// The command-line definition, for checks over every command and flag.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Ca(CaCommand::Init { dir, force, proxy }) => ca::init(&dir, force, &proxy),
        Command::Policy(PolicyCommand::Check { file }) => policy_check(&file),
        Command::Policy(PolicyCommand::Test { file, cases }) => policy_test(&file, &cases),
        Command::Approvals(ApprovalsArgs { admin, command }) => {
            with_admin(admin, |client| async move {
                approvals::run(&client, command).await
            })
        }
        Command::Payments(PaymentsArgs { admin, command }) => {
            with_admin(admin, |client| async move {
                payments::run(&client, command).await
            })
        }
        Command::Sessions(SessionsArgs { admin, command }) => {
            with_admin(admin, |client| async move {
                sessions::run(&client, command).await
            })
        }
        Command::Traces(TracesArgs { admin, command }) => match command {
            TracesCommand::Tail(args) => {
                with_admin(
                    admin,
                    |client| async move { traces::tail(&client, args).await },
                )
            }
            TracesCommand::Verify(args) => trace_files::verify(args),
            TracesCommand::Show(args) => trace_files::show(args),
        },
        Command::Demo(args) => crate::demo::run(args),
        Command::Redirect(args) => redirect::run(args),
    }
}

/// Runs one admin API command on a current-thread runtime; errors exit 1.
fn with_admin<F, Fut>(admin: AdminArgs, command: F) -> ExitCode
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: Future<Output = Result<(), AdminError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("purser: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let client = AdminClient::new(&admin.url, admin.admin_token)?;
        command(client).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("purser: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let _log_guard = telemetry::init(args.log_format, &args.log_level);
    let store = fleet_settings(&args);
    let config = RunConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        policy: args.policy,
        ca_dir: args.ca_dir,
        trace_log: args.trace_log,
        trace_rotate_bytes: args.trace_rotate_size.max(4096),
        trace_fsync: !args.trace_no_fsync,
        trace_limits: TraceLimits {
            refusals_per_minute: args.trace_refusals_per_minute,
            alarm_bytes: args.trace_alarm_size,
        },
        upstream_ca: args.upstream_ca,
        admin_token: args.admin_token.filter(|token| !token.is_empty()),
        proxy: ProxySettings {
            header_read_timeout: Duration::from_secs(args.header_timeout.max(1)),
            body_idle_timeout: Duration::from_secs(args.body_idle_timeout.max(1)),
            drain_timeout: Duration::from_secs(args.drain_timeout),
            max_connections: args.max_connections,
            max_unauthenticated_per_peer: args.max_unauthenticated_per_peer.max(1),
            first_byte_timeout: Duration::from_secs(args.first_byte_timeout.max(1)),
            ..ProxySettings::default()
        },
        upstream: UpstreamSettings::default(),
        workers: args.workers,
        store,
        transparent_listen: args.transparent_listen,
    };
    // Agent connections run on their own workers (`proxy::workers`); this thread keeps
    // the admin API, the accept loop, signals and the sweepers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("purser: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("purser: {error}");
            ExitCode::from(2)
        }
    }
}

/// The fleet store's settings, when `--store` (or `PURSER_STORE`) names one.
fn fleet_settings(args: &RunArgs) -> Option<FleetSettings> {
    let url = args.store.as_deref().filter(|url| !url.trim().is_empty())?;
    let replica = args
        .replica_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| default_replica_id(args.listen));
    let mut settings = FleetSettings::new(url, &replica);
    settings.timeout = Duration::from_secs(args.store_timeout.max(1));
    settings.lease = Duration::from_secs(args.store_lease.max(1));
    Some(settings)
}

/// The host's name and the listen port: unique per replica on one host, and stable
/// across restarts (so a restarted replica takes over what it left).
fn default_replica_id(listen: SocketAddr) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "purser".into());
    format!("{host}:{}", listen.port())
}

fn policy_check(file: &std::path::Path) -> ExitCode {
    match Policy::load(file) {
        Ok(policy) => {
            println!("{}: ok (digest {})", file.display(), &policy.digest[..12]);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn policy_test(file: &std::path::Path, cases: &std::path::Path) -> ExitCode {
    let policy = match Policy::load(file) {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let results = match crate::engine::cases::run_cases(&policy, cases) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<4}  {:<width$}  RESULT", "", "CASE");
    for result in &results {
        let mark = if result.passed { "ok" } else { "FAIL" };
        if result.passed {
            println!("{mark:<4}  {:<width$}  {}", result.name, result.got);
        } else {
            println!(
                "{mark:<4}  {:<width$}  expected {}, got {}",
                result.name, result.expected, result.got
            );
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `256MiB`, `64KiB`, `1GiB`, or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    crate::policy::values::parse_size(text)
        .ok_or_else(|| format!("`{}` is not a size like 256MiB", text.trim()))
}
