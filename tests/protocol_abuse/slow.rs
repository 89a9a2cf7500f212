//! Connections that take their time or flood: slowloris headers and bodies, HTTP/2 rapid
//! reset, and thousands of idle connections. Each is cut off or served without starving
//! the next agent.

use super::*;

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
    let tls = purser.intercept(&authority, None, &[b"h2"]).await;
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
    let tls = purser.intercept(&authority, None, &[b"h2"]).await;
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
