//! `purser traces verify`: walk the chain and name the first line that breaks it.

use super::GENESIS_HASH;
use crate::policy::hex;
use sha2::{Digest, Sha256};
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
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index as u64 + 1;
        let line = line.map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| VerifyError::NotJson {
                path: path.to_path_buf(),
                line: number,
                message: e.to_string(),
            })?;
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
        expected = hex(&Sha256::digest(line.as_bytes()));
        count += 1;
    }
    Ok((count, expected))
}
