//! The stable codes every layer speaks when Purser answers a request itself (SPEC §5):
//! the `X-Purser-Error` header, the status each one maps to, and the metric label that
//! counts it. Kept below every module that names one, so the proxy renders them, the
//! telemetry counts them, and neither imports the other.

use http::StatusCode;

/// Machine-readable codes for `X-Purser-Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `proxy_auth_required` (407): missing or wrong proxy credentials.
    ProxyAuthRequired,
    /// `bad_request` (400): a request Purser cannot read or will not forward as sent.
    BadRequest,
    /// `misdirected_request` (421): a request inside a tunnel names another host.
    Misdirected,
    /// `forbidden_destination` (403): the policy's `egress`, or Purser's own listeners.
    Forbidden,
    /// `upstream_refused` (502): the upstream refused the connection.
    UpstreamRefused,
    /// `upstream_dns` (502): the upstream's host name did not resolve.
    UpstreamDns,
    /// `upstream_tls` (502): the TLS handshake with the upstream failed.
    UpstreamTls,
    /// `upstream_timeout` (504): connecting to the upstream timed out.
    UpstreamTimeout,
    /// `upstream_failed` (502): the upstream failed otherwise (the message says how).
    UpstreamFailed,
    /// `cannot_intercept` (502): no certificate could be made to intercept the `CONNECT`.
    CannotIntercept,
    /// The agent's request body stalled past the body idle timeout (a slow-body attack
    /// or a dead agent); the request was cut off.
    RequestTimeout,
    /// A payment to, or plaintext inside a splice to, a `tunnel` host the policy does not
    /// trust with payments.
    TunnelUntrusted,
    /// The agent already holds as many connections as `limits.connections_per_agent`.
    TooManyConnections,
    /// A protocol switch other than WebSocket (`h2c`, `HTTP2-Settings`), or a `CONNECT`
    /// inside a tunnel: it would carry requests Purser never sees.
    UpgradeRefused,
}

impl ErrorCode {
    /// The spelling on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProxyAuthRequired => "proxy_auth_required",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Misdirected => "misdirected_request",
            ErrorCode::Forbidden => "forbidden_destination",
            ErrorCode::UpstreamRefused => "upstream_refused",
            ErrorCode::UpstreamDns => "upstream_dns",
            ErrorCode::UpstreamTls => "upstream_tls",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::CannotIntercept => "cannot_intercept",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TunnelUntrusted => "tunnel_untrusted",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::UpgradeRefused => "upgrade_refused",
        }
    }

    /// The status an answer with this code carries.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::Forbidden | ErrorCode::TunnelUntrusted | ErrorCode::UpgradeRefused => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UpstreamRefused
            | ErrorCode::UpstreamDns
            | ErrorCode::UpstreamTls
            | ErrorCode::UpstreamFailed
            | ErrorCode::CannotIntercept => StatusCode::BAD_GATEWAY,
        }
    }
}
