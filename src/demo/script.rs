//! The six steps the agent walks through, each with what it expects Purser to do. A step
//! that sees anything else stops the demo with [`DemoError::Step`], naming what it
//! expected and what it got.
//!
//! Steps 1–3 are here; the held payment and the failed transaction are in
//! [`super::script_later`], the MCP tool call in [`super::script_mcp`]. What is shared,
//! reporting a payment with its decision, rule, budget and proof-log lines, is
//! [`Stage::report`].

use super::admin::Admin;
use super::agent::{Agent, Purchase, Terms};
use super::error::DemoError;
use super::facilitator::Facilitator;
use super::http::Reply;
use super::launch::PurserProcess;
use super::merchant::{Merchant, Product, ANALYST_NOTES, CATALOG_PATH, MARKET_SNAPSHOT};
use super::merchant_mcp::McpShop;
use super::narrative::{self, detail, more, passed, say, usd, why};
use http::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Steps in all.
pub(super) const STEPS: u8 = 6;
/// The agent's name and token in the demo policy, and its session.
const AGENT: &str = "demo-agent";
const TOKEN: &str = "demo-token";
const SESSION: &str = "trip";
/// The agent's second session, for its MCP tool calls (it starts in EXPLORE).
const TOOLS_SESSION: &str = "tools";

/// Everything the steps use.
pub(super) struct Stage {
    pub agent: Agent,
    /// The same agent in its MCP session.
    pub tools_agent: Agent,
    pub admin: Admin,
    pub merchant: Merchant,
    /// The shop's MCP server (its paid tool).
    pub mcp: McpShop,
    pub facilitator: Facilitator,
    pub pause_at_hold: bool,
}

/// What Purser said about one paid request, and what the proof log holds for it.
pub(super) struct Report {
    pub decision: String,
    /// The rule that decided, from the decision line.
    pub rule: String,
    /// The merchant's settlement transaction, from its receipt.
    pub transaction: Option<String>,
}

/// Fails step `step` with `detail` unless `holds`.
pub(super) fn expect(
    step: u8,
    holds: bool,
    detail: impl FnOnce() -> String,
) -> Result<(), DemoError> {
    if holds {
        Ok(())
    } else {
        Err(DemoError::Step {
            step,
            detail: detail(),
        })
    }
}

impl Stage {
    pub(super) fn new(
        purser: &PurserProcess,
        merchant: Merchant,
        mcp: McpShop,
        facilitator: Facilitator,
        pause_at_hold: bool,
    ) -> Stage {
        Stage {
            agent: Agent::new(purser.proxy, AGENT, SESSION, TOKEN),
            tools_agent: Agent::new(purser.proxy, AGENT, TOOLS_SESSION, TOKEN),
            admin: Admin {
                address: purser.admin,
            },
            merchant,
            mcp,
            facilitator,
            pause_at_hold,
        }
    }

    /// The session as the admin API shows it.
    pub(super) async fn session(&self) -> Result<Value, DemoError> {
        self.admin.session(&self.agent.session_id).await
    }

    /// Prints one payment: the challenge (unless shown already), Purser's decision and
    /// rule, the merchant's answer and receipt, the budget, and the proof-log lines about
    /// it. The budget is left out after a failed step, whose refunds are under way.
    pub(super) async fn report(
        &self,
        step: u8,
        product: &Product,
        purchase: &Purchase,
        show_challenge: bool,
    ) -> Result<Report, DemoError> {
        let offer = &purchase.offer;
        if show_challenge {
            challenge_lines(offer.version, offer.usd, &offer.network);
        }
        let reply = &purchase.reply;
        let decision = reply.header("x-purser-decision").unwrap_or("").to_string();
        let trace_id = reply.header("x-purser-trace").unwrap_or("").to_string();
        expect(step, !trace_id.is_empty(), || {
            format!(
                "Purser's answer to {} carries no X-Purser-Trace (status {})",
                product.path, reply.status
            )
        })?;
        let receipt = receipt(reply, offer.version);
        let session = &self.agent.session_id;
        let lines = self
            .trace_lines(session, &trace_id, receipt.is_some())
            .await?;
        let decided = lines.iter().find(|l| l["kind"] == "decision");
        let rule = show_decision(reply, &decision, decided);
        show_merchant_answer(reply, offer.version, receipt.as_deref(), &decision);
        if !product.fails_after_payment {
            detail("budget", &narrative::budget(&self.session().await?));
        }
        narrative::block("trace", lines.iter().map(narrative::trace_summary));
        Ok(Report {
            decision,
            rule,
            transaction: receipt,
        })
    }

