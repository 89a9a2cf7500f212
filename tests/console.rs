//! The approvals console in a real browser: a payment held for approval shows up in the
//! page served at the admin listener's `/` with what a person needs to decide (network
//! and whether it is a testnet, the full payTo and payer, the recipient's trust, the
//! rule's own message, the budgets after approval), at desktop and at phone width. A
//! person approves, and the agent's request settles with the approver's name in the
//! trace; or denies with a typed reason, and the agent hears that reason. Needs
//! `chromium` and `chromium-driver`: without them each test fails, saying how to install
//! them (never a silent pass).

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::thread::JoinHandle;
use support::python::{agent, paid_server, AgentResult, Facilitator, PyServer};
use support::webdriver::Browser;
use support::{Purser, TempDir};

/// Pays in any phase; anything above $0.50 waits for a human, by a rule with a message.
const POLICY: &str = r#"
agents:
  agent: { token: t0ken }
phases:
  allowed_payment_phase: EXPLORE
budget:
  session_limit: 10.00
  agent_limit: 20.00
  graduated_gates:
    warning: 0.70
    restrict: 0.85
    halt: 0.95
rules:
  - id: cost-needs-approval
    condition: "cost > 0.50"
    action: REQUIRE_APPROVAL
    message: "Cost exceeds threshold; approval required"
"#;

const APPROVER: &str = "alice-browser";
/// The paid server's default payTo.
const PAY_TO: &str = "0x2096000000000000000000000000000000000287";
const RULE_MESSAGE: &str = "Cost exceeds threshold; approval required";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// A paid server on `network` and a Purser in front of it, with the agent's $0.75
/// request held (it blocks until someone decides).
struct Held {
    dir: TempDir,
    facilitator: Facilitator,
    _server: PyServer,
    purser: Purser,
    payer: JoinHandle<Vec<AgentResult>>,
}

fn hold_a_payment(label: &str, network: &str) -> Held {
    let dir = TempDir::new(label);
    let facilitator = Facilitator::start(dir.path());
    let server = paid_server(
        &facilitator,
        &["--price-atomic", "750000", "--network", network],
    );
    let purser = Purser::start(POLICY, None);
    let url = server.url("http", "/paid/data");
    let proxy = purser.proxy_url(Some(("agent.console", "t0ken")));
    let payer = std::thread::spawn(move || agent(&url, &proxy, None, &["--timeout", "120"]));
    Held {
        dir,
        facilitator,
        _server: server,
        purser,
        payer,
    }
}

/// The page's admin URL with the approver's name typed in.
fn open_console(browser: &Browser, purser: &Purser) {
    browser.goto(&format!("http://{}/", purser.admin));
    let name = browser.find("#name");
    name.clear();
    name.type_text(APPROVER);
}

/// The one pending hold as `GET /v1/approvals` lists it.
fn listed_hold(purser: &Purser) -> Value {
    let (status, approvals) = purser.admin("GET", "/v1/approvals", None);
    assert_eq!(status, 200, "{approvals}");
    let approvals: Value = serde_json::from_str(&approvals).expect("approvals JSON");
    approvals["approvals"][0].clone()
}

/// Saves a screenshot in the test's directory, and in `PURSER_SCREENSHOTS` when set.
fn screenshot(browser: &Browser, dir: &Path, name: &str) {
    let path = dir.join(name);
    browser.screenshot(&path);
    if let Some(keep) = std::env::var_os("PURSER_SCREENSHOTS") {
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&path, Path::new(&keep).join(name));
    }
}

