//! The upstream side: pooled HTTP/1.1 and HTTP/2 (ALPN) clients with verified TLS, and
//! the translation of their failures into reasons an agent can act on.
//!
//! Upstream certificates are verified against the webpki roots, the system store and any
//! `--upstream-ca` file. Interception never weakens verification on the upstream leg.

use super::answers::ErrorCode;
use super::body::{BodyStalled, ProxyBody};
use super::egress::{EgressError, EgressGuard, GuardedConnector, TcpSettings};
use super::pinned::PinnedClients;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::{ClientConfig, RootCertStore};
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub type UpstreamClient = Client<HttpsConnector<GuardedConnector>, ProxyBody>;

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("--upstream-ca {path}: {reason}")]
    ExtraCa { path: PathBuf, reason: String },
    #[error("upstream TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Connection settings for upstreams.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
        }
    }
}

/// The clients requests leave through.
pub struct Upstream {
    /// Agent traffic, one pair per connection worker ([`super::workers`]) so a request
    /// and its pooled upstream connection share a thread.
    agent_clients: Vec<AgentClients>,
    /// Purser's own calls to destinations the operator configured (approval webhook,
    /// compensation endpoint): not agent traffic, so not held to `egress`.
    pub internal_client: UpstreamClient,
    /// The egress checks, also used by the `CONNECT` splice.
    pub egress: Arc<EgressGuard>,
    /// Shared by raw TLS uses (none yet) and the clients above.
    pub settings: UpstreamSettings,
    /// Agent traffic from the transparent listener, each client pinned to the address
    /// the agent's connection was going to ([`super::pinned`]).
    pinned: PinnedClients<UpstreamClient>,
}

/// One worker's clients for agent traffic.
struct AgentClients {
    /// HTTP/1.1 or HTTP/2 as the upstream's ALPN chooses; pooled per host. Every address
    /// it connects to passes [`EgressGuard`].
    any: UpstreamClient,
    /// HTTP/1.1 only: protocol upgrades (WebSocket) exist only there.
    http1: UpstreamClient,
}

impl Upstream {
    /// Builds the clients, with `pools` separate pools for agent traffic (one per worker).
    pub fn new(
        extra_ca: Option<&Path>,
        settings: UpstreamSettings,
        egress: Arc<EgressGuard>,
        pools: usize,
    ) -> Result<Self, UpstreamSetupError> {
        // One TLS configuration for every client: they then share one session cache, so a
        // host resumed from one worker's pool is resumed from the others too.
        let tls =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(Arc::new(root_store(extra_ca)?))
                .with_no_client_auth();
        let tcp = TcpSettings {
            connect_timeout: settings.connect_timeout,
        };
        let guarded = GuardedConnector::guarded(egress.clone(), tcp);
        let agent_clients = (0..pools.max(1))
            .map(|_| AgentClients {
                any: build_client(&tls, &settings, guarded.clone(), true),
                http1: build_client(&tls, &settings, guarded.clone(), false),
            })
            .collect();
        let internal_client = build_client(&tls, &settings, GuardedConnector::unguarded(tcp), true);
        let (pinned_tls, pinned_settings, pinned_egress) = (tls, settings.clone(), egress.clone());
        let pinned = PinnedClients::new(pools, move |address, http1_only| {
            let connector = GuardedConnector::pinned(pinned_egress.clone(), tcp, address);
            build_client(&pinned_tls, &pinned_settings, connector, !http1_only)
        });
        Ok(Upstream {
            agent_clients,
            internal_client,
            egress,
            settings,
            pinned,
        })
    }

    /// The client for agent traffic from the transparent listener to `original`, the
    /// address the agent's connection was going to, on the calling worker.
    pub fn pinned_client(
        &self,
        original: std::net::SocketAddr,
        http1_only: bool,
    ) -> UpstreamClient {
        self.pinned
            .client(super::workers::current(), original, http1_only)
    }

    /// The client for agent traffic on the calling worker; `http1_only` for upgrades.
    pub fn agent_client(&self, http1_only: bool) -> &UpstreamClient {
        let clients = &self.agent_clients[super::workers::current() % self.agent_clients.len()];
        if http1_only {
            &clients.http1
        } else {
            &clients.any
        }
    }
}

