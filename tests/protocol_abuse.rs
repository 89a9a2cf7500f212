//! Protocol abuse against the running proxy: request smuggling, slowloris, HTTP/2 rapid
//! reset, idle connection floods, `CONNECT` to places an agent must not reach, and
//! payments over uninspected tunnels. For each, the real binary on loopback answers or
//! closes sensibly, the origin receives nothing it should not (checked on what it
//! actually received), and a normal request is served afterwards.
//!
//! Request smuggling is here; [`slow`] has slowloris, rapid reset and idle floods,
//! [`egress`] the places an agent must not reach, [`tunnels`] payments over tunnels.
//!
//! No assertion is about how fast something happens; things that must happen
//! eventually get generous deadlines.

mod support;

#[path = "protocol_abuse/egress.rs"]
mod egress;
#[path = "protocol_abuse/slow.rs"]
mod slow;
#[path = "protocol_abuse/tunnels.rs"]
mod tunnels;

use bytes::Bytes;
use http::{header, HeaderMap, Request};
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::origin::Origin;
use support::pki::upstream_pki;
use support::{connect_tunnel, crafted_payment, curl_async, pay, send_over, Purser, PurserOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANONYMOUS: &str = "anonymous: {}\n";

/// How long anything that must happen eventually may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// Names `getaddrinfo` resolves without DNS (the inet_aton forms of an IPv4 address) and
/// that Rust does not parse as addresses, so they reach Purser as host names: each is a
/// name that resolves to loopback or to the metadata address on any machine.
const LOOPBACK_SHORT: &str = "127.1";
const LOOPBACK_HEX: &str = "0x7f000001";
const METADATA_SHORT: &str = "169.254.43518";
const METADATA_HEX: &str = "0xa9fea9fe";

fn start(policy: &str, extra: &[&str], upstream_ca: Option<&Path>) -> Purser {
    let mut options = PurserOptions::new(policy);
    options.extra_args = extra.iter().map(|s| s.to_string()).collect();
    options.upstream_ca = upstream_ca;
    Purser::start_with(options)
}

/// A normal read through the proxy: must be answered by the origin.
async fn assert_still_serving(purser: &Purser, origin: &Origin) {
    let before = origin.requests().len();
    let output = curl_async(vec![
        "-x".into(),
        purser.proxy_url(None),
        format!("http://127.0.0.1:{}/normal", origin.port()),
    ])
    .await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok",
        "a normal request is still served: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        purser.stderr()
    );
    assert_eq!(origin.requests().len(), before + 1);
}

/// Reads until the peer closes (or resets) the connection.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    support::read_until_closed(stream, DEADLINE).await
}

/// Sends `bytes` on a fresh connection to the proxy and reads until Purser closes it.
async fn raw_exchange(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    // Purser may answer and close before reading everything; that is fine.
    let _ = stream.write_all(bytes).await;
    String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned()
}

/// The status codes of every response in a raw HTTP/1.1 exchange, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("\r\n")
        .filter_map(|line| line.strip_prefix("HTTP/1.1 "))
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

/// An absolute-form request through the proxy, sent by hyper (curl would rewrite
/// numeric host names like `127.1` before Purser saw them).
async fn absolute(
    proxy: SocketAddr,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::new())).unwrap();
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let response = send_over(tcp, false, request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = String::from_utf8_lossy(response.body()).into_owned();
    (status, headers, body)
}

fn purser_error(headers: &HeaderMap) -> &str {
    headers
        .get("x-purser-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- Request smuggling --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_is_refused_or_neutralised_and_nothing_is_smuggled() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    let host = format!("127.0.0.1:{}", origin.port());
    let smuggled = format!("GET http://{host}/smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");

    // Both framings at once: hyper frames the body by Transfer-Encoding alone, drops the
    // Content-Length, and closes the connection after its answer (RFC 9112 §6.1), so the
    // bytes after the chunked body are never read as a second request.
    for (label, framing) in [
        (
            "CL then TE",
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
        ),
    ] {
        let request = format!(
            "POST http://{host}/framed HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n0\r\n\r\n{smuggled}"
        );
        let answer = raw_exchange(purser.proxy, request.as_bytes()).await;
        assert_eq!(
            statuses(&answer),
            vec![200],
            "{label}: one answer, then the connection is closed: {answer}"
        );
    }
    let seen = origin.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/framed", "/framed"],
        "the smuggled request never reached the origin"
    );
    for request in &seen {
        assert_eq!(request.body_len, 0, "the body was the empty chunked one");
        assert!(
            !(request.headers.contains_key(header::CONTENT_LENGTH)
                && request.headers.contains_key(header::TRANSFER_ENCODING)),
            "the origin never sees conflicting framing: {:?}",
            request.headers
        );
    }

    // Framing that cannot be read one way only: 400, connection closed, nothing forwarded.
    let cases = [
        (
            "differing duplicate Content-Length",
            "HTTP/1.1",
            "Content-Length: 5\r\nContent-Length: 40\r\n",
            "hello",
        ),
        (
            "Content-Length list",
            "HTTP/1.1",
            "Content-Length: 5, 40\r\n",
            "hello",
        ),
        (
            "signed Content-Length",
            "HTTP/1.1",
            "Content-Length: +5\r\n",
            "hello",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            "HTTP/1.1",
            "Transfer-Encoding: chunked, identity\r\n",
            "0\r\n\r\n",
        ),
        (
            "unknown Transfer-Encoding",
            "HTTP/1.1",
            "Transfer-Encoding: xchunked\r\n",
            "0\r\n\r\n",
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "HTTP/1.0",
            "Transfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        (
            "obs-fold",
            "HTTP/1.1",
            "X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
            "hello",
        ),
        (
            "obs-folded Transfer-Encoding",
            "HTTP/1.1",
            "Transfer-Encoding:\r\n chunked\r\n",
            "0\r\n\r\n",
        ),
        (
            "whitespace before the colon",
            "HTTP/1.1",
            "Content-Length : 5\r\n",
            "hello",
        ),
    ];
    for (label, version, framing, body) in cases {
        let request = format!(
            "POST http://{host}/malformed {version}\r\nHost: {host}\r\n{framing}\r\n{body}{smuggled}"
        );
        let answer = raw_exchange(purser.proxy, request.as_bytes()).await;
        let reply = if version == "HTTP/1.0" {
            answer.replacen("HTTP/1.0 ", "HTTP/1.1 ", 1)
        } else {
            answer.clone()
        };
        assert_eq!(
            statuses(&reply),
            vec![400],
            "{label}: refused, then the connection is closed: {answer}"
        );
    }
    assert_eq!(
        origin.requests().len(),
        2,
        "neither a malformed nor a smuggled request reached the origin"
    );
    assert_still_serving(&purser, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_inside_intercepted_tls_is_neutralised_too() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), false).await;
    let purser = start(ANONYMOUS, &[], Some(&upstream.pki.ca_path));
    let authority = format!("localhost:{}", origin.port());
    let smuggle = [
        (
            "CL then TE",
            format!("POST /framed HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
            vec![200],
        ),
        (
            "differing duplicate Content-Length",
            format!("POST /malformed HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
            vec![400],
        ),
    ];
    for (label, request, expected) in smuggle {
        let mut tls = purser.intercept(&authority, None, &[b"http/1.1"]).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let answer = String::from_utf8_lossy(&read_until_closed(&mut tls).await).into_owned();
        assert_eq!(statuses(&answer), expected, "{label}: {answer}");
    }
    let paths: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/framed"], "nothing smuggled, nothing malformed");
    assert_still_serving(&purser, &Origin::plain().await).await;
}
