//! [`ProxyState`]: everything an agent connection needs, shared by all of them.

use super::admission::Admission;
use super::agent_connections::AgentConnections;
use super::leaf_cache::LeafCache;
use super::settings::ProxySettings;
use super::shutdown::Shutdown;
use super::upstream::Upstream;
use crate::policy::PolicyStore;
use crate::telemetry::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a connection needs, shared by all of them.
pub struct ProxyState {
    pub policy: Arc<PolicyStore>,
    pub engine: Arc<crate::engine::Engine>,
    pub leaves: LeafCache,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub settings: ProxySettings,
    /// The connection caps before authentication ([`super::admission`]).
    pub admission: Arc<Admission>,
    /// Open connections per agent, bounded by `limits.connections_per_agent`.
    pub agent_connections: Arc<AgentConnections>,
    /// Purser's own listeners: requests aimed at them through the proxy are refused, so
    /// an agent can neither loop the proxy nor reach the admin API with its credentials.
    pub own_addresses: Vec<SocketAddr>,
    /// Tells connections to drain, and counts them.
    pub shutdown: Shutdown,
}
