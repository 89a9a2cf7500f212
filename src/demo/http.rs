//! The little HTTP the demo needs around Purser: one request over a fresh loopback
//! connection (the agent through the proxy, the merchant to the facilitator, the demo to
//! the admin API), a server loop for the merchant and the facilitator, and bounded body
//! reading. Every body is capped: the demo's own servers face only the demo, but a
//! program that reads the wire never trusts a size it did not check.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The most any answer or request body the demo reads may hold.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An answer, read whole.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header's value as text, if present and printable.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON, if it is JSON.
    pub(super) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends one HTTP/1.1 request to `address` on a connection of its own and reads the whole
/// answer. The request's URI is sent as given, so an absolute `http://host/path` URI
/// makes the absolute-form request a forward proxy expects. `None` as `wait` waits as
/// long as the answer takes (a payment held for a person).
pub(super) async fn send(
    address: SocketAddr,
    request: Request<Full<Bytes>>,
    wait: Option<Duration>,
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake with {address} failed: {e}"))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{address} gave no answer: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer from {address}: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    match wait {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| format!("{address} did not answer within {}s", limit.as_secs()))?,
        None => exchange.await,
    }
}

/// Serves HTTP/1.1 on `listener` until the runtime ends, one task per connection.
pub(super) fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let answer = handler(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}

/// Reads a request's body, at most [`MAX_BODY_BYTES`].
pub(super) async fn read_body(body: Incoming) -> Result<Bytes, String> {
    Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| format!("cannot read the request body: {e}"))
}

/// A JSON answer.
pub(super) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Binds a loopback listener on a port the system picks.
pub(super) async fn bind_loopback(
    what: &'static str,
) -> Result<TcpListener, super::error::DemoError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| super::error::DemoError::Bind { what, source })
}
