//! x402 messages for tests and benches, built from Purser's own wire types
//! ([`purser::x402::wire`]), never from hand-written JSON: a payment builder ([`Pay`]),
//! challenges and receipts, and their base64 header encoding.
//!
//! A payment built here is well formed but not validly signed: Purser does not verify
//! signatures (the facilitator does), so a unique nonce and signature are all a test
//! needs. Deliberately broken input (wrong types, truncated JSON) is not a payment and
//! stays hand-written where a test sends it.

use base64::Engine as _;
use purser::x402::wire::{
    Eip3009Authorization, Eip3009Payload, PaymentPayloadV1, PaymentPayloadV2, PaymentRequiredV2,
    PaymentRequirementsV2, ResourceInfo, SettlementResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The payer every test and bench payment comes from.
pub const PAYER: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
/// The merchant the stub origins and merchant ask to be paid.
pub const PAY_TO: &str = "0x2096000000000000000000000000000000000287";
/// USDC on Base Sepolia (6 decimals).
pub const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// Base Sepolia's CAIP-2 id.
pub const BASE_SEPOLIA: &str = "eip155:84532";
/// 2100-01-01 as Unix seconds: a `validBefore` that never runs out during a test.
pub const FAR_FUTURE: &str = "4102444800";

/// Standard base64 of `bytes`, as x402 headers carry JSON.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes` in hex: for a decoded payment header, Purser's `payment_digest`.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes))
}

/// `message` as an x402 header value: base64 of its JSON.
pub fn encode<T: Serialize>(message: &T) -> String {
    b64(serde_json::to_vec(message).expect("wire types serialize"))
}

/// A base64 JSON header decoded into a wire type; `None` when it is not one.
pub fn decode<T: DeserializeOwned>(header: &[u8]) -> Option<T> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The EIP-712 domain of USDC that the SDK puts in an offer's `extra`.
pub fn usdc_domain() -> Map<String, Value> {
    let mut domain = Map::new();
    domain.insert("name".into(), "USDC".into());
    domain.insert("version".into(), "2".into());
    domain
}

/// An `exact` offer of `amount` atomic USDC on Base Sepolia to [`PAY_TO`], valid for 300 s.
pub fn usdc_offer(amount: impl ToString) -> PaymentRequirementsV2 {
    PaymentRequirementsV2 {
        scheme: "exact".into(),
        network: BASE_SEPOLIA.into(),
        asset: USDC_BASE_SEPOLIA.into(),
        amount: amount.to_string(),
        pay_to: PAY_TO.into(),
        max_timeout_seconds: Some(300),
        extra: Some(usdc_domain()),
        other: Map::new(),
    }
}

/// What a resource is, as challenges and payments name it.
pub fn resource(url: &str, description: &str, mime_type: &str) -> ResourceInfo {
    ResourceInfo {
        url: url.into(),
        description: Some(description.into()),
        mime_type: Some(mime_type.into()),
        other: Map::new(),
    }
}

/// A resource named by its URL alone.
pub fn resource_url(url: &str) -> ResourceInfo {
    ResourceInfo {
        url: url.into(),
        description: None,
        mime_type: None,
        other: Map::new(),
    }
}

/// A v2 challenge (`PAYMENT-REQUIRED`) for `resource` offering `accepts`.
pub fn challenge(resource: ResourceInfo, accepts: Vec<PaymentRequirementsV2>) -> PaymentRequiredV2 {
    PaymentRequiredV2 {
        x402_version: 2,
        error: Some("Payment required".into()),
        resource: Some(resource),
        accepts,
        extensions: None,
        other: Map::new(),
    }
}

/// A settlement receipt (`PAYMENT-RESPONSE`) on Base Sepolia.
pub fn receipt(success: bool, transaction: &str, payer: &str) -> SettlementResponse {
    SettlementResponse {
        success,
        payer: Some(payer.into()),
        transaction: Some(transaction.into()),
        network: Some(BASE_SEPOLIA.into()),
        error_reason: (!success).then(|| "insufficient_funds".into()),
        settled_amount: None,
        other: Map::new(),
    }
}

