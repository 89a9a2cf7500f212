//! From a payment header to what it costs: parse, check it against the challenge it
//! answers, and price it with the asset table.
//!
//! What a payment costs (SPEC §1): EVM `exact` pays `authorization.value` to
//! `authorization.to` (Permit2: `permitted.amount` of `permitted.token` to `witness.to`,
//! through the x402 proxy the scheme names); v2 names the requirement it accepted, which
//! must agree with what is signed; `upto` signs a maximum, which is what is reserved (the
//! receipt's amount is what commits, see `settle`); a payment without a signed amount
//! (Solana) costs what the matching challenge asked. An amount the client only echoed
//! (`accepted.amount`) never prices a payment that signs one. A payment that pays more than, or someone or something other than, the
//! challenge it answers is a `payload_mismatch`; one with nothing to price it by is an
//! `unquoted_payment`.

use super::paid::Paid;
use crate::x402::{
    self, same_address, AssetTable, Challenge, Payment, Price, Requirement, X402Error,
};

/// Why a payment is refused before any rule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Stable snake_case code (the answer's `reason` starts with it).
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub(super) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

impl From<X402Error> for Rejection {
    fn from(error: X402Error) -> Self {
        Rejection::new(error.reason(), error.to_string())
    }
}

/// A payment with everything needed to judge it.
#[derive(Clone, Debug)]
pub struct PricedPayment {
    /// The payment as parsed, x402 or MPP.
    pub payment: Paid,
    /// What it pays: the matched offer, or one built from the payment itself.
    pub scheme: String,
    pub network: String,
    pub asset: String,
    pub pay_to: String,
    pub price: Price,
    /// Whether a remembered challenge vouched for it.
    pub quoted: bool,
}

use crate::detect::mcp::MetaPayment;
/// Which header carried the payment (found by [`crate::detect`]).
pub use crate::detect::PaymentHeader;

/// Parses the JSON of an MCP call's `_meta` x402 payment (x402 over MCP, priced exactly
/// as an x402 header).
pub fn parse_meta(meta: &MetaPayment) -> Result<Payment, Rejection> {
    x402::parse_payment_json(meta.json.get().as_bytes()).map_err(Rejection::from)
}

/// Parses the header's value.
pub fn parse(header: PaymentHeader, value: &[u8]) -> Result<Payment, Rejection> {
    let parsed = match header {
        PaymentHeader::V1 => x402::parse_payment_v1(value),
        PaymentHeader::V2 => x402::parse_payment_v2(value),
    };
    parsed.map_err(Rejection::from)
}

/// Matches `payment` to `challenge` (if any) and prices it.
pub fn price_payment(
    payment: Payment,
    challenge: Option<&Challenge>,
    assets: &AssetTable,
    require_challenge: bool,
) -> Result<PricedPayment, Rejection> {
    let claimed = claimed_terms(&payment)?;
    let offer = match challenge {
        Some(challenge) => Some(matching_offer(&claimed, challenge)?),
        None if require_challenge => {
            return Err(Rejection::new(
                "unquoted_payment",
                "this policy only lets payments through that answer a 402 challenge Purser saw for the resource",
            ))
        }
        None => None,
    };
    let amount =
        match (claimed.amount, offer) {
            (Some(amount), Some(offer)) if amount > offer.amount_atomic => {
                return Err(Rejection::new(
                    "payload_mismatch",
                    format!(
                        "payment is for {amount} atomic units but the challenge asked {}",
                        offer.amount_atomic
                    ),
                ))
            }
            (Some(amount), _) => amount,
            (None, Some(offer)) => offer.amount_atomic,
            (None, None) => return Err(Rejection::new(
                "unquoted_payment",
                "payment names no amount and answers no challenge Purser saw; it cannot be priced",
            )),
        };
    let asset = claimed
        .asset
        .clone()
        .or_else(|| offer.map(|o| o.asset.clone()))
        .ok_or_else(|| Rejection::new("unquoted_payment", "a v1 payment names no asset and answers no challenge Purser saw; it cannot be priced"))?;
    let pay_to = claimed
        .pay_to
        .clone()
        .or_else(|| offer.map(|o| o.pay_to.clone()))
        .ok_or_else(|| {
            Rejection::new(
                "unquoted_payment",
                "payment names no recipient and answers no challenge Purser saw",
            )
        })?;
    let price = x402::price(assets, &claimed.network, &asset, amount)?;
    Ok(PricedPayment {
        scheme: claimed.scheme.clone(),
        network: claimed.network.clone(),
        asset,
        pay_to,
        price,
        quoted: offer.is_some(),
        payment: Paid::X402(payment),
    })
}

