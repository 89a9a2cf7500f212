//! HTTP/1.1 clients for tests and benches: a keep-alive connection that reconnects after
//! it breaks, the whole answer of a request, proxy credentials and absolute-form
//! requests through a forward proxy.

use crate::Error;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST, PROXY_AUTHORIZATION};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use purser::x402::wire::PaymentRequiredV2;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The sending half of an HTTP/1.1 client connection.
pub type Sender = SendRequest<Full<Bytes>>;

/// A whole answer: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The x402 v2 challenge (`PAYMENT-REQUIRED`) of a `402` answer, when it decodes and
    /// offers at least one way to pay.
    pub fn challenge(&self) -> Option<PaymentRequiredV2> {
        if self.status != StatusCode::PAYMENT_REQUIRED {
            return None;
        }
        let header = self.headers.get("payment-required")?;
        crate::x402::decode::<PaymentRequiredV2>(header.as_bytes())
            .filter(|c| !c.accepts.is_empty())
    }

    /// The first 200 bytes of the body on one line, for messages.
    pub fn excerpt(&self) -> String {
        let end = self.body.len().min(200);
        String::from_utf8_lossy(&self.body[..end]).replace('\n', " ")
    }
}

impl From<Answer> for http::Response<Bytes> {
    fn from(answer: Answer) -> http::Response<Bytes> {
        let mut response = http::Response::new(answer.body);
        *response.status_mut() = answer.status;
        *response.headers_mut() = answer.headers;
        response
    }
}

/// `Basic base64(credentials)` for `USER:TOKEN` credentials.
pub fn basic(credentials: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value")
}

/// The authority (`host:port`) of an absolute URL.
pub fn authority_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// A `GET` of an absolute URL through a forward proxy: absolute form, its `Host`, the
/// proxy credentials when given, and `headers`.
pub fn proxied_get(
    url: &str,
    auth: Option<&HeaderValue>,
    headers: &[(&str, &str)],
) -> Result<Request<Full<Bytes>>, Error> {
    let mut builder = Request::get(url).header(HOST, authority_of(url));
    if let Some(auth) = auth {
        builder = builder.header(PROXY_AUTHORIZATION, auth.clone());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Ok(builder.body(Full::new(Bytes::new()))?)
}

/// An HTTP/1.1 client connection over `stream`; the connection is driven by a task.
pub async fn handshake<S>(stream: S) -> Result<Sender, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// TCP (Nagle off) and an HTTP/1.1 client connection to `addr`.
pub async fn connect(addr: SocketAddr) -> Result<Sender, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    handshake(stream).await
}

/// Sends `req` and reads the whole answer.
pub async fn exchange(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<Answer, Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// One keep-alive HTTP/1.1 connection that reconnects after it breaks or the server
/// closes it. A request that breaks it is not retried: it fails.
pub struct Conn {
    pub addr: SocketAddr,
    sender: Option<Sender>,
    /// Connections opened after the first one.
    pub reconnects: u64,
    connected_once: bool,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            sender: None,
            reconnects: 0,
            connected_once: false,
        }
    }

    /// Sends `req`, failing when no answer came within `timeout`.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let result = match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs()).into()),
        };
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// A `GET` of `url` through this connection's forward proxy: absolute form, the proxy
    /// credentials `auth` and `headers` ([`proxied_get`]), sent as [`Conn::send`] does.
    pub async fn get_through(
        &mut self,
        url: &str,
        auth: &HeaderValue,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Answer, Error> {
        self.send(proxied_get(url, Some(auth), headers)?, timeout)
            .await
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Error> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => {
                if self.connected_once {
                    self.reconnects += 1;
                }
                self.connected_once = true;
                self.sender.insert(connect(self.addr).await?)
            }
        };
        exchange(sender, req).await
    }

    /// A call in origin form to a JSON API on this connection's host (the admin API, the
    /// stub merchant's record).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<Answer, Error> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string());
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let body = Bytes::from(body.unwrap_or_default().to_string());
        let req = builder.body(Full::new(body))?;
        self.send(req, Duration::from_secs(60)).await
    }
}
