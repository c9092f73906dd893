//! Run directories: creation, the manifest, writing the Parquet/CSV outputs from the journal,
//! and merging shards.
//!
//! Layout of `results/<experiment>/<run_id>/`:
//! `manifest.json`, `journal.jsonl` (source of truth while running), and at the end
//! `samples.parquet`, `predictions.parquet`, `summary.csv` (and the report's files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use occ_core::EngineInfo;
use serde::{Deserialize, Serialize};

use crate::journal::{self, JournalEntry, JournalError, JournalWriter, JOURNAL_FILE};
use crate::manifest::{ManifestError, ManifestHead, RunKind, RunStatus};
use crate::plan::Shard;
use crate::schema::{self, PredictionRow, SampleRow, SampleStatus, SchemaError, SummaryRow, Table};
use crate::spec::ExperimentSpec;
use crate::summary::summarize;

pub use crate::manifest::{MANIFEST_FILE, MANIFEST_VERSION};
pub const SAMPLES_FILE: &str = "samples.parquet";
pub const PREDICTIONS_FILE: &str = "predictions.parquet";
pub const SUMMARY_FILE: &str = "summary.csv";

/// Errors of run-directory handling.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("output folder {path} is not writable: {source}")]
    Unwritable { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot merge: {0}")]
    Merge(String),
}

/// One invocation that worked on the run (a resumed run has several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub started_utc: String,
    pub wall_time_s: f64,
    pub samples: usize,
    pub command: Vec<String>,
}

/// `manifest.json` of a sweep or score run: what was run, with what, where, and how long it took. Its
/// keys shared with every run's manifest are [`crate::manifest::ManifestHead`]'s (the `kind` is
/// written by [`Manifest::save`] from the spec); older shapes read through
/// [`crate::manifest::migrate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub tool: String,
    pub tool_version: String,
    pub git_commit: String,
    pub experiment: String,
    pub run_id: String,
    pub created_utc: String,
    /// `running` until the outputs are written, then `complete` (`interrupted`, `incomplete`).
    pub status: RunStatus,
    pub spec: ExperimentSpec,
    pub spec_fingerprint: String,
    pub shard: Option<Shard>,
    /// Run directories this run was merged from.
    pub merged_from: Vec<String>,
    pub engines: Vec<EngineInfo>,
    /// Whether any engine ran on synthetic weights (scores meaningless).
    pub synthetic_weights: bool,
    pub renderer: String,
    pub tokenizer: String,
    /// Host description (CPU threads, accelerator) from the CLI.
    pub host: String,
    pub n_samples_planned: usize,
    pub n_samples_done: usize,
    pub n_failed: usize,
    pub sessions: Vec<Session>,
    /// Sum of the sessions' wall times.
    pub wall_time_s: f64,
    /// The flags that loaded the reader, as the command that started the run gave them (model,
    /// engine and Tesseract flags); `--resume` restores them. `None` in runs written before they
    /// were recorded (and in score runs, which load no reader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_flags: Option<Vec<String>>,
    /// The prompt the reader was given, as the engine sent it (absent for runs whose readers take
    /// no prompt, and for runs written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Why a run with status `failed` stopped: the error and its causes, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_chain: Vec<String>,
}

impl From<ManifestError> for ResultsError {
    fn from(e: ManifestError) -> ResultsError {
        match e {
            ManifestError::Io { path, source } => ResultsError::Io { path, source },
            ManifestError::Invalid { path, message } => ResultsError::Manifest { path, message },
        }
    }
}

impl Manifest {
    /// Reads `dir/manifest.json` of a sweep or score run, of any manifest version.
    pub fn load(dir: &Path) -> Result<Manifest, ResultsError> {
        let path = dir.join(MANIFEST_FILE);
        let display = path.display().to_string();
        let value = crate::manifest::read(dir)?;
        if value.get("kind").and_then(serde_json::Value::as_str) == Some(RunKind::Decay.as_str()) {
            return Err(ResultsError::Manifest {
                path: display,
                message: "a decay run, not a sweep or score run".into(),
            });
        }
        serde_json::from_value(value).map_err(|e| ResultsError::Manifest { path: display, message: e.to_string() })
    }

    /// Sweep, or score for predictions made elsewhere (the spec's engine `external`).
    pub fn kind(&self) -> RunKind {
        if self.spec.engine == crate::spec::EngineKind::External {
            RunKind::Score
        } else {
            RunKind::Sweep
        }
    }

