//! The approvals console in a real browser: a payment held for approval shows up in the
//! page served at the admin listener's `/`, a person types their name and clicks
//! Approve, and the agent's open request completes and settles, with the approver's name
//! in the proof trace. Needs `chromium` and `chromium-driver` (skipped without them,
//! except under CI).

mod support;

use support::python::{agent, paid_server, Facilitator};
use support::webdriver::Browser;
use support::{Purser, TempDir};

/// Pays in any phase; anything above $0.50 waits for a human.
const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
  single_call_threshold: 0.50
"#;

const APPROVER: &str = "alice-browser";

#[test]
fn a_held_payment_is_approved_from_the_browser_console() {
    let Some(browser) = Browser::start_or_skip("console") else {
        return;
    };
    let dir = TempDir::new("console");
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(&facilitator, &["--price-atomic", "750000"]);
    let purser = Purser::start(POLICY, None);

    // The agent's paid request is held: it blocks until someone decides.
    let url = server.url("http", "/paid/data");
    let proxy = purser.proxy_url(Some(("agent.console", "t0ken")));
    let payer = std::thread::spawn(move || agent(&url, &proxy, None, &["--timeout", "120"]));

    browser.goto(&format!("http://{}/", purser.admin));
    let name = browser.find("#name");
    name.clear();
    name.type_text(APPROVER);

    let row = browser.find("tr[data-hold-id]");
    let hold_id = row.attribute("data-hold-id").expect("data-hold-id");
    let (status, approvals) = purser.admin("GET", "/v1/approvals", None);
    assert_eq!(status, 200, "{approvals}");
    let approvals: serde_json::Value = serde_json::from_str(&approvals).expect("approvals JSON");
    assert_eq!(approvals["approvals"][0]["id"], hold_id.as_str());
    let shown = row.text();
    for expected in ["agent.console", "$0.75", "0.75 USDC", "/paid/data"] {
        assert!(
            shown.contains(expected),
            "the hold row shows {expected}: {shown}"
        );
    }
    assert!(
        facilitator.settlements().is_empty(),
        "nothing settles while held"
    );

    let screenshot = dir.path().join("console-held.png");
    browser.screenshot(&screenshot);
    if let Some(keep) = std::env::var_os("PURSER_SCREENSHOTS") {
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(
            &screenshot,
            std::path::Path::new(&keep).join("console-held.png"),
        );
    }

    browser
        .find(&format!(
            r#"tr[data-hold-id="{hold_id}"] button[data-action="approve"]"#
        ))
        .click();

    let results = payer.join().expect("the agent thread");
    let paid = &results[0];
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.header("x-purser-decision"), Some("ALLOWED"));
    assert_eq!(facilitator.settlements().len(), 1);
    assert_eq!(facilitator.settled_atomic(), 750_000);

    let lines = purser.trace_lines();
    let hold = lines
        .iter()
        .find(|line| line["kind"] == "hold")
        .unwrap_or_else(|| panic!("no hold line in {lines:#?}"));
    assert_eq!(hold["approval"]["by"], APPROVER, "{hold}");

    // The page follows: the row leaves and the approver shows in the latest traces.
    browser.wait_until("the hold row to leave", || {
        browser
            .try_find(&format!(r#"tr[data-hold-id="{hold_id}"]"#))
            .is_none()
    });
    browser.wait_until("the approver in the traces", || {
        browser.find("#traces").text().contains(APPROVER)
    });
}
