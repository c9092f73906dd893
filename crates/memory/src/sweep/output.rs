//! Files of a decay run: `decay.parquet`, `needles.parquet` (zstd, via `occ_eval::schema`),
//! `manifest.json`, and the report ([`super::report`]).

use std::path::{Path, PathBuf};

use occ_core::EngineInfo;
use polars::prelude::{Column, DataFrame};
use serde::Serialize;

use super::{DecayConfig, DecayResults, DecayRow, Needle, NeedleRow, ScheduleSummary, SweepError};
use crate::schedule::ScheduleSpec;

/// Version of `manifest.json` and of the Parquet columns of a decay run.
pub const SCHEMA_VERSION: u32 = 1;

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

#[derive(Serialize)]
struct Manifest<'a> {
    schema_version: u32,
    kind: &'static str,
    #[serde(flatten)]
    meta: &'a RunMeta,
    config: &'a DecayConfig,
    schedules: Vec<ScheduleEntry<'a>>,
    pages_read: usize,
    needles: &'a [Needle],
    summaries: &'a [ScheduleSummary],
    files: Vec<String>,
}

#[derive(Serialize)]
struct ScheduleEntry<'a> {
    name: String,
    spec: &'a ScheduleSpec,
}

macro_rules! frame {
    ($rows:expr; $($field:ident),* $(,)?) => {
        DataFrame::new($rows.len(), vec![$(
            Column::new(stringify!($field).into(), $rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>())
        ),*])
    };
}

/// `decay.parquet` rows as a frame.
pub fn decay_frame(rows: &[DecayRow]) -> Result<DataFrame, SweepError> {
    frame!(rows; run_id, schedule, schedule_levels, engine, corpus, round_id, round_index, role, source_passage, age,
        level, representation, mode, n_pages, n_text_tokens, cost_tokens, cost_vision_nominal, font_px,
        char_precision, word_precision, word_recall, word_f1, exact_match, n_chars_gt, n_chars_out,
        baseline_char_precision, has_needle, context_tokens, all_text_tokens, ocr_ms)
    .map_err(|e| SweepError::Write { path: "decay.parquet".into(), message: e.to_string() })
}

/// `needles.parquet` rows as a frame.
pub fn needles_frame(rows: &[NeedleRow]) -> Result<DataFrame, SweepError> {
    frame!(rows; run_id, schedule, engine, needle_id, round_id, age, depth, representation, fact, answer, retrieved,
        fact_recalled, cost_tokens)
    .map_err(|e| SweepError::Write { path: "needles.parquet".into(), message: e.to_string() })
}

fn write_parquet(mut df: DataFrame, path: &Path) -> Result<(), SweepError> {
    occ_eval::schema::write_parquet(&mut df, path)
        .map_err(|e| SweepError::Write { path: path.display().to_string(), message: e.to_string() })
}

/// Writes every file of the run into `dir` (created if needed); returns their paths.
pub fn write_all(
    dir: &Path,
    config: &DecayConfig,
    results: &DecayResults,
    meta: &RunMeta,
) -> Result<Vec<PathBuf>, SweepError> {
    let io = |p: &Path, e: std::io::Error| SweepError::Write { path: p.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(dir.join("plots")).map_err(|e| io(dir, e))?;
    let mut files = Vec::new();
    let decay = dir.join("decay.parquet");
    write_parquet(decay_frame(&results.rows)?, &decay)?;
    files.push(decay);
    let needles = dir.join("needles.parquet");
    write_parquet(needles_frame(&results.needles)?, &needles)?;
    files.push(needles);
    files.extend(super::report::write(dir, config, results, meta)?);
    let manifest_path = dir.join("manifest.json");
    files.push(manifest_path.clone());
    let names: Vec<String> =
        files.iter().filter_map(|p| p.strip_prefix(dir).ok()).map(|p| p.display().to_string()).collect();
    let manifest = Manifest {
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
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| SweepError::Write { path: manifest_path.display().to_string(), message: e.to_string() })?;
    std::fs::write(&manifest_path, text + "\n").map_err(|e| io(&manifest_path, e))?;
    Ok(files)
}
