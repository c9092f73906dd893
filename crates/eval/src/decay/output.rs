//! Files of a decay run in occ-eval's part: `decay.parquet` and `needles.parquet` (the tables of
//! [`crate::schema`], written like every results table) and `manifest.json`. The report between them
//! is occ-report's (`occ_report::decay::write_run` writes a whole run in order).
//!
//! While a run works, `manifest.json` holds its state ([`write_state`]: status `running`, then
//! `interrupted` or `failed`), with the configuration and schedules a `--resume` reads back
//! ([`DecayState::load`]); the finished run's manifest ([`write_manifest`]) has status `complete`.
//! Both start with the keys of every run's manifest ([`ManifestHead`]: `manifest_version`, `kind`
//! `decay`, `status`, `run_id`, `created_utc`, `engines`, `tokenizer`, `wall_time_s`); manifests
//! of the first version (`schema_version`, `engine`, `wall_s`) are read through
//! [`crate::manifest::migrate`].

use std::path::{Path, PathBuf};

use occ_core::EngineInfo;
use occ_memory::ScheduleSpec;
use serde::{Deserialize, Serialize};

use super::{DecayConfig, DecayError, DecayResults, Needle, ScheduleSummary};
use crate::manifest::{ManifestHead, RunKind, RunStatus, MANIFEST_VERSION};
use crate::schema::{self, DecayRow, NeedleRow, Table};

pub use crate::manifest::MANIFEST_FILE;
pub const DECAY_FILE: &str = "decay.parquet";
pub const NEEDLES_FILE: &str = "needles.parquet";

/// Facts about the run that the library cannot know (written into the manifest's head, and
/// `command` beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub created_utc: String,
    /// The command line, for the report.
    pub command: String,
    pub engine: EngineInfo,
    pub tokenizer: String,
    pub wall_s: f64,
    /// The flags that loaded the reader, as the command that started the run gave them (engine,
    /// model and Tesseract flags); `--resume` restores them. `None` for runs written before they
    /// were recorded.
    #[serde(default)]
    pub reader_flags: Option<Vec<String>>,
    /// The prompt the reader is given (`None` for readers without one, and for runs written before
    /// it was recorded).
    #[serde(default)]
    pub prompt: Option<String>,
}

impl RunMeta {
    /// The manifest head of the run in `status`.
    pub fn head(&self, status: RunStatus) -> ManifestHead {
        ManifestHead {
            manifest_version: MANIFEST_VERSION,
            kind: RunKind::Decay,
            status,
            run_id: self.run_id.clone(),
            created_utc: self.created_utc.clone(),
            engines: vec![self.engine.clone()],
            tokenizer: self.tokenizer.clone(),
            wall_time_s: self.wall_s,
        }
    }
}

/// `manifest.json` of a finished decay run.
#[derive(Debug, Serialize)]
pub struct DecayManifest<'a> {
    /// Status `complete`.
    #[serde(flatten)]
    pub head: ManifestHead,
    /// The command line of the last session.
    pub command: &'a str,
    /// The flags that loaded the reader ([`RunMeta::reader_flags`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_flags: &'a Option<Vec<String>>,
    /// The reader's prompt ([`RunMeta::prompt`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: &'a Option<String>,
    pub config: &'a DecayConfig,
    pub schedules: Vec<ScheduleEntry<'a>>,
    pub pages_read: usize,
    pub needles: &'a [Needle],
    pub summaries: &'a [ScheduleSummary],
    /// Every file of the run, relative to its directory, in the order written.
    pub files: Vec<String>,
}

/// A schedule of the run: its name and its spec.
#[derive(Debug, Serialize)]
pub struct ScheduleEntry<'a> {
    pub name: String,
    pub spec: &'a ScheduleSpec,
}

/// `manifest.json` of a decay run that has not finished (written by [`write_state`]).
#[derive(Debug, Serialize)]
struct StateOut<'a> {
    #[serde(flatten)]
    head: ManifestHead,
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reader_flags: &'a Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: &'a Option<String>,
    config: &'a DecayConfig,
    schedules: Vec<ScheduleEntry<'a>>,
    /// Read-backs in `journal.jsonl`.
    reads_journaled: usize,
}

/// The manifest of a decay run as read back (of any manifest version): its state and what
/// `--resume` needs.
#[derive(Debug, Clone)]
pub struct DecayState {
    /// The keys of every run's manifest.
    pub head: ManifestHead,
    /// Always `decay`.
    pub kind: String,
    /// `running`, `interrupted`, `failed` or `complete`.
    pub status: Option<RunStatus>,
    /// The head's identity and timing, with the command line, as the run's [`RunMeta`].
    pub meta: RunMeta,
    pub config: DecayConfig,
    pub schedules: Vec<ScheduleOwned>,
    pub reads_journaled: Option<usize>,
    pub files: Vec<String>,
}

/// The manifest of a decay run, current shape, as deserialised.
#[derive(Debug, Clone, Deserialize)]
struct StateIn {
    #[serde(flatten)]
    head: ManifestHead,
    #[serde(default)]
    command: String,
    #[serde(default)]
    reader_flags: Option<Vec<String>>,
    #[serde(default)]
    prompt: Option<String>,
    config: DecayConfig,
    schedules: Vec<ScheduleOwned>,
    #[serde(default)]
    reads_journaled: Option<usize>,
    #[serde(default)]
    files: Vec<String>,
}

/// A schedule of a manifest read back.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleOwned {
    pub name: String,
    pub spec: ScheduleSpec,
}

