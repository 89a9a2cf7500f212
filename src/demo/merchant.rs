//! The demo merchant: a small shop that charges with real x402 challenges, in both protocol
//! versions, shaped like the official SDK's captures (tests/data/x402/vectors.json):
//!
//! * v2: `402` with the base64 JSON `PAYMENT-REQUIRED` header (`accepts[].amount`, a
//!   `resource` object); the payment comes back in `PAYMENT-SIGNATURE`; the receipt goes
//!   out in `PAYMENT-RESPONSE`.
//! * v1: `402` with the JSON body `{x402Version: 1, accepts[].maxAmountRequired}`; the
//!   payment comes back in `X-PAYMENT`; the receipt goes out in `X-PAYMENT-RESPONSE`.
//!
//! A payment that pays the product's price to the shop is settled through the
//! facilitator (a stub: see [`super::facilitator`]) before the content is served. One
//! product settles and then fails with a `500`, as a merchant whose back end breaks after
//! taking the money would: that is what Purser's compensation is for.

use super::error::DemoError;
use super::facilitator::Facilitator;
use super::http::{bind_loopback, json_response, send, serve};
use crate::x402::{decode::decode_header_json, parse_payment_v1, parse_payment_v2, same_address};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// USDC on Base Sepolia (a testnet), the asset every product is priced in.
pub(super) const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The shop's receiving address (the `payTo` of its offers).
pub(super) const SHOP_ADDRESS: &str = "0x2096000000000000000000000000000000000287";
const NETWORK_V2: &str = "eip155:84532";
const NETWORK_V1: &str = "base-sepolia";
/// How long a signed payment stays valid: long enough for a person to approve a hold.
const MAX_TIMEOUT_SECONDS: u64 = 600;
/// USDC has 6 decimals.
const USDC_DECIMALS: u32 = 6;

/// Something the shop sells.
#[derive(Clone, Copy, Debug)]
pub(super) struct Product {
    /// `GET` to read, `POST` to book.
    pub method: &'static str,
    pub path: &'static str,
    pub title: &'static str,
    /// The price in atomic USDC units (1 USDC = 1,000,000).
    pub price_atomic: u64,
    /// The x402 version its challenge speaks.
    pub version: u8,
    /// Settles the payment, then answers `500`.
    pub fails_after_payment: bool,
}

impl Product {
    /// The price in USD (USDC is pegged 1:1).
    pub(super) fn price_usd(&self) -> Decimal {
        Decimal::new(self.price_atomic as i64, USDC_DECIMALS)
    }

    /// The network its offer names, as its x402 version writes it.
    pub(super) fn network(&self) -> &'static str {
        if self.version == 2 {
            NETWORK_V2
        } else {
            NETWORK_V1
        }
    }
}

const fn product(
    method: &'static str,
    path: &'static str,
    title: &'static str,
    price_atomic: u64,
    version: u8,
) -> Product {
    Product {
        method,
        path,
        title,
        price_atomic,
        version,
        fails_after_payment: false,
    }
}

pub(super) const MARKET_SNAPSHOT: Product = product(
    "GET",
    "/reports/market-snapshot",
    "market snapshot",
    10_000,
    2,
);
pub(super) const ANALYST_NOTES: Product =
    product("GET", "/reports/analyst-notes", "analyst notes", 100_000, 1);
pub(super) const FULL_HISTORY: Product = product(
    "GET",
    "/datasets/full-history",
    "full price history",
    750_000,
    2,
);
pub(super) const FLIGHT: Product = product("POST", "/trip/flight", "flight booking", 100_000, 2);
pub(super) const HOTEL: Product = product("POST", "/trip/hotel", "hotel booking", 100_000, 1);
pub(super) const CAR: Product = Product {
    fails_after_payment: true,
    ..product("POST", "/trip/car", "car rental", 10_000, 2)
};
/// The free route.
pub(super) const CATALOG_PATH: &str = "/catalog";
const PRODUCTS: [Product; 6] = [
    MARKET_SNAPSHOT,
    ANALYST_NOTES,
    FULL_HISTORY,
    FLIGHT,
    HOTEL,
    CAR,
];

/// The running shop; cheap to clone.
#[derive(Clone)]
pub(super) struct Merchant {
    pub address: SocketAddr,
    facilitator: Facilitator,
    /// Requests that reached the shop carrying a payment.
    payments_seen: Arc<AtomicUsize>,
}

impl Merchant {
    /// Starts the shop on a loopback port; it settles through `facilitator`.
    pub(super) async fn start(facilitator: Facilitator) -> Result<Merchant, DemoError> {
        let listener = bind_loopback("demo merchant").await?;
        let address = listener.local_addr().map_err(|source| DemoError::Bind {
            what: "demo merchant",
            source,
        })?;
        let merchant = Merchant {
            address,
            facilitator,
            payments_seen: Arc::default(),
        };
        let serving = merchant.clone();
        serve(listener, move |request| {
            let merchant = serving.clone();
            async move { merchant.handle(request).await }
        });
        Ok(merchant)
    }

    /// The absolute URL of a path on this shop.
    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// How many requests carrying a payment reached the shop.
    pub(super) fn payments_seen(&self) -> usize {
        self.payments_seen.load(Ordering::SeqCst)
    }

