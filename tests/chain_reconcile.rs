//! Reconciliation from the chain, through the real binary: payments whose outcome is
//! `unknown` (the merchant answered without a receipt) are looked up on a stub EVM node on
//! loopback that answers `eth_call` as a node would, and resolved the way an operator
//! resolves them: a used nonce commits, an expired and unused one releases (the budget is
//! freed), and a node that is down leaves the payment unknown and is asked again, later
//! and later. Every resolution is a proof-log line. Outcomes are polled for with a
//! generous deadline; nothing is timed.

#[path = "support/chain_node.rs"]
mod chain_node;
// Only its `/ok` answer (200, no receipt) is used here.
#[allow(dead_code)]
#[path = "support/merchant.rs"]
mod merchant;
mod support;

use chain_node::{ChainNode, PERMIT2};
use merchant::Merchant;
use purser_kit::x402::{Pay, FAR_FUTURE, PAYER, PAY_TO, USDC_BASE_SEPOLIA};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{crafted, pay, Purser};

/// Chain checks every 200 ms, backing off to 1 s; an unused nonce is expired as soon as
/// its `validBefore` passes.
fn policy(node: &ChainNode) -> String {
    format!(
        r#"
agents:
  agent: {{ token: t0ken }}
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 1.00
chains:
  rpc:
    eip155:84532: {}
  every: 200ms
  max_backoff: 1s
  timeout: 5s
  expiry_margin: 0s
"#,
        node.url()
    )
}

fn nonce(n: u64) -> String {
    format!("0x{n:064x}")
}

