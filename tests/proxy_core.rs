//! The proxy core end to end: the real binary on loopback, real curl, real TLS, and
//! origins that record what actually reached them.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use support::origin::Origin;
use support::pki::{upstream_pki, TestPki};
use support::{basic, connect_tunnel, curl_async, send_over, Purser, PurserOptions, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const AGENTS: &str = "agents:\n  bot:\n    token: s3cret\n";
const ANONYMOUS: &str = "anonymous:\n  agent: anon\n  session: shared\n";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Splits curl `-D -` output into (status line, headers+body text).
fn status_of(output: &std::process::Output) -> u16 {
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .rfind(|line| line.starts_with("HTTP/"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no status in curl output: {text} / {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_reaches_the_origin_without_proxy_credentials_or_hop_headers() {
    let origin = Origin::plain().await;
    let purser = Purser::start(AGENTS, None);
    let url = format!("http://127.0.0.1:{}/echo?x=1", origin.port());
    let output = curl_async(args(&[
        "-D",
        "-",
        "-x",
        &purser.proxy_url(Some(("bot.s1", "s3cret"))),
        "-H",
        "X-Agent-Note: hello",
        "-H",
        "Connection: x-hop",
        "-H",
        "X-Hop: secret",
        "--data-binary",
        "payload-123",
        &url,
    ]))
    .await;
    assert_eq!(status_of(&output), 200);
    assert!(stdout(&output).ends_with("payload-123"));
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/echo");
    assert_eq!(request.body_prefix, b"payload-123");
    assert_eq!(request.headers["x-agent-note"], "hello");
    assert_eq!(
        request.headers["host"],
        format!("127.0.0.1:{}", origin.port()).as_str()
    );
    for banned in [
        "proxy-authorization",
        "proxy-connection",
        "x-hop",
        "connection",
        "keep-alive",
    ] {
        assert!(
            !request.headers.contains_key(banned),
            "{banned} reached the origin"
        );
    }
    assert!(
        support::eventually(|| purser.stderr().contains("bot.s1")).await,
        "requests are logged with their session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_intercepted_with_curl_over_http1_and_http2() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), true).await;
    let purser = Purser::start(AGENTS, Some(&upstream.pki.ca_path));
    let ca = purser.ca_pem().display().to_string();
    let url = format!("https://localhost:{}/echo", origin.port());
    for (flag, expected_version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let output = curl_async(args(&[
            "-x",
            &purser.proxy_url(Some(("bot.s2", "s3cret"))),
            "--cacert",
            &ca,
            flag,
            "-w",
            "\n%{http_code} %{http_version}",
            "--data-binary",
            "secret-body",
            &url,
        ]))
        .await;
        let text = stdout(&output);
        assert!(
            text.ends_with(&format!("secret-body\n200 {expected_version}")),
            "{text} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.body_prefix, b"secret-body");
        assert!(!request.headers.contains_key("proxy-authorization"));
        // The origin offers h2, so Purser's upstream leg uses it whatever the agent spoke.
        assert_eq!(request.version, Version::HTTP_2);
    }
    assert_eq!(purser.metric("purser_leaf_certs_minted_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_through_mitm_reaches_an_http1_only_origin() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), false).await;
    let purser = Purser::start(AGENTS, Some(&upstream.pki.ca_path));
    let authority = format!("localhost:{}", origin.port());
    let tls = purser
        .intercept(&authority, Some(&basic("bot", "s3cret")), &[b"h2"])
        .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let request = Request::post(format!("https://{authority}/echo"))
        .header("x-h2-client", "yes")
        .body(Full::new(Bytes::from_static(b"over-h2")))
        .unwrap();
    let response = send_over(tls, true, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), b"over-h2");
    let seen = origin.requests();
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].headers["x-h2-client"], "yes");
    assert_eq!(seen[0].headers["host"], authority.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_download_streams_without_growing_memory() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    let baseline_kb = purser.memory_kb("VmRSS:");
    let tcp = TcpStream::connect(purser.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    const SIZE: u64 = 200 * 1024 * 1024;
    let request = Request::get(format!("http://127.0.0.1:{}/bytes?n={SIZE}", origin.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, SIZE);
    let peak_kb = purser.memory_kb("VmHWM:");
    let growth_kb = peak_kb.saturating_sub(baseline_kb);
    assert!(
        growth_kb < 16 * 1024,
        "memory grew by {growth_kb} kB while streaming 200 MB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_intact_through_interception() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), true).await;
    let purser = Purser::start(ANONYMOUS, Some(&upstream.pki.ca_path));
    let authority = format!("localhost:{}", origin.port());
    let tls = purser.intercept(&authority, None, &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    const CHUNKS: usize = 1024; // 64 MiB in 64 KiB chunks
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..CHUNKS {
        hasher.update(&chunk);
    }
    let expected = format!("{} {:x}", CHUNKS * chunk.len(), hasher.finalize());
    let chunk = Bytes::from(chunk);
    let frames = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let request = Request::post(format!("https://{authority}/digest"))
        .header("host", &authority)
        .body(StreamBody::new(frames))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_interception() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), false).await;
    let purser = Purser::start(AGENTS, Some(&upstream.pki.ca_path));
    let authority = format!("localhost:{}", origin.port());
    let tls = purser
        .intercept(&authority, Some(&basic("bot.ws", "s3cret")), &[b"http/1.1"])
        .await;
    let (mut socket, response) =
        tokio_tungstenite::client_async(format!("wss://{authority}/ws"), tls)
            .await
            .expect("websocket handshake through purser");
    assert_eq!(response.status(), 101);
    for text in ["ping-1", "ping-2"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap().into_data().as_ref(),
        &[0u8, 1, 2, 255]
    );
    let seen = origin.requests();
    assert_eq!(seen[0].path, "/ws");
    assert!(!seen[0].headers.contains_key("proxy-authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_unknown_credentials_get_407_and_nothing_is_forwarded() {
    let origin = Origin::plain().await;
    let purser = Purser::start(AGENTS, None);
    let url = format!("http://127.0.0.1:{}/", origin.port());
    let cases = [
        purser.proxy_url(None),
        purser.proxy_url(Some(("bot", "wrong"))),
        purser.proxy_url(Some(("mallory", "s3cret"))),
    ];
    for proxy in cases {
        let output = curl_async(args(&["-D", "-", "-x", &proxy, &url])).await;
        assert_eq!(status_of(&output), 407);
        assert!(stdout(&output)
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic"));
    }
    let (status, _) =
        connect_tunnel(purser.proxy, &format!("localhost:{}", origin.port()), None).await;
    assert_eq!(status, 407);
    assert!(origin.requests().is_empty());
    assert_eq!(origin.connections.load(Ordering::SeqCst), 0);
    assert_eq!(purser.metric("purser_proxy_auth_failures_total"), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_use_the_anonymous_session() {
    let origin = Origin::plain().await;
    let purser = Purser::start(ANONYMOUS, None);
    let output = curl_async(args(&[
        "-D",
        "-",
        "-x",
        &purser.proxy_url(None),
        &format!("http://127.0.0.1:{}/", origin.port()),
    ]))
    .await;
    assert_eq!(status_of(&output), 200);
    assert_eq!(origin.requests().len(), 1);
    // The log is written by a background thread: wait for the line rather than race it.
    assert!(support::eventually(|| purser.stderr().contains("anon.shared")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_that_cannot_be_intercepted_are_refused() {
    let purser = Purser::start(ANONYMOUS, None);
    // Purser's own admin listener is never reachable through the proxy.
    let (status, _) = connect_tunnel(purser.proxy, &purser.admin.to_string(), None).await;
    assert_eq!(status, 403);
    // No port: not a CONNECT target.
    let (status, _) = connect_tunnel(purser.proxy, "localhost", None).await;
    assert_eq!(status, 400);
    // An agent that opens the tunnel with neither TLS nor HTTP is cut off; nothing
    // reaches the target. (Plaintext HTTP is served: tests/connect_plaintext.rs.)
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let listener_task = tokio::spawn(async move {
        while raw.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (status, tunnel) = connect_tunnel(purser.proxy, &format!("127.0.0.1:{port}"), None).await;
    assert_eq!(status, 200);
    let mut plain = tunnel.unwrap();
    let _ = plain.write_all(b"\x00\x01uninspected bytes\r\n\r\n").await;
    let _ = plain.flush().await;
    // Purser answers with nothing (or at most a TLS alert record, type 0x15), then closes.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        plain.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the tunnel must be closed");
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "unexpected answer: {answer:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "plaintext must not be tunnelled blind"
    );
    listener_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_hosts_are_spliced_with_the_origin_certificate() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), false).await;
    let purser = Purser::start("anonymous: {}\ntunnel: ['localhost']\n", None);
    let authority = format!("localhost:{}", origin.port());
    // Only the origin's own CA is trusted here: success proves Purser did not intercept.
    let tls = purser
        .tls_tunnel(&authority, None, &upstream.pki.ca_path, &[b"http/1.1"])
        .await;
    let request = Request::get(format!("https://{authority}/spliced"))
        .header("host", &authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, false, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(origin.requests()[0].path, "/spliced");
    assert_eq!(purser.metric("purser_leaf_certs_minted_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_answer_502_with_a_plain_reason() {
    let upstream = upstream_pki();
    let untrusted = {
        let dir = TempDir::new("rogue");
        let rogue = TestPki::new(dir.path(), "rogue");
        Origin::tls(rogue.server_cert(&[]), false).await
    };
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let purser = Purser::start(ANONYMOUS, Some(&upstream.pki.ca_path));
    let ca = purser.ca_pem().display().to_string();
    let proxy = purser.proxy_url(None);
    let cases = [
        (
            format!("http://127.0.0.1:{closed_port}/"),
            "upstream_refused",
            "refused",
        ),
        (
            "http://no-such-host.invalid/".to_string(),
            "upstream_dns",
            "resolve",
        ),
        (
            format!("https://localhost:{}/", untrusted.port()),
            "upstream_tls",
            "TLS",
        ),
    ];
    for (url, code, words) in cases {
        let output = curl_async(args(&["-D", "-", "-x", &proxy, "--cacert", &ca, &url])).await;
        let text = stdout(&output);
        assert_eq!(status_of(&output), 502, "{url}: {text}");
        assert!(
            text.contains(&format!("x-purser-error: {code}")),
            "{url}: {text}"
        );
        assert!(text.contains(words), "{url}: {text}");
    }
    assert!(untrusted.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_to_a_new_host_mint_one_certificate() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), true).await;
    let purser = Arc::new(Purser::start(ANONYMOUS, Some(&upstream.pki.ca_path)));
    let authority = format!("localhost:{}", origin.port());
    let tasks: Vec<_> = (0..24)
        .map(|index| {
            let authority = authority.clone();
            let purser = purser.clone();
            tokio::spawn(async move {
                let tls = purser.intercept(&authority, None, &[b"http/1.1"]).await;
                let request = Request::get(format!("https://{authority}/n{index}"))
                    .header("host", &authority)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                send_over(tls, false, request).await.status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(origin.requests().len(), 24);
    assert_eq!(purser.metric("purser_leaf_certs_minted_total"), 1.0);
    assert_eq!(purser.metric("purser_leaf_cache_hits_total"), 23.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_inside_a_tunnel_for_another_host_is_misdirected() {
    let upstream = upstream_pki();
    let origin = Origin::tls(upstream.pki.server_cert(&[]), false).await;
    let purser = Purser::start(ANONYMOUS, Some(&upstream.pki.ca_path));
    let authority = format!("localhost:{}", origin.port());
    let tls = purser.intercept(&authority, None, &[b"http/1.1"]).await;
    let request = Request::get("/")
        .header("host", "paid.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send_over(tls, false, request).await;
    assert_eq!(response.status(), 421);
    assert!(origin.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_across_agent_connections() {
    // Each connection worker keeps its own pool (agent connections are dealt to the two
    // workers in turn), so six agent connections share two upstream connections.
    let origin = Origin::plain().await;
    let mut options = PurserOptions::new(ANONYMOUS);
    options.extra_args = vec!["--workers".into(), "2".into()];
    let purser = Purser::start_with(options);
    for _ in 0..6 {
        let output = curl_async(args(&[
            "-x",
            &purser.proxy_url(None),
            &format!("http://127.0.0.1:{}/", origin.port()),
        ]))
        .await;
        assert_eq!(stdout(&output), "ok");
    }
    assert_eq!(origin.requests().len(), 6);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_silent_agents_are_cut_off() {
    let origin = Origin::plain().await;
    let mut options = PurserOptions::new(ANONYMOUS);
    options.extra_args = args(&["--header-timeout", "1"]);
    let purser = Purser::start_with(options);
    let big = format!("X-Big: {}", "a".repeat(64 * 1024));
    let output = curl_async(args(&[
        "-D",
        "-",
        "-x",
        &purser.proxy_url(None),
        "-H",
        &big,
        &format!("http://127.0.0.1:{}/", origin.port()),
    ]))
    .await;
    assert_eq!(status_of(&output), 431);
    let mut silent = TcpStream::connect(purser.proxy).await.unwrap();
    silent
        .write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        silent.read_to_end(&mut buffer),
    )
    .await;
    assert!(
        closed.is_ok(),
        "a silent agent connection must be closed by the header timeout"
    );
    assert!(origin.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let origin = Origin::plain().await;
    let mut purser = Purser::start(ANONYMOUS, None);
    let proxy = purser.proxy_url(None);
    let url = format!("http://127.0.0.1:{}/slow?ms=1500", origin.port());
    let in_flight = tokio::spawn(curl_async(args(&["-x", &proxy, &url])));
    assert!(support::eventually(|| !origin.requests().is_empty()).await);
    purser.signal("TERM");
    let output = in_flight.await.unwrap();
    assert_eq!(stdout(&output), "slow", "the in-flight request finishes");
    let status = tokio::task::spawn_blocking(move || {
        let status = purser.child.wait().unwrap();
        (status, purser)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "purser exits cleanly after draining: {:?}",
        status.0
    );
    assert!(
        TcpStream::connect(status.1.proxy).await.is_err(),
        "no new connections after the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_addresses_and_unlisted_loopback_ports_are_refused() {
    let origin = Origin::plain().await;
    let policy = format!(
        "anonymous: {{}}\negress:\n  loopback_ports: [{}]\n",
        origin.port()
    );
    let purser = Purser::start(&policy, None);
    for target in ["169.254.169.254:80", "[fe80::1]:443", "127.0.0.1:1"] {
        let (status, _) = connect_tunnel(purser.proxy, target, None).await;
        assert_eq!(status, 403, "CONNECT {target}");
    }
    let output = curl_async(args(&[
        "-D",
        "-",
        "-x",
        &purser.proxy_url(None),
        "http://169.254.169.254/latest/meta-data/",
    ]))
    .await;
    assert_eq!(status_of(&output), 403);
    assert!(stdout(&output).contains("link-local"));
    let allowed = curl_async(args(&[
        "-x",
        &purser.proxy_url(None),
        &format!("http://127.0.0.1:{}/", origin.port()),
    ]))
    .await;
    assert_eq!(
        stdout(&allowed),
        "ok",
        "a listed loopback port is reachable"
    );
    assert_eq!(origin.requests().len(), 1);
}
