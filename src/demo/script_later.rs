//! Steps 4 and 5: a payment above the per-call threshold held for a person (approved by
//! the demo, or by you with `--pause-at-hold`), and a transaction whose last step fails
//! after paying, so that Purser asks for every payment of it to be refunded.

use super::error::DemoError;
use super::facilitator::RefundRequest;
use super::merchant::{Product, CAR, FLIGHT, FULL_HISTORY, HOTEL};
use super::narrative::{self, detail, gap, line, more, passed, say, usd, why};
use super::script::{announce, challenge_lines, expect, expect_settled, Stage, STEPS};
use rust_decimal::Decimal;
use serde_json::Value;
use std::time::Duration;

/// The demo's transaction id (`X-Purser-Transaction`).
const TRANSACTION: &str = "trip-42";
/// The transaction step's number.
const STEP_5: u8 = 5;
/// Who approves the hold when the demo does it.
const DEMO_APPROVER: &str = "purser-demo";

/// Step 4: the $0.75 payment waits for a person, then goes out.
pub(super) async fn held_for_a_person(stage: &Stage) -> Result<(), DemoError> {
    const STEP: u8 = 4;
    narrative::heading(
        STEP,
        STEPS,
        "Above the per-call threshold, a person decides",
    );
    say(&format!(
        "The agent wants the {} for {}. The policy's per-call threshold is $0.50 \
         (budget.single_call_threshold): above it, a person decides. Purser holds the \
         agent's request open meanwhile.",
        FULL_HISTORY.title,
        usd(FULL_HISTORY.price_usd())
    ));
    let product = FULL_HISTORY;
    announce(&product);
    let agent = stage.agent.clone();
    let url = stage.merchant.url(product.path);
    let buying = tokio::spawn(async move { agent.buy(&url, &product, &[], true).await });
    challenge_lines(product.version, product.price_usd(), product.network());
    let hold = match wait_for_hold(stage, &buying).await {
        Ok(hold) => hold,
        Err(error) => {
            buying.abort();
            return Err(error);
        }
    };
    let id = hold["id"].as_str().unwrap_or_default().to_string();
    show_hold(stage, &hold);
    let_a_person_decide(stage, &id).await?;
    let purchase = buying.await.map_err(|e| DemoError::Step {
        step: STEP,
        detail: format!("the agent's held request failed: {e}"),
    })??;
    gap();
    line("The answer to the agent's held request:");
    let report = stage.report(STEP, &product, &purchase, false).await?;
    expect(STEP, report.rule == "single_call_threshold", || {
        format!(
            "expected the hold to come from rule single_call_threshold, got {}",
            report.rule
        )
    })?;
    if stage.pause_at_hold && report.decision == "DENIED" {
        why(
            "you denied it (or nobody decided in time): Purser answered 403, released the \
             reserved amount, and the payment never left. The decision and the hold are both \
             in the proof log.",
        );
        passed("Held, then refused as you decided.");
        return Ok(());
    }
    expect_settled(STEP, &product, &purchase, &report)?;
    why(
        "a hold keeps the amount reserved, so nothing else can spend it while a person \
         looks, and the approval is written to the proof log before the payment leaves. A \
         hold nobody decides is denied after approvals.timeout (5 minutes here).",
    );
    passed("Held, approved, paid and settled.");
    Ok(())
}

/// With `--pause-at-hold`, tells the person where to decide and lets them; otherwise
/// the demo approves through the admin API, as a person would in the console.
async fn let_a_person_decide(stage: &Stage, id: &str) -> Result<(), DemoError> {
    if stage.pause_at_hold {
        gap();
        line("The demo waits for you. Approve or deny the payment in the console:");
        line(&format!("    {}", stage.admin.console_url()));
        line("or from another terminal:");
        line(&format!(
            "    purser approvals approve {id} --admin {}",
            stage.admin.base_url()
        ));
        // One line for programs (and tests) driving the demo.
        line(&format!(
            "PAUSED hold={id} console={}",
            stage.admin.console_url()
        ));
    } else {
        gap();
        detail(
            "person",
            "the demo approves it through the admin API, as a person would in the console",
        );
        more(&format!("(POST /v1/approvals/{id}/approve)"));
        stage.admin.approve(id, DEMO_APPROVER).await?;
    }
    Ok(())
}

