//! Class 7: payments Purser cannot read are refused, not forwarded: L402/LSAT, MPP
//! credentials that do not decode (`Authorization: Payment` that is not a credential:
//! `malformed_payment`), x402 and MPP over MCP in any form but the ones Purser governs
//! (a JSON-RPC body whose `_meta` carries the payment under another key, batched,
//! compressed or padded, or an MPP key holding no credential), and x402 schemes that
//! cannot be priced. Each gets a refusal and a decision line (an MCP call whose id Purser
//! read gets it as a JSON-RPC tool error, `403` otherwise); x402 over MCP in its own form
//! is governed (`tests/mcp.rs`): here, in EXPLORE, it is refused by phase on every path;
//! MPP over MCP is too (`tests/mpp_mcp.rs`). Ordinary JSON bodies pass intact.

use super::{decisions, json, Path, Rig, EVERY_PATH, POLICY};
use crate::support::{crafted_payment, pay, Purser};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Asserts an answer is the unsupported-payment refusal, with its trace id.
fn assert_unsupported(answer: &http::Response<bytes::Bytes>, what: &str) {
    assert_refused(answer, "unsupported_payment", what);
}

/// Asserts an answer is a refusal with `code`, with its trace id.
fn assert_refused(answer: &http::Response<bytes::Bytes>, code: &str, what: &str) {
    assert_eq!(
        answer.status(),
        403,
        "{what}: {}",
        String::from_utf8_lossy(answer.body())
    );
    let body = json(answer);
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(body["decision"], "DENIED", "{what}");
    assert_eq!(body["rule"], code, "{what}");
    assert!(
        answer.headers().contains_key("x-purser-trace"),
        "{what}: traced"
    );
}

/// Asserts an answer is a JSON-RPC tool error refusing the call with id 7 by `rule`.
fn assert_tool_refusal(answer: &http::Response<bytes::Bytes>, rule: &str, what: &str) {
    assert_eq!(
        answer.status(),
        200,
        "{what}: an MCP session survives only a 200"
    );
    let body = json(answer);
    assert_eq!(body["id"], 7, "{what}: {body}");
    assert_eq!(body["result"]["isError"], true, "{what}: {body}");
    let fields = &body["result"]["structuredContent"]["purser"];
    assert_eq!(fields["decision"], "DENIED", "{what}: {body}");
    assert_eq!(fields["rule"], rule, "{what}: {body}");
    assert!(fields["trace_id"].as_str().is_some(), "{what}: traced");
}

