//! The fleet's proof log. Each replica's file stays the durable record (a decision is on
//! disk before its payment leaves); a task copies its lines, byte for byte and in chain
//! order, into `purser_trace_lines` under the replica's name. It reads them from the file
//! (woken by the writer after each write), so lines written while the store was down, or
//! before a restart, are copied once it answers. Any replica's `GET /v1/traces` reads the
//! fleet's lines from there, and `purser traces verify --store URL` checks every chain.

use super::link::{Link, StoreError};
use crate::trace::filter::TraceFilter;
use crate::trace::{line_hash, log_files, TraceLog, TraceRecord, GENESIS_HASH};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Lines copied per round trip at most.
const BATCH: usize = 1000;
/// How often the copy looks at the file when the writer has not rung.
const IDLE_LOOK: Duration = Duration::from_secs(2);
/// How long the copy lets lines gather once rung: a few round trips a second carry a
/// steady trickle of lines, rather than one per line.
const GATHER: Duration = Duration::from_millis(20);

/// Starts copying `trace`'s lines into the store.
pub(super) fn start(link: Arc<Link>, trace: &TraceLog) {
    let bell = Arc::new(Notify::new());
    trace.ring_after_writes(bell.clone());
    let path = trace.path().to_path_buf();
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            match copy(&link, &path, &bell).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(%error, "proof-log copy to the fleet store paused");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

/// Where the copy has got to in the local files.
#[derive(Clone, Debug)]
struct Position {
    /// The file's inode (the live file is renamed when it rotates).
    inode: u64,
    offset: u64,
    /// The last line copied: its number and hash.
    seq: i64,
    hash: String,
}

/// One line read from the file, with what the store indexes.
struct Line {
    text: String,
    hash: String,
}

/// The fields of a line the store indexes.
#[derive(Deserialize, Default)]
struct Head {
    #[serde(default)]
    prev_hash: String,
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    decision: Option<String>,
}

/// Copies until the process ends. A batch the store does not take is sent again once it
/// answers; if the store's copy no longer ends where this one thought (a restart lost
/// its latest lines), the copy starts over from where the store's ends.
async fn copy(link: &Link, path: &Path, bell: &Notify) -> Result<(), StoreError> {
    let (seq, hash) = last_copied(link).await?;
    let search = path.to_path_buf();
    let mut position = tokio::task::spawn_blocking(move || locate(&search, seq, &hash))
        .await
        .map_err(|e| StoreError::Refused(e.to_string()))?;
    loop {
        let from = position.clone();
        let read_path = path.to_path_buf();
        let (lines, next) = tokio::task::spawn_blocking(move || read_after(&read_path, &from))
            .await
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        if lines.is_empty() {
            position = next;
            if tokio::time::timeout(IDLE_LOOK, bell.notified())
                .await
                .is_ok()
            {
                tokio::time::sleep(GATHER).await;
            }
            continue;
        }
        let mut pause = Duration::from_millis(100);
        while let Err(error) = ship(link, position.seq, &lines).await {
            tracing::debug!(%error, "proof-log copy to the fleet store paused");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            if let Ok((seq, _)) = last_copied(link).await {
                if seq != position.seq {
                    return Err(StoreError::Unreachable(
                        "the store's copy changed meanwhile; starting over from its end".into(),
                    ));
                }
            }
        }
        position = next;
    }
}

/// The last line this replica's copy holds: its number and hash (0 and the genesis hash
/// for none).
async fn last_copied(link: &Link) -> Result<(i64, String), StoreError> {
    let rows = link
        .rows(
            "SELECT seq, hash FROM purser_trace_lines WHERE replica = $1 ORDER BY seq DESC LIMIT 1",
            &[&link.replica],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| Some((row.try_get(0).ok()?, row.try_get(1).ok()?)))
        .unwrap_or((0, GENESIS_HASH.to_string())))
}

