//! Purser's proof log as the benches' reports read it: the live file and its rotated
//! predecessors, indexed by decision trace id (decisions, holds, settlements,
//! compensations), with `purser traces verify` on top.

use crate::Error;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One decision line.
#[derive(Clone, Debug, Default)]
pub struct DecisionLine {
    pub trace_id: String,
    pub decision: String,
    /// SHA-256 of the decoded payment (none for a header that did not decode).
    pub digest: Option<String>,
    pub rule: Option<String>,
}

/// What the proof log says, by the decision each line belongs to.
#[derive(Default)]
pub struct LogView {
    pub files: usize,
    pub bytes: u64,
    pub lines: u64,
    pub unparsable: u64,
    pub kinds: BTreeMap<String, u64>,
    /// Decision lines in the order written.
    pub decisions: Vec<DecisionLine>,
    /// decision trace id → index in `decisions`
    by_trace: HashMap<String, usize>,
    /// decision trace id → the `decision` of each `hold` line
    pub holds: HashMap<String, Vec<String>>,
    /// decision trace id → (outcome, receipt transaction) of each settlement line
    pub settlements: HashMap<String, Vec<(String, Option<String>)>>,
    /// decision trace id → the outcome of each compensation line
    pub compensations: HashMap<String, Vec<String>>,
    /// Σ `amount_usd` of the `committed` settlement lines.
    pub committed_usd: Decimal,
    /// policy digest → decision lines written under it
    pub decision_policies: BTreeMap<String, u64>,
    /// Every policy digest on any line.
    pub policies: BTreeSet<String>,
}

/// A JSON amount as a `Decimal`, never through a float.
pub fn decimal_of(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

/// The live log's rotated predecessors (`FILE.N`, oldest first), then the live log.
pub fn trace_files(live: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u128, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (live.parent(), live.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stamp) = file.strip_prefix(&prefix).and_then(|s| s.parse().ok()) {
                rotated.push((stamp, entry.path()));
            }
        }
    }
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if live.exists() {
        files.push(live.to_path_buf());
    }
    files
}

/// `purser traces verify LIVE`: whether it passed, and what it printed.
pub fn verify(purser: &Path, live: &Path) -> Result<(bool, String), Error> {
    let output = std::process::Command::new(purser)
        .arg("traces")
        .arg("verify")
        .arg(live)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok((output.status.success(), text))
}

impl LogView {
    /// Reads the live log at `live` and its rotated predecessors.
    pub fn read(live: &Path) -> Result<LogView, Error> {
        let mut view = LogView::default();
        for path in trace_files(live) {
            view.files += 1;
            view.bytes += std::fs::metadata(&path)?.len();
            let file = std::io::BufReader::new(std::fs::File::open(&path)?);
            for line in file.lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    view.add(&line);
                }
            }
        }
        Ok(view)
    }

    fn add(&mut self, line: &str) {
        self.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            self.unparsable += 1;
            return;
        };
        let text = |k: &str| v[k].as_str().map(str::to_string);
        let kind = text("kind").unwrap_or_default();
        *self.kinds.entry(kind.clone()).or_default() += 1;
        if let Some(digest) = text("policy_digest") {
            self.policies.insert(digest);
        }
        let of_decision = text("decision_trace_id").unwrap_or_default();
        match kind.as_str() {
            "decision" => {
                if let Some(d) = text("policy_digest") {
                    *self.decision_policies.entry(d).or_default() += 1;
                }
                let line = DecisionLine {
                    trace_id: text("trace_id").unwrap_or_default(),
                    decision: text("decision").unwrap_or_default(),
                    digest: text("payment_digest"),
                    rule: text("rule"),
                };
                self.by_trace
                    .insert(line.trace_id.clone(), self.decisions.len());
                self.decisions.push(line);
            }
            "hold" => self
                .holds
                .entry(of_decision)
                .or_default()
                .push(text("decision").unwrap_or_default()),
            "settlement" => {
                let outcome = text("outcome").unwrap_or_default();
                if outcome == "committed" {
                    self.committed_usd += decimal_of(&v["amount_usd"]).unwrap_or_default();
                }
                self.settlements
                    .entry(of_decision)
                    .or_default()
                    .push((outcome, text("transaction")));
            }
            "compensation" => self
                .compensations
                .entry(of_decision)
                .or_default()
                .push(text("outcome").unwrap_or_default()),
            _ => {}
        }
    }

    /// The decision line with this trace id.
    pub fn decision(&self, trace_id: &str) -> Option<&DecisionLine> {
        self.by_trace.get(trace_id).map(|&i| &self.decisions[i])
    }

    /// Whether a hold line approved this decision.
    pub fn approved(&self, trace_id: &str) -> bool {
        self.holds
            .get(trace_id)
            .is_some_and(|holds| holds.iter().any(|d| d == "ALLOWED"))
    }

    /// The decision line that let this payment go out (ALLOWED, or PENDING_APPROVAL with
    /// an approving hold line): its trace id.
    pub fn authorizing(&self, digest: &str) -> Option<&str> {
        self.decisions.iter().find_map(|d| {
            let allowed = d.decision == "ALLOWED"
                || (d.decision == "PENDING_APPROVAL" && self.approved(&d.trace_id));
            (allowed && d.digest.as_deref() == Some(digest)).then_some(d.trace_id.as_str())
        })
    }

    /// Whether a compensation line requested a refund for this decision.
    pub fn refund_requested(&self, trace_id: &str) -> bool {
        self.compensations
            .get(trace_id)
            .is_some_and(|outcomes| outcomes.iter().any(|o| o == "requested"))
    }

    /// The lines of `kind`.
    pub fn count(&self, kind: &str) -> u64 {
        self.kinds.get(kind).copied().unwrap_or(0)
    }
}
