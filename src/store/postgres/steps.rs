//! Open transactions on the fleet store (`purser_transaction_steps`). Taking a
//! transaction deletes its steps in the same statement that reads them, so of all the
//! replicas that see a step fail or a rollback, exactly one gets the steps and requests
//! their refunds: one refund request per payment.

use super::link::{Link, StoreError};
use super::writes::Writes;
use crate::store::transactions::SettledPayment;
use std::collections::BTreeMap;

/// Takes `agent`'s `transaction`, its steps oldest first (`None` when it has none).
pub(super) async fn take(
    link: &Link,
    writes: &Writes,
    agent: &str,
    transaction: &str,
) -> Result<Option<Vec<SettledPayment>>, StoreError> {
    writes.caught_up(link.timeout).await?;
    let rows = link
        .rows(
            "DELETE FROM purser_transaction_steps WHERE agent = $1 AND transaction = $2 \
             RETURNING ordinal, payment::TEXT",
            &[&agent, &transaction],
        )
        .await?;
    let steps = in_order(rows.iter().map(|row| (String::new(), row)));
    Ok(steps.into_values().next())
}

/// Takes `transaction` of every agent that has one.
pub(super) async fn take_for_all_agents(
    link: &Link,
    writes: &Writes,
    transaction: &str,
) -> Result<Vec<Vec<SettledPayment>>, StoreError> {
    writes.caught_up(link.timeout).await?;
    let rows = link
        .rows(
            "DELETE FROM purser_transaction_steps WHERE transaction = $1 \
             RETURNING ordinal, payment::TEXT, agent",
            &[&transaction],
        )
        .await?;
    let steps = in_order(
        rows.iter()
            .map(|row| (row.try_get::<_, String>(2).unwrap_or_default(), row)),
    );
    Ok(steps.into_values().collect())
}

/// Steps grouped by agent, each group in the order recorded.
fn in_order<'a>(
    rows: impl Iterator<Item = (String, &'a tokio_postgres::Row)>,
) -> BTreeMap<String, Vec<SettledPayment>> {
    let mut by_agent: BTreeMap<String, Vec<(i64, SettledPayment)>> = BTreeMap::new();
    for (agent, row) in rows {
        let ordinal: i64 = row.try_get(0).unwrap_or_default();
        let payment = row
            .try_get::<_, String>(1)
            .ok()
            .and_then(|text| serde_json::from_str::<SettledPayment>(&text).ok());
        match payment {
            Some(payment) => by_agent.entry(agent).or_default().push((ordinal, payment)),
            None => tracing::error!(
                ordinal,
                "a transaction step in the fleet store could not be read; it is not compensated"
            ),
        }
    }
    by_agent
        .into_iter()
        .map(|(agent, mut steps)| {
            steps.sort_by_key(|(ordinal, _)| *ordinal);
            (agent, steps.into_iter().map(|(_, step)| step).collect())
        })
        .collect()
}