/// Finds the line after the one with `hash` in the local files. A store copy that ends on
/// a line the files do not have (the file was replaced) continues with the files' first
/// line: the chain shows where it started again.
fn locate(path: &Path, seq: i64, hash: &str) -> Position {
    let files = log_files(path);
    let start = |file: &PathBuf| Position {
        inode: inode(file).unwrap_or(0),
        offset: 0,
        seq,
        hash: hash.to_string(),
    };
    let first = files.first().map(start).unwrap_or(Position {
        inode: 0,
        offset: 0,
        seq,
        hash: hash.to_string(),
    });
    if hash == GENESIS_HASH {
        return first;
    }
    for file in &files {
        let Ok(handle) = std::fs::File::open(file) else {
            continue;
        };
        let mut reader = BufReader::new(handle);
        let mut offset = 0u64;
        let mut line = Vec::new();
        while let Ok(read) = reader.read_until(b'\n', &mut line) {
            if read == 0 || !line.ends_with(b"\n") {
                break;
            }
            offset += read as u64;
            line.pop();
            if line_hash(&line) == hash {
                return Position {
                    inode: inode(file).unwrap_or(0),
                    offset,
                    seq,
                    hash: hash.to_string(),
                };
            }
            line.clear();
        }
    }
    first
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Complete lines after `from` (at most [`BATCH`]), following the file into the files it
/// rotated into; and where the next read starts.
fn read_after(path: &Path, from: &Position) -> (Vec<Line>, Position) {
    let files = log_files(path);
    let at = files
        .iter()
        .position(|file| inode(file) == Some(from.inode));
    let (index, mut offset) = match at {
        Some(index) => (index, from.offset),
        // The file is gone (archived): go on with the oldest there is.
        None => (0, 0),
    };
    let mut lines = Vec::new();
    let mut position = from.clone();
    for file in files.iter().skip(index) {
        let Ok(mut handle) = std::fs::File::open(file) else {
            break;
        };
        if handle.seek(SeekFrom::Start(offset)).is_err() {
            break;
        }
        let mut reader = BufReader::new(handle);
        let mut bytes = Vec::new();
        position.inode = inode(file).unwrap_or(0);
        position.offset = offset;
        while lines.len() < BATCH {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(read) if read > 0 && bytes.ends_with(b"\n") => {
                    offset += read as u64;
                    bytes.pop();
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    lines.push(Line {
                        hash: line_hash(&bytes),
                        text,
                    });
                    position.offset = offset;
                }
                // The end, or a line still being written.
                _ => break,
            }
        }
        if lines.len() >= BATCH {
            break;
        }
        offset = 0;
    }
    if let Some(last) = lines.last() {
        position.hash = last.hash.clone();
        position.seq = from.seq + lines.len() as i64;
    }
    (lines, position)
}

/// Copies `lines`, numbered after `seq`.
async fn ship(link: &Link, seq: i64, lines: &[Line]) -> Result<(), StoreError> {
    let heads: Vec<Head> = lines
        .iter()
        .map(|line| serde_json::from_str(&line.text).unwrap_or_default())
        .collect();
    let seqs: Vec<i64> = (1..=lines.len() as i64).map(|n| seq + n).collect();
    let hashes: Vec<&str> = lines.iter().map(|l| l.hash.as_str()).collect();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let column = |get: fn(&Head) -> &str| -> Vec<&str> { heads.iter().map(get).collect() };
    let decisions: Vec<Option<&str>> = heads.iter().map(|h| h.decision.as_deref()).collect();
    link.execute(
        "SELECT purser_ship_lines($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &link.replica,
            &seqs,
            &hashes,
            &column(|h| &h.prev_hash),
            &texts,
            &column(|h| &h.trace_id),
            &column(|h| &h.kind),
            &column(|h| &h.session),
            &column(|h| &h.agent),
            &decisions,
        ],
    )
    .await?;
    Ok(())
}

/// The fleet's latest lines matching `filter`, oldest first.
pub(super) async fn fleet_lines(
    link: &Link,
    filter: &TraceFilter,
    limit: usize,
) -> Result<Vec<TraceRecord>, StoreError> {
    let word =
        |value: Option<serde_json::Value>| value.and_then(|v| v.as_str().map(str::to_string));
    let decision = word(
        filter
            .decision
            .map(|d| serde_json::to_value(d).unwrap_or_default()),
    );
    let kind = word(
        filter
            .kind
            .map(|k| serde_json::to_value(k).unwrap_or_default()),
    );
    let limit = limit as i64;
    let rows = link
        .rows(
            "SELECT line FROM purser_trace_lines \
              WHERE ($1::TEXT IS NULL OR session = $1) AND ($2::TEXT IS NULL OR agent = $2) \
                AND ($3::TEXT IS NULL OR decision = $3) AND ($4::TEXT IS NULL OR kind = $4) \
              ORDER BY stored DESC, replica, seq DESC LIMIT $5",
            &[&filter.session, &filter.agent, &decision, &kind, &limit],
        )
        .await?;
    let mut lines: Vec<TraceRecord> = rows
        .iter()
        .filter_map(|row| row.try_get::<_, String>(0).ok())
        .filter_map(|line| TraceRecord::from_line(&line).ok())
        .filter(|record| filter.matches(record))
        .collect();
    lines.reverse();
    Ok(lines)
}
