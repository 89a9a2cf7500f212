//! `purser sessions list | show | phase | reset`: budgets and phases per session.

use super::admin_client::{encode, print_list, AdminClient, AdminError};
use super::format;
use super::tables::{key_values, print_json, Table};
use crate::policy::Phase;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// List the sessions Purser has seen (GET /v1/sessions).
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session in detail.
    Show {
        /// `AGENT.SESSION`.
        id: String,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Move a session to a phase (forward only); creates a session not seen yet.
    Phase {
        /// `AGENT.SESSION`.
        id: String,
        /// EXPLORE, DECIDE or COMMIT, any case.
        #[arg(value_parser = phase)]
        phase: Phase,
    },
    /// Put a session back to EXPLORE.
    Reset {
        /// `AGENT.SESSION`.
        id: String,
    },
}

/// Clap value parser for a phase, any case.
fn phase(text: &str) -> Result<Phase, String> {
    Phase::parse(text)
        .ok_or_else(|| format!("`{text}` is not a phase; valid values: EXPLORE, DECIDE, COMMIT"))
}

pub async fn run(client: &AdminClient, command: SessionsCommand) -> Result<(), AdminError> {
    match command {
        SessionsCommand::List { json } => list(client, json).await,
        SessionsCommand::Show { id, json } => show(client, &id, json).await,
        SessionsCommand::Phase { id, phase } => {
            let body = json!({ "phase": phase });
            transition(client, &id, "phase", Some(body)).await
        }
        SessionsCommand::Reset { id } => transition(client, &id, "reset", None).await,
    }
}

async fn list(client: &AdminClient, raw: bool) -> Result<(), AdminError> {
    let answer = client.get("/v1/sessions").await?;
    print_list(&answer, "sessions", raw, "no sessions yet", table)
}

fn table(sessions: &[Value]) -> Table {
    let mut table = Table::new(&[
        "SESSION",
        "PHASE",
        "SPENT / LIMIT",
        "RESERVED",
        "RATIO",
        "ALLOWED/DENIED/HELD",
    ])
    .right(&[2, 3]);
    for session in sessions {
        table.row(vec![
            format::text(session, "id"),
            format::text(session, "phase"),
            spent_of_limit(session),
            format::usd(format::decimal(session, "reserved")),
            ratio(session),
            counts(session),
        ]);
    }
    table
}

fn spent_of_limit(session: &Value) -> String {
    let spent = format::usd(format::decimal(session, "spent"));
    match format::decimal(session, "limit") {
        Some(limit) => format!("{spent} / {}", format::usd(Some(limit))),
        None => format!("{spent} / no limit"),
    }
}

/// The bar, plus the highest gate reached.
fn ratio(session: &Value) -> String {
    let ratio = format::decimal(session, "ratio");
    let bar = format::ratio_bar(ratio);
    let gates = session.get("gates").unwrap_or(&Value::Null);
    match format::gate_reached(ratio, gates) {
        Some(gate) => format!("{bar} {gate}"),
        None => bar,
    }
}

fn counts(session: &Value) -> String {
    let counts = session.get("counts").unwrap_or(&Value::Null);
    format!(
        "{}/{}/{}",
        format::count(counts, "allowed"),
        format::count(counts, "denied"),
        format::count(counts, "pending_approval")
    )
}

async fn show(client: &AdminClient, id: &str, raw: bool) -> Result<(), AdminError> {
    let session = client.get(&format!("/v1/sessions/{}", encode(id))).await?;
    if raw {
        print_json(&session);
    } else {
        print!("{}", details(&session));
    }
    Ok(())
}

fn details(session: &Value) -> String {
    let usd = |key: &str| format::usd(format::decimal(session, key));
    let limit = format::decimal(session, "limit");
    let gates = session.get("gates").unwrap_or(&Value::Null);
    let counts = session.get("counts").unwrap_or(&Value::Null);
    key_values(&[
        ("session", format::text(session, "id")),
        ("agent", format::text(session, "agent")),
        ("phase", format::text(session, "phase")),
        (
            "created",
            format::clock(format::timestamp(session, "created")),
        ),
        (
            "limit (USD)",
            limit.map_or("no limit".into(), |l| format::usd(Some(l))),
        ),
        ("spent", usd("spent")),
        ("reserved", usd("reserved")),
        ("unknown", usd("unknown")),
        ("ratio", ratio(session)),
        ("gates", gate_marks(gates)),
        ("agent spent", usd("agent_spent")),
        ("fleet spent", usd("fleet_spent")),
        (
            "decisions",
            format!(
                "{} allowed, {} denied, {} held",
                format::count(counts, "allowed"),
                format::count(counts, "denied"),
                format::count(counts, "pending_approval")
            ),
        ),
        ("challenges", format::text(session, "challenges")),
    ])
}

/// `warning 0.70, halt 0.95`, or `none`.
fn gate_marks(gates: &Value) -> String {
    let marks: Vec<String> = ["warning", "restrict", "halt"]
        .into_iter()
        .filter_map(|gate| format::decimal(gates, gate).map(|mark| format!("{gate} {mark}")))
        .collect();
    match marks.is_empty() {
        true => "none".to_string(),
        false => marks.join(", "),
    }
}

async fn transition(
    client: &AdminClient,
    id: &str,
    action: &str,
    body: Option<Value>,
) -> Result<(), AdminError> {
    let path = format!("/v1/sessions/{}/{action}", encode(id));
    let answer = client
        .post(&path, &body.unwrap_or_else(|| json!({})))
        .await?;
    let previous = format::text(&answer, "previous");
    let phase = format::text(&answer, "phase");
    let note = if action == "reset" { " (reset)" } else { "" };
    println!("{id}: {previous} -> {phase}{note}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "id": "bot.run-7", "agent": "bot", "phase": "COMMIT", "limit": "5.00",
            "spent": "3.6", "reserved": "0.10", "unknown": "0", "ratio": "0.74",
            "gates": {"warning": "0.70", "restrict": "0.85", "halt": "0.95"},
            "agent_spent": "3.6", "fleet_spent": "10", "challenges": 2,
            "counts": {"allowed": 12, "denied": 3, "pending_approval": 1, "challenges": 2},
            "created": "2025-06-01T12:00:00Z",
        })
    }

    #[test]
    fn sessions_render_as_a_table() {
        let text = table(&[sample()]).render();
        let row = text.lines().nth(1).unwrap();
        assert!(text.starts_with("SESSION    PHASE   SPENT / LIMIT  RESERVED  RATIO"));
        assert!(row.contains("3.60 / 5.00"), "{row}");
        assert!(row.contains("[#######...]  74% warning"), "{row}");
        assert!(row.ends_with("12/3/1"), "{row}");
    }

    #[test]
    fn a_session_without_limit_says_so() {
        let mut session = sample();
        session["limit"] = Value::Null;
        session["ratio"] = Value::Null;
        let text = details(&session);
        assert!(text.contains("limit (USD)  no limit"), "{text}");
        assert!(text.contains("ratio        -"), "{text}");
        assert!(
            text.contains("decisions    12 allowed, 3 denied, 1 held"),
            "{text}"
        );
    }
}
