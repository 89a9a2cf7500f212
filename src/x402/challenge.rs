//! 402 challenges, v1 (JSON body) and v2 (`PAYMENT-REQUIRED` header), as one normalized
//! [`Challenge`]: what a merchant asks to be paid, per way of paying.
//!
//! Challenges keep every offer as the merchant wrote it, including schemes and networks
//! Purser cannot price: the agent picks one, and it is the *payment* that is judged (and
//! refused if its scheme or network is unknown). A malformed offer, though, makes the
//! whole challenge malformed, since Purser cannot tell what the merchant meant.

use super::decode::{decode_body_json, decode_header_json};
use super::error::X402Error;
use super::fields::Obj;
use serde_json::{Map, Value};

/// One way to pay, normalized across v1 and v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The payment scheme, as written (`exact`, `upto`, or one Purser cannot price).
    pub scheme: String,
    /// As written: a v1 name (`base-sepolia`) or a CAIP-2 id (`eip155:84532`).
    pub network: String,
    /// The token asked for, as written: its contract (EVM: 0x hex) or mint (Solana).
    pub asset: String,
    /// v1 `maxAmountRequired` or v2 `amount`; for `upto` the maximum.
    pub amount_atomic: u128,
    /// The merchant's address that receives the funds, as written.
    pub pay_to: String,
    /// v1: the offer's own `resource`; v2: the challenge's `resource.url`.
    pub resource: Option<String>,
    /// How long, in seconds, the merchant allows for settlement, if it says.
    pub max_timeout_seconds: Option<u64>,
    /// The wire's `extra` object (EIP-712 domain name/version, Solana `feePayer`, ...).
    pub extra: Map<String, Value>,
}

/// A parsed 402 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// 1 or 2.
    pub version: u8,
    /// v2: `resource.url`; v1: the first offer's `resource`, if any.
    pub resource: Option<String>,
    /// Every way of paying the merchant offers, in its order.
    pub accepts: Vec<Requirement>,
}

/// Parses a v1 challenge: the JSON body of a `402` answer (at most 64 KiB).
pub fn parse_challenge_v1_body(body: &[u8]) -> Result<Challenge, X402Error> {
    let json = decode_body_json(body)?;
    challenge_v1(&Obj::root(&json, "the 402 body")?, "a v1 402 body")
}

/// Parses a challenge given as a JSON object (x402 over MCP: a tool result's
/// `structuredContent`, or a JSON-RPC error's `data`): either version, as its
/// `x402Version` says.
pub fn parse_challenge_json(json: &Value) -> Result<Challenge, X402Error> {
    let what = "the x402 challenge object";
    let root = Obj::root(json, what)?;
    match root.version()? {
        1 => challenge_v1(&root, what),
        _ => challenge_v2(&root, what),
    }
}

fn challenge_v1(root: &Obj<'_>, what: &str) -> Result<Challenge, X402Error> {
    expect_version(root, 1, what)?;
    let accepts = root
        .objects("accepts")?
        .iter()
        .map(requirement_v1)
        .collect::<Result<Vec<_>, _>>()?;
    let resource = accepts.iter().find_map(|r| r.resource.clone());
    Ok(Challenge {
        version: 1,
        resource,
        accepts,
    })
}

/// Parses a v2 challenge: the base64 JSON of the `PAYMENT-REQUIRED` header.
pub fn parse_challenge_v2_header(value: &[u8]) -> Result<Challenge, X402Error> {
    let (json, _) = decode_header_json(value)?;
    challenge_v2(&Obj::root(&json, "PAYMENT-REQUIRED")?, "PAYMENT-REQUIRED")
}

fn challenge_v2(root: &Obj<'_>, what: &str) -> Result<Challenge, X402Error> {
    expect_version(root, 2, what)?;
    let resource = resource_url(root)?;
    let accepts = root
        .objects("accepts")?
        .iter()
        .map(|offer| requirement_v2(offer, resource.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Challenge {
        version: 2,
        resource,
        accepts,
    })
}

/// A v1 offer: `maxAmountRequired` and a per-offer `resource` string.
fn requirement_v1(offer: &Obj<'_>) -> Result<Requirement, X402Error> {
    Ok(Requirement {
        scheme: offer.string("scheme")?,
        network: offer.string("network")?,
        asset: offer.string("asset")?,
        amount_atomic: offer.amount("maxAmountRequired")?,
        pay_to: offer.string("payTo")?,
        resource: offer.opt_string("resource")?,
        max_timeout_seconds: offer.opt_u64("maxTimeoutSeconds")?,
        extra: offer.members("extra")?,
    })
}

/// A v2 offer (also a v2 payment's `accepted`): `amount`; the resource comes from the
/// enclosing message.
pub(crate) fn requirement_v2(
    offer: &Obj<'_>,
    resource: Option<String>,
) -> Result<Requirement, X402Error> {
    Ok(Requirement {
        scheme: offer.string("scheme")?,
        network: offer.string("network")?,
        asset: offer.string("asset")?,
        amount_atomic: offer.amount("amount")?,
        pay_to: offer.string("payTo")?,
        resource,
        max_timeout_seconds: offer.opt_u64("maxTimeoutSeconds")?,
        extra: offer.members("extra")?,
    })
}

/// The `resource.url` of a v2 message, if it names one.
pub(crate) fn resource_url(root: &Obj<'_>) -> Result<Option<String>, X402Error> {
    match root.opt_object("resource")? {
        Some(resource) => resource.opt_string("url"),
        None => Ok(None),
    }
}

/// Refuses any `x402Version` but `expected`.
pub(crate) fn expect_version(root: &Obj<'_>, expected: u64, what: &str) -> Result<(), X402Error> {
    let found = root.version()?;
    if found != expected {
        return Err(X402Error::UnsupportedVersion(format!(
            "{what} must have x402Version {expected}, found {found}"
        )));
    }
    Ok(())
}
