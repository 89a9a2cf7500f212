//! Plaintext HTTP inside `CONNECT`: Node's undici (`EnvHttpProxyAgent`, the default way a
//! Node agent uses a proxy) and `curl -p` send `http://` requests as a tunnel followed by
//! plaintext. Purser serves them with exactly the governance of any other request: reads
//! pass, a payment is decided before it leaves, and the decision is traced.

mod support;

use support::node::undici_fetch;
use support::origin::Origin;
use support::{crafted_payment, curl_answer, Purser};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
budget:
  session_limit: 10.00
"#;

/// `curl -p` through the proxy as `agent.SESSION`: `(status, headers and body)`.
fn curl_tunnel(purser: &Purser, session: &str, url: &str, payment: Option<&str>) -> (u16, String) {
    let proxy = purser.proxy_url(Some((&format!("agent.{session}"), "t0ken")));
    let header = payment.map(|p| format!("PAYMENT-SIGNATURE: {p}"));
    let mut args = vec!["-i", "-p", "-x", &proxy];
    if let Some(header) = header.as_deref() {
        args.extend(["-H", header]);
    }
    args.push(url);
    curl_answer(&args)
}

fn payments_seen(origin: &Origin) -> Vec<String> {
    origin
        .requests()
        .into_iter()
        .filter(|r| r.headers.contains_key("payment-signature"))
        .map(|r| r.path)
        .collect()
}

fn decisions(purser: &Purser, session: &str) -> Vec<String> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|line| line["kind"] == "decision" && line["session"] == session)
        .map(|line| line["decision"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn curl_through_a_tunnel_is_served_and_governed() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let base = format!("http://127.0.0.1:{}", origin.port());

    let (status, answer) = curl_tunnel(&purser, "curl", &format!("{base}/read"), None);
    assert_eq!(status, 200, "a read passes: {answer}");
    assert!(
        answer.contains("HTTP/1.1 200 Connection established") || answer.contains(" 200 "),
        "{answer}"
    );
    let read = origin.requests().into_iter().find(|r| r.path == "/read");
    let read = read.expect("the read reached the origin");
    assert!(
        !read.headers.contains_key("proxy-authorization"),
        "credentials never go upstream"
    );

    let payment = crafted_payment(1, 20_000);
    let (status, answer) = curl_tunnel(&purser, "curl", &format!("{base}/paid"), Some(&payment));
    assert_eq!(status, 403, "EXPLORE refuses the payment: {answer}");
    assert!(answer.contains(r#""decision":"DENIED""#), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-purser-trace:"),
        "{answer}"
    );
    assert!(
        payments_seen(&origin).is_empty(),
        "a refused payment never leaves"
    );

    purser.set_phase("agent.curl", "COMMIT");
    let payment = crafted_payment(2, 20_000);
    let (status, answer) = curl_tunnel(&purser, "curl", &format!("{base}/paid"), Some(&payment));
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-purser-decision: allowed"),
        "{answer}"
    );
    assert_eq!(payments_seen(&origin), ["/paid"]);
    assert_eq!(decisions(&purser, "agent.curl"), ["DENIED", "ALLOWED"]);
}

#[test]
fn undici_env_http_proxy_agent_is_served_and_governed() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let proxy = purser.proxy_url(Some(("agent.node", "t0ken")));
    let base = format!("http://127.0.0.1:{}", origin.port());

    let read = undici_fetch(&proxy, None, &format!("{base}/read"), &[]);
    assert_eq!(read["status"], 200, "{read}");
    assert!(
        origin.requests().iter().any(|r| r.path == "/read"),
        "the read reached the origin"
    );

    let header = |nonce| {
        vec![format!(
            "PAYMENT-SIGNATURE: {}",
            crafted_payment(nonce, 20_000)
        )]
    };
    let refused = undici_fetch(&proxy, None, &format!("{base}/paid"), &header(1));
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(
        refused["headers"]["x-purser-decision"], "DENIED",
        "{refused}"
    );
    assert!(
        payments_seen(&origin).is_empty(),
        "a refused payment never leaves"
    );

    purser.set_phase("agent.node", "COMMIT");
    let allowed = undici_fetch(&proxy, None, &format!("{base}/paid"), &header(2));
    assert_eq!(allowed["status"], 200, "{allowed}");
    assert_eq!(
        allowed["headers"]["x-purser-decision"], "ALLOWED",
        "{allowed}"
    );
    assert_eq!(payments_seen(&origin), ["/paid"]);
    assert_eq!(decisions(&purser, "agent.node"), ["DENIED", "ALLOWED"]);
}

#[test]
fn undici_over_https_is_still_intercepted() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = support::pki::upstream_pki();
    let origin = runtime.block_on(Origin::tls(upstream.pki.server_cert(&[]), false));
    let purser = Purser::start(POLICY, Some(&upstream.pki.ca_path));
    let proxy = purser.proxy_url(Some(("agent.tls", "t0ken")));
    let url = format!("https://localhost:{}/read", origin.port());
    let read = undici_fetch(&proxy, Some(&purser.ca_pem()), &url, &[]);
    assert_eq!(read["status"], 200, "{read}");
    assert!(origin.requests().iter().any(|r| r.path == "/read"));
}
