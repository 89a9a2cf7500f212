//! Class 11: file descriptors. Connections that never authenticate cannot exhaust them:
//! there is a connection cap (here set small with `--max-connections`), a cap per peer on
//! unauthenticated connections where the oldest gives way, and a first-byte timeout.
//! Authenticated agents keep their connections; a new connection beyond a cap full of
//! authenticated ones gets `503`.

use super::{agent, raw_status, read_until_closed, DEADLINE, POLICY};
use crate::support::origin::Origin;
use crate::support::{send_over, Purser, PurserOptions};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

fn start(extra: &[&str]) -> Purser {
    let mut options = PurserOptions::new(POLICY);
    options.extra_args = extra.iter().map(|s| s.to_string()).collect();
    Purser::start_with(options)
}

/// Waits (bounded) until `condition` holds.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A read through the proxy on a fresh connection, as `agent.SESSION`.
async fn read_through(purser: &Purser, origin: &Origin, session: &str) -> u16 {
    let url = format!("http://127.0.0.1:{}/read", origin.port());
    let request = Request::get(url)
        .header("proxy-authorization", agent(session))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let tcp = TcpStream::connect(purser.proxy).await.unwrap();
    send_over(tcp, false, request).await.status().as_u16()
}

/// A keep-alive agent connection that has made one authenticated request.
async fn keep_alive(purser: &Purser, origin: &Origin) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(purser.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(get(&mut sender, origin).await, 200);
    sender
}

async fn get(sender: &mut SendRequest<Full<Bytes>>, origin: &Origin) -> u16 {
    let request = Request::get(format!("http://127.0.0.1:{}/read", origin.port()))
        .header("proxy-authorization", agent("keep"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.expect("request");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

fn evicted(purser: &Purser) -> f64 {
    purser.metric("purser_connections_rejected_total{reason=\"evicted_peer_cap\"}")
        + purser.metric("purser_connections_rejected_total{reason=\"evicted_connection_cap\"}")
}

async fn open_idle(purser: &Purser, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(purser.proxy).await.expect("connect"));
    }
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_that_never_authenticate_cannot_lock_an_agent_out() {
    let origin = Origin::plain().await;
    let purser = start(&[
        "--max-connections",
        "40",
        "--max-unauthenticated-per-peer",
        "10",
        "--first-byte-timeout",
        "120",
        "--header-timeout",
        "120",
    ]);
    // Far more silent connections than the cap, from the agents' own address.
    let idle = open_idle(&purser, 200).await;
    // Each connection past the tenth pushed out an older one (counted under the
    // connection cap instead when closed connections were still being torn down).
    wait_for("Purser pushes the oldest idle connections out", || {
        evicted(&purser) >= 190.0
    })
    .await;
    assert_eq!(read_through(&purser, &origin, "a").await, 200);
    wait_for("what stays open is within the caps", || {
        purser.metric("purser_agent_connections_open") <= 11.0
            && purser.metric("purser_connections_unauthenticated") <= 10.0
    })
    .await;
    // The flood goes on (every old connection is replaced by a new one): agents are
    // still served.
    let more = open_idle(&purser, 50).await;
    assert_eq!(read_through(&purser, &origin, "b").await, 200);
    assert_eq!(purser.metric("purser_connection_limit"), 40.0);
    drop((idle, more));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_agents_keep_their_connections_and_a_full_cap_answers_503() {
    let origin = Origin::plain().await;
    let purser = start(&[
        "--max-connections",
        "6",
        "--max-unauthenticated-per-peer",
        "100",
        "--first-byte-timeout",
        "120",
    ]);
    // An attacker fills the cap with silent connections first...
    let idle = open_idle(&purser, 6).await;
    wait_for("the silent connections are admitted", || {
        purser.metric("purser_connections_unauthenticated") >= 6.0
    })
    .await;
    // ...and the agent still gets all six places: each new one pushes a silent one out.
    let mut agents = Vec::new();
    for _ in 0..6 {
        agents.push(keep_alive(&purser, &origin).await);
    }
    assert!(
        purser.metric("purser_connections_rejected_total{reason=\"evicted_connection_cap\"}")
            >= 6.0
    );
    // With every place held by an authenticated agent, a new connection is turned away.
    let mut late = TcpStream::connect(purser.proxy).await.unwrap();
    let answer = read_until_closed(&mut late).await;
    assert_eq!(
        raw_status(&answer),
        503,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        purser.metric("purser_connections_rejected_total{reason=\"connection_cap_full\"}") >= 1.0
    );
    // The agent's connections all still work.
    for sender in &mut agents {
        assert_eq!(get(sender, &origin).await, 200);
    }
    // One closes: there is room again.
    agents.pop();
    wait_for("a place frees up", || {
        purser.metric("purser_agent_connections_open") <= 5.0
    })
    .await;
    assert_eq!(read_through(&purser, &origin, "c").await, 200);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_says_nothing_is_closed_by_the_first_byte_timeout() {
    let origin = Origin::plain().await;
    let purser = start(&["--first-byte-timeout", "1", "--header-timeout", "300"]);
    let mut silent = TcpStream::connect(purser.proxy).await.unwrap();
    let answer = read_until_closed(&mut silent).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert!(
        purser.metric("purser_connections_rejected_total{reason=\"first_byte_timeout\"}") >= 1.0
    );
    assert_eq!(read_through(&purser, &origin, "d").await, 200);
}
