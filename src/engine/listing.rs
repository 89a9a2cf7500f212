//! What `GET /v1/approvals` shows of each pending hold: the hold as it was opened, plus
//! the session's and the agent's budgets as they would stand if it were approved. The
//! budgets are read at listing time, not when the hold opened: other payments settle and
//! reserve while a hold waits, and the approver decides on now.

use crate::holds::HoldView;
use crate::ledger::{Account, BudgetView};
use crate::policy::Policy;
use crate::store::Store;
use rust_decimal::Decimal;
use serde::Serialize;
use std::sync::Arc;

/// One pending hold as listed: every field of [`HoldView`] plus `budget_after_approval`.
#[derive(Serialize)]
pub struct HoldListing {
    #[serde(flatten)]
    pub hold: Arc<HoldView>,
    pub budget_after_approval: BudgetAfterApproval,
}

/// The budgets an approval would leave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetAfterApproval {
    pub session: LevelAfterApproval,
    pub agent: LevelAfterApproval,
    /// The policy's gates, as ratios of a limit (they apply at every level).
    pub gates: GateRatios,
}

/// One budget level after the approval. Money is in USD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LevelAfterApproval {
    pub limit: Option<Decimal>,
    /// Settled, plus payments whose outcome is unknown (they count as spent).
    pub spent: Decimal,
    /// Reserved by other payments in flight or held, not by this one.
    pub reserved_other: Decimal,
    pub this_payment: Decimal,
    /// `spent + reserved_other + this_payment`.
    pub after: Decimal,
    /// `after / limit`; `null` without a (non-zero) limit.
    pub ratio: Option<Decimal>,
}

/// The budget gates, as ratios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GateRatios {
    pub warning: Option<Decimal>,
    pub restrict: Option<Decimal>,
    pub halt: Option<Decimal>,
}

/// The pending holds, oldest first, each with its budgets after approval under `policy`.
pub(super) async fn list(store: &dyn Store, policy: &Policy) -> Vec<HoldListing> {
    let gates = policy.budget.gates;
    let gates = GateRatios {
        warning: gates.warning,
        restrict: gates.restrict,
        halt: gates.halt,
    };
    let holds = store.pending_holds().await;
    let mut listed = Vec::with_capacity(holds.len());
    for hold in holds {
        let budget: BudgetView = store.budget(&hold.session, &hold.agent).await;
        let limits = policy.limits_for(&hold.agent);
        let budget_after_approval = BudgetAfterApproval {
            session: after_approval(budget.session, limits.session, hold.cost_usd),
            agent: after_approval(budget.agent, limits.agent, hold.cost_usd),
            gates,
        };
        listed.push(HoldListing {
            hold,
            budget_after_approval,
        });
    }
    listed
}

/// A held payment's reservation is already in `account.reserved` (it stays booked while
/// the hold waits), so the others' share is what is left once it is taken out.
fn after_approval(account: Account, limit: Option<Decimal>, cost: Decimal) -> LevelAfterApproval {
    let spent = account.spent();
    let reserved_other = (account.reserved - cost).max(Decimal::ZERO);
    let after = spent + reserved_other + cost;
    LevelAfterApproval {
        limit: limit.map(|l| l.normalize()),
        spent: spent.normalize(),
        reserved_other: reserved_other.normalize(),
        this_payment: cost.normalize(),
        after: after.normalize(),
        ratio: limit
            .filter(|l| !l.is_zero())
            .map(|l| (after / l).round_dp(6).normalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().expect("a decimal")
    }

    #[test]
    fn the_held_payment_is_counted_once() {
        let account = Account {
            committed: dec("2.00"),
            unknown: dec("0.50"),
            // 0.75 of this is the held payment itself.
            reserved: dec("1.75"),
        };
        let after = after_approval(account, Some(dec("10")), dec("0.75"));
        assert_eq!(after.spent, dec("2.5"));
        assert_eq!(after.reserved_other, dec("1"));
        assert_eq!(after.this_payment, dec("0.75"));
        assert_eq!(after.after, dec("4.25"));
        assert_eq!(after.ratio, Some(dec("0.425")));
    }

    #[test]
    fn no_limit_means_no_ratio() {
        let after = after_approval(Account::default(), None, dec("1"));
        assert_eq!(after.ratio, None);
        let zero = after_approval(Account::default(), Some(Decimal::ZERO), dec("1"));
        assert_eq!(zero.ratio, None);
    }
}