/// A payment under construction: EVM `exact` through an EIP-3009 authorization, v2
/// unless [`Pay::v1_header`] asks otherwise.
///
/// [`Pay::usdc`] starts from [`usdc_offer`] paid from [`PAYER`], valid until
/// [`FAR_FUTURE`], with nonce `0x01` and signature `0x02`; the setters change one thing
/// each, so a test spells only what it is about.
#[derive(Clone, Debug)]
pub struct Pay {
    version: u8,
    authorization: Eip3009Authorization,
    signature: Option<String>,
    /// Replaces the EIP-3009 payload (for schemes Purser does not read).
    payload: Option<Map<String, Value>>,
    accepted: PaymentRequirementsV2,
    resource: Option<ResourceInfo>,
}

impl Pay {
    /// `amount` atomic USDC on Base Sepolia to [`PAY_TO`] (any string: tests send bad ones).
    pub fn usdc(amount: impl ToString) -> Pay {
        Pay::offer(usdc_offer(amount))
    }

    /// Pays exactly `offer` (its amount, to its payTo), as an SDK answers a challenge.
    pub fn offer(offer: PaymentRequirementsV2) -> Pay {
        Pay {
            version: 2,
            authorization: Eip3009Authorization {
                from: PAYER.into(),
                to: offer.pay_to.clone(),
                value: offer.amount.clone(),
                valid_after: "0".into(),
                valid_before: FAR_FUTURE.into(),
                nonce: "0x01".into(),
                other: Map::new(),
            },
            signature: Some("0x02".into()),
            payload: None,
            accepted: offer,
            resource: None,
        }
    }

    /// Nonce and signature unique by `n`, as the tests spell them: nonce `0x` + `n` in 64
    /// hex digits, signature `0x` + `n` in 2 + `ab` × 64.
    pub fn numbered(self, n: u64) -> Pay {
        self.nonce(format!("0x{n:064x}"))
            .signature(format!("0x{n:02x}{}", "ab".repeat(64)))
    }

    /// Nonce and signature unique by (`run`, `index`), as the load generators spell them.
    pub fn unique(self, run: u64, index: u64) -> Pay {
        self.nonce(format!("0x{run:016x}{index:048x}"))
            .signature(format!("0x{run:016x}{index:016x}{}", "cd".repeat(49)))
    }

    pub fn nonce(mut self, nonce: impl Into<String>) -> Pay {
        self.authorization.nonce = nonce.into();
        self
    }

    pub fn signature(mut self, signature: impl Into<String>) -> Pay {
        self.signature = Some(signature.into());
        self
    }

    /// Who signs the authorization.
    pub fn from(mut self, payer: impl Into<String>) -> Pay {
        self.authorization.from = payer.into();
        self
    }

    /// Where the money goes, in the signed authorization and the offer alike.
    pub fn pay_to(mut self, pay_to: &str) -> Pay {
        self.accepted.pay_to = pay_to.into();
        self.signed_to(pay_to)
    }

    /// The recipient the authorization signs for, leaving the offer's payTo as it is.
    pub fn signed_to(mut self, pay_to: &str) -> Pay {
        self.authorization.to = pay_to.into();
        self
    }

    /// The value the authorization signs for, leaving the offer's amount as it is.
    pub fn signed_value(mut self, value: impl ToString) -> Pay {
        self.authorization.value = value.to_string();
        self
    }

    /// The authorization's `validBefore` (Unix seconds, as a string on the wire).
    pub fn valid_before(mut self, unix_seconds: impl ToString) -> Pay {
        self.authorization.valid_before = unix_seconds.to_string();
        self
    }

    /// The `x402Version` written (tests send unknown ones).
    pub fn version(mut self, version: u8) -> Pay {
        self.version = version;
        self
    }

    pub fn scheme(mut self, scheme: &str) -> Pay {
        self.accepted.scheme = scheme.into();
        self
    }

    pub fn network(mut self, network: &str) -> Pay {
        self.accepted.network = network.into();
        self
    }

    pub fn asset(mut self, asset: &str) -> Pay {
        self.accepted.asset = asset.into();
        self
    }