/// Nothing on the page is wider than the viewport, and no section scrolls sideways.
fn assert_no_horizontal_overflow(browser: &Browser) {
    let widths = browser.execute(
        "var d = document.documentElement;
         var sections = Array.prototype.map.call(document.querySelectorAll('section'),
             function (s) { return [s.scrollWidth, s.clientWidth]; });
         return { page: [d.scrollWidth, d.clientWidth], sections: sections };",
        json!([]),
    );
    let fits = |pair: &Value| pair[0].as_u64() <= pair[1].as_u64() && pair[1].as_u64() > Some(0);
    assert!(fits(&widths["page"]), "the page overflows: {widths}");
    let sections = widths["sections"].as_array().expect("sections");
    assert!(
        sections.iter().all(fits),
        "a section scrolls sideways: {widths}"
    );
}

#[test]
fn a_held_payment_shows_what_the_approver_needs_and_is_approved() {
    let browser = Browser::start_or_fail("console");
    let held = hold_a_payment("console", "eip155:84532");
    browser.set_viewport(DESKTOP.0, DESKTOP.1);
    open_console(&browser, &held.purser);

    let row = browser.find("tr[data-hold-id]");
    let hold_id = row.attribute("data-hold-id").expect("data-hold-id");
    let hold = listed_hold(&held.purser);
    assert_eq!(hold["id"], hold_id.as_str());
    // The fields the console reads, next to the ones other tools already read.
    assert_eq!(hold["network"], "eip155:84532", "{hold}");
    assert_eq!(hold["network_id"], "eip155:84532", "{hold}");
    assert_eq!(hold["network_name"], "Base Sepolia", "{hold}");
    assert_eq!(hold["network_kind"], "testnet", "{hold}");
    assert_eq!(hold["pay_to"], PAY_TO, "{hold}");
    assert_eq!(hold["trust"], "unknown", "{hold}");
    assert_eq!(hold["rule"], "cost-needs-approval", "{hold}");
    assert_eq!(
        hold["rule_messages"],
        json!([{"id": "cost-needs-approval", "message": RULE_MESSAGE}])
    );
    assert_eq!(hold["rules"], json!(["cost-needs-approval"]));
    let payer = hold["payer"].as_str().expect("the payer").to_string();
    assert!(payer.starts_with("0x") && payer.len() == 42, "{hold}");
    let after = &hold["budget_after_approval"];
    assert_eq!(
        after["session"],
        json!({"limit": "10", "spent": "0", "reserved_other": "0",
               "this_payment": "0.75", "after": "0.75", "ratio": "0.075"})
    );
    assert_eq!(after["agent"]["after"], "0.75", "{after}");
    assert_eq!(after["agent"]["limit"], "20", "{after}");
    assert_eq!(after["agent"]["ratio"], "0.0375", "{after}");
    assert_eq!(
        after["gates"],
        json!({"warning": "0.70", "restrict": "0.85", "halt": "0.95"})
    );

    let shown = row.text();
    for expected in [
        "agent.console",
        "$0.75",
        "0.75 USDC",
        "/paid/data",
        "Base Sepolia",
        "eip155:84532",
        PAY_TO,
        &payer,
        "cost-needs-approval",
        RULE_MESSAGE,
        "$0.75 of $10.00 · 7.5%",
        "$0.75 of $20.00 · 3.75%",
        "$0.00 spent + $0.00 reserved + $0.75 this payment",
    ] {
        assert!(
            shown.contains(expected),
            "the hold row shows {expected}: {shown}"
        );
    }
    let in_row = |css: &str| {
        browser
            .find(&format!(r#"tr[data-hold-id="{hold_id}"] {css}"#))
            .text()
    };
    assert_eq!(in_row(".network .badge"), "testnet");
    assert_eq!(in_row(".trust"), "unknown");
    assert_eq!(in_row("code.pay-to"), PAY_TO, "the payTo is shown in full");
    assert_eq!(in_row("code.payer"), payer);
    for gate in ["warning", "restrict", "halt"] {
        // Two budgets after approval, each with its gates named.
        let named = browser.execute(
            "return Array.prototype.map.call(document.querySelectorAll(arguments[0]),
                 function (label) { return label.textContent; });",
            json!([format!(".budget-after .gate-label.{gate}")]),
        );
        assert_eq!(named, json!([gate, gate]), "the {gate} marks are labelled");
    }
    assert!(
        held.facilitator.settlements().is_empty(),
        "nothing settles while held"
    );
    assert_no_horizontal_overflow(&browser);
    screenshot(&browser, held.dir.path(), "console-desktop.png");

    // At phone width the hold is a card and nothing runs off the side.
    browser.set_viewport(PHONE.0, PHONE.1);
    assert_no_horizontal_overflow(&browser);
    let layout = browser.execute(
        "var row = document.querySelector('tr[data-hold-id]');
         return { row: getComputedStyle(row).display,
                  head: getComputedStyle(document.querySelector('#holds-table thead')).display,
                  lefts: Array.prototype.map.call(row.children, function (td) { return td.getBoundingClientRect().left; }) };",
        json!([]),
    );
    assert_ne!(layout["row"], "table-row", "the hold is a card: {layout}");
    assert_eq!(layout["head"], "none", "no table header: {layout}");
    let lefts = layout["lefts"].as_array().expect("cell positions");
    assert!(
        lefts.len() == 6 && lefts.iter().all(|left| left == &lefts[0]),
        "the card's fields stack in one column: {layout}"
    );
    screenshot(&browser, held.dir.path(), "console-phone.png");
    browser.execute(
        "document.querySelector('tr[data-hold-id] td.budget-after').scrollIntoView()",
        json!([]),
    );
    screenshot(&browser, held.dir.path(), "console-phone-budget.png");

    browser
        .find(&format!(
            r#"tr[data-hold-id="{hold_id}"] button[data-action="approve"]"#
        ))
        .click();

    let results = held.payer.join().expect("the agent thread");
    let paid = &results[0];
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.header("x-purser-decision"), Some("ALLOWED"));
    assert_eq!(held.facilitator.settlements().len(), 1);
    assert_eq!(held.facilitator.settled_atomic(), 750_000);

    let lines = held.purser.trace_lines();
    let hold_line = lines
        .iter()
        .find(|line| line["kind"] == "hold")
        .unwrap_or_else(|| panic!("no hold line in {lines:#?}"));
    assert_eq!(hold_line["approval"]["by"], APPROVER, "{hold_line}");

    // The page follows: the card leaves and the approver shows in the latest traces.
    browser.wait_until("the hold row to leave", || {
        browser
            .try_find(&format!(r#"tr[data-hold-id="{hold_id}"]"#))
            .is_none()
    });
    browser.wait_until("the approver in the traces", || {
        browser.find("#traces").text().contains(APPROVER)
    });
    assert_no_horizontal_overflow(&browser);
}

#[test]
fn a_payment_denied_from_a_phone_tells_the_agent_the_typed_reason() {
    let browser = Browser::start_or_fail("console");
    let held = hold_a_payment("console-deny", "eip155:8453");
    browser.set_viewport(PHONE.0, PHONE.1);
    open_console(&browser, &held.purser);

    let row = browser.find("tr[data-hold-id]");
    let hold_id = row.attribute("data-hold-id").expect("data-hold-id");
    let hold = listed_hold(&held.purser);
    assert_eq!(hold["network_kind"], "mainnet", "{hold}");
    let badge = browser
        .find(&format!(r#"tr[data-hold-id="{hold_id}"] .network .badge"#))
        .text();
    assert!(
        badge.starts_with("mainnet"),
        "Base is marked mainnet: {badge}"
    );
    assert!(row.text().contains("Base"), "{}", row.text());
    assert_no_horizontal_overflow(&browser);
    screenshot(&browser, held.dir.path(), "console-phone-mainnet.png");

    let reason = "price doubled since the quote; ask the vendor first";
    let field = browser.find(&format!(
        r#"tr[data-hold-id="{hold_id}"] input.deny-reason"#
    ));
    field.type_text(reason);
    browser
        .find(&format!(
            r#"tr[data-hold-id="{hold_id}"] button[data-action="deny"]"#
        ))
        .click();

    let results = held.payer.join().expect("the agent thread");
    let refused = &results[0];
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains(reason) && refused.body.contains(APPROVER),
        "the agent hears who denied and why: {}",
        refused.body
    );
    assert!(held.facilitator.settlements().is_empty());

    // The denied hold's line is queued to the trace writer: it can follow the 403.
    for _ in 0..1200 {
        let lines = held.purser.trace_lines();
        if lines
            .iter()
            .any(|line| line["kind"] == "hold" && line["approval"]["outcome"] == "denied")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let lines = held.purser.trace_lines();
    let hold_line = lines
        .iter()
        .find(|line| line["kind"] == "hold")
        .unwrap_or_else(|| panic!("no hold line in {lines:#?}"));
    assert_eq!(hold_line["approval"]["by"], APPROVER, "{hold_line}");
    assert_eq!(hold_line["approval"]["outcome"], "denied", "{hold_line}");
    assert!(
        hold_line["reason"]
            .as_str()
            .is_some_and(|text| text.contains(reason)),
        "{hold_line}"
    );
    browser.wait_until("the denial in the traces", || {
        browser.find("#traces").text().contains(reason)
    });
}

/// A payment the merchant answered without a receipt is `unknown` and counted; the
/// console lists it, and a person reconciles it (here: no money moved), with their name
/// and reason in the proof log and the amount back in the budget.
#[test]
fn an_unknown_payment_is_reconciled_from_the_console() {
    let browser = Browser::start_or_fail("console-unknown");
    let dir = TempDir::new("console-unknown");
    let origin = support::origin::Origin::plain_blocking();
    let purser = Purser::start(POLICY, None);
    let url = format!("http://127.0.0.1:{}/paid/report", origin.port());
    let (status, body) = support::pay(
        &purser,
        "unknown",
        &url,
        &support::crafted_payment(9, 250_000),
    );
    assert_eq!(status, 200, "{body}");
    let (_, listed) = purser.admin("GET", "/v1/payments?outcome=unknown", None);
    let listed: Value = serde_json::from_str(&listed).expect("payments JSON");
    let id = listed["payments"][0]["id"]
        .as_str()
        .expect("an unknown payment")
        .to_string();

    open_console(&browser, &purser);
    let row = format!(r#"tr[data-payment-id="{id}"]"#);
    let shown = browser.find(&row).text();
    for expected in [
        "$0.25",
        "/paid/report",
        "agent.unknown",
        "without a receipt",
    ] {
        assert!(
            shown.contains(expected),
            "the row shows {expected}: {shown}"
        );
    }
    screenshot(&browser, dir.path(), "console-unknown.png");
    browser
        .find(&format!("{row} input.deny-reason"))
        .type_text("no transfer on chain for this nonce");
    browser
        .find(&format!(r#"{row} button[data-outcome="released"]"#))
        .click();
    browser.wait_until("the row to go", || browser.try_find(&row).is_none());

    let (_, left) = purser.admin("GET", "/v1/payments?outcome=unknown", None);
    let left: Value = serde_json::from_str(&left).expect("payments JSON");
    assert_eq!(left["payments"], json!([]), "{left}");
    let resolution = purser
        .trace_lines()
        .into_iter()
        .find(|line| line["kind"] == "resolution")
        .expect("a resolution line");
    let text = resolution.to_string();
    assert!(text.contains(APPROVER), "{text}");
    assert!(
        text.contains("no transfer on chain for this nonce"),
        "{text}"
    );
    assert!(text.contains("released"), "{text}");
    let (_, session) = purser.admin("GET", "/v1/sessions/agent.unknown", None);
    let session: Value = serde_json::from_str(&session).expect("session JSON");
    assert_eq!(session["unknown"], "0", "{session}");
}
