//! Settlement and the ways around it, through the real binary: an answer without a
//! receipt keeps its payment counted (`unknown`), only a byte-identical retry of an unknown
//! payment goes out again (one at a time, with a decision line of its own, judged by the
//! policy as it is now, across restarts), replay keys do not depend on hex spelling, and
//! an operator reconciles unknown payments through the admin API and the CLI.

#[path = "support/merchant.rs"]
mod merchant;
mod support;
#[path = "settlement/unknown.rs"]
mod unknown;

use merchant::{Merchant, Seen};
use purser_kit::x402::{resource_url, Pay, PAYER};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{crafted, pay, Purser};

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 0.50
"#;

/// A v2 payment of `amount` atomic USDC whose key fields are spelled as given.
fn payment_spelled(from: &str, nonce: &str, signature: &str, amount: u64) -> String {
    crafted(0, amount)
        .from(from)
        .nonce(nonce)
        .signature(signature)
        .header()
}

fn nonce(n: u64) -> String {
    format!("0x{n:064x}")
}

fn signature(n: u64) -> String {
    format!("0x{n:02x}{}", "ab".repeat(64))
}

/// A well-formed payment unique by `n`.
fn payment(n: u64, amount: u64) -> String {
    crafted(n, amount).header()
}

fn session(purser: &Purser, id: &str) -> Value {
    let (status, body) = purser.admin("GET", &format!("/v1/sessions/agent.{id}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `(spent, unknown)` of `agent.ID`, as the API writes them.
fn spent(purser: &Purser, id: &str) -> (String, String) {
    let view = session(purser, id);
    let text = |key: &str| view[key].as_str().unwrap_or("?").to_string();
    (text("spent"), text("unknown"))
}

fn unknown_payments(purser: &Purser, query: &str) -> Vec<Value> {
    let (status, body) = purser.admin("GET", &format!("/v1/payments{query}"), None);
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    listed["payments"].as_array().cloned().unwrap_or_default()
}

fn decisions(purser: &Purser) -> Vec<Value> {
    purser
        .trace_lines()
        .into_iter()
        .filter(|l| l["kind"] == "decision")
        .collect()
}

#[track_caller]
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets held requests go even when the test fails, so its threads can end.
struct ReleaseOnDrop<'a>(&'a Merchant);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.hold(false);
    }
}

fn refused_as(result: &(u16, String), code: &str) -> bool {
    result.0 == 403 && result.1.contains(code)
}

