//! The single writer of the proof log: chains, batches, flushes, rotates. Every line is
//! bounded on its way in ([`super::bound`]), and refusals past an agent's rate are
//! summarised ([`super::refusals`]).

use super::bound::{bounded_line, is_refusal};
use super::chain::{chain_line, line_hash, GENESIS_HASH};
use super::figures::{self, TraceFigures};
use super::record::TraceRecord;
use super::refusals::{Admission, RefusalLimiter};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// Why a line could not be made durable. A payment decision that cannot be written is
/// not forwarded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened, written, synced or rotated.
    #[error("trace log {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        message: String,
    },
    /// The writer thread is gone (Purser is stopping, or it failed earlier).
    #[error("trace log writer has stopped")]
    Stopped,
    /// The record could not be turned into JSON (the serializer's message).
    #[error("trace record could not be serialised: {0}")]
    Serialize(String),
}

/// How the log is written.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    /// The live file; rotated files sit beside it.
    pub path: PathBuf,
    /// Start a new file past this size; the chain continues into it.
    pub rotate_bytes: u64,
    /// `fsync` before acknowledging durable lines. Off only for measuring.
    pub fsync: bool,
}

/// What bounds the log's growth (`purser run` sets both; the default bounds nothing, for
/// tools that open a log to read or replay it).
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLimits {
    /// Refusals per agent and minute written one by one; the rest are summarised. 0
    /// writes every refusal.
    pub refusals_per_minute: u32,
    /// Warn (and raise `purser_trace_disk_alarm`) once the log's files pass this many
    /// bytes; 0 never warns.
    pub alarm_bytes: u64,
}

/// How often the writer looks for refusal windows to close when no line arrives.
const SUMMARY_TICK: Duration = Duration::from_secs(1);

struct Job {
    /// Empty for a flush barrier: nothing is written, but the ack waits for the fsync.
    line: String,
    ack: Option<oneshot::Sender<Result<(), TraceError>>>,
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct TraceLog {
    sender: mpsc::Sender<Job>,
    path: PathBuf,
    limiter: Arc<RefusalLimiter>,
    figures: Arc<TraceFigures>,
    /// Rung after every write, for a reader that copies new lines elsewhere.
    doorbell: Arc<OnceLock<Arc<Notify>>>,
}

impl TraceLog {
    /// Opens (or creates) the log with no bound on its growth (see [`TraceLimits`]).
    pub fn open(settings: TraceSettings) -> Result<TraceLog, TraceError> {
        TraceLog::open_with(settings, TraceLimits::default())
    }

    /// Opens (or creates) the log, finds the last hash to chain from, starts the writer.
    pub fn open_with(settings: TraceSettings, limits: TraceLimits) -> Result<TraceLog, TraceError> {
        let log_path = settings.path.clone();
        let io_error = |e: std::io::Error| TraceError::Io {
            path: log_path.clone(),
            message: e.to_string(),
        };
        if let Some(parent) = settings.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let last_hash = last_line_hash(&settings.path).map_err(io_error)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.path)
            .map_err(io_error)?;
        let (sender, receiver) = mpsc::channel::<Job>();
        let path = settings.path.clone();
        let limiter = Arc::new(RefusalLimiter::new(limits.refusals_per_minute));
        let figures = Arc::new(TraceFigures::default());
        figures
            .alarm_bytes
            .store(limits.alarm_bytes, Ordering::Relaxed);
        let size = std::fs::metadata(&settings.path)
            .map(|m| m.len())
            .unwrap_or(0);
        let rotated_bytes = figures::rotated_bytes(&settings.path);
        figures.file_bytes.store(size, Ordering::Relaxed);
        if figures.set_log_bytes(size + rotated_bytes) {
            figures::warn_disk_alarm(&path, size + rotated_bytes, limits.alarm_bytes);
        }
        let doorbell = Arc::new(OnceLock::new());
        let writer = Writer {
            doorbell: doorbell.clone(),
            file,
            size,
            rotated_bytes,
            last_hash,
            settings,
            broken: None,
            limiter: limiter.clone(),
            figures: figures.clone(),
        };
        std::thread::Builder::new()
            .name("purser-trace".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error)?;
        Ok(TraceLog {
            sender,
            path,
            limiter,
            figures,
            doorbell,
        })
    }

    /// Has the writer ring `bell` after each batch it writes (one bell per log: the fleet
    /// store's copy of the log reads the new lines from the file when it rings).
    pub fn ring_after_writes(&self, bell: Arc<Notify>) {
        if self.doorbell.set(bell).is_err() {
            tracing::warn!("the proof log already rings another reader; not ringing a second");
        }
    }

