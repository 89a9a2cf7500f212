//! Open transactions (SPEC §3): the payments that settled in each step of an agent's
//! transaction, kept until the transaction is compensated or forgotten for room. The
//! refund queue that works them off is the engine's (`engine::compensation`).

use dashmap::DashMap;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Separates the agent from the transaction id in the map's keys: no agent name contains
/// it (agent names come from Basic credentials and the policy's keys).
const SCOPE: char = '\u{1f}';

fn scoped(agent: &str, transaction: &str) -> String {
    format!("{agent}{SCOPE}{transaction}")
}

/// Open transactions kept; past this the oldest are forgotten.
const MAX_TRANSACTIONS: usize = 10_000;

/// A payment that settled, as compensation needs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettledPayment {
    pub decision_trace_id: String,
    pub session: crate::policy::SessionId,
    pub agent: String,
    pub payer: Option<String>,
    pub pay_to: String,
    pub amount_atomic: String,
    pub amount_usd: Decimal,
    pub asset: String,
    pub network: String,
    pub tx_hash: Option<String>,
}

struct Transaction {
    steps: Vec<SettledPayment>,
    opened: u64,
}

/// The open transactions, by agent and transaction id.
#[derive(Default)]
pub struct Transactions {
    open: DashMap<String, Transaction>,
    counter: AtomicU64,
}

impl Transactions {
    /// Records a settled payment as a step of `agent`'s `transaction`. Transactions are
    /// the agent's own: another agent sending the same id opens a different one, so it
    /// can never make Purser refund payments it did not make.
    pub fn record_step(&self, agent: &str, transaction: &str, payment: SettledPayment) {
        let key = scoped(agent, transaction);
        if !self.open.contains_key(&key) && self.open.len() >= MAX_TRANSACTIONS {
            let oldest = self
                .open
                .iter()
                .min_by_key(|t| t.opened)
                .map(|t| t.key().clone());
            if let Some(oldest) = oldest {
                self.open.remove(&oldest);
            }
        }
        let opened = self.counter.fetch_add(1, Ordering::Relaxed);
        self.open
            .entry(key)
            .or_insert_with(|| Transaction {
                steps: Vec::new(),
                opened,
            })
            .steps
            .push(payment);
    }

    /// Takes `agent`'s `transaction` out, its steps oldest first.
    pub fn take(&self, agent: &str, transaction: &str) -> Option<Vec<SettledPayment>> {
        self.open
            .remove(&scoped(agent, transaction))
            .map(|(_, open)| open.steps)
    }

    /// Takes the transaction `transaction` of every agent that has one.
    pub fn take_for_all_agents(&self, transaction: &str) -> Vec<Vec<SettledPayment>> {
        let suffix = format!("{SCOPE}{transaction}");
        let agents: Vec<String> = self
            .open
            .iter()
            .filter_map(|entry| entry.key().strip_suffix(&suffix).map(str::to_string))
            .collect();
        agents
            .iter()
            .filter_map(|agent| self.take(agent, transaction))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(trace: &str) -> SettledPayment {
        SettledPayment {
            decision_trace_id: trace.into(),
            session: crate::policy::SessionId::new("a", "s"),
            agent: "a".into(),
            payer: None,
            pay_to: "0x1".into(),
            amount_atomic: "1".into(),
            amount_usd: Decimal::ONE,
            asset: "0x2".into(),
            network: "base".into(),
            tx_hash: None,
        }
    }

    #[test]
    fn a_transaction_is_its_agents_own_and_taken_once() {
        let open = Transactions::default();
        open.record_step("a", "t1", payment("tr_1"));
        open.record_step("a", "t1", payment("tr_2"));
        open.record_step("b", "t1", payment("tr_3"));
        assert!(open.take("c", "t1").is_none());
        let steps = open.take("a", "t1").expect("a's transaction");
        assert_eq!(steps.len(), 2);
        assert!(open.take("a", "t1").is_none(), "taken once");
        assert_eq!(open.take_for_all_agents("t1").len(), 1);
    }
}
