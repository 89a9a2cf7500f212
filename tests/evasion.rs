//! Hostile agents with valid credentials trying to get a payment past the decision, or
//! to starve every other agent (issue 15, classes 2, 3, 7 and 11):
//!
//! * [`upgrades`]: protocol switches other than WebSocket (`h2c`, `HTTP2-Settings`);
//! * [`spellings`]: payment, receipt and control headers spelt with `_` (a CGI/WSGI
//!   merchant reads `PAYMENT_SIGNATURE` as `PAYMENT-SIGNATURE`), and two payments in one;
//! * [`credentials`]: payments Purser cannot read: MPP and L402 credentials, x402 and
//!   MPP over MCP (JSON-RPC bodies), unpriceable schemes;
//! * [`connections`]: connections that never authenticate, against a connection cap.
//!
//! Everything goes through the real binary on loopback: absolute-form HTTP/1.1, HTTP/1.1
//! and HTTP/2 inside intercepted TLS, plaintext inside `CONNECT`, and raw bytes. Origins
//! record what actually reached them. No assertion is about how fast anything happens.

mod support;

#[path = "evasion/connections.rs"]
mod connections;
#[path = "evasion/credentials.rs"]
mod credentials;
#[path = "evasion/spellings.rs"]
mod spellings;
#[path = "evasion/upgrades.rs"]
mod upgrades;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::origin::Origin;
use support::pki::{upstream_pki, UpstreamPki};
use support::{connect_tunnel, send_over, Purser, PurserOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Payments only in COMMIT: a new session (EXPLORE) has every payment refused, so any
/// payment that reaches an origin from one went around the decision.
pub(crate) const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
budget:
  session_limit: 100.00
"#;

/// How long anything that must happen eventually may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// `Proxy-Authorization` for `agent.SESSION`.
pub(crate) fn agent(session: &str) -> String {
    support::basic(&format!("agent.{session}"), "t0ken")
}

/// The ways into Purser a request can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Absolute-form `http://` to the proxy listener.
    Plain,
    /// Plaintext HTTP/1.1 inside `CONNECT`.
    PlainTunnel,
    /// HTTP/1.1 inside intercepted TLS.
    Tls1,
    /// HTTP/2 inside intercepted TLS.
    Tls2,
}

/// Every [`Path`], for tests that try each way in.
pub(crate) const EVERY_PATH: [Path; 4] = [Path::Plain, Path::PlainTunnel, Path::Tls1, Path::Tls2];

/// Purser with a plain and a TLS origin behind it.
pub(crate) struct Rig {
    /// Purser, running the test's policy and trusting the test PKI for upstream TLS.
    pub(crate) purser: Purser,
    /// The plain HTTP origin.
    pub(crate) plain: Origin,
    /// The TLS origin, its certificate signed by the test PKI.
    pub(crate) tls: Origin,
    _pki: UpstreamPki,
}

impl Rig {
    /// Starts both origins, then Purser with `policy` and the extra `purser run` arguments.
    pub(crate) async fn start(policy: &str, extra: &[&str]) -> Rig {
        let pki = upstream_pki();
        let tls = Origin::tls(pki.pki.server_cert(&[]), true).await;
        let plain = Origin::plain().await;
        let mut options = PurserOptions::new(policy);
        options.upstream_ca = Some(&pki.pki.ca_path);
        options.extra_args = extra.iter().map(|s| s.to_string()).collect();
        let purser = Purser::start_with(options);
        Rig {
            purser,
            plain,
            tls,
            _pki: pki,
        }
    }

    /// Everything both origins received.
    pub(crate) fn received(&self) -> Vec<support::origin::Recorded> {
        let mut all = self.plain.requests();
        all.extend(self.tls.requests());
        all
    }