    /// The log's figures, for `/metrics`.
    pub fn figures(&self) -> &TraceFigures {
        &self.figures
    }

    /// The record as one bounded JSON line.
    fn line_of(&self, record: &TraceRecord) -> Result<String, TraceError> {
        let (line, cut) = bounded_line(record).map_err(|e| TraceError::Serialize(e.to_string()))?;
        if cut {
            self.figures.lines_cut.fetch_add(1, Ordering::Relaxed);
        }
        Ok(line)
    }

    fn send_summary(&self, summary: Option<TraceRecord>) {
        if let Some(summary) = summary {
            self.figures.summaries.fetch_add(1, Ordering::Relaxed);
            self.append(&summary);
        }
    }

    /// The live file lines are appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a line and waits until it is on disk. Returns the trace id the caller's
    /// answer must cite: the record's own, except for a refusal past its agent's rate,
    /// which is counted into a summary instead of written and cites the line that opened
    /// that summary (already on disk).
    pub async fn append_durable(&self, record: &TraceRecord) -> Result<String, TraceError> {
        let mut opened = None;
        if is_refusal(record) {
            let (admission, closed) = self.limiter.admit(record, Instant::now());
            self.send_summary(closed);
            match admission {
                Admission::Write => {}
                Admission::Open(marker) => opened = Some(marker),
                Admission::Suppress(cited) => {
                    self.figures
                        .refusals_suppressed
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(cited);
                }
            }
        }
        let opened_summary = opened.is_some();
        let line = match opened {
            Some(marker) => {
                let mut marked = record.clone();
                marked.summary = Some(marker);
                self.line_of(&marked)?
            }
            None => self.line_of(record)?,
        };
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Job {
                line,
                ack: Some(ack),
            })
            .map_err(|_| TraceError::Stopped)?;
        let written = done.await.map_err(|_| TraceError::Stopped)?;
        if written.is_err() && opened_summary {
            // Later refusals must not cite a line that never reached the disk.
            self.limiter.cancel_opening(&record.agent);
        }
        written.map(|()| record.trace_id.clone())
    }

    /// Waits until every line queued so far is written and synced (shutdown uses it, so
    /// lines appended without waiting are not lost when the process exits). Open refusal
    /// summaries are closed first.
    pub async fn flush(&self) -> Result<(), TraceError> {
        for summary in self.limiter.close_all() {
            self.send_summary(Some(summary));
        }
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Job {
                line: String::new(),
                ack: Some(ack),
            })
            .map_err(|_| TraceError::Stopped)?;
        done.await.map_err(|_| TraceError::Stopped)?
    }

    /// Appends a line without waiting (it is still chained and flushed with its group).
    pub fn append(&self, record: &TraceRecord) {
        match self.line_of(record) {
            Ok(line) => {
                if self.sender.send(Job { line, ack: None }).is_err() {
                    tracing::error!("trace writer has stopped; a trace line was lost");
                }
            }
            Err(error) => tracing::error!(%error, "trace record could not be serialised"),
        }
    }
}

