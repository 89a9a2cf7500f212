//! Answers Purser itself gives the agent when it does not forward a request: credentials
//! required, bad requests, upstream failures. Each carries a plain-text reason and an
//! `X-Purser-Error` code a program can branch on.

use super::body::{full, ProxyBody};
use http::{header, HeaderValue, Response, StatusCode};

/// Machine-readable codes for `X-Purser-Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    ProxyAuthRequired,
    BadRequest,
    Misdirected,
    Forbidden,
    UpstreamRefused,
    UpstreamDns,
    UpstreamTls,
    UpstreamTimeout,
    UpstreamFailed,
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

/// Purser's own error answer: status from the code, reason in the body.
pub fn error(code: ErrorCode, reason: impl std::fmt::Display) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("purser: {reason}\n")));
    *response.status_mut() = code.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-purser-error", HeaderValue::from_static(code.as_str()));
    if code == ErrorCode::ProxyAuthRequired {
        headers.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"purser\""),
        );
    }
    response
}

/// `200` to a `CONNECT`: the tunnel is open.
pub fn tunnel_open() -> Response<ProxyBody> {
    let mut response = Response::new(super::body::empty());
    *response.status_mut() = StatusCode::OK;
    response
}