    /// The keys every manifest has.
    pub fn head(&self) -> ManifestHead {
        ManifestHead {
            manifest_version: self.manifest_version,
            kind: self.kind(),
            status: self.status,
            run_id: self.run_id.clone(),
            created_utc: self.created_utc.clone(),
            engines: self.engines.clone(),
            tokenizer: self.tokenizer.clone(),
            wall_time_s: self.wall_time_s,
        }
    }

    /// Writes `dir/manifest.json` atomically (temp file + rename), in the current shape.
    pub fn save(&self, dir: &Path) -> Result<(), ResultsError> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            manifest: &'a Manifest,
            kind: RunKind,
        }
        let current = Manifest { manifest_version: MANIFEST_VERSION, ..self.clone() };
        Ok(crate::manifest::write(dir, &Out { manifest: &current, kind: self.kind() })?)
    }
}

/// Current UTC time as (`2025-01-31T12:00:00Z`, `20250131T120000Z`).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem / 60) % 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"), format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"))
}

/// Creates a fresh run directory `<out_root>/<experiment>/<run_id>` (never reusing one) and
/// checks it is writable. Returns the directory and the run id.
pub fn create_run_dir(
    out_root: &Path,
    spec: &ExperimentSpec,
    shard: Option<Shard>,
) -> Result<(PathBuf, String), ResultsError> {
    let parent = out_root.join(&spec.name);
    std::fs::create_dir_all(&parent)
        .map_err(|e| ResultsError::Unwritable { path: parent.display().to_string(), source: e })?;
    let (_, compact) = utc_now();
    let shard_tag = shard.map(|s| format!("-s{}of{}", s.index, s.count)).unwrap_or_default();
    let base = format!("{compact}-{}{shard_tag}", spec.fingerprint());
    for attempt in 0..1000 {
        let run_id = if attempt == 0 { base.clone() } else { format!("{base}-{attempt}") };
        let dir = parent.join(&run_id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let probe = dir.join(".write-test");
                std::fs::write(&probe, b"ok")
                    .and_then(|()| std::fs::remove_file(&probe))
                    .map_err(|e| ResultsError::Unwritable { path: dir.display().to_string(), source: e })?;
                return Ok((dir, run_id));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ResultsError::Unwritable { path: dir.display().to_string(), source: e }),
        }
    }
    Err(ResultsError::Merge(format!("no free run id under {}", parent.display())))
}

/// Counts of the written outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub samples: usize,
    pub failed: usize,
}

/// Writes `samples.parquet`, `predictions.parquet` and `summary.csv` from the journal (sorted by
/// sample index) and returns the counts.
pub fn write_outputs(dir: &Path, seed: u64) -> Result<(Written, Vec<SummaryRow>), ResultsError> {
    let (entries, _) = journal::read(&dir.join(JOURNAL_FILE))?;
    let samples: Vec<SampleRow> = entries.values().map(|e| e.sample.clone()).collect();
    let predictions: Vec<PredictionRow> = entries.values().map(|e| e.prediction.clone()).collect();
    write_tables(dir, &samples, &predictions, seed)
}

/// Writes `samples.parquet`, `predictions.parquet` and `summary.csv` (statistics seeded by `seed`)
/// from rows already in sample order, and returns the counts and the summary.
pub fn write_tables(
    dir: &Path,
    samples: &[SampleRow],
    predictions: &[PredictionRow],
    seed: u64,
) -> Result<(Written, Vec<SummaryRow>), ResultsError> {
    let summary = summarize(samples, seed);
    schema::write_parquet(&mut SampleRow::to_frame(samples)?, &dir.join(SAMPLES_FILE))?;
    schema::write_parquet(&mut PredictionRow::to_frame(predictions)?, &dir.join(PREDICTIONS_FILE))?;
    schema::write_csv(&mut SummaryRow::to_frame(&summary)?, &dir.join(SUMMARY_FILE))?;
    let failed = samples.iter().filter(|s| s.status != SampleStatus::Ok).count();
    Ok((Written { samples: samples.len(), failed }, summary))
}

/// Reads `samples.parquet` of a run.
pub fn read_samples(dir: &Path) -> Result<Vec<SampleRow>, ResultsError> {
    Ok(SampleRow::from_frame(&schema::read_parquet(&dir.join(SAMPLES_FILE))?)?)
}

