//! `purser traces verify --store URL`: checks every replica's chain in the fleet store's
//! copy of the proof log. Each line must hash to what the store says, name the previous
//! line's hash as its `prev_hash`, and follow it without a gap. A chain that starts
//! again from the genesis hash (a replica whose file was replaced) is reported as a new
//! chain of that replica, not as a break.

use super::settings::connection;
use crate::trace::{line_hash, GENESIS_HASH};
use std::time::Duration;

/// One replica's copy, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The replica's name.
    pub replica: String,
    /// Lines checked.
    pub lines: u64,
    /// Chains: 1, plus one for each time the replica started again from genesis.
    pub chains: u64,
    /// The last line's hash.
    pub last_hash: String,
    /// The first break, if any: the line's number and what is wrong.
    pub broken: Option<(i64, String)>,
}

/// Reads every replica's lines from the store at `url` and checks their chains.
pub async fn verify_store(url: &str) -> Result<Vec<ChainReport>, String> {
    let timeout = Duration::from_secs(10);
    let connection = connection(url, timeout).map_err(|e| e.to_string())?;
    let (client, driver) = connection
        .config
        .connect(connection.tls)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", super::settings::redacted(url)))?;
    tokio::spawn(driver);
    let replicas = client
        .query(
            "SELECT DISTINCT replica FROM purser_trace_lines ORDER BY replica",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut reports = Vec::new();
    for row in replicas {
        let replica: String = row.try_get(0).map_err(|e| e.to_string())?;
        let mut report = ChainReport {
            replica: replica.clone(),
            lines: 0,
            chains: 0,
            last_hash: GENESIS_HASH.to_string(),
            broken: None,
        };
        // Read in pages, so a long log is never held whole.
        let mut after = 0i64;
        'pages: loop {
            let page = client
                .query(
                    "SELECT seq, hash, line FROM purser_trace_lines \
                      WHERE replica = $1 AND seq > $2 ORDER BY seq LIMIT 10000",
                    &[&replica, &after],
                )
                .await
                .map_err(|e| e.to_string())?;
            if page.is_empty() {
                break;
            }
            for line in page {
                let seq: i64 = line.try_get(0).map_err(|e| e.to_string())?;
                let hash: String = line.try_get(1).map_err(|e| e.to_string())?;
                let text: String = line.try_get(2).map_err(|e| e.to_string())?;
                if let Err(why) = check(&mut report, after, seq, &hash, &text) {
                    report.broken = Some((seq, why));
                    break 'pages;
                }
                after = seq;
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Checks one line against the chain so far, and moves the chain on.
fn check(
    report: &mut ChainReport,
    previous_seq: i64,
    seq: i64,
    hash: &str,
    text: &str,
) -> Result<(), String> {
    if seq != previous_seq + 1 {
        return Err(format!(
            "lines {} to {} are missing",
            previous_seq + 1,
            seq - 1
        ));
    }
    let actual = line_hash(text.as_bytes());
    if actual != hash {
        return Err(format!(
            "the line hashes to {actual}, not the {hash} stored with it: it was altered"
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON trace line: {e}"))?;
    let prev = value
        .get("prev_hash")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if prev == GENESIS_HASH {
        report.chains += 1;
    } else if prev != report.last_hash || report.chains == 0 {
        return Err(format!(
            "chain broken: prev_hash is {prev}, the previous line hashes to {}",
            report.last_hash
        ));
    }
    report.last_hash = actual;
    report.lines += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(prev: &str, n: u32) -> String {
        format!("{{\"prev_hash\":\"{prev}\",\"trace_id\":\"tr_{n}\",\"kind\":\"decision\"}}")
    }

    fn report() -> ChainReport {
        ChainReport {
            replica: "r".into(),
            lines: 0,
            chains: 0,
            last_hash: GENESIS_HASH.into(),
            broken: None,
        }
    }

    #[test]
    fn a_chain_checks_and_an_edit_a_gap_or_a_splice_is_named() {
        let first = line(GENESIS_HASH, 1);
        let second = line(&line_hash(first.as_bytes()), 2);
        let mut ok = report();
        check(&mut ok, 0, 1, &line_hash(first.as_bytes()), &first).unwrap();
        check(&mut ok, 1, 2, &line_hash(second.as_bytes()), &second).unwrap();
        assert_eq!((ok.lines, ok.chains), (2, 1));
        let mut gap = report();
        check(&mut gap, 0, 1, &line_hash(first.as_bytes()), &first).unwrap();
        assert!(check(&mut gap, 1, 3, &line_hash(second.as_bytes()), &second).is_err());
        let mut edited = report();
        assert!(check(&mut edited, 0, 1, "0", &first)
            .unwrap_err()
            .contains("altered"));
        let mut spliced = report();
        let stranger = line(&"1".repeat(64), 3);
        assert!(check(
            &mut spliced,
            0,
            1,
            &line_hash(stranger.as_bytes()),
            &stranger
        )
        .is_err());
        let mut again = report();
        check(&mut again, 0, 1, &line_hash(first.as_bytes()), &first).unwrap();
        check(&mut again, 1, 2, &line_hash(first.as_bytes()), &first).unwrap();
        assert_eq!(
            again.chains, 2,
            "a new chain from genesis is counted, not a break"
        );
    }
}
