//! Protocol abuse against the running proxy: request smuggling, slowloris, HTTP/2 rapid
//! reset, idle connection floods, `CONNECT` to places an agent must not reach, and
//! payments over uninspected tunnels. For each, the real binary on loopback answers or
//! closes sensibly, the origin receives nothing it should not (checked on what it
//! actually received), and a normal request is served afterwards.
//!
//! No assertion is about how fast something happens; things that must happen
//! eventually get generous deadlines.

mod support;

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
use support::{
    connect_tunnel, crafted_payment, curl_async, pay, send_over, tls_connect, Purser, PurserOptions,
};
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
        let (status, tunnel) = connect_tunnel(purser.proxy, &authority, None).await;
        assert_eq!(status, 200);
        let mut tls = tls_connect(
            tunnel.unwrap(),
            "localhost",
            &purser.ca_pem(),
            &[b"http/1.1"],
        )
        .await
        .unwrap();
        tls.write_all(request.as_bytes()).await.unwrap();
        let answer = String::from_utf8_lossy(&read_until_closed(&mut tls).await).into_owned();
        assert_eq!(statuses(&answer), expected, "{label}: {answer}");
    }
    let paths: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/framed"], "nothing smuggled, nothing malformed");
    assert_still_serving(&purser, &Origin::plain().await).await;
}

// --- Slowloris ----------------------------------------------------------------------

/// Sends `head` one byte per `pause` until Purser closes the connection; returns how many
/// bytes were sent and what Purser answered.
async fn dribble(proxy: SocketAddr, head: String, pause: Duration) -> (usize, String) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move { read_until_closed(&mut reader).await });
    let mut sent = 0;
    for byte in head.as_bytes() {
        if reading.is_finished() || writer.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(pause).await;
    }
    let answer = reading.await.unwrap();
    (sent, String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_by_the_header_timeout() {
    let origin = Origin::plain().await;
    let purser = start(ANONYMOUS, &["--header-timeout", "1"], None);
    let host = format!("127.0.0.1:{}", origin.port());
    // At 50 ms a byte this head would take over a minute to send.
    let padding: String = (0..60)
        .map(|i| format!("X-Pad-{i}: slowloris\r\n"))
        .collect();
    let head = format!("GET http://{host}/dribbled HTTP/1.1\r\nHost: {host}\r\n{padding}\r\n");
    let dribblers: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(dribble(
                purser.proxy,
                head.clone(),
                Duration::from_millis(50),
            ))
        })
        .collect();
    // While they dribble, other agents are served.
    assert_still_serving(&purser, &origin).await;
    for dribbler in dribblers {
        let (sent, answer) = dribbler.await.unwrap();
        assert!(
            sent < head.len(),
            "the connection was cut before the head was complete ({sent} of {} bytes)",
            head.len()
        );
        assert!(
            answer.is_empty() || statuses(&answer) == [408],
            "nothing but a timeout answer: {answer}"
        );
    }
    assert!(
        origin.requests().iter().all(|r| r.path != "/dribbled"),
        "no dribbled request reached the origin"
    );
    assert_still_serving(&purser, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_bodies_are_cut_off_by_the_body_idle_timeout() {
    let origin = Origin::plain().await;
    let purser = start(ANONYMOUS, &["--body-idle-timeout", "1"], None);
    let host = format!("127.0.0.1:{}", origin.port());
    const DECLARED: u64 = 100_000;
    let head = format!(
        "POST http://{host}/echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: {DECLARED}\r\n\r\n"
    );
    let stream = TcpStream::connect(purser.proxy).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move { read_until_closed(&mut reader).await });
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(&[b'a'; 100]).await.unwrap();
    // Then a byte every 3 s: each pause is longer than the idle timeout.
    let mut sent = 100u64;
    while !reading.is_finished() && sent < DECLARED {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if writer.write_all(b"a").await.is_err() {
            break;
        }
        sent += 1;
    }
    let answer = String::from_utf8_lossy(&reading.await.unwrap()).into_owned();
    assert!(sent < DECLARED, "the body was cut off");
    // Purser had started forwarding (bodies stream); the stall cuts the request off and
    // the agent is told it was its own body that timed out.
    assert_eq!(statuses(&answer), vec![408], "{answer}");
    assert!(
        answer.contains("x-purser-error: request_timeout"),
        "{answer}"
    );
    assert!(
        origin.requests().iter().all(|r| r.body_len < DECLARED),
        "the origin never got a complete body"
    );
    assert_still_serving(&purser, &origin).await;
}