    /// Counts a request that reached the shop carrying a payment.
    pub(super) fn saw_payment(&self) {
        self.payments_seen.fetch_add(1, Ordering::SeqCst);
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        if path == CATALOG_PATH {
            return json_response(StatusCode::OK, &self.catalog());
        }
        let Some(product) = PRODUCTS.iter().find(|p| p.path == path) else {
            return json_response(StatusCode::NOT_FOUND, &json!({"error": "no such product"}));
        };
        let payment_header = if product.version == 2 {
            "payment-signature"
        } else {
            "x-payment"
        };
        let Some(payment) = request.headers().get(payment_header) else {
            return self.challenge(product, None);
        };
        self.saw_payment();
        let payload = match self.check_payment(product, payment.as_bytes()) {
            Ok(payload) => payload,
            Err(reason) => return self.challenge(product, Some(&reason)),
        };
        let receipt = match self.settle(product, payload).await {
            Ok(receipt) => receipt,
            Err(reason) => return self.challenge(product, Some(&reason)),
        };
        let mut response = if product.fails_after_payment {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": format!("the {} back end failed after the payment settled", product.title)}),
            )
        } else {
            json_response(
                StatusCode::OK,
                &json!({"product": product.title, "content": "demo content, paid for"}),
            )
        };
        let receipt_header = if product.version == 2 {
            "payment-response"
        } else {
            "x-payment-response"
        };
        if let Ok(value) = HeaderValue::from_str(&STANDARD.encode(receipt.to_string())) {
            response.headers_mut().insert(receipt_header, value);
        }
        response
    }

    fn catalog(&self) -> Value {
        let items: Vec<Value> = PRODUCTS
            .iter()
            .map(|p| json!({"path": p.path, "title": p.title, "price_usd": p.price_usd().to_string(), "x402Version": p.version}))
            .collect();
        json!({"shop": "Purser demo merchant", "free": [CATALOG_PATH], "products": items})
    }

    /// The offer for `product`, in its version's wire form.
    fn requirement(&self, product: &Product) -> Value {
        let extra = json!({"name": "USDC", "version": "2"});
        if product.version == 2 {
            json!({
                "scheme": "exact",
                "network": product.network(),
                "asset": USDC_BASE_SEPOLIA,
                "amount": product.price_atomic.to_string(),
                "payTo": SHOP_ADDRESS,
                "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
                "extra": extra,
            })
        } else {
            json!({
                "scheme": "exact",
                "network": product.network(),
                "maxAmountRequired": product.price_atomic.to_string(),
                "resource": self.url(product.path),
                "description": product.title,
                "mimeType": "application/json",
                "payTo": SHOP_ADDRESS,
                "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
                "asset": USDC_BASE_SEPOLIA,
                "outputSchema": null,
                "extra": extra,
            })
        }
    }

    /// `402 Payment Required` with the product's offer; `error` says why a payment that
    /// came along was not taken.
    fn challenge(&self, product: &Product, error: Option<&str>) -> Response<Full<Bytes>> {
        if product.version == 1 {
            let body = json!({
                "x402Version": 1,
                "error": error.unwrap_or("X-PAYMENT header is required"),
                "accepts": [self.requirement(product)],
            });
            return json_response(StatusCode::PAYMENT_REQUIRED, &body);
        }
        let required = json!({
            "x402Version": 2,
            "error": error.unwrap_or("Payment required"),
            "resource": {"url": self.url(product.path), "description": product.title, "mimeType": "application/json"},
            "accepts": [self.requirement(product)],
        });
        let mut response = json_response(StatusCode::PAYMENT_REQUIRED, &json!({}));
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&STANDARD.encode(required.to_string())) {
            headers.insert("payment-required", value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Checks that a payment pays this product's price to the shop, and returns its JSON
    /// for the facilitator. The signature is not checked here (a real merchant asks the
    /// facilitator's `/verify`; the stub verifies nothing).
    fn check_payment(&self, product: &Product, header: &[u8]) -> Result<Value, String> {
        let parsed = if product.version == 2 {
            parse_payment_v2(header)
        } else {
            parse_payment_v1(header)
        }
        .map_err(|e| format!("unreadable payment: {e}"))?;
        if parsed.amount_atomic != Some(u128::from(product.price_atomic)) {
            return Err(format!(
                "the payment must be for {} atomic units",
                product.price_atomic
            ));
        }
        if !parsed
            .pay_to
            .as_deref()
            .is_some_and(|to| same_address(to, SHOP_ADDRESS))
        {
            return Err(format!("the payment must go to {SHOP_ADDRESS}"));
        }
        decode_header_json(header)
            .map(|(json, _)| json)
            .map_err(|e| format!("unreadable payment: {e}"))
    }

    /// Asks the facilitator to settle; returns the receipt to send back.
    async fn settle(&self, product: &Product, payload: Value) -> Result<Value, String> {
        self.settle_offer(product.version, payload, self.requirement(product))
            .await
    }

    /// Asks the facilitator to settle a payment for `requirement`; returns the receipt.
    pub(super) async fn settle_offer(
        &self,
        version: u8,
        payload: Value,
        requirement: Value,
    ) -> Result<Value, String> {
        let body = json!({
            "x402Version": version,
            "paymentPayload": payload,
            "paymentRequirements": requirement,
        });
        let request = Request::post("/settle")
            .header(header::HOST, self.facilitator.address.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let reply = send(
            self.facilitator.address,
            request,
            Some(Duration::from_secs(10)),
        )
        .await?;
        let answer = reply
            .json()
            .ok_or_else(|| "the facilitator's answer is not JSON".to_string())?;
        if answer["success"] != Value::Bool(true) {
            return Err(format!(
                "settlement failed: {}",
                answer["errorReason"].as_str().unwrap_or("no reason given")
            ));
        }
        Ok(json!({
            "success": true,
            "transaction": answer["transaction"],
            "network": answer["network"],
            "payer": answer["payer"],
        }))
    }
}