impl DecayState {
    /// Reads `dir/manifest.json` of a decay run.
    pub fn load(dir: &Path) -> Result<DecayState, DecayError> {
        let path = dir.join(MANIFEST_FILE);
        let value = crate::manifest::read(dir).map_err(|e| match e {
            crate::manifest::ManifestError::Io { path, source } => {
                DecayError::Invalid(format!("not a decay run: {path}: {source}"))
            }
            e => DecayError::Invalid(format!("not a decay run manifest: {e}")),
        })?;
        let kind = value.get("kind").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        if kind != RunKind::Decay.as_str() {
            return Err(DecayError::Invalid(format!("{}: kind {kind:?}, not a decay run", path.display())));
        }
        let s: StateIn = serde_json::from_value(value)
            .map_err(|e| DecayError::Invalid(format!("{}: not a decay run manifest: {e}", path.display())))?;
        let engine = s
            .head
            .engines
            .first()
            .cloned()
            .ok_or_else(|| DecayError::Invalid(format!("{}: no engine in a decay run manifest", path.display())))?;
        let meta = RunMeta {
            run_id: s.head.run_id.clone(),
            created_utc: s.head.created_utc.clone(),
            command: s.command,
            engine,
            tokenizer: s.head.tokenizer.clone(),
            wall_s: s.head.wall_time_s,
            reader_flags: s.reader_flags,
            prompt: s.prompt,
        };
        Ok(DecayState {
            kind,
            status: Some(s.head.status),
            head: s.head,
            meta,
            config: s.config,
            schedules: s.schedules,
            reads_journaled: s.reads_journaled,
            files: s.files,
        })
    }

    /// The status (`complete` for manifests written before states were recorded).
    pub fn status(&self) -> RunStatus {
        self.status.unwrap_or(RunStatus::Complete)
    }

    /// The run's configuration with its schedules.
    pub fn config(&self) -> DecayConfig {
        DecayConfig { schedules: self.schedules.iter().map(|s| s.spec.clone()).collect(), ..self.config.clone() }
    }
}

/// Writes `manifest.json` of an unfinished run into `dir` (atomically): `status` (`running`,
/// `interrupted`, `failed`), the configuration and schedules, and how many read-backs the journal
/// holds.
pub fn write_state(
    dir: &Path,
    config: &DecayConfig,
    meta: &RunMeta,
    status: RunStatus,
    reads_journaled: usize,
) -> Result<PathBuf, DecayError> {
    let path = dir.join(MANIFEST_FILE);
    let state = StateOut {
        head: meta.head(status),
        command: &meta.command,
        reader_flags: &meta.reader_flags,
        prompt: &meta.prompt,
        config,
        schedules: config.schedules.iter().map(|s| ScheduleEntry { name: s.name(), spec: s }).collect(),
        reads_journaled,
    };
    let text = serde_json::to_string_pretty(&state).map_err(|e| write_err(&path, e))?;
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| write_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| write_err(&path, e))?;
    Ok(path)
}

/// `<out_root>/decay/<run_id>`, or `<run_id>-2`, `-3`, … when taken (not created here).
pub fn fresh_run_dir(out_root: &Path, run_id: &str) -> Result<PathBuf, DecayError> {
    let base = out_root.join("decay");
    for k in 1..1000 {
        let name = if k == 1 { run_id.to_string() } else { format!("{run_id}-{k}") };
        let dir = base.join(&name);
        if !dir.exists() {
            return Ok(dir);
        }
    }
    Err(DecayError::Invalid(format!("no fresh run directory under {} for run id {run_id}", base.display())))
}

fn write_err(path: &Path, message: impl ToString) -> DecayError {
    DecayError::Write { path: path.display().to_string(), message: message.to_string() }
}

fn write_table<T: Table>(rows: &[T], path: &Path) -> Result<(), DecayError> {
    let mut df = T::to_frame(rows).map_err(|e| write_err(path, e))?;
    schema::write_parquet(&mut df, path).map_err(|e| write_err(path, e))
}

/// Writes `decay.parquet` and `needles.parquet` into `dir` (created if needed); returns their paths.
pub fn write_tables(dir: &Path, results: &DecayResults) -> Result<Vec<PathBuf>, DecayError> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let decay = dir.join(DECAY_FILE);
    write_table::<DecayRow>(&results.rows, &decay)?;
    let needles = dir.join(NEEDLES_FILE);
    write_table::<NeedleRow>(&results.needles, &needles)?;
    Ok(vec![decay, needles])
}

/// Writes `manifest.json` into `dir`, listing `files` (the run's other files) and itself; returns its path.
pub fn write_manifest(
    dir: &Path,
    config: &DecayConfig,
    results: &DecayResults,
    meta: &RunMeta,
    files: &[PathBuf],
) -> Result<PathBuf, DecayError> {
    let path = dir.join(MANIFEST_FILE);
    let names: Vec<String> = files
        .iter()
        .chain(std::iter::once(&path))
        .filter_map(|p| p.strip_prefix(dir).ok())
        .map(|p| p.display().to_string())
        .collect();
    let manifest = DecayManifest {
        head: meta.head(RunStatus::Complete),
        command: &meta.command,
        reader_flags: &meta.reader_flags,
        prompt: &meta.prompt,
        config,
        schedules: config.schedules.iter().map(|s| ScheduleEntry { name: s.name(), spec: s }).collect(),
        pages_read: results.pages_read,
        needles: &results.conversation.needles,
        summaries: &results.summaries,
        files: names,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| write_err(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| write_err(&path, e))?;
    Ok(path)
}
