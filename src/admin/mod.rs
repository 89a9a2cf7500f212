//! The admin listener: the governance API (`/v1`), metrics, health, and the approvals
//! console at `/`.
//!
//! It is a separate listener from the proxy, loopback by default. When a token is set,
//! every call needs `Authorization: Bearer TOKEN`; an agent's proxy credentials are a
//! different header and never work here. `purser run` refuses to expose it beyond
//! loopback without a token.

mod api;
pub mod metrics;

use crate::proxy::body::{full, ProxyBody};
use crate::proxy::shutdown::drive;
use crate::proxy::ProxyState;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::LeafFigures;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the admin handlers can see.
pub struct AdminState {
    pub proxy: Arc<ProxyState>,
    /// Bearer token required on every call, if set.
    pub token: Option<String>,
}

/// Serves the admin API until a drain begins.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let mut shutdown = state.proxy.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.requested() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service_state = state.clone();
            let service = service_fn(move |request| {
                let state = service_state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = drive(conn, state.proxy.shutdown.clone(), |conn| {
                conn.graceful_shutdown()
            })
            .await;
        });
    }
}

/// The approvals console: one static page, no build step, nothing from a CDN.
const CONSOLE_HTML: &str = include_str!("console.html");

async fn route(state: &AdminState, request: Request<Incoming>) -> Response<ProxyBody> {
    // The page itself holds no data; it asks for the token before it calls the API.
    if request.method() == Method::GET && request.uri().path() == "/" {
        return console_page();
    }
    if !authorized(state, &request) {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "admin token required: Authorization: Bearer TOKEN\n",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"purser-admin\""),
        );
        return response;
    }
    if request.uri().path().starts_with("/v1/") {
        if let Some(response) = api::route(state, request).await {
            return response;
        }
        return api::error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint");
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => {
            let leaves = &state.proxy.leaves;
            let figures = LeafFigures {
                minted: leaves.minted(),
                hits: leaves.hits(),
                entries: leaves.len() as u64,
            };
            let mut response = text(StatusCode::OK, state.proxy.metrics.render(figures));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
    }
}

fn authorized(state: &AdminState, request: &Request<Incoming>) -> bool {
    let Some(expected) = &state.token else {
        return true;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) => crate::policy::constant_time_eq(token.as_bytes(), expected.as_bytes()),
        None => false,
    }
}

fn console_page() -> Response<ProxyBody> {
    let mut response = text(StatusCode::OK, CONSOLE_HTML);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
