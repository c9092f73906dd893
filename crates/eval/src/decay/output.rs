//! Files of a decay run in occ-eval's part: `decay.parquet` and `needles.parquet` (the tables of
//! [`crate::schema`], written like every results table) and `manifest.json`. The report between them
//! is occ-report's (`occ_report::decay::write_run` writes a whole run in order).

use std::path::{Path, PathBuf};

use occ_core::EngineInfo;
use occ_memory::ScheduleSpec;
use serde::Serialize;

use super::{DecayConfig, DecayError, DecayResults, Needle, ScheduleSummary};
use crate::schema::{self, DecayRow, NeedleRow, Table};

/// Version of `manifest.json` and of the Parquet columns of a decay run.
pub const SCHEMA_VERSION: u32 = 1;
pub const DECAY_FILE: &str = "decay.parquet";
pub const NEEDLES_FILE: &str = "needles.parquet";
pub const MANIFEST_FILE: &str = "manifest.json";

/// Facts about the run that the library cannot know.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    pub run_id: String,
    pub created_utc: String,
    /// The command line, for the report.
    pub command: String,
    pub engine: EngineInfo,
    pub tokenizer: String,
    pub wall_s: f64,
}

/// `manifest.json` of a decay run.
#[derive(Debug, Serialize)]
pub struct DecayManifest<'a> {
    pub schema_version: u32,
    /// Always `decay`.
    pub kind: &'static str,
    #[serde(flatten)]
    pub meta: &'a RunMeta,
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

/// `<out_root>/decay/<run_id>`, or `<run_id>-2`, `-3`, … when taken. Not created here: a decay run
/// writes its directory only when it has finished, so a run that fails leaves nothing behind.
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
        schema_version: SCHEMA_VERSION,
        kind: "decay",
        meta,
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
