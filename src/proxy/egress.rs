//! Egress control at the point of connection: every address Purser connects to on an
//! agent's behalf is checked against the policy's `egress` section and Purser's own
//! listeners, whether the agent named it literally or by a DNS name.
//!
//! Checking the name before the request (as [`crate::policy::Policy::egress_refusal`]
//! does for literals) is not enough for names: `metadata.attacker.example` may resolve to
//! `169.254.169.254`, and a second lookup at connect time could answer differently from
//! the one that was checked (DNS rebinding). So the name is resolved once here, each
//! address is judged, and the connection is made to exactly those addresses: the
//! upstream client through [`GuardedConnector`], the `CONNECT` splice through
//! [`EgressGuard::connect`].
//!
//! Operator-configured destinations (the approval webhook, the compensation endpoint)
//! are not agent traffic and go through an unguarded connector.

use crate::policy::{effective_destination, EgressRefusal, PolicyStore};
use http::Uri;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an agent's destination was not connected to.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The policy's `egress` section forbids one of the addresses.
    #[error("{host} resolves to {address}, which is {reason}")]
    Refused {
        host: String,
        address: IpAddr,
        reason: EgressRefusal,
    },
    /// One of the addresses is a Purser listener: an agent may neither loop the proxy
    /// nor reach the admin API with its proxy credentials.
    #[error(
        "{host} is Purser's own listener {listener}, which is not reachable through the proxy"
    )]
    OwnListener { host: String, listener: SocketAddr },
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
}

impl EgressError {
    /// Whether the destination was refused (as opposed to not found).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            EgressError::Refused { .. } | EgressError::OwnListener { .. }
        )
    }
}

/// Why the `CONNECT` splice could not reach its host.
#[derive(Debug, thiserror::Error)]
pub enum SpliceConnectError {
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error("connecting to {address} failed: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The egress checks, shared by every guarded connection.
#[derive(Debug)]
pub struct EgressGuard {
    policy: Arc<PolicyStore>,
    /// Set once the listeners are bound (before that, nothing can connect to them).
    own: OnceLock<Vec<SocketAddr>>,
}

impl EgressGuard {
    pub fn new(policy: Arc<PolicyStore>) -> Self {
        EgressGuard {
            policy,
            own: OnceLock::new(),
        }
    }

    /// Records Purser's own listening addresses; only the first call counts.
    pub fn set_own_addresses(&self, addresses: Vec<SocketAddr>) {
        let _ = self.own.set(addresses);
    }

    /// Judges one address the agent's request would connect to. `host` only labels
    /// the error.
    pub fn check(&self, host: &str, address: SocketAddr) -> Result<(), EgressError> {
        let own = self.own.get().map(Vec::as_slice).unwrap_or(&[]);
        if let Some(listener) = own_listener(own, address.ip(), address.port()) {
            return Err(EgressError::OwnListener {
                host: host.to_string(),
                listener,
            });
        }
        match self
            .policy
            .peek()
            .egress_refusal_ip(address.ip(), address.port())
        {
            Some(reason) => Err(EgressError::Refused {
                host: host.to_string(),
                address: address.ip(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The addresses of `host:port`, each one judged. A literal address is not looked
    /// up. A name with any forbidden address is refused outright rather than filtered:
    /// a name that mixes public and metadata addresses is an attack, not a fallback.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|source| EgressError::Lookup {
                    host: bare.to_string(),
                    source,
                })?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(EgressError::NoAddress {
                host: bare.to_string(),
            });
        }
        for address in &addresses {
            self.check(bare, *address)?;
        }
        Ok(addresses)
    }

    /// A TCP connection to `host:port` for the `CONNECT` splice, made to the addresses
    /// that were judged (each tried in turn, as the resolver ordered them).
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, SpliceConnectError> {
        let addresses = self.resolve(host, port).await?;
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(source) => last = Some(SpliceConnectError::Connect { address, source }),
            }
        }
        // `resolve` never returns an empty list, so `last` is set here.
        Err(last.unwrap_or_else(|| {
            SpliceConnectError::Egress(EgressError::NoAddress {
                host: host.to_string(),
            })
        }))
    }
}

/// The listener in `own` that a connection to `ip:port` would reach, if any. A listener
/// on the unspecified address answers on every local address: loopback for certain, and
/// the host's other addresses, which are found by trying to bind to them.
pub fn own_listener(own: &[SocketAddr], ip: IpAddr, port: u16) -> Option<SocketAddr> {
    let ip = effective_destination(ip);
    own.iter().copied().find(|listener| {
        if listener.port() != port {
            return false;
        }
        if listener.ip().is_unspecified() {
            ip.is_loopback() || is_local_address(ip)
        } else {
            effective_destination(listener.ip()) == ip
        }
    })
}

/// Whether `ip` is one of this host's addresses: binding to an address the host does
/// not have fails (`EADDRNOTAVAIL`).
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Settings shared by the guarded and unguarded connectors.
#[derive(Clone, Copy, Debug)]
pub struct TcpSettings {
    pub connect_timeout: Duration,
}

fn configure<R>(connector: &mut HttpConnector<R>, settings: TcpSettings) {
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(settings.connect_timeout));
}

/// The TCP connector under the upstream client's TLS: resolves and judges the target
/// (when guarded), then connects to exactly the judged addresses.
#[derive(Clone, Debug)]
pub struct GuardedConnector {
    guard: Option<Arc<EgressGuard>>,
    /// The one address every connection goes to, judged but not looked up: a redirected
    /// connection's original destination ([`super::pinned`]).
    pin: Option<SocketAddr>,
    settings: TcpSettings,
    unguarded: HttpConnector,
}