    /// The offer's `maxTimeoutSeconds`.
    pub fn timeout(mut self, seconds: Option<u64>) -> Pay {
        self.accepted.max_timeout_seconds = seconds;
        self
    }

    /// The offer's `extra` (scheme data); `None` leaves it out.
    pub fn extra(mut self, extra: Option<Map<String, Value>>) -> Pay {
        self.accepted.extra = extra;
        self
    }

    /// The resource paid for.
    pub fn resource(mut self, resource: Option<ResourceInfo>) -> Pay {
        self.resource = resource;
        self
    }

    /// A scheme payload of the caller's own instead of the EIP-3009 one.
    pub fn payload(mut self, payload: Map<String, Value>) -> Pay {
        self.payload = Some(payload);
        self
    }

    /// The offer this payment accepts.
    pub fn accepted(&self) -> &PaymentRequirementsV2 {
        &self.accepted
    }

    fn scheme_payload(&self) -> Map<String, Value> {
        if let Some(payload) = &self.payload {
            return payload.clone();
        }
        let signed = Eip3009Payload {
            signature: self.signature.clone(),
            authorization: self.authorization.clone(),
            other: Map::new(),
        };
        match serde_json::to_value(signed) {
            Ok(Value::Object(members)) => members,
            _ => unreachable!("a struct serializes to an object"),
        }
    }

    /// The v2 payment (`PAYMENT-SIGNATURE`).
    pub fn wire(&self) -> PaymentPayloadV2 {
        PaymentPayloadV2 {
            x402_version: self.version,
            payload: self.scheme_payload(),
            accepted: self.accepted.clone(),
            resource: self.resource.clone(),
            extensions: None,
            other: Map::new(),
        }
    }

    /// The v2 payment's JSON text.
    pub fn json(&self) -> String {
        serde_json::to_string(&self.wire()).expect("wire types serialize")
    }

    /// The `PAYMENT-SIGNATURE` header value.
    pub fn header(&self) -> String {
        b64(self.json())
    }

    /// The header value and the payment's digest (Purser's `payment_digest`).
    pub fn header_and_digest(&self) -> (String, String) {
        let json = self.json();
        (b64(&json), sha256_hex(&json))
    }

    /// The same authorization as a v1 payment (`X-PAYMENT`) on a v1 `network` name such
    /// as `base-sepolia`. v1 names no asset and no offer.
    pub fn v1_header(&self, network: &str) -> String {
        encode(&PaymentPayloadV1 {
            x402_version: 1,
            scheme: self.accepted.scheme.clone(),
            network: network.into(),
            payload: self.scheme_payload(),
            other: Map::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_payment_is_one_purser_reads() {
        let header = Pay::usdc(1000).numbered(7).header();
        let payment = purser::x402::parse_payment_v2(header.as_bytes()).expect("parses");
        assert_eq!(payment.amount_atomic, Some(1000));
        assert_eq!(payment.payer.as_deref(), Some(PAYER));
        let v1 = Pay::usdc(50_000).v1_header("base-sepolia");
        assert!(purser::x402::parse_payment_v1(v1.as_bytes()).is_ok());
    }

    #[test]
    fn numbered_payments_differ_in_nonce_and_digest() {
        let (a, digest_a) = Pay::usdc(1).numbered(1).header_and_digest();
        let (b, digest_b) = Pay::usdc(1).numbered(2).header_and_digest();
        assert_ne!(a, b);
        assert_ne!(digest_a, digest_b);
        assert_eq!(digest_a, sha256_hex(Pay::usdc(1).numbered(1).json()));
    }

    #[test]
    fn challenges_and_receipts_round_trip() {
        let asked = challenge(resource("http://x/y", "d", ""), vec![usdc_offer(10_000)]);
        let header = encode(&asked);
        assert!(purser::x402::parse_challenge_v2_header(header.as_bytes()).is_ok());
        assert_eq!(decode::<PaymentRequiredV2>(header.as_bytes()), Some(asked));
        let paid = encode(&receipt(true, "0x01", PAYER));
        assert!(
            purser::x402::parse_receipt(paid.as_bytes())
                .unwrap()
                .success
        );
    }
}