struct Writer {
    doorbell: Arc<OnceLock<Arc<Notify>>>,
    file: File,
    size: u64,
    /// The rotated files' sizes, summed (for the disk figures and alarm).
    rotated_bytes: u64,
    last_hash: String,
    settings: TraceSettings,
    /// Set when a failed batch could not be cut back off the file: appending after it
    /// would break the chain, so every later batch fails until a restart repairs the file.
    broken: Option<String>,
    limiter: Arc<RefusalLimiter>,
    figures: Arc<TraceFigures>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Job>) {
        loop {
            // Woken every tick only while a summary is open: an idle Purser sleeps.
            let first = if self.limiter.has_open_summaries() {
                match receiver.recv_timeout(SUMMARY_TICK) {
                    Ok(job) => Some(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                }
            };
            let mut batch = self.due_summaries();
            batch.extend(first);
            batch.extend(receiver.try_iter());
            if batch.is_empty() {
                continue;
            }
            let result = self.write_batch(&batch);
            for job in batch {
                if let Some(ack) = job.ack {
                    let _ = ack.send(result.clone());
                }
            }
        }
    }

    /// Summary lines of refusal windows that ended, queued ahead of the batch.
    fn due_summaries(&self) -> Vec<Job> {
        self.limiter
            .due(Instant::now())
            .iter()
            .filter_map(|record| bounded_line(record).ok())
            .map(|(line, _)| {
                self.figures.summaries.fetch_add(1, Ordering::Relaxed);
                Job { line, ack: None }
            })
            .collect()
    }

    fn write_batch(&mut self, batch: &[Job]) -> Result<(), TraceError> {
        let io_error = |message: String| TraceError::Io {
            path: self.settings.path.clone(),
            message,
        };
        if let Some(reason) = &self.broken {
            return Err(io_error(reason.clone()));
        }
        let mut buffer = Vec::with_capacity(batch.iter().map(|j| j.line.len() + 90).sum());
        let mut last_hash = self.last_hash.clone();
        for job in batch.iter().filter(|job| !job.line.is_empty()) {
            let line = chain_line(&last_hash, &job.line);
            last_hash = line_hash(line.as_bytes());
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        let result = self.file.write_all(&buffer).and_then(|_| {
            if self.settings.fsync && batch.iter().any(|j| j.ack.is_some()) {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(error) = result {
            tracing::error!(%error, "trace log write failed");
            // Nothing of a failed batch may stay: a torn fragment would glue itself to the
            // next line written, and the chain would go on from lines the file lacks.
            if let Err(cut) = self.file.set_len(self.size) {
                tracing::error!(error = %cut, "could not cut a failed write off the trace log; refusing further writes until restart");
                self.broken = Some(format!(
                    "an earlier write failed ({error}) and could not be undone ({cut}); restart Purser to repair the log"
                ));
            }
            return Err(io_error(error.to_string()));
        }
        self.last_hash = last_hash;
        self.size += buffer.len() as u64;
        if let Some(bell) = self.doorbell.get() {
            bell.notify_one();
        }
        let lines = batch.iter().filter(|job| !job.line.is_empty()).count() as u64;
        let crossed = self
            .figures
            .wrote(lines, buffer.len() as u64, self.size, self.rotated_bytes);
        // Warned when the log first passes the alarm size, and again at each rotation
        // while it stays past it (rotations are rare: one per --trace-rotate-size).
        let mut warn = crossed;
        if self.size >= self.settings.rotate_bytes {
            self.rotate();
            warn |= self.figures.set_log_bytes(self.size + self.rotated_bytes)
                || self.figures.alarm.load(Ordering::Relaxed);
        }
        if warn {
            figures::warn_disk_alarm(
                &self.settings.path,
                self.size + self.rotated_bytes,
                self.figures.alarm_bytes.load(Ordering::Relaxed),
            );
        }
        Ok(())
    }

    /// Renames the full file to `NAME.MICROS` and starts a fresh one; the next line
    /// still chains from the last line of the old file.
    fn rotate(&mut self) {
        // Microseconds, bumped past any file already there: names sort in chain order and
        // two rotations in the same instant never overwrite each other.
        let mut stamp = jiff::Timestamp::now().as_microsecond();
        let mut rotated = PathBuf::from(format!("{}.{stamp}", self.settings.path.display()));
        while rotated.exists() {
            stamp += 1;
            rotated = PathBuf::from(format!("{}.{stamp}", self.settings.path.display()));
        }
        let reopened = self
            .file
            .sync_all()
            .and_then(|_| std::fs::rename(&self.settings.path, &rotated))
            .and_then(|_| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.settings.path)
            });
        match reopened {
            Ok(file) => {
                self.file = file;
                self.size = 0;
                // Listed again rather than added up: the operator may have archived some.
                self.rotated_bytes = figures::rotated_bytes(&self.settings.path);
                self.figures.rotations.fetch_add(1, Ordering::Relaxed);
                self.figures.file_bytes.store(0, Ordering::Relaxed);
                tracing::info!(rotated = %rotated.display(), "trace log rotated");
            }
            Err(error) => {
                tracing::error!(%error, "trace log rotation failed; continuing in the same file")
            }
        }
    }
}

/// The hash of the last complete line, or the genesis hash for a new log. A torn last
/// line (no newline, a crash mid-write) is cut off so the chain resumes cleanly.
fn last_line_hash(path: &Path) -> std::io::Result<String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(GENESIS_HASH.to_string())
        }
        Err(error) => return Err(error),
    };
    let mut reader = BufReader::new(file);
    let mut last_complete = Vec::new();
    let mut complete_len: u64 = 0;
    // Bytes, not text: a line torn inside a multi-byte character is still just torn.
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        if line.ends_with(b"\n") {
            complete_len += read as u64;
            line.pop();
            // Swapped, not copied: start-up reads the whole log here, line by line.
            std::mem::swap(&mut last_complete, &mut line);
        } else {
            tracing::warn!(path = %path.display(), bytes = read, "trace log ends in a torn line; truncating it");
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(complete_len)?;
            let mut file = file;
            file.seek(SeekFrom::End(0))?;
            break;
        }
    }
    Ok(if complete_len > 0 {
        line_hash(&last_complete)
    } else {
        GENESIS_HASH.to_string()
    })
}
