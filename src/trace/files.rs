//! The proof log's files on disk: the live file `NAME`, and the files it rotated into
//! (`NAME.MICROS`, beside it), in chain order. Recovery replays them in that order,
//! `purser traces verify` and `traces show` read them, and the disk figures sum them.

use std::path::{Path, PathBuf};

/// The log's files in chain order: rotated ones oldest first, then the live file (if it
/// exists).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rotated_files(path)
        .into_iter()
        .map(|(_, file)| file)
        .collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// The files `path` rotated into, with their stamps, oldest first.
pub fn rotated_files(path: &Path) -> Vec<(u64, PathBuf)> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut rotated: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let stamp = entry
                .file_name()
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('.')
                .filter(|stamp| !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()))?
                .parse::<u64>()
                .ok()?;
            Some((stamp, entry.path()))
        })
        .collect();
    rotated.sort();
    rotated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_come_first_oldest_first() {
        let dir = std::env::temp_dir().join(format!("purser-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let live = dir.join("trace.jsonl");
        for name in [
            "trace.jsonl",
            "trace.jsonl.20",
            "trace.jsonl.3",
            "trace.jsonl.x",
            "other.1",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let files = log_files(&live);
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["trace.jsonl.3", "trace.jsonl.20", "trace.jsonl"]);
    }
}
