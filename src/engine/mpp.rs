//! MPP credentials on the decision path: bound to a challenge Purser saw, priced from
//! it, and settled from `Payment-Receipt`.
//!
//! Binding (SPEC §1 "What a payment costs"): the credential's echoed challenge id must
//! name an MPP challenge this session got for this resource (else `unquoted_payment`),
//! and its echo must reproduce that challenge's binding digest: every parameter the
//! merchant's id covers, as sent (else `payload_mismatch`). Only then is its `request`
//! the challenge's, and the price is read from it: `amount` of `currency`, with the
//! asset table's decimals (a challenge that states other decimals is refused). What the
//! payload signs must pay exactly that, to that recipient (else `payload_mismatch`):
//! an EIP-3009 authorization's `value` and `to`; a Tempo transaction's transfers, on
//! the challenge's chain and token, split as the challenge splits it.
//!
//! Settlement reads only MPP's receipt, even where the answer also carries x402's (an
//! endpoint that takes both): only the protocol that was paid counts.

use super::challenges::ChallengeStore;
use super::facts::RequestFacts;
use super::pricing::{PricedPayment, Rejection};
use super::settle::AnswerSettlement;
use crate::detect::mcp::mpp_forms::MppCallAnswer;
use crate::detect::mcp::MetaPayment;
use crate::detect::mpp::{read_credential, read_meta_credential, ChargeTerms, MppPayment, Signed};
use crate::ledger::Outcome;
use crate::mpp::{MppError, Receipt, ReceiptStatus};
use crate::policy::Policy;
use crate::x402::{self, same_address, AssetTable};
use http::{HeaderMap, StatusCode};

use super::paid::Paid;

impl From<MppError> for Rejection {
    fn from(error: MppError) -> Self {
        Rejection::new(error.reason(), error.to_string())
    }
}

/// The credential in `value`, bound to the challenge it answers and priced.
pub(super) fn price(
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    policy: &Policy,
    value: &[u8],
) -> Result<PricedPayment, Rejection> {
    bind_seen(challenges, facts, policy, read_credential(value)?)
}

/// The credential in an MCP call's `_meta` (MPP over MCP), bound to the challenge the
/// tool answered with and priced, exactly as a credential header.
pub(super) fn price_meta(
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    policy: &Policy,
    meta: &MetaPayment,
) -> Result<PricedPayment, Rejection> {
    bind_seen(
        challenges,
        facts,
        policy,
        read_meta_credential(meta.json.get())?,
    )
}

/// Binds `payment` to the challenge with its id this session saw for this resource (an
/// MCP call's resource is its tool), then prices it.
fn bind_seen(
    challenges: &ChallengeStore,
    facts: &RequestFacts,
    policy: &Policy,
    payment: MppPayment,
) -> Result<PricedPayment, Rejection> {
    let echo = &payment.credential.challenge;
    let session = facts.identity.session_id();
    let seen = challenges.lookup_mpp(
        &facts.identity.agent,
        &session,
        &facts.resource_key(),
        &echo.id,
        &policy.x402,
    );
    bind(&payment, seen)?;
    price_bound(payment, &policy.assets)
}

/// Checks the echo against the binding of the challenge with its id, if one was seen.
pub(super) fn bind(payment: &MppPayment, seen: Option<[u8; 32]>) -> Result<(), Rejection> {
    let echo = &payment.credential.challenge;
    let Some(binding) = seen else {
        return Err(Rejection::new(
            "unquoted_payment",
            format!(
                "this MPP credential answers challenge {}, which Purser did not see for this \
                 resource (or tool) in this session, or it aged out; request the resource \
                 (call the tool) through Purser first, then pay the challenge it answers",
                short(&echo.id)
            ),
        ));
    };
    if echo.binding() != binding {
        return Err(Rejection::new(
            "payload_mismatch",
            format!(
                "this MPP credential's echo of challenge {} differs from the challenge the \
                 merchant sent (its realm, method, intent, request, expires, digest, opaque \
                 or header was changed); pay the challenge as it was sent",
                short(&echo.id)
            ),
        ));
    }
    Ok(())
}

