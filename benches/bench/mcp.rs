//! `bench mcp`: what Purser adds to an x402-over-MCP paid tool call, in one run.
//!
//! Runs the kit's stub MCP merchant in this process, on a thread of its own
//! ([`McpMerchant`]), and sends the same paid `tools/call` (a fresh payment each time in
//! `params._meta["x402/payment"]`) straight to it and through Purser, one after the
//! other on one keep-alive connection each, the order alternating so drift spreads over
//! both. Each call is timed from sending the request to the whole answer read (the
//! JSON-RPC response with its receipt). The tool's probe (its challenge) is sent once
//! each way first, so a policy that requires a challenge prices the payments against it.
//! Through Purser every answer must be `ALLOWED` with the receipt: a payment Purser
//! refused would be timed on a shorter path.
//!
//! Prints `RESULT mode=mcp n=… direct_p50_us=… proxied_p50_us=… added_p50_us=…
//! direct_p99_us=… proxied_p99_us=… errors=…`; the target is `added_p50_us` ≤ 500.

use bytes::Bytes;
use clap::Args;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, PROXY_AUTHORIZATION};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use purser_kit::client::{basic, Answer, Conn};
use purser_kit::load::run_id;
use purser_kit::mcp_merchant::{tools_call, McpMerchant, MCP_PATH, TOOL_PRICE};
use purser_kit::x402::Pay;
use purser_kit::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOOL: &str = "bench_tool";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub(crate) struct McpArgs {
    /// Purser's proxy listener.
    #[arg(long)]
    proxy: SocketAddr,
    /// `AGENT[.SESSION]:TOKEN`; the session must be in a phase that pays.
    #[arg(long, default_value = "bench.s1:bench-token")]
    auth: String,
    /// Measured calls each way.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Calls each way before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// The stub answers `application/json` instead of an event stream.
    #[arg(long)]
    json: bool,
}

/// Where a call goes.
struct Way {
    conn: Conn,
    /// The request target: origin form direct, absolute form through the proxy.
    uri: String,
    host: String,
    auth: Option<HeaderValue>,
}

impl Way {
    fn request(&self, body: String) -> Result<Request<Full<Bytes>>, Error> {
        let mut builder = Request::post(self.uri.as_str())
            .header(HOST, self.host.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(auth) = &self.auth {
            builder = builder.header(PROXY_AUTHORIZATION, auth.clone());
        }
        Ok(builder.body(Full::new(Bytes::from(body)))?)
    }

    /// One call: its answer and how long it took, in nanoseconds.
    async fn call(&mut self, body: String) -> Result<(Answer, u64), Error> {
        let request = self.request(body)?;
        let started = Instant::now();
        let answer = self.conn.send(request, WAIT).await?;
        Ok((answer, started.elapsed().as_nanos() as u64))
    }
}

/// A paid call's answer, checked: `200`, the receipt, and through Purser `ALLOWED`.
fn check(answer: &Answer, proxied: bool) -> Result<(), String> {
    if answer.status != StatusCode::OK {
        return Err(format!("answered {}: {}", answer.status, answer.excerpt()));
    }
    const RECEIPT: &[u8] = b"x402/payment-response";
    if !answer.body.windows(RECEIPT.len()).any(|w| w == RECEIPT) {
        return Err(format!("no receipt in the answer: {}", answer.excerpt()));
    }
    let decision = answer.header("x-purser-decision");
    if proxied && decision.as_deref() != Some("ALLOWED") {
        return Err(format!(
            "Purser's decision: {decision:?}: {}",
            answer.excerpt()
        ));
    }
    Ok(())
}

pub(crate) async fn mcp(args: McpArgs) -> Result<(), Error> {
    let merchant = Arc::new(McpMerchant { json: args.json }).spawn()?;
    let host = merchant.to_string();
    let mut direct = Way {
        conn: Conn::new(merchant),
        uri: MCP_PATH.to_string(),
        host: host.clone(),
        auth: None,
    };
    let mut proxied = Way {
        conn: Conn::new(args.proxy),
        uri: format!("http://{host}{MCP_PATH}"),
        host,
        auth: Some(basic(&args.auth)),
    };
    for way in [&mut direct, &mut proxied] {
        let (probe, _) = way.call(tools_call(0, TOOL, None)).await?;
        if probe.status != StatusCode::OK {
            return Err(format!("the probe answered {}", probe.status).into());
        }
    }
    let run = run_id();
    let (mut direct_ns, mut proxied_ns) = (Vec::new(), Vec::new());
    let mut errors = 0u64;
    for i in 0..args.warmup + args.count {
        let payment = |n: u64| serde_json::to_value(Pay::usdc(TOOL_PRICE).unique(run, n).wire());
        let direct_body = tools_call(2 * i as u64 + 1, TOOL, Some(&payment(2 * i as u64)?));
        let proxied_body = tools_call(2 * i as u64 + 2, TOOL, Some(&payment(2 * i as u64 + 1)?));
        let ((d, d_ns), (p, p_ns)) = if i % 2 == 0 {
            let d = direct.call(direct_body).await?;
            (d, proxied.call(proxied_body).await?)
        } else {
            let p = proxied.call(proxied_body).await?;
            (direct.call(direct_body).await?, p)
        };
        for (answer, through) in [(&d, false), (&p, true)] {
            if let Err(error) = check(answer, through) {
                errors += 1;
                if errors <= 3 {
                    eprintln!(
                        "bench mcp: call {i} ({}): {error}",
                        if through { "proxied" } else { "direct" }
                    );
                }
            }
        }
        if i >= args.warmup {
            direct_ns.push(d_ns);
            proxied_ns.push(p_ns);
        }
    }
    direct_ns.sort_unstable();
    proxied_ns.sort_unstable();
    let at = |sorted: &[u64], q: f64| {
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or(0) as f64 / 1e3
    };
    let (d50, p50) = (at(&direct_ns, 0.50), at(&proxied_ns, 0.50));
    println!(
        "RESULT mode=mcp n={} direct_p50_us={d50:.1} proxied_p50_us={p50:.1} added_p50_us={:.1} direct_p99_us={:.1} proxied_p99_us={:.1} errors={errors} framing={}",
        direct_ns.len(),
        p50 - d50,
        at(&direct_ns, 0.99),
        at(&proxied_ns, 0.99),
        if args.json { "json" } else { "sse" },
    );
    if errors > 0 {
        return Err(format!("{errors} calls did not pay as expected").into());
    }
    Ok(())
}