impl GuardedConnector {
    /// Agent traffic: every address is judged.
    pub fn guarded(guard: Arc<EgressGuard>, settings: TcpSettings) -> Self {
        GuardedConnector {
            guard: Some(guard),
            ..GuardedConnector::unguarded(settings)
        }
    }

    /// Purser's own calls to destinations the operator configured.
    pub fn unguarded(settings: TcpSettings) -> Self {
        let mut unguarded = HttpConnector::new();
        configure(&mut unguarded, settings);
        GuardedConnector {
            guard: None,
            pin: None,
            settings,
            unguarded,
        }
    }

    /// Agent traffic to exactly `address`, whatever name the request carries (which
    /// upstream TLS then verifies); the address is judged like any other.
    pub fn pinned(guard: Arc<EgressGuard>, settings: TcpSettings, address: SocketAddr) -> Self {
        GuardedConnector {
            pin: Some(address),
            ..GuardedConnector::guarded(guard, settings)
        }
    }
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let Some(guard) = self.guard.clone() else {
            let mut connector = self.unguarded.clone();
            return Box::pin(async move { connector.call(uri).await.map_err(Into::into) });
        };
        let settings = self.settings;
        let pin = self.pin;
        Box::pin(async move {
            // The same host and port the HTTP connector would use.
            let host = uri.host().unwrap_or_default().to_string();
            let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                443
            } else {
                80
            };
            let port = uri.port_u16().unwrap_or(default_port);
            let addresses = match pin {
                Some(address) => {
                    guard.check(&host, address)?;
                    vec![address]
                }
                None => guard.resolve(&host, port).await?,
            };
            // The HTTP connector connects to what this resolver hands it (a literal host
            // is used as written, and was judged as written above), so no second lookup
            // can substitute an address that was not judged.
            let mut connector = HttpConnector::new_with_resolver(JudgedAddresses(addresses));
            configure(&mut connector, settings);
            connector.call(uri).await.map_err(Into::into)
        })
    }
}

/// A resolver that answers every name with addresses already judged.
#[derive(Clone, Debug)]
struct JudgedAddresses(Vec<SocketAddr>);

impl tower_service::Service<Name> for JudgedAddresses {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        std::future::ready(Ok(self.0.clone().into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::path::Path;

    fn guard(policy: &str, own: Vec<SocketAddr>) -> EgressGuard {
        let policy = Policy::from_yaml(Path::new("test.yaml"), policy).unwrap();
        let guard = EgressGuard::new(Arc::new(PolicyStore::new(policy)));
        guard.set_own_addresses(own);
        guard
    }

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn own_listeners_are_matched_by_the_address_a_connection_reaches() {
        let own = [at("127.0.0.1:8403"), at("0.0.0.0:8402")];
        let reaches = |ip: &str, port| own_listener(&own, ip.parse().unwrap(), port);
        assert_eq!(reaches("127.0.0.1", 8403), Some(own[0]));
        assert_eq!(reaches("::ffff:127.0.0.1", 8403), Some(own[0]));
        assert_eq!(reaches("0.0.0.0", 8403), Some(own[0]));
        assert_eq!(reaches("127.0.0.2", 8403), None, "bound to 127.0.0.1 only");
        assert_eq!(reaches("127.0.0.1", 8404), None);
        assert_eq!(reaches("127.0.0.9", 8402), Some(own[1]));
        assert_eq!(reaches("::1", 8402), Some(own[1]));
        assert_eq!(
            reaches("192.0.2.1", 8402),
            None,
            "not an address of this host"
        );
    }

    #[test]
    fn every_judged_address_must_pass() {
        let guard = guard(
            "egress:\n  loopback_ports: [8080]\n",
            vec![at("127.0.0.1:8403")],
        );
        assert!(guard.check("x", at("127.0.0.1:8080")).is_ok());
        assert!(matches!(
            guard.check("x", at("127.0.0.1:8403")),
            Err(EgressError::OwnListener { .. })
        ));
        assert!(matches!(
            guard.check("x", at("127.0.0.1:22")),
            Err(EgressError::Refused {
                reason: EgressRefusal::LoopbackPort(22),
                ..
            })
        ));
        let refused = guard.check("metadata.example", at("169.254.169.254:80"));
        let message = refused.unwrap_err().to_string();
        assert!(
            message
                .starts_with("metadata.example resolves to 169.254.169.254, which is link-local"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn literal_targets_are_judged_without_a_lookup() {
        let guard = guard("egress:\n  loopback_ports: [8080]\n", Vec::new());
        assert!(guard.resolve("[::1]", 8080).await.is_ok());
        assert!(guard.resolve("[::1]", 22).await.unwrap_err().is_refusal());
        assert!(guard
            .resolve("169.254.169.254", 80)
            .await
            .unwrap_err()
            .is_refusal());
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        // `localhost` is in every hosts file; the literal check in the policy knows it by
        // name, but here it goes through the resolver like any other name.
        let guard = guard("egress:\n  loopback_ports: [8080]\n", Vec::new());
        assert!(guard.resolve("localhost", 8080).await.is_ok());
        let refused = guard.resolve("localhost", 22).await.unwrap_err();
        assert!(refused.is_refusal(), "{refused}");
    }
}
