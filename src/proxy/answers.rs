//! Answers Purser itself gives the agent when it does not forward a request: credentials
//! required, bad requests, upstream failures. Each carries a plain-text reason and an
//! `X-Purser-Error` code a program can branch on.

use super::body::{full, ProxyBody};
use http::{header, HeaderValue, Response, StatusCode};

pub use crate::codes::ErrorCode;

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
