//! Step 6: a paid MCP tool call, governed like any payment. A second session of the
//! agent (it starts in EXPLORE) calls the merchant's paid MCP tool over streamable HTTP,
//! as x402's MCP client does: a call without payment, the challenge in the tool result,
//! the call again with `_meta["x402/payment"]`. In EXPLORE Purser refuses it with a tool
//! result the MCP client shows the model; in COMMIT it pays once and the receipt in the
//! result settles it.

use super::agent::{offer, payment_v2, Agent};
use super::error::DemoError;
use super::http::Reply;
use super::merchant_mcp::{MCP_PATH, QUOTE_PRICE_ATOMIC, QUOTE_TOOL};
use super::narrative::{self, detail, more, passed, say, usd, why};
use super::script::{expect, status_text, Stage, STEPS};
use crate::x402::wire::PaymentRequiredV2;
use bytes::Bytes;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const STEP: u8 = 6;

/// What one tool call came back with.
struct Called {
    reply: Reply,
    result: Value,
}

/// Step 6.
pub(super) async fn mcp_tool_call(stage: &Stage) -> Result<(), DemoError> {
    narrative::heading(STEP, STEPS, "A paid MCP tool call is governed the same way");
    let agent = &stage.tools_agent;
    let price = Decimal::new(QUOTE_PRICE_ATOMIC as i64, 6);
    say(&format!(
        "Agents pay for MCP tools too. x402 over MCP puts the challenge in a tool result and \
         the payment in the call's _meta. A second session of the agent, {}, starts in \
         EXPLORE and calls the merchant's paid tool {QUOTE_TOOL} ({}) over MCP's streamable \
         HTTP, through Purser.",
        agent.session_id,
        usd(price)
    ));
    let url = stage.mcp.url();
    let settled_before = stage.facilitator.settlements().len();
    let seen_before = stage.merchant.payments_seen();

    narrative::request(&format!(
        "POST {MCP_PATH}  tools/call {QUOTE_TOOL}  (no payment)"
    ));
    let probe = call(agent, &url, 1, None, &[]).await?;
    let challenge = read_challenge(&probe)?;
    let terms = offer(
        2,
        &challenge.accepts[0].network,
        &challenge.accepts[0].amount,
    )
    .map_err(|detail| DemoError::Step { step: STEP, detail })?;
    detail(
        "merchant",
        &format!(
            "tool result, isError · {} USDC on {} · x402 v2",
            usd(terms.usd),
            terms.network
        ),
    );
    more("the challenge is the result's structuredContent");
    detail("Purser", "passed it back and remembered it, for this tool");
    let payment = sign(challenge.clone())?;
    detail(
        "agent",
        "signs an EIP-3009 authorization, calls again with _meta[\"x402/payment\"]",
    );

    narrative::request(&format!(
        "POST {MCP_PATH}  tools/call {QUOTE_TOOL}  (paid, in EXPLORE)"
    ));
    let refused = call(agent, &url, 2, Some(&payment), &[]).await?;
    let trace_id = show_purser(stage, &refused).await?;
    let model_sees = refused.result["content"][0]["text"].as_str().unwrap_or("");
    detail(
        "client",
        "a tool result, isError (HTTP 200: the MCP session goes on)",
    );
    let shown: String = model_sees.chars().take(60).collect();
    let cut = if shown.len() < model_sees.len() {
        "…"
    } else {
        ""
    };
    more(&format!("the model reads \"{shown}{cut}\""));
    narrative::gap();
    let fields = &refused.result["structuredContent"]["purser"];
    expect(
        STEP,
        refused.reply.status == http::StatusCode::OK
            && refused.result["isError"] == true
            && fields["decision"] == "DENIED"
            && fields["rule"] == "phase"
            && fields["trace_id"] == trace_id.as_str(),
        || {
            format!(
                "expected a tool error DENIED by rule phase, got {}",
                refused.result
            )
        },
    )?;
    expect(
        STEP,
        stage.merchant.payments_seen() == seen_before
            && stage.facilitator.settlements().len() == settled_before,
        || "the refused MCP payment reached the merchant".to_string(),
    )?;

    say(&format!(
        "The agent moves {} to COMMIT with an X-Purser-Phase header on its next call, and \
         pays again with a fresh authorization.",
        agent.session_id
    ));
    narrative::request(&format!(
        "POST {MCP_PATH}  tools/call {QUOTE_TOOL}  (paid, X-Purser-Phase: COMMIT)"
    ));
    let payment = sign(challenge)?;
    let commit = [("x-purser-phase", "COMMIT".to_string())];
    let paid = call(agent, &url, 3, Some(&payment), &commit).await?;
    show_purser(stage, &paid).await?;
    let receipt = &paid.result["_meta"]["x402/payment-response"];
    let transaction = receipt["transaction"].as_str().unwrap_or("");
    detail(
        "merchant",
        &format!(
            "{} · settled by the facilitator stub",
            status_text(paid.reply.status)
        ),
    );
    more(&format!(
        "receipt in result._meta[\"x402/payment-response\"]: tx {}",
        narrative::short(transaction)
    ));
    detail(
        "budget",
        &narrative::budget(&stage.admin.session(&agent.session_id).await?),
    );
    expect(
        STEP,
        paid.reply.header("x-purser-decision") == Some("ALLOWED")
            && receipt["success"] == true
            && stage.facilitator.settlements().len() == settled_before + 1,
        || {
            format!(
                "expected the paid call ALLOWED and settled once, got {}",
                paid.result
            )
        },
    )?;
    why(
        "Purser reads an MCP tools/call body (bounded) and prices the payment in its _meta \
         exactly as a PAYMENT-SIGNATURE header: same phase, budget, tiers, holds, replay \
         checks and proof log, and rules can name the tool. A refusal is a tool result with \
         isError, never an HTTP error, so the MCP client shows it to the model and its \
         session goes on; the receipt in the result's _meta settles the payment.",
    );
    passed("The MCP tool call was refused while exploring, then paid and settled once.");
    Ok(())
}

