//! The admin listener: the governance API (`/v1`), metrics, health, and the approvals
//! console at `/`.
//!
//! It is a separate listener from the proxy, loopback by default. When a token is set,
//! every call needs `Authorization: Bearer TOKEN`; an agent's proxy credentials are a
//! different header and never work here. `purser run` refuses to expose it beyond
//! loopback without a token.

mod api;
mod metrics_bounds;
mod payments;
mod reply;

use crate::proxy::body::{full, ProxyBody};
use crate::proxy::shutdown::drive;
use crate::proxy::ProxyState;
use crate::telemetry::metrics::LeafFigures;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
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

/// Admin connections open at once. The admin API is for operators and their tools, not
/// for crowds; past this, new connections are closed, so a flood of idle connections to
/// it cannot use up the descriptors the agents' connections need.
const MAX_ADMIN_CONNECTIONS: usize = 128;

/// Serves the admin API until a drain begins.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let mut shutdown = state.proxy.shutdown.clone();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.requested() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if open.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= MAX_ADMIN_CONNECTIONS {
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            tracing::debug!("admin API at its connection limit; closing a new connection");
            drop(stream);
            continue;
        }
        let state = state.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let _open = AdminConnection(open);
            let service_state = state.clone();
            let service = service_fn(move |request| {
                let state = service_state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
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
    if let Err(reason) = from_a_page_elsewhere(state.token.is_some(), &request) {
        tracing::warn!(%reason, "admin request refused");
        return text(StatusCode::FORBIDDEN, format!("{reason}\n"));
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
        return reply::error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint");
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
            let mut body = state.proxy.metrics.render(figures);
            metrics_bounds::render(&mut body, &state.proxy.engine);
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
    }
}

/// Refuses what a web page on another site could make a browser send. Without a token
/// the loopback listener is its only protection, so a `Host` that is a DNS name (a
/// rebinding attack's tell) is refused; with or without one, a state change whose
/// `Origin` is not the admin listener itself is a cross-site forgery.
fn from_a_page_elsewhere<B>(token_set: bool, request: &Request<B>) -> Result<(), String> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !token_set && !host.is_empty() && !is_literal_or_localhost(host) {
        return Err(format!(
            "Host `{host}` is not this listener's address; without an admin token only \
             IP addresses and localhost are served"
        ));
    }
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let same = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.strip_prefix("http://"))
        .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host));
    if request.method() != Method::GET && !same {
        return Err("cross-origin requests may not change anything".to_string());
    }
    Ok(())
}

fn is_literal_or_localhost(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
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

/// Counts an open admin connection until it closes.
struct AdminConnection(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for AdminConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, host: &str, origin: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/v1/approvals");
        builder = builder.header(header::HOST, host);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn rebinding_and_cross_site_posts_are_refused() {
        let rebinding = request(Method::GET, "attacker.example:9402", None);
        assert!(from_a_page_elsewhere(false, &rebinding).is_err());
        assert!(
            from_a_page_elsewhere(true, &rebinding).is_ok(),
            "a token guards names"
        );
        let forged = request(
            Method::POST,
            "127.0.0.1:9402",
            Some("http://attacker.example"),
        );
        assert!(from_a_page_elsewhere(true, &forged).is_err());
        let console = request(
            Method::POST,
            "127.0.0.1:9402",
            Some("http://127.0.0.1:9402"),
        );
        assert!(from_a_page_elsewhere(false, &console).is_ok());
        let cli = request(Method::POST, "[::1]:9402", None);
        assert!(from_a_page_elsewhere(false, &cli).is_ok());
        let local = request(Method::GET, "localhost:9402", None);
        assert!(from_a_page_elsewhere(false, &local).is_ok());
    }
}