/// Prices a bound credential from its challenge's terms and checks what it signs.
pub(super) fn price_bound(
    payment: MppPayment,
    assets: &AssetTable,
) -> Result<PricedPayment, Rejection> {
    let terms = &payment.terms;
    check_decimals(terms, assets)?;
    check_signed(terms, &payment.signed)?;
    let price = x402::price(assets, &terms.network, &terms.currency, terms.amount)?;
    Ok(PricedPayment {
        scheme: format!("{}/charge", payment.method.as_str()),
        network: terms.network.clone(),
        asset: terms.currency.clone(),
        pay_to: terms.recipient.clone(),
        price,
        quoted: true,
        payment: Paid::Mpp(payment),
    })
}

fn short(text: &str) -> String {
    let cut: String = text.chars().take(48).collect();
    format!("{cut:?}")
}

/// A challenge that states decimals must agree with the asset table, or the price
/// would be off by powers of ten.
fn check_decimals(terms: &ChargeTerms, assets: &AssetTable) -> Result<(), Rejection> {
    let (Some(stated), Ok(known)) = (
        terms.decimals,
        assets.lookup(&terms.network, &terms.currency),
    ) else {
        return Ok(()); // pricing reports an unknown asset
    };
    if stated == known.decimals {
        return Ok(());
    }
    Err(Rejection::new(
        "unknown_asset",
        format!(
            "the challenge says {} on {} has {stated} decimals, but Purser's asset table says \
             {}; correct the policy's assets table if the challenge is right",
            terms.currency, terms.network, known.decimals
        ),
    ))
}

fn mismatch(message: String) -> Rejection {
    Rejection::new("payload_mismatch", message)
}

/// What the payload signs must pay exactly the challenge's amount to its recipient.
fn check_signed(terms: &ChargeTerms, signed: &Signed) -> Result<(), Rejection> {
    match signed {
        Signed::Token => Ok(()),
        Signed::Authorization { to, value } => {
            if !same_address(to, &terms.recipient) {
                return Err(mismatch(format!(
                    "the authorization pays {to}, not the challenge's recipient {}",
                    terms.recipient
                )));
            }
            if *value != terms.amount {
                return Err(mismatch(format!(
                    "the authorization signs {value} base units, but the challenge asks {}",
                    terms.amount
                )));
            }
            Ok(())
        }
        Signed::Transfers {
            chain_id,
            transfers,
        } => check_transfers(terms, *chain_id, transfers),
    }
}

/// A Tempo transaction must transfer, on the challenge's chain and token, the primary
/// share to the recipient and each split to its recipient: no more, no other.
fn check_transfers(
    terms: &ChargeTerms,
    chain_id: u64,
    transfers: &[crate::mpp::tempo::Transfer],
) -> Result<(), Rejection> {
    if terms.network != format!("eip155:{chain_id}") {
        return Err(mismatch(format!(
            "the transaction is signed for chain {chain_id}, but the challenge is on {}",
            terms.network
        )));
    }
    let split_total = terms
        .splits
        .iter()
        .try_fold(0u128, |sum, (_, amount)| sum.checked_add(*amount))
        .filter(|total| *total < terms.amount)
        .ok_or_else(|| mismatch("the challenge's splits add up to its whole amount".into()))?;
    let mut expected: Vec<(&str, u128)> = vec![(&terms.recipient, terms.amount - split_total)];
    expected.extend(
        terms
            .splits
            .iter()
            .map(|(to, amount)| (to.as_str(), *amount)),
    );
    if transfers.len() != expected.len() {
        return Err(mismatch(format!(
            "the transaction makes {} transfers, but the challenge asks {}",
            transfers.len(),
            expected.len()
        )));
    }
    for transfer in transfers {
        let token = format!("0x{}", x402::hex(&transfer.token));
        if !same_address(&token, &terms.currency) {
            return Err(mismatch(format!(
                "the transaction moves {token}, not the challenge's currency {}",
                terms.currency
            )));
        }
        let to = format!("0x{}", x402::hex(&transfer.to));
        let slot = expected
            .iter()
            .position(|(recipient, amount)| {
                same_address(&to, recipient) && *amount == transfer.amount
            })
            .ok_or_else(|| {
                mismatch(format!(
                    "the transaction transfers {} base units to {to}, which the challenge does \
                     not ask",
                    transfer.amount
                ))
            })?;
        expected.swap_remove(slot);
    }
    Ok(())
}