    /// The agent session's latest `phase` line, waiting a little: it is written as the
    /// phase moves, not before the answer that moved it.
    pub(super) async fn phase_line(&self) -> Result<Option<Value>, DemoError> {
        for _ in 0..50 {
            let found = self
                .admin
                .traces(&self.agent.session_id)
                .await?
                .into_iter()
                .rfind(|l| l["kind"] == "phase");
            if found.is_some() {
                return Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// The proof-log lines of `session` about decision `trace_id`: the decision, a hold,
    /// and (waiting a little, since it is written after the answer) the settlement when
    /// one is due.
    pub(super) async fn trace_lines(
        &self,
        session: &str,
        trace_id: &str,
        settlement_due: bool,
    ) -> Result<Vec<Value>, DemoError> {
        let mut lines = Vec::new();
        for _ in 0..50 {
            lines = self
                .admin
                .traces(session)
                .await?
                .into_iter()
                .filter(|l| l["trace_id"] == trace_id || l["decision_trace_id"] == trace_id)
                .filter(|l| l["kind"] != "compensation")
                .collect();
            let settled = lines.iter().any(|l| l["kind"] == "settlement");
            if !settlement_due || settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(lines)
    }
}

/// Purser's decision, the rule and the reason; returns the rule. A held payment shows
/// both its first decision and how the hold ended.
fn show_decision(reply: &Reply, decision: &str, decided: Option<&Value>) -> String {
    let field = |name: &str| decided.and_then(|l| l[name].as_str()).map(str::to_string);
    let rule = field("rule").unwrap_or_default();
    let first_decision = field("decision").unwrap_or_default();
    if first_decision == "PENDING_APPROVAL" && decision != first_decision {
        detail(
            "Purser",
            &format!("{first_decision} → {decision} · rule {rule}"),
        );
    } else {
        detail("Purser", &format!("{decision} · rule {rule}"));
    }
    // The decision line says why Purser decided; when a held payment was then refused
    // (denied, timed out), the refusal says why it ended so.
    let reason = if decision == "DENIED" && first_decision != "DENIED" {
        refusal_reason(reply).or(field("reason"))
    } else {
        field("reason").or_else(|| refusal_reason(reply))
    };
    if let Some(reason) = reason {
        more(&reason);
    }
    rule
}

/// The merchant's answer to a forwarded payment and its receipt.
fn show_merchant_answer(reply: &Reply, version: u8, receipt: Option<&str>, decision: &str) {
    let status = status_text(reply.status);
    match receipt {
        Some(transaction) => {
            let header = if version == 2 {
                "PAYMENT-RESPONSE"
            } else {
                "X-PAYMENT-RESPONSE"
            };
            detail(
                "merchant",
                &format!("{status} · settled by the facilitator stub"),
            );
            more(&format!(
                "receipt in {header}: tx {}",
                narrative::short(transaction)
            ));
        }
        None if decision == "ALLOWED" => detail("merchant", &format!("{status} · no receipt")),
        None => {}
    }
}

/// The merchant's `402` and the agent's payment, as two lines.
pub(super) fn challenge_lines(version: u8, amount: rust_decimal::Decimal, network: &str) {
    challenge_line(version, amount, network);
    let payment_header = if version == 2 {
        "PAYMENT-SIGNATURE"
    } else {
        "X-PAYMENT"
    };
    detail(
        "agent",
        &format!("signs an EIP-3009 authorization, retries with {payment_header}"),
    );
}

/// The merchant's `402`: the price and where the challenge travels.
fn challenge_line(version: u8, amount: rust_decimal::Decimal, network: &str) {
    let form = if version == 2 {
        "PAYMENT-REQUIRED header"
    } else {
        "JSON body"
    };
    detail(
        "merchant",
        &format!(
            "402 · {} USDC on {network} · x402 v{version}, {form}",
            usd(amount)
        ),
    );
}

/// The settlement transaction of a successful receipt, if the answer carries one.
pub(super) fn receipt(reply: &Reply, version: u8) -> Option<String> {
    let name = if version == 2 {
        "payment-response"
    } else {
        "x-payment-response"
    };
    let parsed = crate::x402::parse_receipt(reply.headers.get(name)?.as_bytes()).ok()?;
    parsed
        .success
        .then(|| parsed.transaction.unwrap_or_default())
}

/// The reason of a refusal Purser answered itself (`403` JSON).
fn refusal_reason(reply: &Reply) -> Option<String> {
    if reply.status != StatusCode::FORBIDDEN {
        return None;
    }
    reply.json()?["reason"].as_str().map(str::to_string)
}

/// `200 OK`, `500 Internal Server Error`.
pub(super) fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// Step 1: reads without payment pass untouched; a 402 is passed back and remembered.
pub(super) async fn read_freely(stage: &Stage) -> Result<(), DemoError> {
    const STEP: u8 = 1;
    narrative::heading(STEP, STEPS, "Reading is free");
    say("The agent's session starts in the EXPLORE phase. It looks around the shop.");
    let catalog = stage
        .agent
        .fetch("GET", &stage.merchant.url(CATALOG_PATH), &[])
        .await?;
    narrative::request(&format!("GET {CATALOG_PATH}"));
    let products = catalog
        .json()
        .and_then(|c| c["products"].as_array().map(Vec::len))
        .unwrap_or(0);
    detail(
        "merchant",
        &format!(
            "{} · {products} products listed, no payment asked",
            status_text(catalog.status)
        ),
    );
    detail("Purser", "forwarded it; no payment, so nothing to decide");
    expect(STEP, catalog.status == StatusCode::OK, || {
        format!(
            "GET {CATALOG_PATH} answered {}, expected 200",
            catalog.status
        )
    })?;
    expect(STEP, catalog.header("x-purser-decision").is_none(), || {
        "Purser made a decision about a request without a payment".to_string()
    })?;
    for product in [MARKET_SNAPSHOT, ANALYST_NOTES] {
        let reply = stage
            .agent
            .fetch(product.method, &stage.merchant.url(product.path), &[])
            .await?;
        narrative::request(&format!("{} {}", product.method, product.path));
        expect(STEP, reply.status == StatusCode::PAYMENT_REQUIRED, || {
            format!("{} answered {}, expected 402", product.path, reply.status)
        })?;
        let offer = Terms::read(&reply)
            .and_then(|terms| terms.offer())
            .map_err(|message| DemoError::Step {
                step: STEP,
                detail: format!("the challenge of {}: {message}", product.path),
            })?;
        challenge_line(offer.version, offer.usd, &offer.network);
        detail("Purser", "passed the challenge back and remembered it");
    }
    let decisions = stage.admin.traces(&stage.agent.session_id).await?;
    expect(
        STEP,
        decisions.iter().all(|l| l["kind"] != "decision"),
        || "the proof log holds a decision although nothing was paid".to_string(),
    )?;
    why(
        "a request that carries no payment is ordinary traffic: Purser forwards it and has \
         nothing to decide. It does remember each 402 challenge, so that a payment for that \
         resource can later be checked against what the merchant asked (this policy refuses \
         payments that answer no challenge Purser saw: x402.require_challenge).",
    );
    passed("Free reads went through; the agent saw two prices, one per x402 version.");
    Ok(())
}

/// Step 2: a payment in EXPLORE is refused by the `phase` rule and never leaves.
pub(super) async fn refused_while_exploring(stage: &Stage) -> Result<(), DemoError> {
    const STEP: u8 = 2;
    narrative::heading(STEP, STEPS, "A payment while exploring is refused");
    let session = stage.session().await?;
    say(&format!(
        "The admin API shows the session {} in phase {}. The agent tries to buy the {} anyway.",
        stage.agent.session_id,
        session["phase"].as_str().unwrap_or("?"),
        MARKET_SNAPSHOT.title
    ));
    let product = MARKET_SNAPSHOT;
    announce(&product);
    let purchase = stage
        .agent
        .buy(&stage.merchant.url(product.path), &product, &[], false)
        .await?;
    let report = stage.report(STEP, &product, &purchase, true).await?;
    expect(STEP, purchase.reply.status == StatusCode::FORBIDDEN, || {
        format!("Purser answered {}, expected 403", purchase.reply.status)
    })?;
    expect(
        STEP,
        report.decision == "DENIED" && report.rule == "phase",
        || {
            format!(
                "expected DENIED by rule phase, got {} by rule {}",
                report.decision, report.rule
            )
        },
    )?;
    expect(STEP, stage.merchant.payments_seen() == 0, || {
        "the refused payment reached the merchant".to_string()
    })?;
    expect(STEP, stage.facilitator.settlements().is_empty(), || {
        "the facilitator settled a refused payment".to_string()
    })?;
    why(
        "the demo policy lets payments out only from the COMMIT phase on \
         (phases.allowed_payment_phase). An agent that is still exploring should not be \
         spending. Purser answered 403 itself, with the rule and the trace id, and wrote \
         the decision to the proof log before answering.",
    );
    passed("Refused before it left: the merchant saw no payment, the facilitator settled nothing.");
    Ok(())
}

/// Step 3: the agent moves its session to COMMIT; two payments, v2 and v1, settle.
pub(super) async fn commit_and_pay(stage: &Stage) -> Result<(), DemoError> {
    const STEP: u8 = 3;
    narrative::heading(STEP, STEPS, "Commit, pay, settle");
    say(
        "The agent has decided. It moves its own session to COMMIT by sending an \
         X-Purser-Phase header with its next request (the demo policy allows this: \
         phases.transition_rules.agent_header; an operator could do it instead with \
         POST /v1/sessions/ID/phase).",
    );
    let phase_header = [("x-purser-phase", "COMMIT".to_string())];
    let reply = stage
        .agent
        .fetch("GET", &stage.merchant.url(CATALOG_PATH), &phase_header)
        .await?;
    narrative::request(&format!("GET {CATALOG_PATH} with X-Purser-Phase: COMMIT"));
    detail("merchant", &status_text(reply.status));
    let session = stage.session().await?;
    let phase = session["phase"].as_str().unwrap_or("?").to_string();
    detail(
        "session",
        &format!("{} is now in {phase}", stage.agent.session_id),
    );
    let phase_line = stage.phase_line().await?;
    if let Some(line) = &phase_line {
        detail("trace", &narrative::trace_summary(line));
    }
    expect(
        STEP,
        reply.status == StatusCode::OK && phase == "COMMIT",
        || {
            format!(
                "after X-Purser-Phase: COMMIT the session is in {phase} (answer {})",
                reply.status
            )
        },
    )?;
    let mut spent = rust_decimal::Decimal::ZERO;
    for product in [MARKET_SNAPSHOT, ANALYST_NOTES] {
        announce(&product);
        let purchase = stage
            .agent
            .buy(&stage.merchant.url(product.path), &product, &[], false)
            .await?;
        let report = stage.report(STEP, &product, &purchase, true).await?;
        expect_settled(STEP, &product, &purchase, &report)?;
        spent += product.price_usd();
    }
    expect(STEP, stage.facilitator.settlements().len() == 2, || {
        format!(
            "the facilitator holds {} settlements, expected 2",
            stage.facilitator.settlements().len()
        )
    })?;
    why(
        "in COMMIT, below the per-call threshold ($0.50) and well within the budget, no rule \
         objects (the decision is `default`). Purser reserves the amount, forwards the \
         payment, and books it as spent once the merchant's receipt says it settled.",
    );
    passed(&format!(
        "Both payments settled, one per x402 version; the session has spent {}.",
        usd(spent)
    ));
    Ok(())
}

/// Prints the request line for a product.
pub(super) fn announce(product: &Product) {
    narrative::request(&format!(
        "{} {}  ({}, x402 v{})",
        product.method,
        product.path,
        usd(product.price_usd()),
        product.version
    ));
}

/// A payment that should have gone out and settled: `200`, `ALLOWED`, a receipt.
pub(super) fn expect_settled(
    step: u8,
    product: &Product,
    purchase: &Purchase,
    report: &Report,
) -> Result<(), DemoError> {
    let wanted = if product.fails_after_payment {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    expect(step, purchase.reply.status == wanted, || {
        format!(
            "{} answered {}, expected {wanted}: {}",
            product.path,
            purchase.reply.status,
            String::from_utf8_lossy(&purchase.reply.body)
        )
    })?;
    expect(step, report.decision == "ALLOWED", || {
        format!(
            "{}: expected ALLOWED, got {}",
            product.path, report.decision
        )
    })?;
    expect(step, report.transaction.is_some(), || {
        format!("{}: the answer carries no successful receipt", product.path)
    })
}