/// What the payment itself says it pays, with v2's `accepted` checked against the signed
/// payload.
struct ClaimedTerms {
    scheme: String,
    network: String,
    asset: Option<String>,
    pay_to: Option<String>,
    amount: Option<u128>,
}

fn claimed_terms(payment: &Payment) -> Result<ClaimedTerms, Rejection> {
    if let Some(why) = payment.permit2_spender_problem() {
        return Err(Rejection::new("payload_mismatch", why));
    }
    let mut terms = ClaimedTerms {
        scheme: payment.scheme.clone(),
        network: payment.network.clone(),
        asset: payment.asset.clone(),
        pay_to: payment.pay_to.clone(),
        amount: payment.amount_atomic,
    };
    if let Some(accepted) = &payment.accepted {
        check_signed_against_accepted(payment, accepted)?;
        terms.asset = terms.asset.or_else(|| Some(accepted.asset.clone()));
        terms.pay_to = terms.pay_to.or_else(|| Some(accepted.pay_to.clone()));
        terms.amount = terms.amount.or(Some(accepted.amount_atomic));
    }
    Ok(terms)
}

/// v2 repeats the offer it accepted; the signed payload must agree with it, or the agent
/// would be approved for one payment and sign another.
fn check_signed_against_accepted(
    payment: &Payment,
    accepted: &Requirement,
) -> Result<(), Rejection> {
    if let Some(pay_to) = &payment.pay_to {
        if !same_address(pay_to, &accepted.pay_to) {
            return Err(Rejection::new(
                "payload_mismatch",
                format!(
                    "signed payment goes to {pay_to} but the accepted offer pays {}",
                    accepted.pay_to
                ),
            ));
        }
    }
    if let Some(asset) = &payment.asset {
        if !same_address(asset, &accepted.asset) {
            return Err(Rejection::new(
                "payload_mismatch",
                format!(
                    "signed payment moves {asset} but the accepted offer is in {}",
                    accepted.asset
                ),
            ));
        }
    }
    if let Some(amount) = payment.amount_atomic {
        let too_much = if payment.scheme == "upto" {
            amount > accepted.amount_atomic
        } else {
            amount != accepted.amount_atomic
        };
        if too_much {
            return Err(Rejection::new(
                "payload_mismatch",
                format!(
                    "signed amount {amount} differs from the accepted offer's {}",
                    accepted.amount_atomic
                ),
            ));
        }
    }
    Ok(())
}

/// The challenge's offer this payment answers: same scheme, network, recipient and asset.
fn matching_offer<'c>(
    claimed: &ClaimedTerms,
    challenge: &'c Challenge,
) -> Result<&'c Requirement, Rejection> {
    let network = x402::canonical_network(&claimed.network);
    challenge
        .accepts
        .iter()
        .find(|offer| {
            offer.scheme == claimed.scheme
                && x402::canonical_network(&offer.network) == network
                && claimed
                    .pay_to
                    .as_deref()
                    .is_none_or(|p| same_address(p, &offer.pay_to))
                && claimed
                    .asset
                    .as_deref()
                    .is_none_or(|a| same_address(a, &offer.asset))
        })
        .ok_or_else(|| {
            let asked: Vec<String> = challenge
                .accepts
                .iter()
                .map(|o| format!("{} {} {} to {}", o.scheme, o.network, o.asset, o.pay_to))
                .collect();
            Rejection::new(
                "payload_mismatch",
                format!(
                    "payment ({} {} to {}) matches no offer of the challenge: {}",
                    claimed.scheme,
                    claimed.network,
                    claimed.pay_to.as_deref().unwrap_or("?"),
                    asked.join("; ")
                ),
            )
        })
}
