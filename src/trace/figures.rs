//! What the proof log costs on disk, as `/metrics` shows it: bytes and lines written,
//! the live file's size, the size of the whole log (rotated files included), refusals
//! counted into summaries instead of written, fields cut, rotations, and the disk alarm.
//!
//! The alarm goes off (a WARN line and `purser_trace_disk_alarm 1`) when the log's files
//! together pass `--trace-alarm-size`. Purser never deletes them: recovery rebuilds
//! budgets from every file and `purser traces verify` checks the chain from the first,
//! so making room is the operator's call (archive the oldest rotated files elsewhere).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters the writer thread keeps and the admin listener reads.
#[derive(Debug, Default)]
pub struct TraceFigures {
    pub bytes_written: AtomicU64,
    pub lines_written: AtomicU64,
    /// The live file's size.
    pub file_bytes: AtomicU64,
    /// The live file plus its rotated predecessors.
    pub log_bytes: AtomicU64,
    pub rotations: AtomicU64,
    /// Refusals counted into a summary instead of written.
    pub refusals_suppressed: AtomicU64,
    pub summaries: AtomicU64,
    /// Lines written with a field cut to its bound.
    pub lines_cut: AtomicU64,
    /// `--trace-alarm-size`; 0 is no alarm.
    pub alarm_bytes: AtomicU64,
    pub alarm: AtomicBool,
}

/// One figure for `/metrics`: name, type, help, value.
pub type Figure = (&'static str, &'static str, &'static str, u64);

impl TraceFigures {
    /// A written batch of `lines` lines and `bytes` bytes. True when the log has just
    /// passed the alarm size.
    pub fn wrote(&self, lines: u64, bytes: u64, file_size: u64, rotated_bytes: u64) -> bool {
        self.lines_written.fetch_add(lines, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        self.file_bytes.store(file_size, Ordering::Relaxed);
        self.set_log_bytes(file_size + rotated_bytes)
    }

    /// Records the log's size on disk and raises or clears the alarm. Returns true when
    /// the alarm has just gone off.
    pub fn set_log_bytes(&self, bytes: u64) -> bool {
        self.log_bytes.store(bytes, Ordering::Relaxed);
        let threshold = self.alarm_bytes.load(Ordering::Relaxed);
        let over = threshold > 0 && bytes >= threshold;
        let was = self.alarm.swap(over, Ordering::Relaxed);
        over && !was
    }

    /// Every figure, in the order `/metrics` prints them.
    pub fn snapshot(&self) -> Vec<Figure> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("purser_trace_bytes_written_total", "counter", "Bytes written to the proof log since start.", load(&self.bytes_written)),
            ("purser_trace_lines_written_total", "counter", "Lines written to the proof log since start.", load(&self.lines_written)),
            ("purser_trace_file_bytes", "gauge", "Size of the live proof-log file.", load(&self.file_bytes)),
            ("purser_trace_log_bytes", "gauge", "Size of the proof log on disk, rotated files included.", load(&self.log_bytes)),
            ("purser_trace_rotations_total", "counter", "Proof-log rotations since start.", load(&self.rotations)),
            ("purser_trace_refusals_suppressed_total", "counter", "Refusals past an agent's per-minute rate, counted in a summary line instead of written.", load(&self.refusals_suppressed)),
            ("purser_trace_summaries_total", "counter", "Summary lines written for suppressed refusals.", load(&self.summaries)),
            ("purser_trace_lines_cut_total", "counter", "Lines written with a long field cut to its bound.", load(&self.lines_cut)),
            ("purser_trace_disk_alarm_bytes", "gauge", "The proof-log size that raises the disk alarm (0: none).", load(&self.alarm_bytes)),
            ("purser_trace_disk_alarm", "gauge", "1 while the proof log is past --trace-alarm-size.", u64::from(self.alarm.load(Ordering::Relaxed))),
        ]
    }
}

/// The sizes of the log's rotated files (`NAME.DIGITS` beside `path`), summed.
pub fn rotated_bytes(path: &Path) -> u64 {
    super::files::rotated_files(path)
        .iter()
        .filter_map(|(_, file)| std::fs::metadata(file).ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

/// Says (once per crossing) that the log passed the alarm size.
pub fn warn_disk_alarm(path: &Path, bytes: u64, threshold: u64) {
    tracing::warn!(
        log = %path.display(),
        bytes,
        threshold,
        "the proof log and its rotated files are past --trace-alarm-size; archive the oldest rotated files \
         elsewhere (recovery and `purser traces verify` need them back to rebuild budgets) or give the log more disk"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_goes_off_once_per_crossing() {
        let figures = TraceFigures::default();
        figures.alarm_bytes.store(100, Ordering::Relaxed);
        assert!(!figures.set_log_bytes(99));
        assert!(figures.set_log_bytes(100));
        assert!(!figures.set_log_bytes(200), "still over: no second warning");
        assert!(!figures.set_log_bytes(10));
        assert!(!figures.alarm.load(Ordering::Relaxed));
        assert!(figures.set_log_bytes(150));
    }
}
