//! A long proof log that `purser traces verify` accepts and Purser replays on start-up,
//! made from a real one: for the recovery bench, and for any test that needs a log of
//! a million lines without making a million payments.

use crate::x402::{sha256_hex, PAYER};
use crate::Error;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

/// How many lines, and over how many agents, sessions and days before now.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub lines: usize,
    pub agents: usize,
    pub sessions: usize,
    pub days: i64,
}

/// A line cut at the values that change: literal, slot, literal, slot, …, literal.
struct Template {
    pieces: Vec<String>,
    slots: Vec<usize>,
}

impl Template {
    /// Replaces each `"key":"value"` (or bare `"value"` when `key` is empty) of `line` by
    /// slot `i`; each must occur exactly once.
    fn new(line: &str, fields: &[(&str, String)]) -> Result<Template, Error> {
        let mut marked = line.to_string();
        for (i, (key, value)) in fields.iter().enumerate() {
            let old = if key.is_empty() {
                format!("\"{value}\"")
            } else {
                format!("\"{key}\":\"{value}\"")
            };
            if marked.matches(&old).count() != 1 {
                return Err(format!("template: {old} must occur exactly once").into());
            }
            let new = if key.is_empty() {
                format!("\"\u{0}{i}\u{0}\"")
            } else {
                format!("\"{key}\":\"\u{0}{i}\u{0}\"")
            };
            marked = marked.replacen(&old, &new, 1);
        }
        let mut pieces = Vec::new();
        let mut slots = Vec::new();
        for (n, part) in marked.split('\u{0}').enumerate() {
            if n % 2 == 0 {
                pieces.push(part.to_string());
            } else {
                slots.push(part.parse()?);
            }
        }
        Ok(Template { pieces, slots })
    }

    fn fill(&self, out: &mut String, values: &[&str]) {
        out.push_str(&self.pieces[0]);
        for (slot, piece) in self.slots.iter().zip(&self.pieces[1..]) {
            out.push_str(values[*slot]);
            out.push_str(piece);
        }
    }
}

/// Writes `shape.lines` lines to `out`: decision and settlement pairs copied from the first
/// ALLOWED payment with a committed settlement in `template` (a real proof log), with
/// fresh trace ids, sessions, replay keys and times, hash-chained. The bytes written.
pub fn generate(template: &Path, out: &Path, shape: &Shape) -> Result<u64, Error> {
    let Shape {
        lines,
        agents,
        sessions,
        days,
    } = *shape;
    // The first ALLOWED decision that has a committed settlement, and that settlement.
    let mut decisions = std::collections::HashMap::new();
    let mut pair = None;
    for line in std::io::BufReader::new(std::fs::File::open(template)?).lines() {
        let line = line?;
        let value: serde_json::Value = serde_json::from_str(&line)?;
        match (value["kind"].as_str(), value["decision"].as_str()) {
            (Some("decision"), Some("ALLOWED")) => {
                decisions.insert(value["trace_id"].as_str().unwrap_or("").to_string(), line);
            }
            (Some("settlement"), _) if value["outcome"] == "committed" => {
                if let Some(d) = decisions.remove(value["decision_trace_id"].as_str().unwrap_or(""))
                {
                    pair = Some((d, line));
                    break;
                }
            }
            _ => {}
        }
    }
    let (decision, settlement) = pair.ok_or("template has no committed ALLOWED payment")?;
    // The chain is recomputed: drop `"prev_hash":"…",` and keep the rest as written.
    let unchained = |line: &str| -> Result<String, Error> {
        let rest = line
            .strip_prefix("{\"prev_hash\":\"")
            .and_then(|r| r.get(64..))
            .and_then(|r| r.strip_prefix("\","))
            .ok_or("template line does not start with prev_hash")?;
        Ok(rest.to_string())
    };
    let dv: serde_json::Value = serde_json::from_str(&decision)?;
    let sv: serde_json::Value = serde_json::from_str(&settlement)?;
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let keys: Vec<String> = dv["replay_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if keys.len() != 2 {
        return Err(format!("expected 2 replay keys, found {keys:?}").into());
    }
    // Slots: 0 trace_id, 1 time, 2 session, 3 agent, 4 digest / decision_trace_id,
    // 5 replay key 1 / transaction, 6 replay key 2.
    let decision_t = Template::new(
        &unchained(&decision)?,
        &[
            ("trace_id", s(&dv, "trace_id")),
            ("time", s(&dv, "time")),
            ("session", s(&dv, "session")),
            ("agent", s(&dv, "agent")),
            ("payment_digest", s(&dv, "payment_digest")),
            ("", keys[0].clone()),
            ("", keys[1].clone()),
        ],
    )?;
    let settlement_t = Template::new(
        &unchained(&settlement)?,
        &[
            ("trace_id", s(&sv, "trace_id")),
            ("time", s(&sv, "time")),
            ("session", s(&sv, "session")),
            ("agent", s(&sv, "agent")),
            ("decision_trace_id", s(&sv, "decision_trace_id")),
            ("transaction", s(&sv, "transaction")),
        ],
    )?;
    let kinds: Vec<String> = keys
        .iter()
        .map(|k| k.split(':').next().unwrap_or("").to_string())
        .collect();
    if kinds
        .iter()
        .any(|k| k != "payer_nonce" && k != "signature_sha256")
    {
        return Err(format!("unexpected replay key kinds {kinds:?}").into());
    }
    let replay_key = |kind: &str, nonce: &str| match kind {
        "payer_nonce" => format!("payer_nonce:{PAYER}:{nonce}").to_lowercase(),
        _ => format!("signature_sha256:{}", sha256_hex(nonce.as_bytes())),
    };
    let payments = lines / 2;
    let now = jiff::Timestamp::now().as_millisecond();
    let first = now - days * 86_400_000;
    let step = ((now - first) / payments.max(1) as i64).max(1);
    let mut writer = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut prev = "0".repeat(64);
    let mut line = String::with_capacity(4096);
    let mut emit = |body: &str, prev: &mut String| -> std::io::Result<()> {
        line.clear();
        line.push_str("{\"prev_hash\":\"");
        line.push_str(prev);
        line.push_str("\",");
        line.push_str(body);
        *prev = sha256_hex(line.as_bytes());
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")
    };
    let mut body = String::with_capacity(4096);
    for p in 0..payments {
        let agent = format!("bench-{}", p % agents);
        let session = format!("{agent}.s{}", p % sessions);
        let at = jiff::Timestamp::from_millisecond(first + p as i64 * step)?;
        let decided = at.to_string();
        let settled = (at + jiff::SignedDuration::from_millis(3)).to_string();
        let trace = format!("tr_bench{:08x}", 2 * p);
        let trace_settle = format!("tr_bench{:08x}", 2 * p + 1);
        let nonce = format!("0x{p:064x}");
        let (k1, k2) = (replay_key(&kinds[0], &nonce), replay_key(&kinds[1], &nonce));
        let digest = sha256_hex(format!("payment {p}").as_bytes());
        body.clear();
        decision_t.fill(
            &mut body,
            &[&trace, &decided, &session, &agent, &digest, &k1, &k2],
        );
        emit(&body, &mut prev)?;
        let tx = format!("0x{:064x}", p as u64 ^ 0xbeef);
        body.clear();
        settlement_t.fill(
            &mut body,
            &[&trace_settle, &settled, &session, &agent, &trace, &tx],
        );
        emit(&body, &mut prev)?;
    }
    writer.flush()?;
    drop(writer);
    Ok(std::fs::metadata(out)?.len())
}
