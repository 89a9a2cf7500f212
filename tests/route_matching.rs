//! Rules match the request as the merchant will route it, not the bytes the agent chose:
//! percent-escapes, dot segments, repeated slashes, case and `;` parameters cannot take a
//! paid call out of the tool, category or host rule that covers it (issue class: rule
//! targets matched the raw path).

mod support;

use support::origin::Origin;
use support::{crafted_payment, curl_answer, Purser};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
tools:
  market_feed: { endpoints: ["*/market-feed*"], category: data }
categories:
  purchase: ["*/purchase/*"]
rules:
  - "@no-market-feed BLOCK market_feed"
  - "@no-purchases BLOCK category:purchase"
"#;

/// Pays for `path` exactly as written (`--path-as-is`): `(status, body)`.
fn pay_path(purser: &Purser, base: &str, path: &str, nonce: u8, extra: &[&str]) -> (u16, String) {
    let proxy = purser.proxy_url(Some(("agent.routes", "t0ken")));
    let header = format!("PAYMENT-SIGNATURE: {}", crafted_payment(nonce, 10_000));
    let url = format!("{base}{path}");
    let mut args = vec!["--path-as-is", "-x", &proxy, "-H", &header];
    args.extend_from_slice(extra);
    args.push(&url);
    curl_answer(&args)
}

fn paid_paths(origin: &Origin) -> Vec<String> {
    origin
        .requests()
        .into_iter()
        .filter(|r| r.headers.contains_key("payment-signature"))
        .map(|r| r.path)
        .collect()
}

#[test]
fn spellings_of_a_blocked_route_are_blocked_over_plain_http() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let base = format!("http://127.0.0.1:{}", origin.port());
    let blocked = [
        ("/market-feed", "no-market-feed"),
        ("/%6Darket-feed", "no-market-feed"),
        ("/%6d%61rket%2Dfeed", "no-market-feed"),
        ("/MARKET-Feed", "no-market-feed"),
        ("/x/../market-feed", "no-market-feed"),
        ("/x/%2e%2e/market-feed", "no-market-feed"),
        ("//market-feed", "no-market-feed"),
        ("/market-feed;v=1", "no-market-feed"),
        ("/purchase/item", "no-purchases"),
        ("/%70urchase/item", "no-purchases"),
        ("/Purchase/./item", "no-purchases"),
        ("/shop/../purchase//item", "no-purchases"),
    ];
    for (nonce, (path, rule)) in blocked.iter().enumerate() {
        let (status, body) = pay_path(&purser, &base, path, nonce as u8 + 1, &[]);
        assert_eq!(status, 403, "{path} must be refused: {body}");
        assert!(
            body.contains(&format!(r#""rule":"{rule}""#)),
            "{path}: {body}"
        );
    }
    assert!(
        paid_paths(&origin).is_empty(),
        "no spelling of a blocked route was paid: {:?}",
        paid_paths(&origin)
    );
    // Routes that merely look alike are not caught.
    let (status, body) = pay_path(&purser, &base, "/market-news", 100, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(paid_paths(&origin), ["/market-news"]);
}

#[test]
fn an_encoded_route_is_blocked_inside_intercepted_http2() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = support::pki::upstream_pki();
    let origin = runtime.block_on(Origin::tls(upstream.pki.server_cert(&[]), true));
    let purser = Purser::start(POLICY, Some(&upstream.pki.ca_path));
    let base = format!("https://localhost:{}", origin.port());
    let ca = purser.ca_pem();
    let ca = ca.to_string_lossy();
    let tls = ["--http2", "--cacert", &ca];
    let (status, body) = pay_path(&purser, &base, "/%6Darket-feed", 1, &tls);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(r#""rule":"no-market-feed""#), "{body}");
    let (status, body) = pay_path(&purser, &base, "/MARKET-FEED/../Market-Feed", 2, &tls);
    assert_eq!(status, 403, "{body}");
    assert!(paid_paths(&origin).is_empty(), "{:?}", paid_paths(&origin));
}