/// One JSON-RPC `tools/call` of the quote tool, `payment` in its `_meta`.
async fn call(
    agent: &Agent,
    url: &str,
    id: u64,
    payment: Option<&Value>,
    extra: &[(&str, String)],
) -> Result<Called, DemoError> {
    let mut params = json!({"name": QUOTE_TOOL, "arguments": {"pair": "EUR/USD"}});
    if let Some(payment) = payment {
        params["_meta"] = json!({"x402/payment": payment});
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("accept", "application/json, text/event-stream".to_string()),
    ];
    headers.extend(extra.iter().cloned());
    let reply = agent
        .request_with_body(
            "POST",
            url,
            &headers,
            Bytes::from(body.to_string()),
            Some(std::time::Duration::from_secs(30)),
        )
        .await?;
    let answer = reply.json().unwrap_or(Value::Null);
    expect(STEP, answer["id"] == id, || {
        format!(
            "the answer to tools/call {id} is not its JSON-RPC response ({}): {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )
    })?;
    let result = answer["result"].clone();
    Ok(Called { reply, result })
}

/// The challenge in a tool result's `structuredContent`.
fn read_challenge(probe: &Called) -> Result<PaymentRequiredV2, DemoError> {
    let unreadable = |detail: String| DemoError::Step { step: STEP, detail };
    let challenge: PaymentRequiredV2 =
        serde_json::from_value(probe.result["structuredContent"].clone())
            .map_err(|e| unreadable(format!("the tool's challenge is unreadable: {e}")))?;
    expect(
        STEP,
        probe.result["isError"] == true && !challenge.accepts.is_empty(),
        || format!("expected a challenge in a tool error, got {}", probe.result),
    )?;
    Ok(challenge)
}

/// A fresh payment for the challenge, as the JSON that goes in `_meta`.
fn sign(challenge: PaymentRequiredV2) -> Result<Value, DemoError> {
    payment_v2(challenge)
        .and_then(|payment| serde_json::to_value(payment).map_err(|e| e.to_string()))
        .map_err(|detail| DemoError::Step { step: STEP, detail })
}

/// Purser's decision on a paid call and the proof-log lines about it; returns the
/// decision's trace id.
async fn show_purser(stage: &Stage, called: &Called) -> Result<String, DemoError> {
    let decision = called.reply.header("x-purser-decision").unwrap_or("");
    let trace_id = called
        .reply
        .header("x-purser-trace")
        .unwrap_or("")
        .to_string();
    expect(STEP, !trace_id.is_empty(), || {
        format!(
            "Purser's answer carries no X-Purser-Trace ({})",
            called.reply.status
        )
    })?;
    let settlement_due = decision == "ALLOWED";
    let lines = stage
        .trace_lines(&stage.tools_agent.session_id, &trace_id, settlement_due)
        .await?;
    let decided = lines.iter().find(|l| l["kind"] == "decision");
    let field = |name: &str| decided.and_then(|l| l[name].as_str()).unwrap_or("");
    detail("Purser", &format!("{decision} · rule {}", field("rule")));
    more(field("reason"));
    more(&format!("decided on MCP tool {}", field("mcp_tool")));
    narrative::block("trace", lines.iter().map(narrative::trace_summary));
    Ok(trace_id)
}
