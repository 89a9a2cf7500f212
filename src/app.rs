//! Wiring a running Purser together: policy, CA, upstream client, listeners, signals.
//!
//! `SIGHUP` reloads the policy (a bad file keeps the old one); `SIGTERM` or `SIGINT`
//! stops accepting, lets in-flight requests finish for up to the drain timeout, and exits.

use crate::admin::{self, AdminState};
use crate::engine::recovery::RecoveryError;
use crate::engine::Engine;
use crate::holds::notify::Notifier;
use crate::holds::HoldOutcome;
use crate::outbound::SharedOutbound;
use crate::policy::{Policy, PolicyError, PolicyStore};
use crate::proxy::ca::{CaError, CertificateAuthority};
use crate::proxy::chain_rpc::ChainClient;
use crate::proxy::egress::EgressGuard;
use crate::proxy::leaf_cache::LeafCache;
use crate::proxy::upstream::{Upstream, UpstreamSettings, UpstreamSetupError};
use crate::proxy::workers::{self, WorkerError, Workers};
use crate::proxy::{admission, server, shutdown, transparent, ProxySettings, ProxyState};
use crate::store::{Embedded, FleetSettings, Postgres, SharedStore, StoreSetupError};
use crate::telemetry::metrics::Metrics;
use crate::trace::{log_files, TraceError, TraceLimits, TraceLog, TraceSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Everything `purser run` needs to start.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The address agents connect to.
    pub listen: SocketAddr,
    /// The admin API's address; off loopback it needs `admin_token`.
    pub admin_listen: SocketAddr,
    /// The policy file, re-read on `SIGHUP` and through the admin API.
    pub policy: PathBuf,
    /// The directory holding the interception CA (created on first start).
    pub ca_dir: PathBuf,
    /// The proof log's file (JSON lines, hash-chained).
    pub trace_log: PathBuf,
    /// Bytes past which the proof log moves on to a new file; the chain continues.
    pub trace_rotate_bytes: u64,
    /// Whether proof-log lines are fsynced before they are acknowledged (off only to measure).
    pub trace_fsync: bool,
    /// Refusal summaries and the disk alarm.
    pub trace_limits: TraceLimits,
    /// Extra PEM roots to trust for upstream TLS, beside the webpki and system roots.
    pub upstream_ca: Option<PathBuf>,
    /// The bearer token the admin API requires; `None` for none (loopback only).
    pub admin_token: Option<String>,
    /// The agent side: timeouts, connection bounds, the drain.
    pub proxy: ProxySettings,
    /// The upstream client: connect timeout and connection pool.
    pub upstream: UpstreamSettings,
    /// Connection workers (threads serving agents); 0 means one per core.
    pub workers: usize,
    /// The fleet store (`--store`); `None` keeps state in this process (the embedded
    /// default).
    pub store: Option<FleetSettings>,
    /// Where connections the kernel redirected arrive (`--transparent-listen`), if anywhere.
    pub transparent_listen: Option<SocketAddr>,
}

