//! The proof-log reader behind `purser traces verify`: arbitrary bytes as a log file, and
//! the same lines re-chained the way the writer chains them, which must then verify.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser::trace::{verify_files, VerifyError, GENESIS_HASH};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::OnceLock;

fn log_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("purser-fuzz-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("trace.jsonl")
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verify(bytes: &[u8]) -> Result<purser::trace::VerifyReport, VerifyError> {
    let path = log_path();
    std::fs::write(path, bytes).expect("write the log");
    verify_files(std::slice::from_ref(path))
}

/// Lines `str::lines`-style, as `BufRead::lines` reads them.
fn line_count(bytes: &[u8]) -> u64 {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

fuzz_target!(|data: &[u8]| {
    match verify(data) {
        Ok(report) => {
            assert_eq!(report.lines, line_count(data));
            assert_eq!(report.last_hash.len(), 64);
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }

    // Re-chain every JSON object line as the writer would: `prev_hash` first, then the
    // record's own members. Such a log verifies, and ends on the last line's hash.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut prev = GENESIS_HASH.to_string();
    let mut log = String::new();
    let mut count = 0u64;
    for line in text.lines() {
        let Ok(Value::Object(mut record)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        record.remove("prev_hash");
        let body = Value::Object(record).to_string();
        let rest = &body[1..];
        let chained = if rest == "}" {
            format!("{{\"prev_hash\":\"{prev}\"}}")
        } else {
            format!("{{\"prev_hash\":\"{prev}\",{rest}")
        };
        prev = hex(&Sha256::digest(chained.as_bytes()));
        log.push_str(&chained);
        log.push('\n');
        count += 1;
    }
    let report = verify(log.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(report.lines, count);
    assert_eq!(report.last_hash, prev);
});