#[track_caller]
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(spent, unknown)` of `agent.SESSION`, as the admin API writes them.
fn spent(purser: &Purser, session: &str) -> (String, String) {
    let (status, body) = purser.admin("GET", &format!("/v1/sessions/agent.{session}"), None);
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let text = |key: &str| view[key].as_str().unwrap_or("?").to_string();
    (text("spent"), text("unknown"))
}

/// Waits until `agent.SESSION` reads `(spent, unknown)`. The resolution line is on disk
/// before the budget changes (write-ahead), so the ledger trails the line briefly.
#[track_caller]
fn wait_for_spent(purser: &Purser, session: &str, expected: (&str, &str)) {
    let expected = (expected.0.to_string(), expected.1.to_string());
    wait_for("the ledger to apply the resolution", || {
        spent(purser, session) == expected
    });
    assert_eq!(spent(purser, session), expected);
}

fn unknown_payments(purser: &Purser) -> Vec<Value> {
    let (status, body) = purser.admin("GET", "/v1/payments?outcome=unknown", None);
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    listed["payments"].as_array().cloned().unwrap_or_default()
}

/// The decision line of the payment `session` made.
fn decision(purser: &Purser, session: &str) -> Value {
    purser
        .trace_lines()
        .into_iter()
        .find(|l| l["kind"] == "decision" && l["session"] == format!("agent.{session}"))
        .expect("a decision line")
}

/// The resolution line of `decision`, once there is one.
fn resolution(purser: &Purser, decision: &Value) -> Option<Value> {
    purser
        .trace_lines()
        .into_iter()
        .find(|l| l["kind"] == "resolution" && l["decision_trace_id"] == decision["trace_id"])
}

/// Pays `header` to the merchant's `/ok` (200, no receipt): the outcome is unknown.
fn pay_unknown(purser: &Purser, merchant: &Merchant, session: &str, header: &str) -> Value {
    let (status, body) = pay(purser, session, &merchant.url("/ok"), header);
    assert_eq!(status, 200, "{body}");
    let decision = decision(purser, session);
    assert_eq!(decision["decision"], "ALLOWED");
    decision
}

#[test]
fn a_used_nonce_commits_an_unknown_payment() {
    let node = ChainNode::start(&[USDC_BASE_SEPOLIA]);
    let merchant = Merchant::start();
    let purser = Purser::start(&policy(&node), None);
    node.use_nonce(USDC_BASE_SEPOLIA, PAYER, &nonce(1));

    let decision = pay_unknown(&purser, &merchant, "used", &crafted(1, 50_000).header());
    let onchain = &decision["onchain"];
    assert_eq!(onchain["method"], "eip3009");
    assert_eq!(onchain["nonce"], nonce(1));
    assert_eq!(onchain["payer"], PAYER.to_ascii_lowercase());

    wait_for("the chain to resolve it", || {
        resolution(&purser, &decision).is_some()
    });
    let line = resolution(&purser, &decision).unwrap();
    assert_eq!(line["outcome"], "committed");
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("by chain reconciliation"), "{reason}");
    assert!(reason.contains("authorizationState"), "{reason}");
    wait_for_spent(&purser, "used", ("0.05", "0"));
    assert!(unknown_payments(&purser).is_empty());
    // It asked the token, about this payer's nonce.
    let call = &node.calls()[0];
    assert_eq!(call.to, USDC_BASE_SEPOLIA.to_ascii_lowercase());
    assert!(call.data.starts_with("0xe94a0102"), "{}", call.data);
    assert!(call.data.ends_with(&nonce(1)[2..]), "{}", call.data);
}

#[test]
fn an_expired_unused_authorization_is_released_and_the_budget_freed() {
    let node = ChainNode::start(&[USDC_BASE_SEPOLIA]);
    let merchant = Merchant::start();
    let purser = Purser::start(&policy(&node), None);
    let valid_before = jiff::Timestamp::now().as_second() + 3;
    let header = crafted(2, 50_000).valid_before(valid_before).header();

    let decision = pay_unknown(&purser, &merchant, "expired", &header);
    assert_eq!(decision["onchain"]["valid_before"], valid_before);

    wait_for("the chain to release it", || {
        resolution(&purser, &decision).is_some()
    });
    let line = resolution(&purser, &decision).unwrap();
    assert_eq!(line["outcome"], "released");
    assert!(line["reason"].as_str().unwrap().contains("unused"));
    // Released only once the authorization could no longer be used.
    let at: jiff::Timestamp = line["time"].as_str().unwrap().parse().unwrap();
    assert!(at.as_second() >= valid_before, "{at} before {valid_before}");
    wait_for_spent(&purser, "expired", ("0", "0"));
}

#[test]
fn a_node_that_is_down_leaves_the_payment_unknown_and_is_asked_again() {
    let node = ChainNode::start(&[USDC_BASE_SEPOLIA]);
    node.down(true);
    node.use_nonce(USDC_BASE_SEPOLIA, PAYER, &nonce(3));
    let merchant = Merchant::start();
    let purser = Purser::start(&policy(&node), None);

    let decision = pay_unknown(&purser, &merchant, "down", &crafted(3, 20_000).header());
    wait_for("three failed calls", || {
        node.calls().iter().filter(|c| c.while_down).count() >= 3
    });
    let listed = unknown_payments(&purser);
    assert_eq!(listed.len(), 1, "still unknown: {listed:?}");
    assert_eq!(listed[0]["onchain"]["nonce"], nonce(3));
    assert!(resolution(&purser, &decision).is_none());
    assert_eq!(spent(&purser, "down"), ("0.02".into(), "0.02".into()));
    wait_for("each failure to be logged", || {
        purser.stderr().contains("will be retried")
    });

    node.down(false);
    wait_for("the node to answer", || {
        resolution(&purser, &decision).is_some()
    });
    assert_eq!(
        resolution(&purser, &decision).unwrap()["outcome"],
        "committed"
    );
    wait_for_spent(&purser, "down", ("0.02", "0"));
}

#[test]
fn a_used_permit2_nonce_is_read_from_permit2s_bitmap() {
    let node = ChainNode::start(&[USDC_BASE_SEPOLIA]);
    // A nonce whose bit is 0x69 in word 0x...abcd: the stub sets that bit.
    let permit2_nonce = format!("0x{:062x}{:02x}", 0xabcd, 0x69);
    node.use_permit2_nonce(PAYER, &permit2_nonce);
    let merchant = Merchant::start();
    let purser = Purser::start(&policy(&node), None);
    let nonce_decimal = (0xabcd_u128 << 8 | 0x69).to_string();
    let payload = json!({
        "signature": format!("0x{}", "cd".repeat(65)),
        "permit2Authorization": {
            "from": PAYER,
            "permitted": {"token": USDC_BASE_SEPOLIA, "amount": "30000"},
            "spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
            "nonce": nonce_decimal,
            "deadline": FAR_FUTURE,
            "witness": {"to": PAY_TO, "validAfter": "0"}
        }
    });
    let Value::Object(payload) = payload else {
        unreachable!()
    };
    let header = Pay::usdc(30_000).payload(payload).header();

    let decision = pay_unknown(&purser, &merchant, "permit2", &header);
    assert_eq!(decision["onchain"]["method"], "permit2");
    wait_for("the chain to resolve it", || {
        resolution(&purser, &decision).is_some()
    });
    assert_eq!(
        resolution(&purser, &decision).unwrap()["outcome"],
        "committed"
    );
    let call = &node.calls()[0];
    assert_eq!(call.to, PERMIT2);
    assert!(call.data.starts_with("0x4fe02b44"), "{}", call.data);
    wait_for_spent(&purser, "permit2", ("0.03", "0"));
}
