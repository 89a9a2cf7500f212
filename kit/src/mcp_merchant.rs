//! The stub MCP merchant of the benches (`bench mcp`): MCP's streamable HTTP at `POST
//! /mcp`, every tool paid, in x402 over MCP as the official SDK speaks it
//! (`tests/data/captures/mcp/`):
//!
//! * a `tools/call` without `params._meta["x402/payment"]` answers a tool result with
//!   `isError: true` whose `structuredContent` is the x402 v2 challenge for the tool
//!   (USDC on Base Sepolia, [`TOOL_PRICE`] atomic units, `resource.url` `mcp://tool/NAME`);
//! * one with a payment answers the tool's content and a receipt in
//!   `result._meta["x402/payment-response"]`, with a transaction hash unique to the call.
//!   Nothing is checked or recorded: this is the load path.
//!
//! Answers are server-sent events (one `message` event, then the stream ends) or, with
//! `json`, one JSON document, as FastMCP sends either. [`tools_call`] writes the request.

use crate::x402::{challenge, receipt, resource_url, usdc_offer, PAYER};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Where the stub serves MCP.
pub const MCP_PATH: &str = "/mcp";
/// What every tool costs, in atomic USDC.
pub const TOOL_PRICE: u64 = 1;
const MAX_REQUEST_BODY: usize = 64 * 1024;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// The stub: how it frames its answers.
pub struct McpMerchant {
    /// `application/json` answers instead of an event stream.
    pub json: bool,
}

/// A `tools/call` of `tool` with id `id`, `payment` (a v2 payment's JSON) in its `_meta`.
pub fn tools_call(id: u64, tool: &str, payment: Option<&Value>) -> String {
    let mut params = json!({"name": tool, "arguments": {"q": "bench"}});
    if let Some(payment) = payment {
        params["_meta"] = json!({ "x402/payment": payment });
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

impl McpMerchant {
    /// Accepts and serves connections on the current runtime until the task is dropped.
    pub async fn serve(self: Arc<McpMerchant>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let merchant = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let merchant = merchant.clone();
                    async move { Ok::<_, Infallible>(merchant.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Serves on a thread and current-thread runtime of its own; returns its address.
    pub fn spawn(self: Arc<McpMerchant>) -> std::io::Result<std::net::SocketAddr> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => self.serve(listener).await,
                    Err(e) => eprintln!("mcp merchant: {e}"),
                }
            })
        });
        Ok(addr)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable body\n"),
        };
        let Ok(call) = serde_json::from_slice::<Value>(&body) else {
            return plain(StatusCode::BAD_REQUEST, "not JSON\n");
        };
        if call["method"] != "tools/call" {
            return plain(StatusCode::ACCEPTED, "");
        }
        let tool = call["params"]["name"].as_str().unwrap_or("tool");
        let result = match call["params"]["_meta"].get("x402/payment") {
            None => {
                let mut offer = usdc_offer(TOOL_PRICE);
                offer.max_timeout_seconds = Some(60);
                let required = challenge(resource_url(&format!("mcp://tool/{tool}")), vec![offer]);
                let required = serde_json::to_value(required).unwrap_or(Value::Null);
                json!({
                    "content": [{"type": "text", "text": required.to_string()}],
                    "structuredContent": required,
                    "isError": true,
                })
            }
            Some(_) => {
                let n = CALLS.fetch_add(1, Ordering::Relaxed);
                let transaction = format!("0x{:016x}{n:048x}", std::process::id());
                let receipt =
                    serde_json::to_value(receipt(true, &transaction, PAYER)).unwrap_or(Value::Null);
                json!({
                    "_meta": {"x402/payment-response": receipt},
                    "content": [{"type": "text", "text": "{\"answer\": 42}"}],
                    "isError": false,
                })
            }
        };
        let message = json!({"jsonrpc": "2.0", "id": call["id"], "result": result}).to_string();
        if self.json {
            framed("application/json", message)
        } else {
            framed(
                "text/event-stream",
                format!("event: message\r\ndata: {message}\r\n\r\n"),
            )
        }
    }
}

fn framed(content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}
