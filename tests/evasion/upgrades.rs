//! Class 2: protocol switches. Only `Upgrade: websocket` passes; `h2c` in any case, lists
//! naming anything else, and `HTTP2-Settings` are refused before they reach the merchant,
//! on every path; a merchant's `101` to anything but WebSocket is not spliced.

use super::{
    agent, purser_error, raw_status, read_head, read_until_closed, Path, RawOrigin, Rig,
    EVERY_PATH, POLICY,
};
use crate::support::{connect_tunnel, Purser};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SETTINGS: &str = "AAMAAABkAAQAoAAAAAIAAAAA";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_every_upgrade_but_websocket_are_refused_on_every_path() {
    let rig = Rig::start(POLICY, &[]).await;
    let cases: [&[(&str, &str)]; 7] = [
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", SETTINGS),
        ],
        &[("connection", "upgrade"), ("upgrade", "H2C")],
        &[("connection", "upgrade"), ("upgrade", "foo, websocket")],
        &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
        &[("upgrade", "h2c")],
        &[("http2-settings", SETTINGS)],
        &[("http2_settings", SETTINGS)],
    ];
    for path in EVERY_PATH {
        for headers in cases {
            // HTTP/2 has no Upgrade (the client drops it): only HTTP2-Settings can be sent.
            if path == Path::Tls2 && headers.iter().any(|(name, _)| *name == "upgrade") {
                continue;
            }
            let answer = rig.send(path, "up", "GET", "/up", headers, "").await;
            assert_eq!(answer.status(), 403, "{path:?} {headers:?}");
            assert_eq!(
                purser_error(&answer),
                "upgrade_refused",
                "{path:?} {headers:?}"
            );
            let reason = String::from_utf8_lossy(answer.body()).to_string();
            assert!(
                reason.to_ascii_lowercase().contains("websocket"),
                "the reason says what passes: {reason}"
            );
        }
    }
    assert!(
        rig.received().is_empty(),
        "no refused upgrade reached a merchant: {:?}",
        rig.received()
    );
    assert!(rig.purser.metric("purser_upgrades_refused_total") >= 20.0);
    // Ordinary requests still pass on every path.
    for path in EVERY_PATH {
        let answer = rig.send(path, "up", "GET", "/after", &[], "").await;
        assert_eq!(answer.status(), 200, "{path:?}");
    }
}

/// The attack itself: the merchant agrees to h2c, and HTTP/2 (payment and all) would
/// flow over a splice Purser never reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_refused_before_the_merchant_can_switch() {
    let merchant = RawOrigin::start(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec(),
    )
    .await;
    let purser = Purser::start(POLICY, None);
    let port = merchant.addr.port();
    let mut agent_side = TcpStream::connect(purser.proxy).await.unwrap();
    let head = format!(
        "GET http://127.0.0.1:{port}/paid HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Proxy-Authorization: {}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: {SETTINGS}\r\n\r\n",
        agent("h2c")
    );
    agent_side.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut agent_side).await;
    assert_eq!(
        raw_status(&answer),
        403,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // What a hostile agent sends next: the HTTP/2 preface and a paid request.
    let _ = agent_side
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\npayment-signature: eyJ4NDAyVmVyc2lvbiI6Mn0=")
        .await;
    read_until_closed(&mut agent_side).await;
    assert!(
        merchant.received().is_empty(),
        "the merchant received: {}",
        String::from_utf8_lossy(&merchant.received())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_still_passes_but_a_switch_to_anything_else_is_not_spliced() {
    let rig = Rig::start(POLICY, &[]).await;
    let authority = format!("127.0.0.1:{}", rig.plain.port());
    let (_, tunnel) = connect_tunnel(rig.purser.proxy, &authority, Some(&agent("ws"))).await;
    let (mut socket, response) =
        tokio_tungstenite::client_async(format!("ws://{authority}/ws"), tunnel.unwrap())
            .await
            .expect("WebSocket through a plaintext tunnel");
    assert_eq!(response.status(), 101);
    socket.send(Message::text("ping")).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping");

    // A merchant that answers a WebSocket handshake by switching to h2c.
    let merchant = RawOrigin::start(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec(),
    )
    .await;
    let port = merchant.addr.port();
    let mut agent_side = TcpStream::connect(rig.purser.proxy).await.unwrap();
    let head = format!(
        "GET http://127.0.0.1:{port}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Proxy-Authorization: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        agent("ws")
    );
    agent_side.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut agent_side).await;
    assert_eq!(
        raw_status(&answer),
        502,
        "a switch to h2c is not spliced: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// HTTP/2 with prior knowledge (`PRI * HTTP/2.0`) is not HTTP/1.1: neither the listener
/// nor a plaintext tunnel serves or splices it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_never_spliced() {
    let rig = Rig::start(POLICY, &[]).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut listener_side = TcpStream::connect(rig.purser.proxy).await.unwrap();
    let _ = listener_side.write_all(preface).await;
    let answer = read_until_closed(&mut listener_side).await;
    assert!(
        answer.is_empty() || raw_status(&answer) >= 400,
        "{answer:?}"
    );

    let authority = format!("127.0.0.1:{}", rig.plain.port());
    let (status, tunnel) = connect_tunnel(rig.purser.proxy, &authority, Some(&agent("pri"))).await;
    assert_eq!(status, 200);
    let mut tunnel = tunnel.unwrap();
    let _ = tunnel.write_all(preface).await;
    let answer = read_until_closed(&mut tunnel).await;
    assert!(
        answer.is_empty() || raw_status(&answer) >= 400,
        "{answer:?}"
    );
    assert!(rig.received().is_empty(), "{:?}", rig.received());
}
