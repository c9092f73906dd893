//! The run journal: one JSON line per completed sample (`journal.jsonl`), appended and flushed
//! to disk after every batch. It is the source of truth of a run: `--resume` skips what it holds,
//! and the Parquet files are written from it at the end. A line cut short by a crash (`kill -9`)
//! is dropped and the file truncated to the last complete line before appending.
//!
//! The format (JSON Lines, torn last line dropped) is shared by every journaled command:
//! [`read_lines`] and [`JournalWriter`] take any serde type (the decay sweep journals its
//! read-backs through them, [`crate::decay::DecayJournal`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::schema::{PredictionRow, SampleRow};

/// File name of the journal inside a run directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// Errors of journal I/O.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("journal {path} line {line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
}

/// One completed sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub sample: SampleRow,
    pub prediction: PredictionRow,
}

/// Reads the complete entries of a journal, keyed by sample index (first occurrence wins).
/// A missing file is an empty journal. Returns the entries and the byte length of the complete
/// lines (where appending must continue).
pub fn read(path: &Path) -> Result<(BTreeMap<u64, JournalEntry>, u64), JournalError> {
    let (lines, complete) = read_lines::<JournalEntry>(path)?;
    let mut entries = BTreeMap::new();
    for entry in lines {
        entries.entry(entry.sample.sample_index).or_insert(entry);
    }
    Ok((entries, complete))
}

/// Reads the complete lines of a JSON Lines journal of `T`, in file order. A missing file is an
/// empty journal; a last line without its newline (cut short by a crash) is left out. Returns the
/// entries and the byte length of the complete lines (where appending must continue).
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, u64), JournalError> {
    let display = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(JournalError::Io { path: display, source: e }),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map(|p| p + 1).unwrap_or(0);
    let mut entries = Vec::new();
    for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: T = serde_json::from_slice(line).map_err(|e| JournalError::Corrupt {
            path: display.clone(),
            line: i + 1,
            message: e.to_string(),
        })?;
        entries.push(entry);
    }
    Ok((entries, complete as u64))
}

/// An open journal for appending.
pub struct JournalWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JournalWriter {
    /// Opens `path` for appending after truncating it to `valid_len` bytes (dropping a torn line).
    pub fn open(path: &Path, valid_len: u64) -> Result<JournalWriter, JournalError> {
        let io = |e| JournalError::Io { path: path.display().to_string(), source: e };
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() != valid_len {
            file.set_len(valid_len).map_err(io)?;
        }
        Ok(JournalWriter { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    /// Appends one entry (buffered until [`JournalWriter::flush`]).
    pub fn append<T: Serialize>(&mut self, entry: &T) -> Result<(), JournalError> {
        let io = |e: std::io::Error| JournalError::Io { path: self.path.display().to_string(), source: e };
        let line = serde_json::to_string(entry).map_err(|e| io(std::io::Error::other(e)))?;
        self.out.write_all(line.as_bytes()).map_err(io)?;
        self.out.write_all(b"\n").map_err(io)
    }

    /// Writes buffered entries through to the disk.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        let io = |e: std::io::Error| JournalError::Io { path: self.path.display().to_string(), source: e };
        self.out.flush().map_err(io)?;
        self.out.get_ref().sync_data().map_err(io)
    }
}