#[test]
fn concurrent_identical_retries_of_an_unknown_payment_go_out_one_at_a_time() {
    let merchant = Merchant::start();
    let purser = Purser::start(POLICY, None);
    merchant.watch(purser.trace_path());
    let url = merchant.url("/hold/item");
    let first = payment(1, 250_000);
    merchant.hang_up_next(1);
    assert_eq!(pay(&purser, "c", &url, &first).0, 502);
    assert_eq!(spent(&purser, "c"), ("0.25".into(), "0.25".into()));
    let original = decisions(&purser)[0]["trace_id"]
        .as_str()
        .unwrap()
        .to_string();

    merchant.hold(true);
    let release = ReleaseOnDrop(&merchant);
    let finished = AtomicUsize::new(0);
    let copies = 6;
    let results: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..copies)
            .map(|_| {
                scope.spawn(|| {
                    let result = pay(&purser, "c", &url, &first);
                    finished.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        wait_for("all but one copy refused, one held at the merchant", || {
            finished.load(Ordering::SeqCst) == copies - 1 && merchant.waiting() == 1
        });
        // The retry in flight may still bring a receipt: no one resolves it meanwhile.
        let (status, body) = purser.admin(
            "POST",
            &format!("/v1/payments/{original}/resolve"),
            Some(r#"{"outcome":"released","by":"ops","reason":"test"}"#),
        );
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("retry_in_flight"), "{body}");
        drop(release);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let forwarded = results.iter().filter(|r| r.0 == 200).count();
    let replayed = results
        .iter()
        .filter(|r| refused_as(r, "replayed_payment"))
        .count();
    assert_eq!((forwarded, replayed), (1, copies - 1), "{results:?}");
    let paid = merchant.paid();
    assert_eq!(paid.len(), 2, "the original and exactly one retry");
    assert_eq!(paid[1].target, "/hold/item");
    // Each copy has its own decision line; the retry's was on disk before it left.
    let lines = decisions(&purser);
    let retries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["retry_of"] == *original)
        .collect();
    assert_eq!(retries.len(), 1, "{lines:?}");
    assert_eq!(retries[0]["decision"], "ALLOWED");
    let retry_id = retries[0]["trace_id"].as_str().unwrap();
    assert!(
        paid[1].log_at_arrival.contains(retry_id),
        "the retry's decision line must be durable before the retry leaves"
    );
    let refused = lines
        .iter()
        .filter(|l| l["decision"] == "DENIED" && l["rule"] == "replayed_payment")
        .count();
    assert_eq!(refused, copies - 1);
    // Its amount was already counted: not a second time.
    assert_eq!(spent(&purser, "c"), ("0.25".into(), "0.25".into()));
    // The retry ended, again without a receipt: the next one may go, alone again.
    assert_eq!(pay(&purser, "c", &url, &first).0, 200);
    assert_eq!(merchant.paid().len(), 3);
    let listed = unknown_payments(&purser, "?outcome=unknown");
    assert_eq!(listed[0]["retries"], 2);
    assert_eq!(listed[0]["retry_in_flight"], false);
}

#[test]
fn only_a_byte_identical_copy_from_its_session_for_its_resource_is_a_retry_even_after_a_restart() {
    let merchant = Merchant::start();
    let mut purser = Purser::start(POLICY, None);
    let url = merchant.url("/ok/report");
    let original = payment(2, 250_000);
    merchant.hang_up_next(1);
    assert_eq!(pay(&purser, "r", &url, &original).0, 502);

    // Same payer and nonce, another signature: another payment sharing the key.
    let other_signature = payment_spelled(PAYER, &nonce(2), &signature(99), 250_000);
    // The same authorization re-spelled: other bytes, same keys.
    let respelled = payment_spelled(
        &PAYER[2..],
        &nonce(2)[2..],
        &signature(2)[2..].to_ascii_uppercase(),
        250_000,
    );
    let cases = [
        ("r", url.clone(), other_signature, "a non-identical payment"),
        ("other", url.clone(), original.clone(), "another session"),
        (
            "r",
            merchant.url("/ok/other"),
            original.clone(),
            "another path",
        ),
        (
            "r",
            format!("{url}?page=2"),
            original.clone(),
            "another query",
        ),
        ("r", url.clone(), respelled, "a re-spelled copy"),
    ];
    let refuse_all = |purser: &Purser| {
        for (session_id, target, sent, what) in &cases {
            let result = pay(purser, session_id, target, sent);
            assert!(
                refused_as(&result, "replayed_payment"),
                "{what}: {result:?}"
            );
        }
        assert_eq!(
            merchant.paid().len(),
            1,
            "none of them reached the merchant"
        );
    };
    refuse_all(&purser);
    purser.restart();
    assert_eq!(spent(&purser, "r"), ("0.25".into(), "0.25".into()));
    refuse_all(&purser);

    let (status, body) = pay(&purser, "r", &url, &original);
    assert_eq!(status, 200, "the identical retry goes: {body}");
    assert_eq!(merchant.paid().len(), 2);
    let retry = decisions(&purser)
        .into_iter()
        .find(|l| l["retry_of"].is_string())
        .expect("the retry has a decision line");
    assert_eq!(retry["decision"], "ALLOWED");
    assert_eq!(spent(&purser, "r"), ("0.25".into(), "0.25".into()));
    // After another restart the retry is not booked as a payment of its own either.
    purser.restart();
    assert_eq!(spent(&purser, "r"), ("0.25".into(), "0.25".into()));
    assert_eq!(unknown_payments(&purser, "").len(), 1);
}

const COMMIT_POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: COMMIT
  transition_rules: { allow_skip: true }
budget:
  session_limit: 0.30
"#;

#[test]
fn a_retry_is_judged_by_the_policy_as_it_is_now_and_not_counted_twice() {
    let merchant = Merchant::start();
    let purser = Purser::start(COMMIT_POLICY, None);
    let url = merchant.url("/ok/commit");
    purser.set_phase("agent.p", "COMMIT");
    let sent = payment(3, 250_000);
    merchant.hang_up_next(1);
    assert_eq!(pay(&purser, "p", &url, &sent).0, 502);

    let (status, body) = purser.admin("POST", "/v1/sessions/agent.p/reset", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = pay(&purser, "p", &url, &sent);
    assert_eq!(
        status, 403,
        "a retry in EXPLORE is refused like any payment: {body}"
    );
    assert_eq!(merchant.paid().len(), 1);
    let refused = decisions(&purser)
        .into_iter()
        .find(|l| l["retry_of"].is_string())
        .expect("the refused retry has a decision line");
    assert_eq!(refused["decision"], "DENIED");

    // Back in COMMIT it goes: 0.25 of 0.30 is spent, and that 0.25 is this payment.
    purser.set_phase("agent.p", "COMMIT");
    let (status, body) = pay(&purser, "p", &url, &sent);
    assert_eq!(status, 200, "{body}");
    assert_eq!(merchant.paid().len(), 2);
    assert_eq!(spent(&purser, "p"), ("0.25".into(), "0.25".into()));
    // A new payment still finds the 0.25 spent.
    let (status, body) = pay(&purser, "p", &url, &payment(4, 100_000));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("budget"), "{body}");
}

#[test]
fn answers_without_a_receipt_keep_the_payment_counted() {
    let merchant = Merchant::start();
    let purser = Purser::start(POLICY, None);
    assert_eq!(
        pay(&purser, "n", &merchant.url("/ok/a"), &payment(5, 200_000)).0,
        200
    );
    assert_eq!(spent(&purser, "n"), ("0.2".into(), "0.2".into()));
    assert_eq!(
        pay(
            &purser,
            "n",
            &merchant.url("/error/b"),
            &payment(6, 200_000)
        )
        .0,
        500
    );
    assert_eq!(spent(&purser, "n"), ("0.4".into(), "0.4".into()));
    // 0.40 counted of 0.50: the next 0.20 is over the limit.
    let (status, body) = pay(&purser, "n", &merchant.url("/ok/c"), &payment(7, 200_000));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("budget_limit"), "{body}");
    assert_eq!(merchant.paid().len(), 2);

    // An unreadable receipt tells nothing either.
    assert_eq!(
        pay(
            &purser,
            "g",
            &merchant.url("/garbage"),
            &payment(8, 100_000)
        )
        .0,
        200
    );
    assert_eq!(spent(&purser, "g"), ("0.1".into(), "0.1".into()));

    let listed = unknown_payments(&purser, "?outcome=unknown&session=agent.n");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let why: Vec<&str> = listed.iter().map(|p| p["why"].as_str().unwrap()).collect();
    assert!(
        why.iter().all(|w| w.contains("without a receipt")),
        "{why:?}"
    );
    wait_for("the settlement lines", || {
        purser
            .trace_lines()
            .iter()
            .filter(|l| l["kind"] == "settlement" && l["outcome"] == "unknown")
            .count()
            == 3
    });
}

#[test]
fn a_failed_receipt_or_a_fresh_402_releases_and_a_settled_receipt_commits() {
    let merchant = Merchant::start();
    let purser = Purser::start(POLICY, None);
    assert_eq!(
        pay(&purser, "f", &merchant.url("/failed"), &payment(9, 200_000)).0,
        200
    );
    assert_eq!(
        pay(&purser, "f", &merchant.url("/again"), &payment(10, 200_000)).0,
        402
    );
    assert_eq!(spent(&purser, "f"), ("0".into(), "0".into()));
    assert_eq!(
        pay(
            &purser,
            "f",
            &merchant.url("/settled"),
            &payment(11, 200_000)
        )
        .0,
        200
    );
    assert_eq!(spent(&purser, "f"), ("0.2".into(), "0".into()));
    assert!(unknown_payments(&purser, "").is_empty());
}

#[test]
fn replay_keys_do_not_depend_on_hex_spelling() {
    let merchant = Merchant::start();
    let purser = Purser::start(POLICY, None);
    let url = merchant.url("/settled");
    assert_eq!(pay(&purser, "h", &url, &payment(12, 10_000)).0, 200);
    let upper = |text: &str| text[2..].to_ascii_uppercase();
    let variants = [
        (
            PAYER[2..].to_string(),
            nonce(12)[2..].to_string(),
            signature(12)[2..].to_string(),
        ),
        (upper(PAYER), upper(&nonce(12)), upper(&signature(12))),
        (PAYER.to_string(), "0xc".to_string(), upper(&signature(12))),
        (
            PAYER.to_lowercase(),
            "C".to_string(),
            format!("0X{}", upper(&signature(12))),
        ),
    ];
    for (from, nonce_text, signature_text) in &variants {
        let sent = payment_spelled(from, nonce_text, signature_text, 10_000);
        let result = pay(&purser, "h", &url, &sent);
        assert!(
            refused_as(&result, "replayed_payment"),
            "{from} {nonce_text}: {result:?}"
        );
    }
    // Fields that are not bytes cannot be keyed: refused, not keyed loosely.
    for (from, nonce_text) in [(PAYER, "0xnot-hex"), ("alice", "0x0d")] {
        let sent = payment_spelled(from, nonce_text, &signature(13), 10_000);
        let result = pay(&purser, "h", &url, &sent);
        assert!(refused_as(&result, "malformed_payment"), "{result:?}");
    }
    let paid: Vec<Seen> = merchant.paid();
    assert_eq!(paid.len(), 1, "the authorization reached the merchant once");
}

#[test]
fn a_payment_purser_cannot_key_for_replays_is_refused() {
    // The policy can price a network whose payloads Purser does not read; with no replay
    // key, a copy could never be recognised, so such a payment does not go out.
    let policy = format!(
        "{POLICY}assets:\n  - {{network: \"aptos:1\", asset: \"0x1::aptos_coin::AptosCoin\", \
         symbol: APT, decimals: 8, usd_peg: 1}}\n"
    );
    let merchant = Merchant::start();
    let purser = Purser::start(&policy, None);
    let payload = serde_json::json!({"transaction": "anything", "signature": "anything"});
    let sent = Pay::usdc(1000)
        .network("aptos:1")
        .asset("0x1::aptos_coin::AptosCoin")
        .pay_to("0xmerchant")
        .extra(None)
        .payload(payload.as_object().cloned().unwrap_or_default())
        .resource(Some(resource_url("http://127.0.0.1/paid")))
        .header();
    let result = pay(&purser, "k", &merchant.url("/settled"), &sent);
    assert!(refused_as(&result, "unsupported_payment"), "{result:?}");
    assert!(merchant.paid().is_empty());
}
