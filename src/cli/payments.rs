//! `purser payments list | show | resolve`: the payments whose outcome is unknown (they
//! left, and no answer said whether they settled), and their reconciliation.

use super::admin_client::{default_decider, encode, print_list, AdminClient, AdminError};
use super::format;
use super::tables::{key_values, print_json, Table};
use crate::trace::{Outcome, Vocabulary};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum PaymentsCommand {
    /// List payments whose outcome is unknown, oldest first (GET /v1/payments?outcome=unknown).
    List {
        /// Only this session (`AGENT.SESSION`).
        #[arg(long)]
        session: Option<String>,
        /// Only this agent's payments.
        #[arg(long)]
        agent: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one payment whose outcome is unknown.
    Show {
        /// The payment's id (its decision trace id), as `payments list` shows it.
        id: String,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Reconcile a payment whose outcome is unknown: it settled, or it did not.
    Resolve {
        /// The payment's id (its decision trace id), as `payments list` shows it.
        id: String,
        /// `committed` (it settled: stays spent) or `released` (it did not: the budget
        /// gets it back), any case.
        #[arg(long, value_parser = outcome)]
        outcome: Outcome,
        /// Why (a transaction hash, what the merchant said), recorded in the proof trace.
        #[arg(long)]
        reason: String,
        /// Who decided (default: $USER, else `cli`).
        #[arg(long)]
        by: Option<String>,
    },
}

/// Clap value parser for an outcome a resolution can have, any case.
fn outcome(text: &str) -> Result<Outcome, String> {
    match Outcome::parse_any_case(text) {
        Ok(outcome @ (Outcome::Committed | Outcome::Released)) => Ok(outcome),
        _ => Err(format!(
            "`{text}` is not an outcome; valid values: committed, released"
        )),
    }
}

pub async fn run(client: &AdminClient, command: PaymentsCommand) -> Result<(), AdminError> {
    match command {
        PaymentsCommand::List {
            session,
            agent,
            json,
        } => list(client, session, agent, json).await,
        PaymentsCommand::Show { id, json } => show(client, &id, json).await,
        PaymentsCommand::Resolve {
            id,
            outcome,
            reason,
            by,
        } => {
            let by = by.unwrap_or_else(default_decider);
            let body = json!({"outcome": outcome, "by": by, "reason": reason});
            resolve(client, &id, &body).await
        }
    }
}

async fn list(
    client: &AdminClient,
    session: Option<String>,
    agent: Option<String>,
    raw: bool,
) -> Result<(), AdminError> {
    let mut path = "/v1/payments?outcome=unknown".to_string();
    for (key, value) in [("session", session), ("agent", agent)] {
        if let Some(value) = value {
            path.push_str(&format!("&{key}={}", encode(&value)));
        }
    }
    let answer = client.get(&path).await?;
    print_list(
        &answer,
        "payments",
        raw,
        "no payments with an unknown outcome",
        table,
    )
}

fn table(payments: &[Value]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "SESSION",
        "AMOUNT (USD)",
        "PAY TO",
        "RESOURCE",
        "SINCE",
        "RETRIES",
        "WHY",
    ])
    .right(&[2, 6]);
    for payment in payments {
        table.row(vec![
            format::text(payment, "id"),
            format::text(payment, "session"),
            format::usd(format::decimal(payment, "amount_usd")),
            format::shorten_middle(&format::text(payment, "pay_to"), 6, 4),
            format::truncate(&resource(payment), 40),
            format::clock(format::timestamp(payment, "since")),
            retries(payment),
            format::truncate(&format::text(payment, "why"), 60),
        ]);
    }
    table
}

/// `GET host/path`.
fn resource(payment: &Value) -> String {
    let method = format::text(payment, "method");
    let host = format::text(payment, "host");
    let path = payment.get("path").and_then(Value::as_str).unwrap_or("");
    format!("{method} {host}{path}")
}

/// `2`, or `2 (one in flight)`.
fn retries(payment: &Value) -> String {
    let count = format::count(payment, "retries");
    match payment.get("retry_in_flight").and_then(Value::as_bool) {
        Some(true) => format!("{count} (one in flight)"),
        _ => count.to_string(),
    }
}

async fn show(client: &AdminClient, id: &str, raw: bool) -> Result<(), AdminError> {
    let payment = client.get(&format!("/v1/payments/{}", encode(id))).await?;
    if raw {
        print_json(&payment);
        return Ok(());
    }
    print!(
        "{}",
        key_values(&[
            ("id", format::text(&payment, "id")),
            ("outcome", format::text(&payment, "outcome")),
            ("session", format::text(&payment, "session")),
            (
                "amount (USD)",
                format::usd(format::decimal(&payment, "amount_usd"))
            ),
            ("pay to", format::text(&payment, "pay_to")),
            ("resource", resource(&payment)),
            ("since", format::clock(format::timestamp(&payment, "since"))),
            ("why", format::text(&payment, "why")),
            ("upstream status", format::text(&payment, "upstream_status")),
            ("payment digest", format::text(&payment, "payment_digest")),
            ("retries", retries(&payment)),
        ])
    );
    Ok(())
}

async fn resolve(client: &AdminClient, id: &str, body: &Value) -> Result<(), AdminError> {
    let path = format!("/v1/payments/{}/resolve", encode(id));
    let answer = client.post(&path, body).await?;
    let budget = answer.get("budget").unwrap_or(&Value::Null);
    println!(
        "{} payment {id} ({} USD, session {}) by {}; trace {}; session spent now {} USD",
        format::text(&answer, "outcome"),
        format::usd(format::decimal(&answer, "amount_usd")),
        format::text(&answer, "session"),
        format::text(&answer, "by"),
        format::text(&answer, "trace_id"),
        format::usd(format::decimal(budget, "session_spent")),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_in_any_case() {
        assert_eq!(outcome("Committed"), Ok(Outcome::Committed));
        assert_eq!(outcome("RELEASED"), Ok(Outcome::Released));
        assert!(outcome("unknown").is_err(), "not one a resolution can have");
        assert!(outcome("settled")
            .unwrap_err()
            .contains("committed, released"));
    }

    #[test]
    fn unknown_payments_render_as_a_table() {
        let payment = json!({
            "id": "tr_0000000100000002", "session": "bot.run-7", "agent": "bot",
            "amount_usd": "0.25", "pay_to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "method": "GET", "host": "api.example.com", "path": "/paid/data",
            "since": "2025-06-15T15:11:40Z", "why": "answered 200 OK without a receipt",
            "retries": 1, "retry_in_flight": true,
        });
        let text = table(&[payment]).render();
        let row = text.lines().nth(1).unwrap();
        for cell in [
            "tr_0000000100000002",
            "bot.run-7",
            "0.25",
            "0x2096...287C",
            "GET api.example.com/paid/data",
            "2025-06-15 15:11:40",
            "1 (one in flight)",
            "answered 200 OK without a receipt",
        ] {
            assert!(row.contains(cell), "{cell} missing in {row}");
        }
    }
}
