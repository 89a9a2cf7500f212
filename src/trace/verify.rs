//! `purser traces verify`: walk the chain and name the first line that breaks it.

use super::chain::{line_hash, GENESIS_HASH};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// A verified chain.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub lines: u64,
    pub last_hash: String,
}

/// Where the chain breaks.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a JSON trace line: {message}")]
    NotJson {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{path}:{line}: chain broken: prev_hash is {found}, the previous line hashes to {expected}"
    )]
    Broken {
        path: PathBuf,
        line: u64,
        expected: String,
        found: String,
    },
}

/// Verifies files in order as one chain: rotated files first, oldest to newest, then
/// the live file. The first file must start from the genesis hash.
pub fn verify_files(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let mut expected = GENESIS_HASH.to_string();
    let mut lines = 0;
    for path in paths {
        let (count, last) = verify_file(path, &expected)?;
        lines += count;
        expected = last;
    }
    Ok(VerifyReport {
        lines,
        last_hash: expected,
    })
}

fn verify_file(path: &Path, start: &str) -> Result<(u64, String), VerifyError> {
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut expected = start.to_string();
    let mut count = 0;
    // Bytes first: a line that is not UTF-8 was altered, and is named like any other.
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let number = index as u64 + 1;
        let not_json = |message: String| VerifyError::NotJson {
            path: path.to_path_buf(),
            line: number,
            message,
        };
        let mut line = line.map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = String::from_utf8(line).map_err(|e| not_json(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| not_json(e.to_string()))?;
        let found = value
            .get("prev_hash")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if found != expected {
            return Err(VerifyError::Broken {
                path: path.to_path_buf(),
                line: number,
                expected,
                found,
            });
        }
        expected = line_hash(line.as_bytes());
        count += 1;
    }
    Ok((count, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::chain::chain_line;

    #[test]
    fn a_log_written_before_typed_records_still_verifies() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/trace/testdata/lines-v0.1.0.jsonl");
        assert_eq!(verify_files(&[path]).unwrap().lines, 30);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_named_not_an_io_error() {
        let first = chain_line(GENESIS_HASH, r#"{"kind":"decision"}"#);
        let second = chain_line(&line_hash(first.as_bytes()), r#"{"kind":"settlement"}"#);
        let mut bytes = format!("{first}\n{second}\n").into_bytes();
        bytes.extend_from_slice(b"{\"prev_hash\":\"x\",\"reason\":\"caf\xc3\"}\n");
        let path = std::env::temp_dir().join(format!("purser-verify-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let verified = verify_files(std::slice::from_ref(&path));
        let _ = std::fs::remove_file(&path);
        match verified {
            Err(VerifyError::NotJson { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected line 3 to be named, got {other:?}"),
        }
    }
}
