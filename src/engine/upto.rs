//! `upto`: the payment signs a maximum, the merchant charges part of it.
//!
//! The decision reserves the signed maximum (`permitted.amount`), which is the most the
//! chain lets move. When the answer's receipt says the payment settled, what commits is
//! the amount the receipt reports (x402 2.x `PAYMENT-RESPONSE.amount`), and the rest of
//! the reservation goes back to the budget:
//!
//! * a receipt reporting more than the signed maximum cannot be right (the proxy contract
//!   cannot move more): the maximum commits, and the settlement line and the log say so;
//! * a receipt naming no amount commits the maximum: nothing says less was taken.
//!
//! An amount only the client echoed (`accepted.amount`) never enters here: the maximum is
//! what was signed (see `pricing`).

use super::pricing::PricedPayment;
use crate::x402::{self, AssetTable};
use rust_decimal::Decimal;

/// What the ticket of an `upto` payment keeps to commit what was charged.
#[derive(Clone, Debug)]
pub(super) struct Metered {
    network: String,
    asset: String,
    /// The signed maximum, which was reserved.
    max_atomic: u128,
}

/// What an `upto` payment commits, and the settlement line's note about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Charge {
    pub atomic: u128,
    pub usd: Decimal,
    pub note: String,
}

impl Metered {
    /// The terms of `priced`, if it is an `upto` payment.
    pub(super) fn of(priced: &PricedPayment) -> Option<Metered> {
        (priced.scheme == "upto").then(|| Metered {
            network: priced.network.clone(),
            asset: priced.asset.clone(),
            max_atomic: priced.price.atomic,
        })
    }

    /// What commits when the receipt reports `reported` atomic units, `reserved_usd`
    /// having been reserved for the maximum. Priced with `assets` as the decision was; never
    /// more than was reserved.
    pub(super) fn charge(
        &self,
        reported: Option<u128>,
        reserved_usd: Decimal,
        assets: &AssetTable,
    ) -> Charge {
        let max = self.max_atomic;
        let (atomic, note) = match reported {
            None => (
                max,
                format!("upto: the receipt names no amount, so the signed maximum of {max} atomic units is committed"),
            ),
            Some(reported) if reported > max => {
                tracing::warn!(reported, max, "an upto receipt reports more than the signed maximum; the maximum is committed");
                (
                    max,
                    format!(
                        "upto: the receipt reports {reported} atomic units, more than the signed \
                         maximum of {max}, which cannot move; the maximum is committed"
                    ),
                )
            }
            Some(reported) => (
                reported,
                format!("upto: {reported} of the signed maximum of {max} atomic units charged"),
            ),
        };
        // An asset the policy no longer prices (a reload) commits the whole reservation:
        // the safe side of not knowing.
        let usd = match atomic {
            atomic if atomic == max => reserved_usd,
            atomic => x402::price(assets, &self.network, &self.asset, atomic)
                .map_or(reserved_usd, |price| price.usd.min(reserved_usd)),
        };
        Charge { atomic, usd, note }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

    fn metered(max_atomic: u128) -> Metered {
        Metered {
            network: "eip155:84532".into(),
            asset: USDC.into(),
            max_atomic,
        }
    }

    fn usd(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn the_receipt_amount_commits_never_more_than_the_maximum() {
        let assets = AssetTable::builtin();
        let terms = metered(100_000);
        let charged = terms.charge(Some(37_000), usd("0.1"), &assets);
        assert_eq!((charged.atomic, charged.usd), (37_000, usd("0.037")));
        assert!(charged
            .note
            .contains("37000 of the signed maximum of 100000"));
        let over = terms.charge(Some(100_001), usd("0.1"), &assets);
        assert_eq!((over.atomic, over.usd), (100_000, usd("0.1")));
        assert!(over.note.contains("more than the signed maximum"));
        let silent = terms.charge(None, usd("0.1"), &assets);
        assert_eq!((silent.atomic, silent.usd), (100_000, usd("0.1")));
        let nothing = terms.charge(Some(0), usd("0.1"), &assets);
        assert_eq!(nothing.usd, Decimal::ZERO);
    }

    #[test]
    fn an_asset_no_longer_priced_commits_the_reservation() {
        let terms = Metered {
            asset: "0x0000000000000000000000000000000000000001".into(),
            ..metered(100)
        };
        let charged = terms.charge(Some(1), usd("5"), &AssetTable::builtin());
        assert_eq!((charged.atomic, charged.usd), (1, usd("5")));
    }
}
