//! The single writer of the proof log: chains, batches, flushes, rotates.

use super::record::TraceRecord;
use super::GENESIS_HASH;
use crate::policy::hex;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Why a line could not be made durable. A payment decision that cannot be written is
/// not forwarded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TraceError {
    #[error("trace log {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("trace log writer has stopped")]
    Stopped,
    #[error("trace record could not be serialised: {0}")]
    Serialize(String),
}

/// How the log is written.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    pub path: PathBuf,
    /// Start a new file past this size; the chain continues into it.
    pub rotate_bytes: u64,
    /// `fsync` before acknowledging durable lines. Off only for measuring.
    pub fsync: bool,
}

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
}

impl TraceLog {
    /// Opens (or creates) the log, finds the last hash to chain from, starts the writer.
    pub fn open(settings: TraceSettings) -> Result<TraceLog, TraceError> {
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
        let writer = Writer {
            file,
            size: std::fs::metadata(&settings.path)
                .map(|m| m.len())
                .unwrap_or(0),
            last_hash,
            settings,
            broken: None,
        };
        std::thread::Builder::new()
            .name("purser-trace".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error)?;
        Ok(TraceLog { sender, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a line and waits until it is on disk.
    pub async fn append_durable(&self, record: &TraceRecord) -> Result<(), TraceError> {
        let line =
            serde_json::to_string(record).map_err(|e| TraceError::Serialize(e.to_string()))?;
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Job {
                line,
                ack: Some(ack),
            })
            .map_err(|_| TraceError::Stopped)?;
        done.await.map_err(|_| TraceError::Stopped)?
    }

    /// Waits until every line queued so far is written and synced (shutdown uses it, so
    /// lines appended without waiting are not lost when the process exits).
    pub async fn flush(&self) -> Result<(), TraceError> {
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
        match serde_json::to_string(record) {
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
    file: File,
    size: u64,
    last_hash: String,
    settings: TraceSettings,
    /// Set when a failed batch could not be cut back off the file: appending after it
    /// would break the chain, so every later batch fails until a restart repairs the file.
    broken: Option<String>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Job>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            batch.extend(receiver.try_iter());
            let result = self.write_batch(&batch);
            for job in batch {
                if let Some(ack) = job.ack {
                    let _ = ack.send(result.clone());
                }
            }
        }
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
            last_hash = hex(&Sha256::digest(line.as_bytes()));
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
        if self.size >= self.settings.rotate_bytes {
            self.rotate();
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
                tracing::info!(rotated = %rotated.display(), "trace log rotated");
            }
            Err(error) => {
                tracing::error!(%error, "trace log rotation failed; continuing in the same file")
            }
        }
    }
}

/// Puts `"prev_hash"` first in the JSON object, so every line can be checked alone.
pub(crate) fn chain_line(prev_hash: &str, json_object: &str) -> String {
    let body = json_object.strip_prefix('{').unwrap_or(json_object);
    if body.trim_start().starts_with('}') {
        format!("{{\"prev_hash\":\"{prev_hash}\"}}")
    } else {
        format!("{{\"prev_hash\":\"{prev_hash}\",{body}")
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
        hex(&Sha256::digest(&last_complete))
    } else {
        GENESIS_HASH.to_string()
    })
}