/// Joins complete shard runs (`--shard K/N` for every K of one N, same spec) into a new run
/// under `out_root`. Rows get the new run id; everything else is as in the shards, so the merged
/// `samples.parquet` equals a single run's except for volatile columns.
pub fn merge(shard_dirs: &[PathBuf], out_root: &Path, host: &str) -> Result<(PathBuf, Manifest), ResultsError> {
    let manifests: Vec<Manifest> = shard_dirs.iter().map(|d| Manifest::load(d)).collect::<Result<_, _>>()?;
    let first = manifests.first().ok_or_else(|| ResultsError::Merge("no shard directories given".into()))?;
    let count = first.shard.map(|s| s.count).ok_or_else(|| {
        ResultsError::Merge(format!("{} is not a shard run (no --shard in its manifest)", shard_dirs[0].display()))
    })?;
    let mut seen = BTreeMap::new();
    for (dir, m) in shard_dirs.iter().zip(&manifests) {
        if m.spec_fingerprint != first.spec_fingerprint {
            return Err(ResultsError::Merge(format!(
                "{} has spec {} but {} has {}: shards of different experiments",
                dir.display(),
                m.spec_fingerprint,
                shard_dirs[0].display(),
                first.spec_fingerprint
            )));
        }
        let shard = m.shard.ok_or_else(|| ResultsError::Merge(format!("{} is not a shard run", dir.display())))?;
        if shard.count != count {
            return Err(ResultsError::Merge(format!(
                "{} is shard {}/{}, expected N = {count}",
                dir.display(),
                shard.index,
                shard.count
            )));
        }
        if m.status != RunStatus::Complete {
            return Err(ResultsError::Merge(format!(
                "{} is not complete (status {}); resume it first",
                dir.display(),
                m.status
            )));
        }
        if let Some(other) = seen.insert(shard.index, dir.clone()) {
            return Err(ResultsError::Merge(format!(
                "shard {}/{count} given twice: {} and {}",
                shard.index,
                other.display(),
                dir.display()
            )));
        }
    }
    let missing: Vec<String> = (1..=count).filter(|k| !seen.contains_key(k)).map(|k| format!("{k}/{count}")).collect();
    if !missing.is_empty() {
        return Err(ResultsError::Merge(format!("missing shards {}", missing.join(", "))));
    }
    let mut all: BTreeMap<u64, JournalEntry> = BTreeMap::new();
    for dir in shard_dirs {
        let (entries, _) = journal::read(&dir.join(JOURNAL_FILE))?;
        for (k, e) in entries {
            if all.insert(k, e).is_some() {
                return Err(ResultsError::Merge(format!("sample {k} appears in two shards")));
            }
        }
    }
    let (dir, run_id) = create_run_dir(out_root, &first.spec, None)?;
    let mut writer = JournalWriter::open(&dir.join(JOURNAL_FILE), 0)?;
    for e in all.values_mut() {
        e.sample.run_id = run_id.clone();
        e.prediction.run_id = run_id.clone();
        writer.append(e)?;
    }
    writer.flush()?;
    let (created, _) = utc_now();
    let mut manifest = Manifest {
        run_id,
        created_utc: created,
        status: RunStatus::Running,
        shard: None,
        merged_from: shard_dirs.iter().map(|d| d.display().to_string()).collect(),
        host: host.into(),
        n_samples_planned: manifests.iter().map(|m| m.n_samples_planned).sum(),
        sessions: manifests.iter().flat_map(|m| m.sessions.clone()).collect(),
        wall_time_s: manifests.iter().map(|m| m.wall_time_s).sum(),
        ..first.clone()
    };
    manifest.save(&dir)?;
    let (written, _) = write_outputs(&dir, manifest.spec.seed)?;
    manifest.n_samples_done = written.samples;
    manifest.n_failed = written.failed;
    manifest.status = RunStatus::Complete;
    manifest.save(&dir)?;
    Ok((dir, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_format_is_iso() {
        let (iso, compact) = utc_now();
        assert_eq!(iso.len(), 20);
        assert!(iso.ends_with('Z') && iso.as_bytes()[10] == b'T');
        assert_eq!(compact.len(), 16);
        assert!(iso.starts_with("20"));
    }
}