fn root_store(extra_ca: Option<&Path>) -> Result<RootCertStore, UpstreamSetupError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping an unreadable system root certificate");
    }
    // System stores carry odd certificates; one that rustls rejects is skipped, not fatal.
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let extra_error = |reason: String| UpstreamSetupError::ExtraCa {
            path: path.to_path_buf(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| extra_error(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| extra_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(extra_error("no PEM certificates in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| extra_error(e.to_string()))?;
        }
    }
    Ok(roots)
}

fn build_client(
    tls: &ClientConfig,
    settings: &UpstreamSettings,
    http: GuardedConnector,
    allow_http2: bool,
) -> UpstreamClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1();
    let connector = if allow_http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .build(connector)
}

/// What went wrong on the way upstream, for the agent and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub code: ErrorCode,
    pub detail: String,
}

impl UpstreamFailure {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        self.code.as_str()
    }
}

/// Reads an error chain from the client or a raw connect and names the failure.
pub fn classify(error: &(dyn StdError + 'static), authority: &str) -> UpstreamFailure {
    let chain = ErrorChain(Some(error));
    let mut dns = false;
    for cause in chain {
        if let Some(egress) = cause.downcast_ref::<EgressError>() {
            let code = if egress.is_refusal() {
                ErrorCode::Forbidden
            } else {
                ErrorCode::UpstreamDns
            };
            return failure(code, egress.to_string());
        }
        // The request body is the agent's: its stall is the agent's timeout, not a
        // failure of the upstream.
        if let Some(stalled) = cause.downcast_ref::<BodyStalled>() {
            return failure(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body to {authority} stalled (no data for {:?}); the request was cut off",
                    stalled.0
                ),
            );
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(found) = classify_io(io, authority) {
                return found;
            }
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return failure(
                ErrorCode::UpstreamTls,
                format!("TLS with {authority} failed: {tls}"),
            );
        }
        let text = cause.to_string();
        if text == "dns error" || text.contains("failed to lookup address") {
            dns = true;
        }
        if text.contains("connection timed out") || text.contains("HTTP connect timeout") {
            return failure(
                ErrorCode::UpstreamTimeout,
                format!("connecting to {authority} timed out"),
            );
        }
    }
    if dns {
        return failure(
            ErrorCode::UpstreamDns,
            format!("cannot resolve the host of {authority}"),
        );
    }
    failure(
        ErrorCode::UpstreamFailed,
        format!("request to {authority} failed: {}", describe_chain(error)),
    )
}

/// `io::Error` hides what it wraps from `source()`, and TLS connectors wrap twice
/// (`Other` around `InvalidData` around the rustls error), so unwrap by hand.
fn classify_io(io: &std::io::Error, authority: &str) -> Option<UpstreamFailure> {
    let mut current = io;
    loop {
        match current.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                return Some(failure(
                    ErrorCode::UpstreamRefused,
                    format!("{authority} refused the connection"),
                ))
            }
            std::io::ErrorKind::TimedOut => {
                return Some(failure(
                    ErrorCode::UpstreamTimeout,
                    format!("connecting to {authority} timed out"),
                ))
            }
            _ => {}
        }
        let inner = current.get_ref()?;
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(failure(
                ErrorCode::UpstreamTls,
                format!("TLS with {authority} failed: {tls}"),
            ));
        }
        current = inner.downcast_ref::<std::io::Error>()?;
    }
}

fn failure(code: ErrorCode, detail: String) -> UpstreamFailure {
    UpstreamFailure { code, detail }
}

/// `error: cause: cause`, for messages.
pub fn describe_chain(error: &(dyn StdError + 'static)) -> String {
    ErrorChain(Some(error))
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

struct ErrorChain<'a>(Option<&'a (dyn StdError + 'static)>);

impl<'a> Iterator for ErrorChain<'a> {
    type Item = &'a (dyn StdError + 'static);

    fn next(&mut self) -> Option<Self::Item> {
        let current = self.0?;
        self.0 = current.source();
        Some(current)
    }
}