    /// Sends one request on `path` as `agent.SESSION`, collecting the answer.
    pub(crate) async fn send(
        &self,
        path: Path,
        session: &str,
        method: &str,
        route: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Bytes> {
        let authority = match path {
            Path::Plain | Path::PlainTunnel => format!("127.0.0.1:{}", self.plain.port()),
            Path::Tls1 | Path::Tls2 => format!("localhost:{}", self.tls.port()),
        };
        let uri = match path {
            Path::Plain => format!("http://{authority}{route}"),
            Path::PlainTunnel => route.to_string(),
            Path::Tls1 | Path::Tls2 => format!("https://{authority}{route}"),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if path != Path::Tls2 {
            builder = builder.header("host", &authority);
        }
        if path == Path::Plain {
            builder = builder.header("proxy-authorization", agent(session));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).expect("request");
        match path {
            Path::Plain => {
                let tcp = TcpStream::connect(self.purser.proxy).await.unwrap();
                send_over(tcp, false, request).await
            }
            Path::PlainTunnel => {
                let tunnel = self.tunnel(&authority, session).await;
                send_over(tunnel, false, request).await
            }
            Path::Tls1 | Path::Tls2 => {
                let http2 = path == Path::Tls2;
                let alpn: &[&[u8]] = if http2 { &[b"h2"] } else { &[b"http/1.1"] };
                let credentials = agent(session);
                let tls = self
                    .purser
                    .intercept(&authority, Some(&credentials), alpn)
                    .await;
                send_over(tls, http2, request).await
            }
        }
    }

    async fn tunnel(
        &self,
        authority: &str,
        session: &str,
    ) -> hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {
        let (status, tunnel) =
            connect_tunnel(self.purser.proxy, authority, Some(&agent(session))).await;
        assert_eq!(status, 200, "CONNECT {authority}");
        tunnel.expect("tunnel")
    }
}

/// The proof log's decision lines for `agent.SESSION`.
pub(crate) fn decisions(purser: &Purser, session: &str) -> Vec<serde_json::Value> {
    let session = format!("agent.{session}");
    purser
        .trace_lines()
        .into_iter()
        .filter(|line| line["kind"] == "decision" && line["session"] == session.as_str())
        .collect()
}

/// The JSON body of an answer.
pub(crate) fn json(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap_or_else(|_| {
        panic!(
            "{} answered a non-JSON body: {}",
            response.status(),
            String::from_utf8_lossy(response.body())
        )
    })
}

/// `X-Purser-Error` of an answer, or "".
pub(crate) fn purser_error(response: &Response<Bytes>) -> String {
    response
        .headers()
        .get("x-purser-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Reads until the peer closes (or resets) the connection; bounded by [`DEADLINE`].
pub(crate) async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    support::read_until_closed(stream, DEADLINE).await
}

/// Reads until an answer's head has arrived or the peer closes; bounded by [`DEADLINE`].
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, async {
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    answer
}

/// The status line's code of a raw HTTP/1.1 answer, 0 if there is none.
pub(crate) fn raw_status(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A raw TCP origin: records every connection's bytes, and answers the first request
/// head on each with a canned answer (then keeps recording whatever follows, as a
/// spliced connection would deliver it).
pub(crate) struct RawOrigin {
    /// Where it listens, on loopback.
    pub(crate) addr: SocketAddr,
    /// The bytes each connection delivered, one entry per connection in accept order.
    pub(crate) connections: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    /// Listens on a free loopback port and answers each connection's first request
    /// head with `answer`.
    pub(crate) async fn start(answer: Vec<u8>) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let record = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let index = {
                    let mut all = record.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let record = record.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let mut answered = false;
                    while let Ok(n) = tcp.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let seen = {
                            let mut all = record.lock().unwrap();
                            all[index].extend_from_slice(&buffer[..n]);
                            all[index].clone()
                        };
                        if !answered && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            answered = true;
                            if tcp.write_all(&answer).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        RawOrigin {
            addr,
            connections,
            task,
        }
    }

    /// Everything received, all connections joined.
    pub(crate) fn received(&self) -> Vec<u8> {
        self.connections.lock().unwrap().concat()
    }
}
