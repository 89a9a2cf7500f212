//! The demo's facilitator: a STUB. It records the settlements the merchant asks for and
//! the refund requests Purser sends when it compensates a failed transaction, and answers
//! as a facilitator would. It verifies no signature and touches no chain: no money moves.
//!
//! * `POST /settle`: `{x402Version, paymentPayload, paymentRequirements}`, as merchants
//!   send it to a real facilitator; answers `{success, transaction, network, payer}`. A
//!   nonce it already settled is refused, as a chain would refuse it.
//! * `POST /refunds`: the demo policy's `compensation.endpoint`; records the request.
//! * `GET /settlements`, `GET /refunds`: what it recorded, for the curious.

use super::error::DemoError;
use super::http::{bind_loopback, json_response, read_body, serve};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One settlement the stub "made".
#[derive(Debug, Clone)]
pub(super) struct Settlement {
    pub network: String,
    pub amount_atomic: String,
    pub payer: String,
    pub pay_to: String,
    /// The made-up transaction hash it answered with.
    pub transaction: String,
}

/// One refund request Purser sent.
#[derive(Debug, Clone)]
pub(super) struct RefundRequest {
    pub refund_id: String,
    /// The `X-Purser-Transaction` id the refunded payment belonged to.
    pub transaction: Option<String>,
    pub amount_usd: String,
    /// The settlement being refunded.
    pub tx_hash: Option<String>,
    pub reason: String,
}

#[derive(Default)]
struct Records {
    settlements: Vec<Settlement>,
    refunds: Vec<RefundRequest>,
    nonces: HashSet<String>,
}

/// The running stub; cheap to clone.
#[derive(Clone)]
pub(super) struct Facilitator {
    pub address: SocketAddr,
    records: Arc<Mutex<Records>>,
}

impl Facilitator {
    /// Starts the stub on a loopback port.
    pub(super) async fn start() -> Result<Facilitator, DemoError> {
        let listener = bind_loopback("facilitator stub").await?;
        let address = listener.local_addr().map_err(|source| DemoError::Bind {
            what: "facilitator stub",
            source,
        })?;
        let facilitator = Facilitator {
            address,
            records: Arc::default(),
        };
        let serving = facilitator.clone();
        serve(listener, move |request| {
            let facilitator = serving.clone();
            async move { facilitator.handle(request).await }
        });
        Ok(facilitator)
    }

    /// Where Purser sends refund requests.
    pub(super) fn refund_endpoint(&self) -> String {
        format!("http://{}/refunds", self.address)
    }

    pub(super) fn settlements(&self) -> Vec<Settlement> {
        self.lock().settlements.clone()
    }

    pub(super) fn refunds(&self) -> Vec<RefundRequest> {
        self.lock().refunds.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic elsewhere cannot leave the records half-written: each update is one push.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let body = match read_body(request.into_body()).await {
            Ok(body) => body,
            Err(message) => {
                return json_response(StatusCode::BAD_REQUEST, &json!({"error": message}))
            }
        };
        match (method, path.as_str()) {
            (Method::POST, "/settle") => self.settle(&body),
            (Method::POST, "/refunds") => self.record_refund(&body),
            (Method::GET, "/settlements") => {
                let list: Vec<Value> = self.settlements().iter().map(settlement_json).collect();
                json_response(StatusCode::OK, &json!({"settlements": list}))
            }
            (Method::GET, "/refunds") => {
                let list: Vec<Value> = self.refunds().iter().map(refund_json).collect();
                json_response(StatusCode::OK, &json!({"refunds": list}))
            }
            _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
        }
    }

    /// "Settles" an EIP-3009 payment: reads who pays whom how much, refuses a nonce seen
    /// before, and makes up a transaction hash.
    fn settle(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return json_response(StatusCode::BAD_REQUEST, &json!({"error": "invalid json"}));
        };
        let authorization = &request["paymentPayload"]["payload"]["authorization"];
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        let network = text(&request["paymentRequirements"]["network"]);
        let payer = text(&authorization["from"]);
        let nonce = text(&authorization["nonce"]);
        if nonce.is_empty() || payer.is_empty() {
            return settle_refused("invalid_payload", &payer, &network);
        }
        let mut records = self.lock();
        if !records.nonces.insert(nonce.to_ascii_lowercase()) {
            return settle_refused("nonce_already_used", &payer, &network);
        }
        let transaction = made_up_transaction_hash(&nonce, records.settlements.len());
        records.settlements.push(Settlement {
            network: network.clone(),
            amount_atomic: text(&authorization["value"]),
            payer: payer.clone(),
            pay_to: text(&authorization["to"]),
            transaction: transaction.clone(),
        });
        json_response(
            StatusCode::OK,
            &json!({"success": true, "transaction": transaction, "network": network, "payer": payer}),
        )
    }

    fn record_refund(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return json_response(StatusCode::BAD_REQUEST, &json!({"error": "invalid json"}));
        };
        let text = |name: &str| request[name].as_str().map(str::to_string);
        let refund = RefundRequest {
            refund_id: text("refund_id").unwrap_or_default(),
            transaction: text("transaction"),
            amount_usd: text("amount_usd").unwrap_or_default(),
            tx_hash: text("tx_hash"),
            reason: text("reason").unwrap_or_default(),
        };
        let mut records = self.lock();
        // Purser retries with the same idempotency key; one refund is recorded once.
        if !records
            .refunds
            .iter()
            .any(|r| r.refund_id == refund.refund_id)
        {
            records.refunds.push(refund);
        }
        json_response(
            StatusCode::OK,
            &json!({"status": "recorded (stub: nothing is refunded on any chain)"}),
        )
    }
}

fn settle_refused(reason: &str, payer: &str, network: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &json!({"success": false, "errorReason": reason, "transaction": "", "network": network, "payer": payer}),
    )
}

/// A 32-byte hex "transaction hash", unique per settlement. It names no real transaction.
fn made_up_transaction_hash(nonce: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("purser-demo-settlement:{nonce}:{index}").as_bytes());
    format!("0x{}", crate::x402::hex(&digest))
}

fn settlement_json(settlement: &Settlement) -> Value {
    json!({
        "network": settlement.network,
        "amount": settlement.amount_atomic,
        "payer": settlement.payer,
        "payTo": settlement.pay_to,
        "transaction": settlement.transaction,
    })
}

fn refund_json(refund: &RefundRequest) -> Value {
    json!({
        "refund_id": refund.refund_id,
        "transaction": refund.transaction,
        "amount_usd": refund.amount_usd,
        "tx_hash": refund.tx_hash,
        "reason": refund.reason,
    })
}
