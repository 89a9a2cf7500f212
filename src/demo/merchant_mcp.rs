//! The demo merchant's MCP server, on a port of its own: one paid tool, `fx_quote`, over
//! MCP's streamable HTTP (`POST /mcp`, JSON answers), speaking x402 over MCP as the
//! official SDK does (tests/data/captures/mcp/):
//!
//! * a call without a payment gets a tool result with `isError: true` whose
//!   `structuredContent` is the x402 v2 challenge (`resource.url` `mcp://tool/fx_quote`);
//! * the payment comes back in the call's `params._meta["x402/payment"]`, as JSON;
//! * the receipt goes out in the result's `_meta["x402/payment-response"]`.
//!
//! It settles through the facilitator stub, as the shop's HTTP products do. Other
//! methods (`initialize`, `tools/list`) are not needed by the demo's agent and get a
//! JSON-RPC "method not found".

use super::error::DemoError;
use super::http::{bind_loopback, json_response, read_body, serve};
use super::merchant::{Merchant, SHOP_ADDRESS, USDC_BASE_SEPOLIA};
use crate::x402::{parse_payment_json, same_address};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use jsonrpsee_types::Id;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Where the shop serves MCP.
pub(super) const MCP_PATH: &str = "/mcp";
/// The paid tool.
pub(super) const QUOTE_TOOL: &str = "fx_quote";
/// Its price in atomic USDC: $0.02.
pub(super) const QUOTE_PRICE_ATOMIC: u64 = 20_000;
/// How long an MCP client waits for a paid call (the offer's `maxTimeoutSeconds`).
const MCP_TIMEOUT_SECONDS: u64 = 60;

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(rename = "_meta", borrow, default)]
    meta: BTreeMap<&'a str, &'a RawValue>,
}

/// The running MCP server of the shop; it settles through the shop's facilitator.
#[derive(Clone)]
pub(super) struct McpShop {
    pub address: SocketAddr,
}

impl McpShop {
    /// Starts the MCP server on a loopback port, settling as `merchant` does.
    pub(super) async fn start(merchant: Merchant) -> Result<McpShop, DemoError> {
        let listener = bind_loopback("demo MCP server").await?;
        let address = listener.local_addr().map_err(|source| DemoError::Bind {
            what: "demo MCP server",
            source,
        })?;
        serve(listener, move |request| {
            let merchant = merchant.clone();
            async move { handle(&merchant, request).await }
        });
        Ok(McpShop { address })
    }

    /// The MCP endpoint's URL.
    pub(super) fn url(&self) -> String {
        format!("http://{}{MCP_PATH}", self.address)
    }
}

/// Answers one JSON-RPC POST.
async fn handle(merchant: &Merchant, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(reason) => return json_response(StatusCode::BAD_REQUEST, &json!({"error": reason})),
    };
    let Ok(call) = serde_json::from_slice::<jsonrpsee_types::Request<'_>>(&body) else {
        return error(Id::Null, -32700, "not a JSON-RPC request");
    };
    let id = call.id.clone().into_owned();
    let params = call
        .params
        .as_ref()
        .and_then(|raw| serde_json::from_str::<CallParams<'_>>(raw.get()).ok());
    match (call.method.as_ref(), params) {
        ("tools/call", Some(params)) if params.name == QUOTE_TOOL => {
            let payment = params
                .meta
                .get("x402/payment")
                .map(|raw| raw.get().to_string());
            paid_quote(merchant, id, payment).await
        }
        ("tools/call", _) => error(id, -32602, "no such tool"),
        _ => error(
            id,
            -32601,
            "method not found (this demo server only answers tools/call)",
        ),
    }
}

/// The tool's offer, as a v2 requirement.
fn requirement() -> Value {
    json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "asset": USDC_BASE_SEPOLIA,
        "amount": QUOTE_PRICE_ATOMIC.to_string(),
        "payTo": SHOP_ADDRESS,
        "maxTimeoutSeconds": MCP_TIMEOUT_SECONDS,
        "extra": {"name": "USDC", "version": "2"},
    })
}

/// The x402 challenge, in the tool result the SDK writes.
fn challenge(id: Id<'static>, error: Option<&str>) -> Response<Full<Bytes>> {
    let required = json!({
        "x402Version": 2,
        "error": error.unwrap_or("Payment required"),
        "resource": {"url": format!("mcp://tool/{QUOTE_TOOL}"), "description": "an FX quote",
                     "mimeType": "application/json"},
        "accepts": [requirement()],
    });
    result(
        id,
        json!({
            "content": [{"type": "text", "text": required.to_string()}],
            "structuredContent": required,
            "isError": true,
        }),
    )
}

async fn paid_quote(
    merchant: &Merchant,
    id: Id<'static>,
    payment: Option<String>,
) -> Response<Full<Bytes>> {
    let Some(payment) = payment else {
        return challenge(id, None);
    };
    merchant.saw_payment();
    let checked = parse_payment_json(payment.as_bytes())
        .map_err(|e| format!("unreadable payment: {e}"))
        .and_then(|parsed| {
            let pays_price = parsed.amount_atomic == Some(u128::from(QUOTE_PRICE_ATOMIC));
            let pays_shop = parsed
                .pay_to
                .as_deref()
                .is_some_and(|to| same_address(to, SHOP_ADDRESS));
            (pays_price && pays_shop).then_some(()).ok_or_else(|| {
                format!("the payment must pay {QUOTE_PRICE_ATOMIC} to {SHOP_ADDRESS}")
            })
        })
        .and_then(|()| serde_json::from_str::<Value>(&payment).map_err(|e| e.to_string()));
    let payload = match checked {
        Ok(payload) => payload,
        Err(reason) => return challenge(id, Some(&reason)),
    };
    let receipt = match merchant.settle_offer(2, payload, requirement()).await {
        Ok(receipt) => receipt,
        Err(reason) => return challenge(id, Some(&reason)),
    };
    let quote = json!({"pair": "EUR/USD", "rate": "1.0842", "source": "demo"});
    result(
        id,
        json!({
            "_meta": {"x402/payment-response": receipt},
            "content": [{"type": "text", "text": quote.to_string()}],
            "isError": false,
        }),
    )
}

fn result(id: Id<'static>, result: Value) -> Response<Full<Bytes>> {
    let message =
        jsonrpsee_types::Response::new(jsonrpsee_types::ResponsePayload::success(result), id);
    json_response(
        StatusCode::OK,
        &serde_json::to_value(&message).unwrap_or(Value::Null),
    )
}

fn error(id: Id<'static>, code: i32, message: &str) -> Response<Full<Bytes>> {
    let error = jsonrpsee_types::ErrorObjectOwned::owned(code, message, None::<()>);
    let message =
        jsonrpsee_types::Response::new(jsonrpsee_types::ResponsePayload::<()>::error(error), id);
    json_response(
        StatusCode::OK,
        &serde_json::to_value(&message).unwrap_or(Value::Null),
    )
}