/// The decision lines of `agent.SESSION` all refuse as unsupported, `count` of them.
fn assert_traced(purser: &Purser, session: &str, count: usize) {
    let lines = decisions(purser, session);
    assert_eq!(lines.len(), count, "{session}: {lines:?}");
    for line in lines {
        assert_eq!(line["decision"], "DENIED");
        assert_eq!(line["rule"], "unsupported_payment", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_mpp_and_l402_credentials_are_refused_on_every_path() {
    let rig = Rig::start(POLICY, &[]).await;
    // MPP is governed (tests/mpp.rs); these do not decode as credentials.
    let credentials = [
        (
            "Payment eyJjaGFsbGVuZ2UiOnsiaWQiOiJjaDEifX0",
            "malformed_payment",
        ),
        ("payment eyJ4Ijox", "malformed_payment"),
        ("PAYMENT eyJ4Ijox", "malformed_payment"),
        (
            "L402 AGIAJEemVQUTEyNCR0exk7ek90Cg==:1234abcd",
            "unsupported_payment",
        ),
        ("LSAT AGIAJEemVQUTEyNCR0:1234abcd", "unsupported_payment"),
    ];
    for (index, path) in EVERY_PATH.into_iter().enumerate() {
        let session = format!("mpp{index}");
        // COMMIT: nothing but the protocol stands in the way.
        rig.purser.set_phase(&format!("agent.{session}"), "COMMIT");
        for (credential, code) in credentials {
            for name in ["authorization", "payment-authorization"] {
                let answer = rig
                    .send(path, &session, "GET", "/paid", &[(name, credential)], "")
                    .await;
                assert_refused(&answer, code, &format!("{path:?} {name}: {credential}"));
            }
        }
        let lines = decisions(&rig.purser, &session);
        assert_eq!(lines.len(), 2 * credentials.len(), "{session}: {lines:?}");
        assert!(lines.iter().all(|line| line["decision"] == "DENIED"));
    }
    assert!(rig.received().is_empty(), "{:?}", rig.received());
    // Other Authorization schemes are the merchant's business.
    let answer = rig
        .send(
            Path::Plain,
            "mpp0",
            "GET",
            "/read",
            &[("authorization", "Bearer abc")],
            "",
        )
        .await;
    assert_eq!(answer.status(), 200);
}

/// An MCP `tools/call` with `_meta`, as x402's MCP transport sends it.
fn tools_call(meta_key: &str) -> String {
    let payment = serde_json::to_value(crate::support::crafted(0xab, 1000).wire()).unwrap();
    serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"city": "Paris"}, "_meta": {meta_key: payment}}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_payments_purser_does_not_govern_are_refused_on_every_path() {
    let rig = Rig::start(POLICY, &[]).await;
    let batch = format!(
        r#"[{{"jsonrpc":"2.0","id":1,"method":"ping"}},{}]"#,
        tools_call("x402/payment")
    );
    let json_type = ("content-type", "application/json");
    // No JSON-RPC id to answer under: plain 403.
    let plain: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![json_type], batch),
        (
            vec![json_type, ("content-encoding", "gzip")],
            "\u{1f}\u{8b} not really gzip".to_string(),
        ),
    ];
    // A call Purser read: the refusal is the call's answer, a tool error.
    let calls: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![json_type], tools_call("org.paymentauth/credential")),
        (
            vec![("content-type", "application/json; charset=utf-8")],
            tools_call("X402_Payment"),
        ),
        (
            vec![json_type],
            tools_call("x402/payment")
                .replace(r#""arguments":{"#, r#""arguments":{"x402.payment":{},"#),
        ),
    ];
    for (index, path) in EVERY_PATH.into_iter().enumerate() {
        let session = format!("mcp{index}");
        rig.purser.set_phase(&format!("agent.{session}"), "COMMIT");
        for (headers, body) in &plain {
            let answer = rig
                .send(path, &session, "POST", "/mcp", headers, body.clone())
                .await;
            assert_unsupported(&answer, &format!("{path:?} {headers:?} {body}"));
        }
        for (headers, body) in &calls {
            let answer = rig
                .send(path, &session, "POST", "/mcp", headers, body.clone())
                .await;
            let rule = if body.contains("x402.payment") {
                "ambiguous_payment"
            } else if body.contains("org.paymentauth/credential") {
                // MPP over MCP is governed: an x402 payment under its key is no credential.
                "malformed_payment"
            } else {
                "unsupported_payment"
            };
            assert_tool_refusal(&answer, rule, &format!("{path:?} {headers:?} {body}"));
        }
        assert_eq!(
            decisions(&rig.purser, &session).len(),
            plain.len() + calls.len()
        );
    }
    assert!(rig.received().is_empty(), "{:?}", rig.received());
}

/// x402 over MCP in the form Purser governs, however the key is spelt in JSON (an
/// escape is the same key to every parser) and whether or not the body says it is
/// JSON: decided like any payment, so refused by phase in EXPLORE on every path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_over_mcp_is_decided_on_every_path() {
    let rig = Rig::start(POLICY, &[]).await;
    let escaped = tools_call("x402/payment").replace("x402/payment", "\\u0078402\\/payment");
    let json_type = ("content-type", "application/json");
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![json_type], tools_call("x402/payment")),
        (vec![json_type], tools_call("x402.payment")),
        (vec![json_type], escaped),
        (
            vec![("content-type", "text/plain")],
            tools_call("x402/payment"),
        ),
    ];
    for (index, path) in EVERY_PATH.into_iter().enumerate() {
        let session = format!("governed{index}");
        for (headers, body) in &cases {
            let answer = rig
                .send(path, &session, "POST", "/mcp", headers, body.clone())
                .await;
            assert_tool_refusal(&answer, "phase", &format!("{path:?} {headers:?} {body}"));
        }
        let lines = decisions(&rig.purser, &session);
        assert_eq!(lines.len(), cases.len());
        for line in lines {
            assert_eq!(line["mcp_tool"], "get_weather", "{line}");
            assert_eq!(line["amount_atomic"], "1000", "{line}");
        }
    }
    assert!(rig.received().is_empty(), "{:?}", rig.received());
}

