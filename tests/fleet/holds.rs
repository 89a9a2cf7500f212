//! Holds across the fleet: a payment held on one replica is listed by every replica,
//! and an approval given on another releases the request on the one holding it (the
//! store notifies it), bound to the held payment's digest.

use super::{decision, facilitator, pay, Fleet};
use purser_kit::client::Conn;
use serde_json::Value;

const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
  single_call_threshold: 0.50
approvals:
  timeout: 60s
"#;

/// The pending holds `replica` lists, once there are `count`.
fn listed(replica: &crate::support::Purser, count: usize) -> Vec<Value> {
    crate::support::pending_holds(replica, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_on_one_replica_is_listed_everywhere_and_approved_through_another() {
    let Some(fleet) = Fleet::start("holds", POLICY, 3, &[]) else {
        return;
    };
    let (merchant, address) = facilitator();
    let url = format!("http://{address}/paid");
    let (a, b, c) = (&fleet.replicas[0], &fleet.replicas[1], &fleet.replicas[2]);

    // $0.75 through B: above the single-call threshold, so B holds the request.
    let b_proxy = b.proxy;
    let held_url = url.clone();
    let held = tokio::spawn(async move {
        let mut conn = Conn::new(b_proxy);
        pay(&mut conn, "s1", &held_url, 1, 750_000).await
    });
    let holds = listed(c, 1);
    assert_eq!(holds.len(), 1, "C lists the hold B keeps: {holds:?}");
    let hold = &holds[0];
    assert_eq!(hold["session"], "agent.s1");
    assert_eq!(listed(a, 1).len(), 1, "so does A");
    let id = hold["id"].as_str().expect("hold id").to_string();
    let digest = hold["digest"].as_str().expect("digest").to_string();

    // An approval for another payment's digest is refused, and changes nothing.
    let wrong = format!("{{\"by\":\"ann\",\"digest\":\"{}\"}}", "0".repeat(64));
    let (status, body) = a.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(&wrong));
    assert_eq!(status, 409, "{body}");
    assert_eq!(listed(c, 1).len(), 1, "still pending");

    // Approved through A: B forwards exactly the payment it held.
    let right = format!("{{\"by\":\"ann\",\"digest\":\"{digest}\"}}");
    let (status, body) = a.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(&right));
    assert_eq!(status, 200, "{body}");
    let answer = held.await.expect("the held request");
    assert_eq!(decision(&answer), "ALLOWED", "{}", answer.excerpt());
    assert_eq!(merchant.record().settlements.len(), 1);

    // Decided once, fleet-wide: a second approval anywhere is a conflict.
    let (status, _) = c.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(&right));
    assert_eq!(status, 409);
    let (_, body) = c.admin("GET", "/v1/approvals", None);
    assert!(body.contains("\"approvals\":[]"), "nothing pending: {body}");

    // A denial through C releases B's next held request with a 403.
    let denied = tokio::spawn(async move {
        let mut conn = Conn::new(b_proxy);
        pay(&mut conn, "s2", &url, 2, 750_000).await
    });
    let id = listed(a, 1)[0]["id"].as_str().unwrap().to_string();
    let (status, body) = c.admin(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some("{\"by\":\"bob\",\"reason\":\"too dear\"}"),
    );
    assert_eq!(status, 200, "{body}");
    let answer = denied.await.expect("the denied request");
    assert_eq!(answer.status.as_u16(), 403, "{}", answer.excerpt());
    assert_eq!(
        merchant.record().settlements.len(),
        1,
        "nothing more settled"
    );
}