/// Waits until the agent's payment is listed as held.
async fn wait_for_hold(
    stage: &Stage,
    buying: &tokio::task::JoinHandle<Result<super::agent::Purchase, DemoError>>,
) -> Result<Value, DemoError> {
    const STEP: u8 = 4;
    for _ in 0..200 {
        let holds = stage.admin.pending_holds().await?;
        if let Some(hold) = holds
            .into_iter()
            .find(|h| h["session"] == stage.agent.session_id.as_str())
        {
            return Ok(hold);
        }
        if buying.is_finished() {
            return Err(DemoError::Step {
                step: STEP,
                detail: "the payment above the threshold was answered without being held"
                    .to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(DemoError::Step {
        step: STEP,
        detail: "no hold appeared in GET /v1/approvals within 10 seconds".to_string(),
    })
}

/// What the console shows a person about the hold.
fn show_hold(stage: &Stage, hold: &Value) {
    let text = |name: &str| hold[name].as_str().unwrap_or("").to_string();
    let rules: Vec<&str> = hold["rules"]
        .as_array()
        .map(|rules| rules.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    detail("Purser", "PENDING_APPROVAL · the request is held open");
    gap();
    line(&format!(
        "What a person sees in the console ({}):",
        stage.admin.console_url()
    ));
    detail("hold", &text("id"));
    detail(
        "payment",
        &format!(
            "${} {} to {}",
            text("amount_usd"),
            text("asset_symbol"),
            narrative::short(&text("pay_to"))
        ),
    );
    detail(
        "for",
        &format!("{} {}{}", text("method"), text("host"), text("path")),
    );
    detail("session", &text("session"));
    detail("rules", &rules.join(", "));
    detail("reason", &text("reason"));
    detail(
        "deadline",
        &format!("{} (denied if nobody decides)", text("deadline")),
    );
}

/// Step 5: three paid steps of one transaction; the last fails after paying; all three
/// are refunded and the budget gets them back.
pub(super) async fn failed_transaction(stage: &Stage) -> Result<(), DemoError> {
    narrative::heading(STEP_5, STEPS, "A failed transaction is compensated");
    say(&format!(
        "The agent books a trip as one transaction: it sends X-Purser-Transaction: \
         {TRANSACTION} with every step. The car rental takes its payment and then fails \
         with a 500."
    ));
    let spent_before = spent(&stage.session().await?);
    let paid = book_the_trip(stage).await?;
    check_refunds(stage, &paid).await?;
    let session = stage.session().await?;
    detail("budget", &narrative::budget(&session));
    expect(STEP_5, spent(&session) == spent_before, || {
        format!(
            "after the refunds the session has spent {}, expected {} (compensation.credit_budget)",
            usd(spent(&session)),
            usd(spent_before)
        )
    })?;
    why(
        "a payment that settled for a step that then failed is money spent for nothing. \
         Steps sharing an X-Purser-Transaction id form one unit of work, so when one fails \
         after paying, every payment of it is compensated, each refund request is written \
         to the proof log, and (compensation.credit_budget) the amounts return to the \
         budget.",
    );
    passed(&format!(
        "All {} payments of the failed transaction were refunded (the requests reached the \
         stub), and the budget is back to {}.",
        paid.len(),
        usd(spent_before)
    ));
    Ok(())
}

/// The three steps of the trip, each paid and settled; the last answers 500. Returns
/// each product with its settlement transaction.
async fn book_the_trip(stage: &Stage) -> Result<Vec<(Product, String)>, DemoError> {
    let header = [("x-purser-transaction", TRANSACTION.to_string())];
    let mut paid = Vec::new();
    for product in [FLIGHT, HOTEL, CAR] {
        announce(&product);
        let purchase = stage
            .agent
            .buy(&stage.merchant.url(product.path), &product, &header, false)
            .await?;
        let report = stage.report(STEP_5, &product, &purchase, true).await?;
        expect_settled(STEP_5, &product, &purchase, &report)?;
        paid.push((product, report.transaction.unwrap_or_default()));
    }
    Ok(paid)
}

/// Every settled payment of the trip got a refund request at the stub, and a
/// `requested` compensation line in the proof log.
async fn check_refunds(stage: &Stage, paid: &[(Product, String)]) -> Result<(), DemoError> {
    let refunds = wait_for_refunds(stage, paid.len()).await;
    gap();
    say(&format!(
        "A step of {TRANSACTION} failed after it was paid, so Purser asked the refund \
         endpoint (compensation.endpoint, here the facilitator stub) to refund every payment \
         of the transaction, newest first:"
    ));
    for refund in &refunds {
        let title = paid
            .iter()
            .find(|(_, tx)| Some(tx) == refund.tx_hash.as_ref())
            .map(|(product, _)| product.title)
            .unwrap_or("?");
        let amount = narrative::decimal(&Value::String(refund.amount_usd.clone()))
            .map(usd)
            .unwrap_or_else(|| refund.amount_usd.clone());
        detail(
            "refund",
            &format!(
                "{amount} for the {title} (settlement tx {}), id {}",
                narrative::short(refund.tx_hash.as_deref().unwrap_or("?")),
                refund.refund_id
            ),
        );
    }
    let everything_refunded = paid
        .iter()
        .all(|(_, tx)| refunds.iter().any(|r| r.tx_hash.as_ref() == Some(tx)));
    expect(
        STEP_5,
        refunds.len() == paid.len() && everything_refunded,
        || {
            format!(
                "{} refund requests for {TRANSACTION} reached the stub, expected one for each \
             of the {} settled payments",
                refunds.len(),
                paid.len()
            )
        },
    )?;
    let compensations = wait_for_compensation_lines(stage, paid.len()).await?;
    narrative::block("trace", compensations.iter().map(narrative::trace_summary));
    expect(STEP_5, compensations.len() == paid.len(), || {
        format!(
            "the proof log holds {} `requested` compensation lines, expected {}",
            compensations.len(),
            paid.len()
        )
    })
}

fn spent(session: &Value) -> Decimal {
    narrative::decimal(&session["spent"]).unwrap_or_default()
}

/// Waits (up to 15 s) for `count` refund requests for the demo's transaction.
async fn wait_for_refunds(stage: &Stage, count: usize) -> Vec<RefundRequest> {
    let mine = || -> Vec<RefundRequest> {
        stage
            .facilitator
            .refunds()
            .into_iter()
            .filter(|r| r.transaction.as_deref() == Some(TRANSACTION))
            .collect()
    };
    for _ in 0..150 {
        if mine().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mine()
}

/// Waits (up to 10 s) for `count` `requested` compensation lines in the proof log.
async fn wait_for_compensation_lines(stage: &Stage, count: usize) -> Result<Vec<Value>, DemoError> {
    let mut requested = Vec::new();
    for _ in 0..100 {
        requested = stage
            .admin
            .traces(&stage.agent.session_id)
            .await?
            .into_iter()
            .filter(|l| l["kind"] == "compensation" && l["outcome"] == "requested")
            .collect();
        if requested.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(requested)
}