/// What an answer says about an MPP payment: its `Payment-Receipt` (any spelling), or a
/// fresh `402`. x402 receipts on the same answer are not read.
pub(super) fn read_answer(status: StatusCode, headers: &HeaderMap) -> AnswerSettlement {
    let fresh = (status == StatusCode::PAYMENT_REQUIRED)
        .then_some("the merchant answered a fresh 402: it did not take the payment".to_string());
    let without = format!(
        "answered {status} without a Payment-Receipt: whether the payment settled is unknown"
    );
    from_receipt(crate::detect::mpp_receipt(headers), fresh, without)
}

/// What the JSON-RPC response to a paid MCP tool call says about its MPP payment (`Err`:
/// why the answer could not be read): `result._meta["org.paymentauth/receipt"]` commits
/// or releases; without one, fresh `-32042`/`-32043` challenges release; anything else
/// is unknown. `reserved_atomic` is the bound challenge's amount: a receipt that reports
/// settling more is noted on the settlement line.
pub(super) fn read_call_answer(
    answer: Result<MppCallAnswer, String>,
    reserved_atomic: &str,
) -> AnswerSettlement {
    let answer = match answer {
        Ok(answer) => answer,
        Err(why) => {
            let without = format!("{why}: whether the payment settled is unknown");
            return from_receipt(None, None, without);
        }
    };
    let fresh = (!answer.challenges.is_empty()).then(|| match &answer.failure {
        Some(reason) => format!(
            "the tool rejected the credential ({reason}) and asked to be paid again: it did \
             not take the payment"
        ),
        None => "the tool answered a fresh MPP challenge: it did not take the payment".into(),
    });
    let without = match answer.error_code {
        Some(code) => format!(
            "the tool call failed (JSON-RPC error {code}) without a receipt: whether the \
             payment settled is unknown"
        ),
        None => "the tool's result carries no org.paymentauth/receipt: whether the payment \
                 settled is unknown"
            .to_string(),
    };
    let reported = answer
        .receipt
        .as_ref()
        .and_then(|receipt| receipt.as_ref().ok())
        .and_then(|receipt| receipt.settled_amount);
    let mut settlement = from_receipt(answer.receipt, fresh, without);
    let reserved = reserved_atomic.parse::<u128>().ok();
    if let (Some(reported), Some(reserved)) = (reported, reserved) {
        if reported > reserved && settlement.outcome == Outcome::Committed {
            settlement.note = Some(format!(
                "the receipt reports {reported} base units settled, more than the {reserved} \
                 the challenge asked and Purser reserved; ask the merchant why"
            ));
        }
    }
    settlement
}

/// A receipt decides; without one, a fresh challenge (`fresh`: why) releases; else the
/// outcome is unknown, `without` saying why. A charge commits the amount it was priced
/// at, so nothing is metered.
fn from_receipt(
    receipt: Option<Result<Receipt, MppError>>,
    fresh: Option<String>,
    without: String,
) -> AnswerSettlement {
    let settled = |outcome, transaction, note| AnswerSettlement {
        outcome,
        transaction,
        charged_atomic: None,
        note,
    };
    match receipt {
        None => match fresh {
            Some(note) => settled(Outcome::Released, None, Some(note)),
            None => settled(Outcome::Unknown, None, Some(without)),
        },
        Some(Ok(receipt)) => match receipt.status {
            ReceiptStatus::Success => settled(Outcome::Committed, Some(receipt.reference), None),
            ReceiptStatus::Failed => settled(
                Outcome::Released,
                Some(receipt.reference),
                Some("the MPP receipt says settlement failed".into()),
            ),
        },
        // Two receipts that differ tell nothing either.
        Some(Err(error)) => settled(
            Outcome::Unknown,
            None,
            Some(format!("unreadable MPP receipt: {error}")),
        ),
    }
}

#[cfg(test)]
mod tests;
