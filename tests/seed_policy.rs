//! The design's own policy template (`policies/agent-governance-policy.yaml`, the seed's
//! file byte for byte) runs a real Purser and decides as it says: payments only in
//! COMMIT, phases move only along its `transition_rules` map, a payment above $0.50 waits
//! for a human (`PENDING_APPROVAL`), and its rules' messages reach the agent.

mod support;

use support::origin::Origin;
use support::{crafted_payment, pay, pending_holds, Purser};

const TEMPLATE: &str = include_str!("../policies/agent-governance-policy.yaml");

fn move_phase(purser: &Purser, session: &str, phase: &str) -> (u16, String) {
    purser.admin(
        "POST",
        &format!("/v1/sessions/{session}/phase"),
        Some(&format!("{{\"phase\":\"{phase}\"}}")),
    )
}

fn payments_seen(origin: &Origin) -> usize {
    origin
        .requests()
        .iter()
        .filter(|r| r.headers.contains_key("payment-signature"))
        .count()
}

#[test]
fn the_seed_template_governs_a_session_as_written() {
    let origin = Origin::plain_blocking();
    let purser = Purser::start(TEMPLATE, None);
    let url = format!("http://127.0.0.1:{}/paid/report", origin.port());
    let session = "agent.seed";

    // EXPLORE: the template's own rule refuses, with its own message.
    let (status, body) = pay(&purser, "seed", &url, &crafted_payment(1, 10_000));
    assert_eq!(status, 403, "{body}");
    let refusal: serde_json::Value = serde_json::from_str(&body).expect("JSON refusal");
    assert_eq!(refusal["rule"], "block_explore_payments", "{body}");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Payment tools require COMMIT phase"),
        "{body}"
    );
    assert_eq!(payments_seen(&origin), 0, "a refused payment never leaves");

    // transition_rules: EXPLORE → [DECIDE], DECIDE → [COMMIT]; no skip, no way back.
    let (status, body) = move_phase(&purser, session, "COMMIT");
    assert_eq!(status, 409, "EXPLORE → COMMIT is not in the map: {body}");
    assert!(body.contains("EXPLORE → COMMIT"), "{body}");
    assert_eq!(move_phase(&purser, session, "DECIDE").0, 200);
    let (status, body) = pay(&purser, "seed", &url, &crafted_payment(2, 10_000));
    assert_eq!(status, 403, "DECIDE is not COMMIT: {body}");
    assert_eq!(move_phase(&purser, session, "COMMIT").0, 200);
    assert_eq!(move_phase(&purser, session, "DECIDE").0, 409, "no way back");

    // COMMIT: a small payment goes out.
    let (status, body) = pay(&purser, "seed", &url, &crafted_payment(3, 100_000));
    assert_eq!(status, 200, "{body}");
    assert_eq!(payments_seen(&origin), 1);

    // Above $0.50: held for a human, who denies it here; it never leaves.
    let held = std::thread::spawn({
        let url = url.clone();
        let proxy_purser_url = purser.proxy_url(Some(("agent.seed", "any")));
        move || {
            support::curl(&[
                "-s",
                "-w",
                "\n%{http_code}",
                "-x",
                &proxy_purser_url,
                "-H",
                &format!("PAYMENT-SIGNATURE: {}", crafted_payment(4, 750_000)),
                &url,
            ])
        }
    });
    let hold = pending_holds(&purser, 1).remove(0);
    assert_eq!(hold["rules"][0], "require_approval_high_cost", "{hold}");
    let id = hold["id"].as_str().expect("hold id");
    let (status, body) = purser.admin(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(r#"{"by":"seed-test","reason":"not today"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let output = held.join().expect("the held agent");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.ends_with("403"), "a denied hold is a 403: {text}");
    assert_eq!(payments_seen(&origin), 1, "the denied payment never left");
}
