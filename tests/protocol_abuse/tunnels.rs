//! Payments over tunnels: a plain payment or plaintext inside a splice to an untrusted
//! tunnel host is refused; a trusted one takes payments through the usual decision and
//! splices whatever the agent sends.

use super::*;

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

/// A raw host, a Purser whose policy has `tunnel` (the host is 127.0.0.1), and a splice
/// to the host through it that has carried [`PLAINTEXT_PAYMENT`].
async fn splice_plaintext_payment(
    tunnel: &str,
) -> (
    RawHost,
    Purser,
    hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
) {
    let host = RawHost::start().await;
    let purser = Purser::start(&format!("{ANONYMOUS}{tunnel}"), None);
    let (status, spliced) =
        connect_tunnel(purser.proxy, &format!("127.0.0.1:{}", host.port), None).await;
    assert_eq!(status, 200);
    let mut spliced = spliced.unwrap();
    spliced
        .write_all(PLAINTEXT_PAYMENT.as_bytes())
        .await
        .unwrap();
    (host, purser, spliced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_inside_a_splice_to_an_untrusted_tunnel_host_is_refused() {
    let (host, _purser, mut tunnel) = splice_plaintext_payment("tunnel: ['127.0.0.1']\n").await;
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
    let tls = tls_purser
        .tls_tunnel(&authority, None, &upstream.pki.ca_path, &[b"http/1.1"])
        .await;
    let request = Request::get(format!("https://{authority}/inside"))
        .header("host", &authority)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send_over(tls, false, request).await.status(), 200);
    assert_eq!(origin.requests()[0].path, "/inside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_tunnel_host_splices_whatever_the_agent_sends() {
    let (host, _purser, mut tunnel) =
        splice_plaintext_payment("tunnel:\n  - {host: '127.0.0.1', trust_payments: true}\n").await;
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
