//! The scripted agent: an x402 client that goes through Purser as any agent would, with
//! `HTTP_PROXY`-style absolute-form requests and `Proxy-Authorization: Basic
//! AGENT.SESSION:TOKEN`.
//!
//! To buy, it does what the x402 SDKs do: asks, reads the `402` challenge (v2 header or
//! v1 body), signs an EIP-3009 `transferWithAuthorization` for the offer (`exact`
//! scheme), and asks again with the payment (`PAYMENT-SIGNATURE` or `X-PAYMENT`). The
//! signature is a dummy of the right shape: the facilitator stub does not verify it, and
//! Purser never does (checking signatures is the facilitator's job).

use super::error::DemoError;
use super::http::{send, Reply};
use super::merchant::Product;
use crate::x402::decode::{decode_body_json, decode_header_as};
use crate::x402::wire::{PaymentPayloadV1, PaymentPayloadV2, PaymentRequiredV1, PaymentRequiredV2};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Full;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;

/// The agent's wallet (the address of the SDK captures' throwaway key). It signs nothing
/// real here.
pub(super) const WALLET: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
/// How long the agent waits for an answer that is not held for a person.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What a merchant asked for, as the agent read it from the challenge.
#[derive(Debug, Clone)]
pub(super) struct Offer {
    pub version: u8,
    pub network: String,
    /// The amount in USDC (6 decimals), which is also its USD value.
    pub usd: Decimal,
}

/// A purchase: the offer, and the answer to the paid request.
#[derive(Debug, Clone)]
pub(super) struct Purchase {
    pub offer: Offer,
    pub reply: Reply,
}

/// The agent, as Purser knows it.
#[derive(Clone)]
pub(super) struct Agent {
    proxy: SocketAddr,
    credentials: String,
    pub session_id: String,
}

impl Agent {
    pub(super) fn new(proxy: SocketAddr, agent: &str, session: &str, token: &str) -> Agent {
        let user = format!("{agent}.{session}");
        Agent {
            proxy,
            credentials: format!("Basic {}", STANDARD.encode(format!("{user}:{token}"))),
            session_id: user,
        }
    }

    /// One request through the proxy. `wait` of `None` waits for as long as Purser holds
    /// the request.
    pub(super) async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        wait: Option<Duration>,
    ) -> Result<Reply, DemoError> {
        self.request_with_body(method, url, headers, Bytes::new(), wait)
            .await
    }

    /// One request with a body through the proxy (an MCP client's JSON-RPC POST).
    pub(super) async fn request_with_body(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        wait: Option<Duration>,
    ) -> Result<Reply, DemoError> {
        let uri: http::Uri = url.parse().map_err(|e| DemoError::Http {
            what: format!("the agent's request to {url}"),
            message: format!("bad URL: {e}"),
        })?;
        let mut builder = Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(header::PROXY_AUTHORIZATION, &self.credentials)
            .header(header::USER_AGENT, "purser-demo-agent");
        if let Some(authority) = uri.authority() {
            builder = builder.header(header::HOST, authority.as_str());
        }
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| DemoError::Http {
            what: format!("the agent's request to {url}"),
            message: e.to_string(),
        })?;
        send(self.proxy, request, wait)
            .await
            .map_err(|message| DemoError::Http {
                what: format!("the agent's {method} {url} through Purser"),
                message,
            })
    }

    /// A request that is answered at once (not held).
    pub(super) async fn fetch(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Reply, DemoError> {
        self.request(method, url, headers, Some(ANSWER_WAIT)).await
    }

    /// Reads the product's challenge, pays it, and returns the answer to the paid request.
    /// `headers` go on both requests (an SDK client sends its headers on the retry too).
    /// `held` waits without a limit for the paid answer, for a payment a person decides.
    pub(super) async fn buy(
        &self,
        url: &str,
        product: &Product,
        headers: &[(&str, String)],
        held: bool,
    ) -> Result<Purchase, DemoError> {
        let first = self.fetch(product.method, url, headers).await?;
        if first.status != StatusCode::PAYMENT_REQUIRED {
            return Err(DemoError::Http {
                what: format!("{} {url}", product.method),
                message: format!("expected a 402 challenge, got {}", first.status),
            });
        }
        let unreadable = |message| DemoError::Http {
            what: format!("the challenge of {url}"),
            message,
        };
        let terms = Terms::read(&first).map_err(unreadable)?;
        let offer = terms.offer().map_err(unreadable)?;
        let (header_name, payment) = terms.pay().map_err(unreadable)?;
        let mut paid_headers = headers.to_vec();
        paid_headers.push((header_name, payment));
        let wait = if held { None } else { Some(ANSWER_WAIT) };
        let reply = self
            .request(product.method, url, &paid_headers, wait)
            .await?;
        Ok(Purchase { offer, reply })
    }
}

/// A `402` challenge as the agent read it.
pub(super) enum Terms {
    V2(PaymentRequiredV2),
    V1(PaymentRequiredV1),
}