/// Why Purser could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The policy did not load.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    /// The interception CA could not be read or created.
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    /// The upstream client could not be built (`--upstream-ca`, its TLS set-up).
    #[error("{0}")]
    Upstream(#[from] UpstreamSetupError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address that was asked for.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The admin API was to listen off loopback without a token (the address given).
    #[error("refusing to serve the admin API on {0} without a token: set --admin-token or PURSER_ADMIN_TOKEN, or listen on loopback")]
    AdminWithoutToken(SocketAddr),
    /// The proof log could not be opened.
    #[error("{0}")]
    Trace(#[from] TraceError),
    /// The proof log could not be read back to rebuild budgets and sessions.
    #[error("{0}")]
    Recovery(#[from] RecoveryError),
    /// The connection workers could not be started.
    #[error("{0}")]
    Workers(#[from] WorkerError),
    /// The fleet store could not be reached or set up.
    #[error("{0}")]
    Store(#[from] StoreSetupError),
    /// `--transparent-listen` was given, but the policy does not say whom redirected
    /// connections speak for.
    #[error("--transparent-listen needs a `transparent:` section in the policy naming the agent redirected connections speak for (transparent: {{agent: NAME}})")]
    TransparentWithoutAgent,
    /// The `SIGHUP`/`SIGTERM`/`SIGINT` handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs Purser until `SIGTERM`/`SIGINT`.
pub async fn run(config: RunConfig) -> Result<(), RunError> {
    if !config.admin_listen.ip().is_loopback() && config.admin_token.is_none() {
        return Err(RunError::AdminWithoutToken(config.admin_listen));
    }
    let policy = Policy::load(&config.policy)?;
    if config.transparent_listen.is_some() && policy.transparent.is_none() {
        return Err(RunError::TransparentWithoutAgent);
    }
    tracing::info!(policy = %config.policy.display(), digest = %&policy.digest[..12], "policy loaded");
    let (ca, created) = CertificateAuthority::load_or_create(&config.ca_dir)?;
    if created {
        tracing::info!(cert = %ca.cert_path().display(), "created a new interception CA");
        crate::proxy::trust_bundle::write_agent_bundle(&ca);
    }
    let policy = Arc::new(PolicyStore::new(policy));
    let egress = Arc::new(EgressGuard::new(policy.clone()));
    let worker_count = match config.workers {
        0 => workers::default_count(),
        count => count,
    };
    let upstream = Upstream::new(
        config.upstream_ca.as_deref(),
        config.upstream.clone(),
        egress.clone(),
        worker_count,
    )?;
    let (trigger, shutdown) = shutdown::channel();
    let metrics = Arc::new(Metrics::default());
    let trace = TraceLog::open_with(
        TraceSettings {
            path: config.trace_log.clone(),
            rotate_bytes: config.trace_rotate_bytes,
            fsync: config.trace_fsync,
        },
        config.trace_limits,
    )?;
    tracing::info!(trace_log = %config.trace_log.display(), "proof log open");
    // The webhook and the refund endpoint are the operator's, not an agent's, so they
    // leave through the client that is not held to the policy's `egress` section.
    let outbound: SharedOutbound = Arc::new(upstream.internal_client.clone());
    let notifier = Notifier::start(policy.clone(), outbound.clone());
    // The one place the store is chosen: in memory, rebuilt from the proof log below, or
    // the fleet's, in PostgreSQL (which rebuilds nothing: it is the truth).
    let store: SharedStore = match &config.store {
        None => Arc::new(Embedded::new()),
        Some(fleet) => Arc::new(Postgres::connect(fleet, policy.current().limits, &trace).await?),
    };
    let engine = Arc::new(
        Engine::new(
            policy.clone(),
            store,
            trace,
            metrics.clone(),
            Some(notifier),
        )
        .with_compensator(outbound)
        .with_chain_rpc(Arc::new(ChainClient::new(upstream.internal_client.clone()))),
    );
    spawn_session_sweeper(engine.clone());
    let started = std::time::Instant::now();
    let recovered = engine.recover(&log_files(&config.trace_log))?;
    tracing::info!(
        files = recovered.files,
        lines = recovered.lines,
        committed = recovered.committed,
        unknown = recovered.unknown,
        dropped_holds = recovered.dropped_holds,
        sessions = recovered.sessions,
        took_ms = started.elapsed().as_millis() as u64,
        "state rebuilt from the proof log"
    );
    // Listen only once the state is rebuilt: during a long replay an agent is refused
    // at once rather than left hanging in the backlog.
    let proxy_listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let proxy_address = local_address(&proxy_listener, config.listen);
    let admin_address = local_address(&admin_listener, config.admin_listen);
    let transparent_listener = match config.transparent_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let transparent_address = transparent_listener
        .as_ref()
        .zip(config.transparent_listen)
        .map(|(listener, asked)| local_address(listener, asked));
    let own_addresses: Vec<SocketAddr> = [
        Some(proxy_address),
        Some(admin_address),
        transparent_address,
    ]
    .into_iter()
    .flatten()
    .collect();
    egress.set_own_addresses(own_addresses.clone());
    // The leaf cache is sized once: a reload that shrank it would have to evict live
    // leaves mid-handshake for no gain.
    let leaf_certificates = policy.current().limits.leaf_certificates;
    let open_files = admission::open_files_limit();
    let connection_limits = admission::limits_for(&config.proxy, open_files);
    tracing::info!(
        max_connections = connection_limits.max_connections,
        open_files_limit = ?open_files,
        max_unauthenticated_per_peer = connection_limits.max_unauthenticated_per_peer,
        "agent connection caps"
    );
    let state = Arc::new(ProxyState {
        policy,
        engine,
        leaves: LeafCache::new(ca, leaf_certificates),
        agent_connections: Default::default(),
        admission: admission::Admission::new(connection_limits, metrics.clone()),
        upstream,
        metrics,
        settings: config.proxy.clone(),
        own_addresses,
        shutdown,
    });
    let admin_state = Arc::new(AdminState {
        proxy: state.clone(),
        token: config.admin_token.clone(),
    });
    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let workers = Arc::new(Workers::start(worker_count)?);
    let proxy_task = tokio::spawn(server::serve(
        proxy_listener,
        state.clone(),
        workers.clone(),
    ));
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state));
    let transparent_task = transparent_listener
        .map(|listener| tokio::spawn(transparent::serve(listener, state.clone(), workers.clone())));
    announce(proxy_address, admin_address, &state);
    if let Some(address) = transparent_address {
        println!("transparent listener on {address} (redirected connections)");
        tracing::info!(%address, "transparent listener ready");
    }
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&state),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let denied = state
        .engine
        .resolve_all_holds(HoldOutcome::ShuttingDown)
        .await;
    tracing::info!(
        open = state.shutdown.open_connections(),
        held_denied = denied,
        "draining"
    );
    let drained = tokio::time::timeout(config.proxy.drain_timeout, trigger.drain()).await;
    if drained.is_err() {
        tracing::warn!(
            open = state.shutdown.open_connections(),
            "drain timeout reached; closing the rest"
        );
    }
    proxy_task.abort();
    admin_task.abort();
    state.engine.close_store().await;
    if let Some(task) = transparent_task {
        task.abort();
    }
    if let Err(error) = state.engine.flush_trace().await {
        tracing::error!(%error, "could not flush the proof log at shutdown");
    }
    tracing::info!("stopped");
    Ok(())
}

fn reload(state: &ProxyState) {
    match state.policy.reload() {
        Ok(policy) => tracing::info!(digest = %&policy.digest[..12], "policy reloaded"),
        Err(error) => tracing::error!(%error, "policy reload failed; keeping the previous policy"),
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })
}

fn local_address(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

/// Tells the operator (and test harnesses, which read stdout) where Purser listens.
fn announce(proxy: SocketAddr, admin: SocketAddr, state: &ProxyState) {
    println!(
        "purser {} listening on http://{proxy} (admin http://{admin})",
        crate::VERSION
    );
    println!("agents trust: {}", state.leaves.ca().cert_path().display());
    tracing::info!(%proxy, %admin, "ready");
}

/// Forgets, once a minute, idle sessions (`limits.session_idle`; their spend stays in
/// the ledger; the cap `limits.sessions` is enforced as sessions are created) and, every
/// ten seconds, the replay keys of payments that can no longer settle. The replay set
/// holds the keys of the payments' validity plus one sweep interval, and its tables grow
/// to the largest set a sweep ever finds: a minute between sweeps let a payment that is
/// valid for a minute double the set (and its tables, which never shrink) at whatever
/// moment the traffic first peaked, minutes into a run.
fn spawn_session_sweeper(engine: Arc<Engine>) {
    const REPLAY_SWEEP: std::time::Duration = std::time::Duration::from_secs(10);
    const SWEEPS_PER_SESSION_SWEEP: u32 = 6;
    tokio::spawn(async move {
        let mut every_sweep = tokio::time::interval(REPLAY_SWEEP);
        every_sweep.tick().await;
        let mut sweeps = 0u32;
        loop {
            every_sweep.tick().await;
            sweeps = sweeps.wrapping_add(1);
            if sweeps % SWEEPS_PER_SESSION_SWEEP == 0 {
                let forgotten = engine.expire_idle_sessions();
                if forgotten > 0 {
                    tracing::info!(forgotten, "forgot idle sessions");
                }
            }
            let expired = engine.forget_expired_replay_keys();
            if expired > 0 {
                tracing::debug!(
                    expired,
                    "forgot replay keys of payments that can no longer settle"
                );
            }
        }
    });
}
