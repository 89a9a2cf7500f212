//! The proxy: the agent-facing listener, `CONNECT` and TLS interception, the one service
//! every request passes, and the upstream client.
//!
//! Where things live, from the socket inwards:
//!
//! * the wire: [`server`] accepts agent connections and deals each to one of the
//!   [`workers`] (a single-threaded runtime per core with its own upstream pools), after
//!   [`admission`] and the first-byte timeout; [`connect`] splices ([`tunnel`]) or
//!   intercepts ([`mitm`], [`sniff`], [`agent_tls`], [`leaf_cache`], [`ca`]) a
//!   `CONNECT`; [`trust_bundle`] is what agents trust for it;
//! * the service: [`service`] composes the stack of layers every request passes,
//!   however it arrived ([`arrival`]): who is asking ([`authenticate`],
//!   [`agent_connections`]), where it goes ([`destination`], [`target`]), protocol
//!   switches ([`upgrade`]), the payment detector on head and body ([`crate::detect`],
//!   [`inspect_body`]), the engine's decision and the upstream ([`forward`]), an MCP
//!   tool call's answer ([`mcp_answer`]);
//! * redirected connections: [`transparent`] serves what the kernel redirected to Purser
//!   (`--transparent-listen`), through the same service, to the original destination
//!   ([`pinned`]);
//! * the upstream: [`upstream`] clients whose every connection passes [`egress`], also
//!   Purser's own [`outbound`] client for webhooks and refund requests, and the
//!   [`chain_rpc`] client chain reconciliation asks nodes through;
//! * shared pieces: [`settings`], [`state`] (what every connection shares),
//!   [`answering`], [`answers`], [`body`], [`headers`], [`shutdown`]; refusals are spelled
//!   by [`render`] (plain HTTP) and [`render_jsonrpc`] (an MCP tool call).

pub mod admission;
pub mod agent_connections;
pub mod agent_tls;
pub mod answering;
pub mod answers;
pub mod arrival;
pub mod authenticate;
pub mod body;
pub mod ca;
pub mod chain_rpc;
pub mod connect;
pub mod destination;
pub mod egress;
pub mod forward;
pub mod headers;
pub mod inspect_body;
pub mod leaf_cache;
pub mod mcp_answer;
pub mod mitm;
pub mod outbound;
pub mod pinned;
pub mod render;
pub mod render_jsonrpc;
pub mod server;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod sniff;
pub mod state;
pub mod target;
pub mod transparent;
pub mod trust_bundle;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;
pub mod workers;

pub use settings::ProxySettings;
pub use state::ProxyState;