impl Terms {
    /// Reads a `402`: the v2 `PAYMENT-REQUIRED` header if present, else the v1 body.
    pub(super) fn read(reply: &Reply) -> Result<Terms, String> {
        if let Some(required) = reply.headers.get("payment-required") {
            return decode_header_as(required.as_bytes())
                .map(Terms::V2)
                .map_err(|e| format!("unreadable PAYMENT-REQUIRED: {e}"));
        }
        let body =
            decode_body_json(&reply.body).map_err(|e| format!("unreadable 402 body: {e}"))?;
        serde_json::from_value(body)
            .map(Terms::V1)
            .map_err(|e| format!("not an x402 v1 challenge: {e}"))
    }

    /// The first offer, which the agent takes.
    pub(super) fn offer(&self) -> Result<Offer, String> {
        let none = || "the challenge offers no way to pay".to_string();
        match self {
            Terms::V2(challenge) => {
                let accepted = challenge.accepts.first().ok_or_else(none)?;
                offer(2, &accepted.network, &accepted.amount)
            }
            Terms::V1(challenge) => {
                let requirement = challenge.accepts.first().ok_or_else(none)?;
                offer(1, &requirement.network, &requirement.max_amount_required)
            }
        }
    }

    /// Signs a payment for the first offer: the header to send it in and its value.
    fn pay(self) -> Result<(&'static str, String), String> {
        let none = || "the challenge offers no way to pay".to_string();
        let (name, json) = match self {
            Terms::V2(challenge) => {
                let payment = payment_v2(challenge)?;
                ("payment-signature", serde_json::to_string(&payment))
            }
            Terms::V1(challenge) => {
                let requirement = challenge.accepts.into_iter().next().ok_or_else(none)?;
                let payment = PaymentPayloadV1 {
                    x402_version: 1,
                    payload: signed_authorization(
                        &requirement.pay_to,
                        &requirement.max_amount_required,
                        requirement.max_timeout_seconds,
                    ),
                    scheme: requirement.scheme,
                    network: requirement.network,
                    other: Map::new(),
                };
                ("x-payment", serde_json::to_string(&payment))
            }
        };
        let json = json.map_err(|e| e.to_string())?;
        Ok((name, STANDARD.encode(json)))
    }
}

/// A v2 payment for the challenge's first offer: what goes, base64, in
/// `PAYMENT-SIGNATURE`, or, as JSON, in an MCP call's `_meta["x402/payment"]`.
pub(super) fn payment_v2(challenge: PaymentRequiredV2) -> Result<PaymentPayloadV2, String> {
    let accepted = challenge
        .accepts
        .into_iter()
        .next()
        .ok_or_else(|| "the challenge offers no way to pay".to_string())?;
    Ok(PaymentPayloadV2 {
        x402_version: 2,
        payload: signed_authorization(
            &accepted.pay_to,
            &accepted.amount,
            accepted.max_timeout_seconds,
        ),
        accepted,
        resource: challenge.resource,
        extensions: None,
        other: Map::new(),
    })
}

pub(super) fn offer(version: u8, network: &str, amount_atomic: &str) -> Result<Offer, String> {
    let atomic: i64 = amount_atomic
        .parse()
        .map_err(|_| format!("`{amount_atomic}` is not an amount"))?;
    Ok(Offer {
        version,
        network: network.to_string(),
        usd: Decimal::new(atomic, 6),
    })
}

/// The EIP-3009 `payload`: the authorization to move `value` to `pay_to`, valid from ten
/// minutes ago (clock skew) until the offer's timeout, with a fresh random nonce, and a
/// dummy 65-byte signature derived from the nonce (so each payment's differs).
fn signed_authorization(
    pay_to: &str,
    value: &str,
    timeout_seconds: Option<u64>,
) -> Map<String, Value> {
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    let nonce = random_nonce();
    let first = Sha256::digest(format!("demo-signature-r:{nonce}").as_bytes());
    let second = Sha256::digest(format!("demo-signature-s:{nonce}").as_bytes());
    let signature = format!(
        "0x{}{}1b",
        crate::x402::hex(&first),
        crate::x402::hex(&second)
    );
    let payload = json!({
        "authorization": {
            "from": WALLET,
            "to": pay_to,
            "value": value,
            "validAfter": now.saturating_sub(600).to_string(),
            "validBefore": (now + timeout_seconds.unwrap_or(300)).to_string(),
            "nonce": nonce,
        },
        "signature": signature,
    });
    match payload {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// 32 random bytes, 0x hex. Should the system's randomness fail, the time and a counter
/// still make each nonce distinct within the demo.
fn random_nonce() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = format!("{}:{count}", jiff::Timestamp::now().as_nanosecond());
        bytes.copy_from_slice(&Sha256::digest(seed.as_bytes()));
    }
    format!("0x{}", crate::x402::hex(&bytes))
}
