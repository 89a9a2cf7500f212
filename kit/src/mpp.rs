//! The Machine Payments Protocol for tests and benches: a stub MPP merchant, and the
//! credentials that answer its challenges.
//!
//! * [`MppMerchant`]: a request without a `Payment` credential is answered `402` with a
//!   batch of `WWW-Authenticate: Payment` `evm` charge challenges (USDC on Base Sepolia,
//!   each with an id of its own, so one probe yields many payable challenges); a request
//!   with one is answered `200` with a `Payment-Receipt`. Nothing is kept.
//! * [`credential`]: the `Authorization` value that pays one challenge, as pympp writes
//!   it (the challenge echoed, an EIP-3009 authorization of its amount to its recipient).
//!
//! Like the x402 builder's payments, a credential here is well formed but not validly
//! signed: Purser verifies no signature (the merchant's facilitator does), so a unique
//! nonce and signature are all a test needs.

use crate::x402::{PAYER, PAY_TO, USDC_BASE_SEPOLIA};
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use purser::mpp::Challenge;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The realm the stub merchant's challenges name.
pub const REALM: &str = "bench.merchant.test";
/// The chain its `evm` charges are on (Base Sepolia).
pub const CHAIN_ID: u64 = 84532;
/// When its challenges expire: far enough that none does during a run.
pub const EXPIRES: &str = "2100-01-01T00:00:00Z";

/// base64url without padding, as MPP writes JSON into headers.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One `evm` charge challenge of `amount` base units, with `id`.
pub fn challenge_header(id: &str, amount: u64) -> String {
    let request = json!({
        "amount": amount.to_string(),
        "currency": USDC_BASE_SEPOLIA,
        "methodDetails": {"chainId": CHAIN_ID, "credentialTypes": ["authorization"], "decimals": 6},
        "recipient": PAY_TO,
    });
    let opaque = b64url(json!({ "_mpp_nonce": id }).to_string());
    format!(
        r#"Payment id="{id}", realm="{REALM}", method="evm", intent="charge", request="{}", expires="{EXPIRES}", opaque="{opaque}""#,
        b64url(request.to_string())
    )
}

/// The `Payment` challenges of an answer, as Purser reads them.
pub fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    let values = headers.get_all(WWW_AUTHENTICATE);
    purser::mpp::parse_www_authenticate(values.iter().map(|v| v.as_bytes())).challenges
}

/// The `Authorization` value paying `challenge`: its echo, and an EIP-3009 authorization
/// of its amount to its recipient with a nonce unique to (`run`, `index`).
pub fn credential(challenge: &Challenge, run: u64, index: u64) -> String {
    let request = &challenge.request;
    let echo = json!({
        "id": challenge.id,
        "realm": challenge.realm,
        "method": challenge.method,
        "intent": challenge.intent,
        "request": b64url(request.to_string()),
        "expires": challenge.expires,
        "opaque": challenge.opaque.as_ref().map(|o| b64url(o.to_string())),
    });
    let payload = json!({
        "type": "authorization",
        "from": PAYER,
        "to": request["recipient"],
        "value": request["amount"],
        "validAfter": "0",
        "validBefore": "4102444800",
        "nonce": format!("0x{run:016x}{index:048x}"),
        "signature": format!("0x{run:016x}{index:048x}{}", "1b".repeat(33)),
    });
    let credential = json!({
        "challenge": echo,
        "payload": payload,
        "source": format!("did:pkh:eip155:{CHAIN_ID}:{PAYER}"),
    });
    format!("Payment {}", b64url(credential.to_string()))
}

/// A `Payment-Receipt` for a settlement with transaction `reference`.
pub fn receipt_header(reference: &str) -> String {
    let receipt = json!({
        "method": "evm",
        "reference": reference,
        "status": "success",
        "timestamp": "2026-01-01T00:00:00Z",
    });
    b64url(receipt.to_string())
}

/// The stub MPP merchant (see the module).
pub struct MppMerchant {
    amount: u64,
    per_answer: usize,
    issued: AtomicU64,
}

impl MppMerchant {
    /// Charges `amount` base units, offering `per_answer` challenges in each `402`.
    pub fn new(amount: u64, per_answer: usize) -> Arc<MppMerchant> {
        Arc::new(MppMerchant {
            amount,
            per_answer,
            issued: AtomicU64::new(0),
        })
    }

    /// Serves on a thread and current-thread runtime of its own (as a separate process
    /// would); returns the address it listens on.
    pub fn spawn(self: Arc<MppMerchant>) -> std::io::Result<std::net::SocketAddr> {
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
                    Err(e) => eprintln!("mpp merchant: {e}"),
                }
            })
        });
        Ok(addr)
    }

    async fn serve(self: Arc<MppMerchant>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let merchant = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let merchant = merchant.clone();
                    async move { Ok::<_, Infallible>(merchant.answer(&req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let paid = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("payment "))
            });
        let first = self.issued.fetch_add(
            if paid { 1 } else { self.per_answer as u64 },
            Ordering::Relaxed,
        );
        if paid {
            let reference = format!("0x{:016x}{first:048x}", std::process::id());
            let mut response = Response::new(Full::new(Bytes::from_static(b"paid\n")));
            let receipt = HeaderValue::from_str(&receipt_header(&reference)).expect("base64url");
            response.headers_mut().insert("payment-receipt", receipt);
            return response;
        }
        let mut response = Response::new(Full::new(Bytes::from_static(
            br#"{"type":"https://paymentauth.org/problems/payment-required","status":402}"#,
        )));
        *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for n in 0..self.per_answer as u64 {
            let id = format!("ch-{:x}-{:x}", std::process::id(), first + n);
            let header = challenge_header(&id, self.amount);
            headers.append(
                WWW_AUTHENTICATE,
                HeaderValue::from_str(&header).expect("ASCII challenge"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_echoes_its_challenge_as_purser_binds_it() {
        let mut headers = HeaderMap::new();
        for id in ["a", "b"] {
            let value = HeaderValue::from_str(&challenge_header(id, 10_000)).unwrap();
            headers.append(WWW_AUTHENTICATE, value);
        }
        let challenges = challenges_of(&headers);
        assert_eq!(challenges.len(), 2);
        let value = credential(&challenges[1], 7, 1);
        let parsed = purser::mpp::parse_authorization(value.as_bytes()).unwrap();
        assert_eq!(parsed.challenge.binding(), challenges[1].binding());
        assert_ne!(parsed.challenge.binding(), challenges[0].binding());
    }
}