// --- HTTP/2 rapid reset -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_does_not_reach_the_origin_or_stall_the_proxy() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), true).await;
    let purser = start(ANONYMOUS, &[], Some(&upstream.pki.ca_path));
    let authority = format!("localhost:{}", origin.port());
    let (status, tunnel) = connect_tunnel(purser.proxy, &authority, None).await;
    assert_eq!(status, 200);
    let tls = tls_connect(tunnel.unwrap(), "localhost", &purser.ca_pem(), &[b"h2"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    const STREAMS: usize = 5_000;
    let mut opened = 0;
    let mut client = Some(client);
    while opened < STREAMS {
        let Some(ready) = client.take() else { break };
        let Ok(mut ready) = ready.ready().await else {
            break;
        };
        let request = Request::get(format!("https://{authority}/slow?ms=3000"))
            .body(())
            .unwrap();
        // HEADERS, then RST_STREAM at once: the request is cancelled before an answer.
        match ready.send_request(request, true) {
            Ok((_response, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        opened += 1;
        client = Some(ready);
    }
    drop(client);
    let ended = tokio::time::timeout(DEADLINE, driver)
        .await
        .expect("the h2 connection ends once the client lets go")
        .unwrap();
    let reached = origin.requests().len();
    eprintln!("rapid reset: {opened} streams opened, {reached} reached the origin, the connection ended with {ended:?}");
    match &ended {
        Ok(()) => assert_eq!(opened, STREAMS, "the connection lasted"),
        // hyper's reset-flood protection: GOAWAY with ENHANCE_YOUR_CALM, which the client
        // reads, or which is lost when Purser closes while the client is still writing.
        Err(error) if error.is_go_away() => {
            assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM))
        }
        Err(error) => {
            assert!(error.is_io(), "{error:?}");
            // h2's text for ENHANCE_YOUR_CALM, in Purser's log of why the connection ended.
            wait_for("Purser logs why it closed the connection", || {
                purser
                    .stderr()
                    .contains("detected excessive load generating behavior")
            })
            .await;
        }
    }
    assert!(
        reached < 1_000,
        "cancelled streams must not turn into thousands of origin requests: {reached} of {opened}"
    );
    // A fresh HTTP/2 agent is served.
    let (status, tunnel) = connect_tunnel(purser.proxy, &authority, None).await;
    assert_eq!(status, 200);
    let tls = tls_connect(tunnel.unwrap(), "localhost", &purser.ca_pem(), &[b"h2"])
        .await
        .unwrap();
    let request = Request::get(format!("https://{authority}/after"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, true, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), b"ok");
    assert!(origin.requests().iter().any(|r| r.path == "/after"));
}

// --- Idle connections ---------------------------------------------------------------

/// The soft limit on open files, from `/proc/self/limits` (Purser inherits it).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse().ok())
        })
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_lock_out_new_agents() {
    // Both this process and Purser hold one descriptor per connection; leave room for
    // the other tests running beside this one.
    let count = 3_000.min(open_files_limit().saturating_sub(512) / 2);
    assert!(
        count >= 200,
        "the open-files limit is too low for this test"
    );
    let origin = Origin::plain().await;
    // Every idle connection is let in here (no per-peer cap to speak of), so the test is
    // about the timeouts; the caps have their own tests in `evasion.rs`.
    let purser = start(
        ANONYMOUS,
        &[
            "--header-timeout",
            "30",
            "--first-byte-timeout",
            "30",
            "--max-unauthenticated-per-peer",
            "100000",
        ],
        None,
    );
    let mut idle = Vec::with_capacity(count);
    while idle.len() < count {
        let batch = (count - idle.len()).min(250);
        let opened =
            futures_util::future::join_all((0..batch).map(|_| TcpStream::connect(purser.proxy)))
                .await;
        idle.extend(opened.into_iter().map(|c| c.expect("connect to the proxy")));
        // Each batch is accepted before the next is opened: connections beyond a full
        // accept queue can be established on the client side only (SYN cookies), and
        // Purser could neither serve nor close those.
        let accepted = idle.len() as f64;
        wait_for("Purser accepts the idle connections", || {
            purser.metric("purser_agent_connections_open") >= accepted
        })
        .await;
    }
    // With all of them open and silent, a new agent is served.
    assert_still_serving(&purser, &origin).await;
    // The first-byte timeout closes every one of them.
    let closed = futures_util::future::join_all(idle.iter_mut().map(|stream| async move {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(DEADLINE, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    let still_open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        still_open, 0,
        "idle connections are closed by the first-byte timeout"
    );
    wait_for("Purser's count of open connections falls back", || {
        purser.metric("purser_agent_connections_open") <= 1.0
    })
    .await;
    drop(idle);
    assert_still_serving(&purser, &origin).await;
}

// --- Where an agent may not go ------------------------------------------------------

/// An agent reaching into Purser's own listeners, by every spelling of loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_requests_to_purser_own_listeners_are_refused() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    let admin = purser.admin.port();
    let proxy = purser.proxy.port();
    for target in [
        format!("127.0.0.1:{admin}"),
        format!("localhost:{admin}"),
        format!("0.0.0.0:{admin}"),
        format!("[::ffff:127.0.0.1]:{admin}"),
        format!("127.0.0.1:{proxy}"),
    ] {
        let (status, _) = connect_tunnel(purser.proxy, &target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    // Names that resolve to loopback: `127.1` is not a valid CONNECT host (its last label
    // is numeric), `0x7f000001` is, and is intercepted; the request inside is refused
    // when its address is judged.
    let (status, _) =
        connect_tunnel(purser.proxy, &format!("{LOOPBACK_SHORT}:{admin}"), None).await;
    assert_eq!(status, 400);
    let authority = format!("{LOOPBACK_HEX}:{admin}");
    let (status, tunnel) = connect_tunnel(purser.proxy, &authority, None).await;
    assert_eq!(status, 200, "intercepted");
    let tls = tls_connect(
        tunnel.unwrap(),
        LOOPBACK_HEX,
        &purser.ca_pem(),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let request = Request::get(format!("https://{authority}/v1/sessions"))
        .header("host", &authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, false, request).await;
    assert_eq!(response.status(), 403);
    assert_eq!(purser_error(response.headers()), "forbidden_destination");
    let body = String::from_utf8_lossy(response.body());
    assert!(body.contains("own listener"), "{body}");
    // Absolute-form requests, by literal and by name.
    for host in [
        "127.0.0.1".to_string(),
        "0.0.0.0".to_string(),
        "[::ffff:127.0.0.1]".to_string(),
        LOOPBACK_SHORT.to_string(),
        LOOPBACK_HEX.to_string(),
        "2130706433".to_string(),
    ] {
        let url = format!("http://{host}:{admin}/v1/sessions");
        let (status, headers, body) = absolute(purser.proxy, &url, &[]).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(purser_error(&headers), "forbidden_destination", "{url}");
        assert!(
            !body.contains("\"sessions\""),
            "{url} reached the admin API: {body}"
        );
    }
    // A tunnel host that resolves to the admin listener is refused before the splice.
    let tunnelled = start(
        &format!("{ANONYMOUS}tunnel: ['{LOOPBACK_HEX}']\n"),
        &[],
        None,
    );
    let (status, _) = connect_tunnel(
        tunnelled.proxy,
        &format!("{LOOPBACK_HEX}:{}", tunnelled.admin.port()),
        None,
    )
    .await;
    assert_eq!(status, 403, "spliced CONNECT to the admin listener by name");
    assert_still_serving(&purser, &origin).await;
    assert_still_serving(&tunnelled, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_ports_the_policy_does_not_list_are_refused_by_any_name() {
    let origin = Origin::plain().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let policy = format!(
        "{ANONYMOUS}egress:\n  loopback_ports: [{}]\ntunnel: ['{LOOPBACK_HEX}']\n",
        origin.port()
    );
    let purser = Purser::start(&policy, None);
    for target in [
        format!("127.0.0.1:{closed}"),
        format!("127.0.0.2:{closed}"),
        format!("[::1]:{closed}"),
        format!("[::ffff:127.0.0.1]:{closed}"),
        format!("0.0.0.0:{closed}"),
        format!("localhost:{closed}"),
        // A tunnel host, so spliced: the splice judges the address it connects to.
        format!("{LOOPBACK_HEX}:{closed}"),
    ] {
        let (status, _) = connect_tunnel(purser.proxy, &target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    for host in [
        LOOPBACK_SHORT,
        LOOPBACK_HEX,
        "2130706433",
        "[::ffff:7f00:1]",
    ] {
        let url = format!("http://{host}:{closed}/");
        let (status, headers, body) = absolute(purser.proxy, &url, &[]).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(purser_error(&headers), "forbidden_destination", "{url}");
        assert!(body.contains("loopback_ports"), "{url}: {body}");
    }
    // The listed port is reachable, by name as by address.
    let url = format!("http://{LOOPBACK_SHORT}:{}/by-name", origin.port());
    let (status, _, body) = absolute(purser.proxy, &url, &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{url}");
    assert_eq!(origin.requests().len(), 1);
    assert_still_serving(&purser, &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_local_metadata_is_refused_unless_the_policy_allows_it() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    for target in [
        "169.254.169.254:80".to_string(),
        "169.254.0.1:443".to_string(),
        "[::ffff:169.254.169.254]:80".to_string(),
        "[fe80::1]:443".to_string(),
    ] {
        let (status, _) = connect_tunnel(purser.proxy, &target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    // By name: intercepted, and the request inside is refused at connection time.
    let authority = format!("{METADATA_HEX}:443");
    let (status, tunnel) = connect_tunnel(purser.proxy, &authority, None).await;
    assert_eq!(status, 200, "intercepted");
    let tls = tls_connect(
        tunnel.unwrap(),
        METADATA_HEX,
        &purser.ca_pem(),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let request = Request::get(format!("https://{METADATA_HEX}/latest/meta-data/"))
        .header("host", METADATA_HEX)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, false, request).await;
    assert_eq!(response.status(), 403);
    assert_eq!(purser_error(response.headers()), "forbidden_destination");
    for host in [
        "169.254.169.254",
        "[::ffff:169.254.169.254]",
        METADATA_SHORT,
        METADATA_HEX,
    ] {
        let url = format!("http://{host}/latest/meta-data/");
        let (status, headers, body) = absolute(purser.proxy, &url, &[]).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(purser_error(&headers), "forbidden_destination", "{url}");
        assert!(body.contains("link-local"), "{url}: {body}");
    }
    assert_still_serving(&purser, &origin).await;
    // The policy may allow it: then the CONNECT is not refused (it is intercepted).
    let allowing = Purser::start(
        &format!("{ANONYMOUS}egress:\n  allow_link_local: true\n"),
        None,
    );
    let (status, _) = connect_tunnel(allowing.proxy, "169.254.169.254:80", None).await;
    assert_eq!(status, 200, "allowed by egress.allow_link_local");
}

// --- Payments over tunnels ----------------------------------------------------------

const PAYING: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 100.00
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_payment_to_an_untrusted_tunnel_host_is_refused() {
    let origin = Origin::plain().await;
    let purser = Purser::start(&format!("{PAYING}tunnel: ['127.0.0.1']\n"), None);
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let credentials = support::basic("agent.s", "t0ken");
    let payment = crafted_payment(1, 1000);
    for header in ["PAYMENT-SIGNATURE", "X-PAYMENT"] {
        let (status, headers, body) = absolute(
            purser.proxy,
            &url,
            &[
                ("proxy-authorization", credentials.as_str()),
                (header, payment.as_str()),
            ],
        )
        .await;
        assert_eq!(status, 403, "{header}: {body}");
        assert_eq!(purser_error(&headers), "tunnel_untrusted", "{header}");
        assert!(
            body.contains("trust_payments"),
            "the reason says how to allow it: {body}"
        );
    }
    assert!(
        origin.requests().is_empty(),
        "no payment reached the tunnel host"
    );
    // Reads to the same host pass.
    let (status, _, body) = absolute(
        purser.proxy,
        &url,
        &[("proxy-authorization", credentials.as_str())],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(origin.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_tunnel_host_takes_payments_through_the_usual_decision() {
    let origin = Origin::plain().await;
    let purser = Purser::start(
        &format!("{PAYING}tunnel:\n  - {{host: '127.0.0.1', trust_payments: true}}\n"),
        None,
    );
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let (status, body) = pay(&purser, "s", &url, &crafted_payment(1, 1000));
    assert_eq!(status, 200, "{body}");
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.contains_key("payment-signature"));
    let decisions: Vec<_> = purser
        .trace_lines()
        .into_iter()
        .filter(|line| line["decision"].is_string())
        .collect();
    assert!(
        decisions.iter().any(|line| line["decision"] == "ALLOWED"),
        "the engine decided it: {decisions:?}"
    );
}

/// A raw TCP host that records what it receives on each connection and echoes it back.
struct RawHost {
    port: u16,
    accepted: Arc<AtomicUsize>,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
    finished: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawHost {
    async fn start() -> RawHost {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let finished = Arc::new(AtomicUsize::new(0));
        let (a, r, f) = (accepted.clone(), received.clone(), finished.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (r, f) = (r.clone(), f.clone());
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        r.lock().unwrap().extend_from_slice(&buffer[..n]);
                        if stream.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawHost {
            port,
            accepted,
            received,
            finished,
            task,
        }
    }
}

impl Drop for RawHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PLAINTEXT_PAYMENT: &str =
    "POST /pay HTTP/1.1\r\nHost: 127.0.0.1\r\nX-PAYMENT: eyJ4NDAyVmVyc2lvbiI6MX0=\r\nContent-Length: 0\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_inside_a_splice_to_an_untrusted_tunnel_host_is_refused() {
    let host = RawHost::start().await;
    let purser = Purser::start(&format!("{ANONYMOUS}tunnel: ['127.0.0.1']\n"), None);
    let (status, tunnel) =
        connect_tunnel(purser.proxy, &format!("127.0.0.1:{}", host.port), None).await;
    assert_eq!(status, 200);
    let mut tunnel = tunnel.unwrap();
    tunnel
        .write_all(PLAINTEXT_PAYMENT.as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut tunnel).await).into_owned();
    assert_eq!(statuses(&answer), vec![403], "{answer}");
    assert!(
        answer.contains("x-purser-error: tunnel_untrusted"),
        "{answer}"
    );
    assert!(answer.contains("trust_payments"), "{answer}");
    // Purser connected first (a dead host is a 502) but passed nothing on, and has let go.
    wait_for("Purser closes its side of the refused splice", || {
        host.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(host.accepted.load(Ordering::SeqCst), 1);
    assert!(
        host.received.lock().unwrap().is_empty(),
        "no byte crossed the tunnel"
    );
    // TLS still crosses an untrusted tunnel: the splice is opaque by the operator's choice.
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), false).await;
    let tls_purser = Purser::start(&format!("{ANONYMOUS}tunnel: ['localhost']\n"), None);
    let authority = format!("localhost:{}", origin.port());
    let (status, tunnel) = connect_tunnel(tls_purser.proxy, &authority, None).await;
    assert_eq!(status, 200);
    let tls = tls_connect(
        tunnel.unwrap(),
        "localhost",
        &upstream.pki.ca_path,
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let request = Request::get(format!("https://{authority}/inside"))
        .header("host", &authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send_over(tls, false, request).await.status(), 200);
    assert_eq!(origin.requests()[0].path, "/inside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_tunnel_host_splices_whatever_the_agent_sends() {
    let host = RawHost::start().await;
    let purser = Purser::start(
        &format!("{ANONYMOUS}tunnel:\n  - {{host: '127.0.0.1', trust_payments: true}}\n"),
        None,
    );
    let (status, tunnel) =
        connect_tunnel(purser.proxy, &format!("127.0.0.1:{}", host.port), None).await;
    assert_eq!(status, 200);
    let mut tunnel = tunnel.unwrap();
    tunnel
        .write_all(PLAINTEXT_PAYMENT.as_bytes())
        .await
        .unwrap();
    let mut echoed = vec![0u8; PLAINTEXT_PAYMENT.len()];
    tokio::time::timeout(DEADLINE, tunnel.read_exact(&mut echoed))
        .await
        .expect("the host echoes through the splice")
        .unwrap();
    assert_eq!(echoed, PLAINTEXT_PAYMENT.as_bytes());
    assert_eq!(
        host.received.lock().unwrap().as_slice(),
        PLAINTEXT_PAYMENT.as_bytes()
    );
}
