//! The policy's `limits`, each pushed far past its bound through the running proxy:
//! connections per agent and tracked sessions. (Holds are bounded in `holds.rs`, the leaf
//! cache and challenge memory in their modules' unit tests.)

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::origin::Origin;
use support::{basic, crafted_payment, pay, Purser};

/// Sends one keep-alive `GET` through the proxy on `stream`; the status and whether the
/// proxy said it will close the connection.
fn get(stream: &mut TcpStream, origin_port: u16, user: &str, token: &str) -> (u16, bool) {
    let request = format!(
        "GET http://127.0.0.1:{origin_port}/echo HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\
         Proxy-Authorization: {}\r\n\r\n",
        basic(user, token)
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let mut closing = false;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        closing |= lower == "connection: close";
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut body).expect("body");
    (status, closing)
}

fn connect(purser: &Purser) -> TcpStream {
    let stream = TcpStream::connect(purser.proxy).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_hold_more_connections_than_its_limit() {
    let origin = Origin::plain().await;
    let purser = Purser::start(
        r#"
agents:
  alice: { token: a-token }
  bob: { token: b-token }
limits:
  connections_per_agent: 3
"#,
        None,
    );
    let port = origin.port();
    let outcomes = tokio::task::spawn_blocking({
        let proxy = purser.proxy;
        move || {
            let purser_addr = proxy;
            let mut open = Vec::new();
            let mut statuses = Vec::new();
            for _ in 0..40 {
                let mut stream = TcpStream::connect(purser_addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let (status, closing) = get(&mut stream, port, "alice", "a-token");
                statuses.push((status, closing));
                open.push(stream);
            }
            (open, statuses)
        }
    })
    .await
    .expect("alice's connections");
    let (alice_connections, statuses) = outcomes;
    let served = statuses.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert_eq!(served, 3, "exactly the limit is served: {statuses:?}");
    assert_eq!(refused.len(), 37, "the rest get 429: {statuses:?}");
    assert!(
        refused.iter().all(|(_, closing)| *closing),
        "a refused connection is told it will be closed"
    );
    assert_eq!(
        origin.requests().len(),
        3,
        "refused requests never reach the upstream"
    );

    // Another agent is not affected by alice's limit.
    let mut bob = connect(&purser);
    assert_eq!(get(&mut bob, port, "bob", "b-token").0, 200);

    // Alice's allowance comes back when her connections close.
    drop(alice_connections);
    let mut again = false;
    for _ in 0..100 {
        let mut stream = connect(&purser);
        if get(&mut stream, port, "alice", "a-token").0 == 200 {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again, "alice is served again once her connections are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_sessions_stay_under_the_cap_and_spend_is_never_forgotten() {
    let origin = Origin::plain().await;
    let purser = Purser::start(
        r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 1.00
  agent_limit: 100.00
limits:
  sessions: 16
"#,
        None,
    );
    let url = format!("http://127.0.0.1:{}/settle", origin.port());
    let sessions = 160;
    for index in 0..sessions {
        let payment = crafted_payment(index as u8, 10_000);
        let (status, body) = pay(&purser, &format!("s{index}"), &url, &payment);
        assert_eq!(status, 200, "payment {index}: {body}");
    }
    let (status, body) = purser.admin("GET", "/v1/sessions", None);
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).expect("sessions JSON");
    let tracked = listed["sessions"].as_array().expect("sessions").len();
    assert!(
        (1..=16).contains(&tracked),
        "{tracked} sessions tracked with a cap of 16 after {sessions} sessions"
    );
    // The ledger kept every cent: 160 × $0.01, whichever sessions were forgotten.
    let agent_spent = listed["sessions"][0]["agent_spent"].as_str().unwrap_or("");
    assert_eq!(agent_spent, "1.6", "{body}");

    // A forgotten session that comes back still owes its earlier spend: s0 paid $0.01;
    // with a $1.00 session limit, $0.995 more must now be refused.
    let (status, body) = pay(&purser, "s0", &url, &crafted_payment(250, 995_000));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("session"),
        "refused for the session budget: {body}"
    );
}