/// A JSON-RPC payment under a content type no JSON-RPC server should read: some servers
/// parse JSON whatever the header says, so the payment is cut off before it leaves and
/// refused all the same, while the body is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_payment_under_another_content_type_never_leaves() {
    let rig = Rig::start(POLICY, &[]).await;
    let body = tools_call("x402/payment");
    let types = [
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "image/png",
    ];
    for (index, path) in EVERY_PATH.into_iter().enumerate() {
        let session = format!("typed{index}");
        for content_type in types {
            let headers = [("content-type", content_type)];
            let answer = rig
                .send(path, &session, "POST", "/mcp", &headers, body.clone())
                .await;
            assert_unsupported(&answer, &format!("{path:?} {content_type}"));
        }
        assert_traced(&rig.purser, &session, types.len());
    }
    for request in rig.received() {
        let seen = String::from_utf8_lossy(&request.body_prefix);
        assert!(
            !seen.contains("x402"),
            "the payment reached the merchant: {seen}"
        );
    }
}

/// 64 KiB of padding first, the payment after: the body streams on, and is cut off
/// before the part that carries the payment leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_behind_64_kib_of_json_padding_never_leaves() {
    let rig = Rig::start(POLICY, &[]).await;
    let padding = "a".repeat(200 * 1024);
    let body = format!(
        r#"{{"pad":"{padding}","jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","_meta":{{"x402/payment":{{"x402Version":2}}}}}}}}"#
    );
    for (index, path) in [Path::Plain, Path::Tls2, Path::PlainTunnel]
        .into_iter()
        .enumerate()
    {
        let session = format!("pad{index}");
        let answer = rig
            .send(
                path,
                &session,
                "POST",
                "/digest",
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await;
        assert_unsupported(&answer, &format!("{path:?}"));
        assert_traced(&rig.purser, &session, 1);
    }
    for request in rig.received() {
        assert!(
            request.body_len < body.len() as u64,
            "the merchant never received the whole body ({} of {} bytes)",
            request.body_len,
            body.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_json_bodies_pass_intact() {
    let rig = Rig::start(POLICY, &[]).await;
    let big: Vec<serde_json::Value> = (0..20_000)
        .map(|i| serde_json::json!({"id": i, "name": format!("row {i}"), "tags": ["a", "b"]}))
        .collect();
    let big = serde_json::to_string(&big).unwrap();
    assert!(big.len() > 200 * 1024);
    let no_payment = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "x402/payment", "arguments": {}, "_meta": {"progressToken": 3}}
    })
    .to_string();
    let cases = [
        ("application/json", big),
        ("application/json", no_payment),
        ("text/plain", "hello { not json".to_string()),
        ("application/x-ndjson", "{\"a\":1}\n{\"b\":2}\n".to_string()),
    ];
    for path in [Path::Plain, Path::Tls2] {
        for (content_type, body) in &cases {
            let answer = rig
                .send(
                    path,
                    "json",
                    "POST",
                    "/digest",
                    &[("content-type", content_type)],
                    body.clone(),
                )
                .await;
            assert_eq!(answer.status(), 200, "{path:?} {content_type}");
            let expected = format!("{} {:x}", body.len(), Sha256::digest(body.as_bytes()));
            assert_eq!(
                String::from_utf8_lossy(answer.body()),
                expected,
                "{path:?} {content_type}: the body arrives intact"
            );
        }
    }
}

#[test]
fn x402_schemes_that_cannot_be_priced_are_unsupported() {
    let origin = crate::support::origin::Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    purser.set_phase("agent.scheme", "COMMIT");
    let engine = base64::engine::general_purpose::STANDARD;
    let json = String::from_utf8(engine.decode(crafted_payment(3, 1000)).unwrap()).unwrap();
    let stream = engine.encode(json.replace("\"exact\"", "\"stream\""));
    let url = format!("http://127.0.0.1:{}/paid", origin.port());
    let (status, body) = pay(&purser, "scheme", &url, &stream);
    assert_eq!(status, 403, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "unsupported_payment", "{body}");
    assert_traced(&purser, "scheme", 1);
    assert!(origin.requests().is_empty());
}
