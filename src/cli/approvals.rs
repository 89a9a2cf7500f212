//! `purser approvals list | approve | deny`: the payments waiting for a human.

use super::admin_client::{default_decider, encode, print_list, AdminClient, AdminError};
use super::format::{self, NONE};
use super::tables::Table;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub(super) enum ApprovalsCommand {
    /// List pending holds (GET /v1/approvals).
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Let a held payment go out.
    Approve {
        /// The hold's id, as `approvals list` shows it.
        id: String,
        /// Who decided (default: $USER, else `cli`).
        #[arg(long)]
        by: Option<String>,
        /// Only if the held payment still has this digest (from `approvals list --json`).
        #[arg(long)]
        digest: Option<String>,
    },
    /// Refuse a held payment.
    Deny {
        /// The hold's id, as `approvals list` shows it.
        id: String,
        /// Why, recorded in the proof trace.
        #[arg(long)]
        reason: String,
        /// Who decided (default: $USER, else `cli`).
        #[arg(long)]
        by: Option<String>,
        /// Only if the held payment still has this digest (from `approvals list --json`).
        #[arg(long)]
        digest: Option<String>,
    },
}

pub(super) async fn run(client: &AdminClient, command: ApprovalsCommand) -> Result<(), AdminError> {
    match command {
        ApprovalsCommand::List { json } => list(client, json).await,
        ApprovalsCommand::Approve { id, by, digest } => {
            let body = decision_body(by, None, digest);
            decide(client, &id, "approve", body).await
        }
        ApprovalsCommand::Deny {
            id,
            reason,
            by,
            digest,
        } => {
            let body = decision_body(by, Some(reason), digest);
            decide(client, &id, "deny", body).await
        }
    }
}

async fn list(client: &AdminClient, raw: bool) -> Result<(), AdminError> {
    let answer = client.get("/v1/approvals").await?;
    print_list(
        &answer,
        "approvals",
        raw,
        "no payments are waiting for approval",
        |holds| table(holds, jiff::Timestamp::now()),
    )
}

fn table(holds: &[Value], now: jiff::Timestamp) -> Table {
    let mut table = Table::new(&[
        "ID",
        "AGENT/SESSION",
        "AMOUNT (USD)",
        "PAY TO",
        "RESOURCE",
        "TIER",
        "KIND",
        "EXPIRES IN",
    ])
    .right(&[2, 7]);
    for hold in holds {
        table.row(vec![
            format::text(hold, "id"),
            agent_session(hold),
            format::usd(format::decimal(hold, "amount_usd")),
            format::shorten_middle(&format::text(hold, "pay_to"), 6, 4),
            format::truncate(&resource(hold), 48),
            format::text(hold, "tier"),
            format::text(hold, "kind"),
            format::countdown(format::timestamp(hold, "deadline"), now),
        ]);
    }
    table
}

/// The session id already starts with its agent (`AGENT.SESSION`); otherwise both show.
fn agent_session(hold: &Value) -> String {
    let agent = format::text(hold, "agent");
    let session = format::text(hold, "session");
    if session.starts_with(&format!("{agent}.")) || agent == NONE {
        session
    } else {
        format!("{agent}/{session}")
    }
}

/// `GET host/path`.
fn resource(hold: &Value) -> String {
    let method = format::text(hold, "method");
    let host = format::text(hold, "host");
    let path = hold.get("path").and_then(Value::as_str).unwrap_or("");
    format!("{method} {host}{path}")
}

async fn decide(client: &AdminClient, id: &str, verb: &str, body: Value) -> Result<(), AdminError> {
    let path = format!("/v1/approvals/{}/{verb}", encode(id));
    let answer = client.post(&path, &body).await?;
    let fallback = if verb == "approve" {
        "approved"
    } else {
        "denied"
    };
    let outcome = answer
        .get("outcome")
        .and_then(Value::as_str)
        .unwrap_or(fallback);
    let by = format::text(&answer, "by");
    let by = if by == NONE {
        format::text(&body, "by")
    } else {
        by
    };
    println!(
        "{outcome} hold {id} (by {by}); trace {}",
        format::text(&answer, "trace_id")
    );
    Ok(())
}

/// `{"by", "reason"?, "digest"?}`.
fn decision_body(by: Option<String>, reason: Option<String>, digest: Option<String>) -> Value {
    let mut body = json!({ "by": by.unwrap_or_else(default_decider) });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    if let Some(digest) = digest {
        body["digest"] = json!(digest);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_bodies_carry_only_what_was_given() {
        let body = decision_body(Some("ana".into()), None, None);
        assert_eq!(body, json!({"by": "ana"}));
        let body = decision_body(
            Some("ana".into()),
            Some("too much".into()),
            Some("ab".into()),
        );
        assert_eq!(
            body,
            json!({"by": "ana", "reason": "too much", "digest": "ab"})
        );
    }

    #[test]
    fn holds_render_as_a_table() {
        let now = jiff::Timestamp::from_second(1_750_000_000).unwrap();
        let hold = json!({
            "id": "h-1", "session": "bot.run-7", "agent": "bot", "kind": "threshold",
            "amount_usd": "0.75", "pay_to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "method": "GET", "host": "api.example.com", "path": "/paid/data",
            "tier": "careful", "deadline": "2025-06-15T15:11:40Z",
        });
        let text = table(&[hold], now).render();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("ID   AGENT/SESSION  AMOUNT (USD)  PAY TO"));
        let row = lines.next().unwrap();
        for cell in [
            "h-1",
            "bot.run-7",
            "0.75",
            "0x2096...287C",
            "GET api.example.com/paid/data",
            "careful",
            "threshold",
            "5m00s",
        ] {
            assert!(row.contains(cell), "{cell} missing in {row}");
        }
    }
}
