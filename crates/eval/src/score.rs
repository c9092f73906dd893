//! Scoring predictions made elsewhere (a vLLM run, another toolkit): JSON Lines of
//! `{id, truth, prediction}` in; the rows, statistics and tables of a sweep out, computed by the
//! same code (normalisation, [`crate::metrics::score`], the truncation baseline, [`crate::summary`],
//! [`crate::results::write_tables`]).
//!
//! Input: one JSON object per line; blank lines are skipped and fields not listed are ignored.
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `id` | string or integer | unique page id (`sample_id` of the row) |
//! | `truth` | string | the ground truth; must not be empty after normalisation |
//! | `prediction` | string | the reader's output; may be empty (it then scores 0) |
//! | `mode` | string, optional | DeepSeek-OCR mode (`tiny`, `small`, `base`, `large`, `gundam`, `custom:…`) |
//! | `vision_tokens` | integer > 0, optional | nominal vision tokens of the page |
//! | `text_tokens` | integer ≥ 0, optional | ground-truth tokens; counted with the DeepSeek-OCR tokenizer when absent |
//! | `group` | string, optional | cell key like a sweep's corpus (default `all`) |
//!
//! Vision tokens: a single-view mode gives its nominal count (Tiny 64, Small 100, Base 256,
//! Large 400) and a `vision_tokens` that disagrees with it is a bad row; a tiling mode (Gundam)
//! needs `vision_tokens`, since its count depends on the page's size. Without a mode,
//! `vision_tokens` alone gives the nominal count. Valid and slot counts are filled only where the
//! mode fixes them (valid: Tiny and Small, which stretch every page to a square; slots: every
//! single-view mode) and are 0 otherwise.
//!
//! Cells: (group, mode, bin). Without bins a group × mode is one cell. With
//! [`TokenBins::width`], a row with `t` ground-truth tokens falls in the bin
//! `[lo, lo + width)` with `lo = min + ⌊(t − min) / width⌋ · width` (`min` =
//! [`TokenBins::min_tokens`] or 0): a page of exactly 700 tokens is in 700–800. Rows with `t < min`
//! or `t ≥ max` are left out and counted, not bad. Each cell's `target_ratio` is the mean `ratio_nominal` of its pages
//! (text tokens ÷ nominal vision tokens) rounded to 2 decimals, so a bin sits on the curves at its
//! compression, as in the paper's Table 2; binning therefore needs the vision tokens of every row.
//!
//! Bad rows (invalid JSON, not UTF-8, not an object, missing or mistyped field, empty id or
//! truth, a mode that does not parse or disagrees with `vision_tokens`, and every row of an id that
//! appears more than once) are listed by line number in `score.json` and left out;
//! [`ScoreOptions::strict`] refuses the whole input instead.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use occ_core::{compression_ratio, EngineInfo, Mode, TextTokenizer};
use polars::prelude::{CsvReadOptions, Field, Schema, SerReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::journal::{JournalEntry, JournalError, JournalWriter, JOURNAL_FILE};
use crate::lock::{LockError, RunLock};
use crate::metrics::{runaway, score, RepetitionRule, Runaway, Scores};
use crate::normalize::{Lang, Normalization};
use crate::results::{self, Manifest, ResultsError, Session};
use crate::rng::SplitMix64;
use crate::schema::{self, BinRow, PredictionRow, SampleRow, SampleStatus, SchemaError, SummaryRow, Table};
use crate::spec::{EngineKind, ExperimentSpec};
use crate::stats::{cell_stats, CellStats};
use crate::status::RunStatus;

/// Input accounting of a score run (what was read, bad rows, rows out of range), in its directory.
pub const SCORE_FILE: &str = "score.json";
/// The per-bin table of a score run.
pub const BINS_FILE: &str = "bins.csv";
/// Group of rows without a `group`.
pub const DEFAULT_GROUP: &str = "all";
/// Mode column of rows without a mode.
pub const UNKNOWN_MODE: &str = "unknown";
/// Rows scored between two progress reports.
const CHUNK: usize = 64;

/// Errors that stop a score run (a bad row is not one, unless the run is strict).
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("reading predictions {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("output folder {path} is not writable: {source}")]
    Unwritable { path: String, source: std::io::Error },
    #[error("{0}")]
    Options(String),
    #[error("strict scoring refuses the input: {}", strict_message(.bad))]
    Strict { bad: Vec<BadRow> },
    #[error("nothing to score: {message}")]
    Empty { message: String, bad: Vec<BadRow> },
    #[error("{0}")]
    Cells(String),
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// `--resume` on a folder that is not a resumable score run of this input and these flags.
    #[error("cannot resume {path}: {message}")]
    Resume { path: String, message: String },
    /// [`ScoreProgress::should_stop`] asked to stop after `done` of `total` rows.
    #[error("stopped on request after {done} of {total} rows")]
    Interrupted { done: usize, total: usize },
}

fn strict_message(bad: &[BadRow]) -> String {
    match bad.first() {
        Some(first) => format!("{} bad row(s), the first at {first}", bad.len()),
        None => "no bad rows".into(),
    }
}

/// What is wrong with one input line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The line is not valid JSON.
    InvalidJson { message: String },
    /// The line is not UTF-8; `byte` is the 1-based position of the first invalid byte.
    NotUtf8 { byte: usize },
    /// The line is JSON but not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField { field: String },
    /// A field has the wrong JSON type or range.
    WrongType { field: String, expected: String },
    /// `id` is an empty string.
    EmptyId,
    /// `truth` is empty after normalisation: nothing to score against.
    EmptyTruth,
    /// The id is on several lines (all of them are left out: which one is right is unknown).
    DuplicateId { lines: Vec<usize> },
    /// `mode` does not parse.
    BadMode { value: String, message: String },
    /// The vision tokens are missing where needed or contradict the mode.
    VisionTokens { message: String },
    /// The tokenizer failed on the truth.
    Tokenizer { message: String },
}

impl Problem {
    /// The `kind` tag (`invalid_json`, `duplicate_id`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::InvalidJson { .. } => "invalid_json",
            Problem::NotUtf8 { .. } => "not_utf8",
            Problem::NotAnObject => "not_an_object",
            Problem::MissingField { .. } => "missing_field",
            Problem::WrongType { .. } => "wrong_type",
            Problem::EmptyId => "empty_id",
            Problem::EmptyTruth => "empty_truth",
            Problem::DuplicateId { .. } => "duplicate_id",
            Problem::BadMode { .. } => "bad_mode",
            Problem::VisionTokens { .. } => "vision_tokens",
            Problem::Tokenizer { .. } => "tokenizer",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::InvalidJson { message } => write!(f, "invalid JSON: {message}"),
            Problem::NotUtf8 { byte } => write!(f, "not UTF-8 (first invalid byte at byte {byte} of the line)"),
            Problem::NotAnObject => write!(f, "not a JSON object"),
            Problem::MissingField { field } => write!(f, "missing field `{field}`"),
            Problem::WrongType { field, expected } => write!(f, "field `{field}` must be {expected}"),
            Problem::EmptyId => write!(f, "empty `id`"),
            Problem::EmptyTruth => write!(f, "empty `truth` (nothing to score against)"),
            Problem::DuplicateId { lines } => {
                let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                write!(f, "duplicate id (lines {}; every one is left out)", lines.join(", "))
            }
            Problem::BadMode { value, message } => write!(f, "mode {value:?}: {message}"),
            Problem::VisionTokens { message } => write!(f, "{message}"),
            Problem::Tokenizer { message } => write!(f, "counting the truth's tokens: {message}"),
        }
    }
}

/// One input line that is not scored because something is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    /// 1-based line number in the input file.
    pub line: usize,
    /// The row's id, when it could be read.
    pub id: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "line {} (id {id:?}): {}", self.line, self.problem),
            None => write!(f, "line {}: {}", self.line, self.problem),
        }
    }
}

/// A valid row whose ground-truth tokens are outside `[min_tokens, max_tokens)`: left out, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfRange {
    pub line: usize,
    pub id: String,
    pub text_tokens: u32,
}

/// A well-formed input row.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    /// 1-based line number.
    pub line: usize,
    pub id: String,
    pub truth: String,
    pub prediction: String,
    pub mode: Option<Mode>,
    pub vision_tokens: Option<u32>,
    pub text_tokens: Option<u32>,
    pub group: Option<String>,
}

/// The rows of an input file, split into well-formed rows and bad rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedInput {
    pub rows: Vec<InputRow>,
    pub bad: Vec<BadRow>,
    /// Non-blank lines read.
    pub n_lines: usize,
}

/// Reads and parses a predictions file ([`parse_input`]).
pub fn read_input(path: &Path) -> Result<ParsedInput, ScoreError> {
    let bytes = std::fs::read(path).map_err(|e| ScoreError::Io { path: path.display().to_string(), source: e })?;
    Ok(parse_input(&bytes))
}

/// Parses JSON Lines bytes: every non-blank line becomes a row or a bad row; then every row of a
/// duplicated id becomes a bad row.
pub fn parse_input(bytes: &[u8]) -> ParsedInput {
    let mut parsed = ParsedInput::default();
    // Lines of every id that could be read, bad rows included, to find duplicates.
    let mut id_lines: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        parsed.n_lines += 1;
        match parse_line(raw, line) {
            Ok(row) => {
                id_lines.entry(row.id.clone()).or_default().push(line);
                parsed.rows.push(row);
            }
            Err(bad) => {
                if let Some(id) = &bad.id {
                    id_lines.entry(id.clone()).or_default().push(line);
                }
                parsed.bad.push(bad);
            }
        }
    }
    let (rows, duplicated): (Vec<InputRow>, Vec<InputRow>) =
        parsed.rows.into_iter().partition(|r| id_lines.get(&r.id).is_none_or(|l| l.len() == 1));
    parsed.rows = rows;
    for r in duplicated {
        let lines = id_lines.get(&r.id).cloned().unwrap_or_default();
        parsed.bad.push(BadRow { line: r.line, id: Some(r.id), problem: Problem::DuplicateId { lines } });
    }
    parsed.bad.sort_by_key(|b| b.line);
    parsed
}

/// One line of a JSON Lines file as an object: UTF-8, valid JSON, an object.
pub(crate) fn parse_object(raw: &[u8]) -> Result<Map<String, Value>, Problem> {
    let text = std::str::from_utf8(raw).map_err(|e| Problem::NotUtf8 { byte: e.valid_up_to() + 1 })?;
    let value: Value = serde_json::from_str(text).map_err(|e| Problem::InvalidJson { message: e.to_string() })?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(Problem::NotAnObject),
    }
}

/// A page id: a non-empty string, or an integer written in decimal. `Ok(None)` when absent or null.
pub(crate) fn optional_id(obj: &Map<String, Value>) -> Result<Option<String>, Problem> {
    let id = match optional(obj, "id") {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(wrong("id", "a string or an integer")),
    };
    if id.is_empty() {
        return Err(Problem::EmptyId);
    }
    Ok(Some(id))
}

/// An optional non-empty string field such as `group`.
pub(crate) fn optional_name(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, Problem> {
    match optional(obj, field) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(wrong(field, "a non-empty string")),
    }
}

fn parse_line(raw: &[u8], line: usize) -> Result<InputRow, BadRow> {
    let bad = |id: Option<String>, problem| BadRow { line, id, problem };
    let obj = parse_object(raw).map_err(|p| bad(None, p))?;
    let id = optional_id(&obj).map_err(|p| bad(None, p))?.ok_or_else(|| bad(None, missing("id")))?;
    let with_id = |problem| BadRow { line, id: Some(id.clone()), problem };
    let truth = required_string(&obj, "truth").map_err(with_id)?;
    let prediction = required_string(&obj, "prediction").map_err(with_id)?;
    let mode = match optional(&obj, "mode") {
        None => None,
        Some(Value::String(s)) => Some(
            s.parse::<Mode>().map_err(|e| with_id(Problem::BadMode { value: s.clone(), message: e.to_string() }))?,
        ),
        Some(_) => return Err(with_id(wrong("mode", "a string"))),
    };
    let vision_tokens = optional_u32(&obj, "vision_tokens", 1).map_err(with_id)?;
    let text_tokens = optional_u32(&obj, "text_tokens", 0).map_err(with_id)?;
    let group = optional_name(&obj, "group").map_err(with_id)?;
    Ok(InputRow { line, id, truth, prediction, mode, vision_tokens, text_tokens, group })
}

pub(crate) fn missing(field: &str) -> Problem {
    Problem::MissingField { field: field.into() }
}

pub(crate) fn wrong(field: &str, expected: &str) -> Problem {
    Problem::WrongType { field: field.into(), expected: expected.into() }
}

/// A field that is present and not null.
pub(crate) fn optional<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

pub(crate) fn required_string(obj: &Map<String, Value>, field: &str) -> Result<String, Problem> {
    match optional(obj, field) {
        None => Err(missing(field)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(wrong(field, "a string")),
    }
}

pub(crate) fn optional_u32(obj: &Map<String, Value>, field: &str, min: u32) -> Result<Option<u32>, Problem> {
    let Some(v) = optional(obj, field) else {
        return Ok(None);
    };
    let expected = if min == 0 { "an integer ≥ 0" } else { "an integer > 0" };
    match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n) if n >= min => Ok(Some(n)),
        _ => Err(wrong(field, expected)),
    }
}

/// A ground-truth token range `[lo, hi)`; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bin {
    pub lo: Option<u32>,
    pub hi: Option<u32>,
}

impl fmt::Display for Bin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.lo, self.hi) {
            (Some(lo), Some(hi)) => write!(f, "{lo}–{hi}"),
            (Some(lo), None) => write!(f, "≥ {lo}"),
            (None, Some(hi)) => write!(f, "< {hi}"),
            (None, None) => write!(f, "all"),
        }
    }
}

/// The token range and bins of a run (`--min-tokens`, `--max-tokens`, `--bin-tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBins {
    /// Bin width in ground-truth tokens; `None`: one cell per group × mode.
    pub width: Option<u32>,
    /// Rows with fewer tokens are left out; bins start here (0 when `None`).
    pub min_tokens: Option<u32>,
    /// Rows with this many tokens or more are left out.
    pub max_tokens: Option<u32>,
}

impl TokenBins {
    /// The paper's Fox protocol: 100-token bins over 600–1300 ground-truth tokens.
    pub const FOX: TokenBins = TokenBins { width: Some(100), min_tokens: Some(600), max_tokens: Some(1300) };

    /// Checks the width is positive and the range is not empty.
    pub fn validate(&self) -> Result<(), ScoreError> {
        if self.width == Some(0) {
            return Err(ScoreError::Options("--bin-tokens must be at least 1".into()));
        }
        if let (Some(lo), Some(hi)) = (self.min_tokens, self.max_tokens) {
            if hi <= lo {
                return Err(ScoreError::Options(format!(
                    "--max-tokens {hi} must be above --min-tokens {lo} (the range is [min, max))"
                )));
            }
        }
        Ok(())
    }

    /// The bin of a page with `tokens` ground-truth tokens, or `None` outside the range.
    pub fn bin_of(&self, tokens: u32) -> Option<Bin> {
        if self.min_tokens.is_some_and(|m| tokens < m) || self.max_tokens.is_some_and(|m| tokens >= m) {
            return None;
        }
        let Some(width) = self.width.filter(|w| *w > 0) else {
            return Some(Bin { lo: self.min_tokens, hi: self.max_tokens });
        };
        let base = self.min_tokens.unwrap_or(0);
        let lo = base + (tokens - base) / width * width;
        let hi = lo.saturating_add(width);
        Some(Bin { lo: Some(lo), hi: Some(self.max_tokens.map_or(hi, |m| hi.min(m))) })
    }
}

/// How to score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOptions {
    /// Experiment name: the run goes to `<out>/<name>/<run_id>`.
    pub name: String,
    /// Who made the predictions (recorded as the engine name).
    pub engine: String,
    pub lang: Lang,
    pub normalization: Normalization,
    pub repetition: RepetitionRule,
    /// Mode of rows without one.
    pub default_mode: Option<Mode>,
    pub bins: TokenBins,
    /// Seed of the bootstrap CIs.
    pub seed: u64,
    /// Refuse the input if any row is bad, instead of leaving bad rows out.
    pub strict: bool,
}

impl ScoreOptions {
    /// Options with the sweep's defaults: English, default normalisation and repetition rule,
    /// no bins, seed 0, engine `external`.
    pub fn new(name: &str) -> ScoreOptions {
        ScoreOptions {
            name: name.into(),
            engine: "external".into(),
            lang: Lang::En,
            normalization: Normalization::default(),
            repetition: RepetitionRule::default(),
            default_mode: None,
            bins: TokenBins::default(),
            seed: 0,
            strict: false,
        }
    }

    /// Checks the name (it names a folder) and the bins.
    pub fn validate(&self) -> Result<(), ScoreError> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ScoreError::Options(format!(
                "name {:?}: use letters, digits, '-' and '_' only (it names a results folder)",
                self.name
            )));
        }
        self.bins.validate()
    }
}

/// Progress callbacks of [`score_rows`] (the CLI draws a bar from them).
pub trait ScoreProgress {
    /// Before scoring: rows to score.
    fn started(&mut self, _rows: usize) {}
    /// After each chunk: rows handled so far.
    fn advanced(&mut self, _done: usize) {}
    /// Asked before each chunk: `true` stops scoring there ([`ScoreError::Interrupted`]).
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// Progress that is not reported.
#[derive(Debug, Default)]
pub struct NoProgress;
impl ScoreProgress for NoProgress {}

/// One cell of scored rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub group: String,
    pub mode: String,
    pub bin: Bin,
    /// The cell's ratio in `target_ratio` (see the module docs).
    pub target_ratio: f64,
    /// Positions of the cell's rows in [`Scored::samples`].
    pub members: Vec<usize>,
}

/// The scored rows, in input order, and everything left out.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Rows of `samples.parquet` (`run_id` is set by [`write_run`]).
    pub samples: Vec<SampleRow>,
    /// Rows of `predictions.parquet`, parallel to `samples`.
    pub predictions: Vec<PredictionRow>,
    pub cells: Vec<Cell>,
    /// Bad rows of parsing and scoring, by line.
    pub bad: Vec<BadRow>,
    pub out_of_range: Vec<OutOfRange>,
    /// Non-blank input lines.
    pub n_lines: usize,
}

/// Vision-token counts a row can know (0 = not known).
#[derive(Debug, Clone, Copy)]
struct Vision {
    nominal: Option<u32>,
    valid: u32,
    valid_floor: u32,
    slots: u32,
}

fn vision_of(mode: Option<Mode>, given: Option<u32>, binned: bool) -> Result<Vision, Problem> {
    let vision = match mode {
        Some(m) if !m.crop() => {
            let (w, h) = m.default_canvas();
            let vt =
                m.vision_tokens(w, h).map_err(|e| Problem::BadMode { value: m.to_string(), message: e.to_string() })?;
            if let Some(g) = given.filter(|g| *g != vt.nominal) {
                return Err(Problem::VisionTokens {
                    message: format!("mode {m} has {} nominal vision tokens but vision_tokens is {g}", vt.nominal),
                });
            }
            let (valid, valid_floor) = if m.stretches() { (vt.valid, vt.valid_floor) } else { (0, 0) };
            Vision { nominal: Some(vt.nominal), valid, valid_floor, slots: vt.slots }
        }
        Some(m) => match given {
            Some(g) => Vision { nominal: Some(g), valid: 0, valid_floor: 0, slots: 0 },
            None => {
                return Err(Problem::VisionTokens {
                    message: format!(
                        "mode {m} tiles the page, so its vision tokens depend on the page size: give vision_tokens"
                    ),
                })
            }
        },
        None => Vision { nominal: given, valid: 0, valid_floor: 0, slots: 0 },
    };
    if binned && vision.nominal.is_none() {
        return Err(Problem::VisionTokens {
            message: "bins are placed at their compression ratio, which needs `mode` or `vision_tokens` \
                      (or a default mode)"
                .into(),
        });
    }
    Ok(vision)
}

enum Outcome {
    Scored(Box<(SampleRow, PredictionRow, Bin)>),
    Journaled(Box<JournalEntry>),
    Bad(BadRow),
    OutOfRange(OutOfRange),
}

/// Scores every row of `input` (in parallel, in chunks), then forms the cells. Fails under
/// `options.strict` when any row is bad (listing every bad row, those found while scoring
/// included), and when no row is left to score.
pub fn score_rows(
    input: &ParsedInput,
    options: &ScoreOptions,
    tokenizer: &TextTokenizer,
    progress: &mut dyn ScoreProgress,
) -> Result<Scored, ScoreError> {
    score_rows_journaled(input, options, tokenizer, progress, &BTreeMap::new(), &mut |_| Ok(()))
}

/// [`score_rows`] that skips the rows of `done` (journaled entries keyed by input line, taken as
/// they are) and hands each chunk's newly scored rows to `journal` (their `sample_index` is their
/// input line) before the next chunk starts. Bad and out-of-range rows are not journaled: they
/// are found again, the same way, on every pass.
pub fn score_rows_journaled(
    input: &ParsedInput,
    options: &ScoreOptions,
    tokenizer: &TextTokenizer,
    progress: &mut dyn ScoreProgress,
    done: &BTreeMap<u64, JournalEntry>,
    journal: &mut dyn FnMut(&[JournalEntry]) -> Result<(), ScoreError>,
) -> Result<Scored, ScoreError> {
    options.validate()?;
    progress.started(input.rows.len());
    let mut outcomes = Vec::with_capacity(input.rows.len());
    for chunk in input.rows.chunks(CHUNK) {
        if progress.should_stop() {
            return Err(ScoreError::Interrupted { done: outcomes.len(), total: input.rows.len() });
        }
        let first = outcomes.len();
        outcomes.par_extend(chunk.par_iter().map(|row| match done.get(&(row.line as u64)) {
            Some(e) => Outcome::Journaled(Box::new(e.clone())),
            None => score_row(row, options, tokenizer),
        }));
        let mut fresh = Vec::new();
        for (row, o) in chunk.iter().zip(&outcomes[first..]) {
            if let Outcome::Scored(s) = o {
                let (mut sample, mut prediction) = (s.0.clone(), s.1.clone());
                sample.sample_index = row.line as u64;
                prediction.sample_index = row.line as u64;
                fresh.push(JournalEntry { sample, prediction });
            }
        }
        if !fresh.is_empty() {
            journal(&fresh)?;
        }
        progress.advanced(outcomes.len());
    }
    let mut bad = input.bad.clone();
    let mut out_of_range = Vec::new();
    let mut scored = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Scored(s) => scored.push(*s),
            Outcome::Journaled(e) => {
                let bin = options.bins.bin_of(e.sample.n_text_tokens).ok_or_else(|| {
                    ScoreError::Cells(format!(
                        "journaled row of line {} has {} text tokens, outside the bins of this run",
                        e.sample.sample_index, e.sample.n_text_tokens
                    ))
                })?;
                scored.push((e.sample, e.prediction, bin));
            }
            Outcome::Bad(b) => bad.push(b),
            Outcome::OutOfRange(o) => out_of_range.push(o),
        }
    }
    bad.sort_by_key(|b| b.line);
    if options.strict && !bad.is_empty() {
        return Err(ScoreError::Strict { bad });
    }
    if scored.is_empty() {
        let message =
            format!("{} lines read, {} bad, {} outside the token range", input.n_lines, bad.len(), out_of_range.len());
        return Err(ScoreError::Empty { message, bad });
    }
    let mut samples = Vec::with_capacity(scored.len());
    let mut predictions = Vec::with_capacity(scored.len());
    let mut bins = Vec::with_capacity(scored.len());
    for (i, (mut s, mut p, bin)) in scored.into_iter().enumerate() {
        s.sample_index = i as u64;
        p.sample_index = i as u64;
        samples.push(s);
        predictions.push(p);
        bins.push(bin);
    }
    let cells = form_cells(&mut samples, &bins)?;
    Ok(Scored { samples, predictions, cells, bad, out_of_range, n_lines: input.n_lines })
}

fn score_row(row: &InputRow, options: &ScoreOptions, tokenizer: &TextTokenizer) -> Outcome {
    let bad = |problem| Outcome::Bad(BadRow { line: row.line, id: Some(row.id.clone()), problem });
    let mode = row.mode.or(options.default_mode);
    let vision = match vision_of(mode, row.vision_tokens, options.bins.width.is_some()) {
        Ok(v) => v,
        Err(p) => return bad(p),
    };
    let lang = options.lang;
    let gt_norm = options.normalization.apply(&row.truth, lang);
    if gt_norm.is_empty() {
        return bad(Problem::EmptyTruth);
    }
    // One tokenisation gives the count (when the row has none) and the truncation baseline's cut.
    let offsets = match (vision.nominal, row.text_tokens) {
        (None, Some(_)) => None,
        _ => match tokenizer.encode_with_offsets(&row.truth) {
            Ok((_, offsets)) => Some(offsets),
            Err(e) => return bad(Problem::Tokenizer { message: e.to_string() }),
        },
    };
    let text_tokens =
        row.text_tokens.unwrap_or_else(|| offsets.as_ref().map_or(0, |o| u32::try_from(o.len()).unwrap_or(u32::MAX)));
    let Some(bin) = options.bins.bin_of(text_tokens) else {
        return Outcome::OutOfRange(OutOfRange { line: row.line, id: row.id.clone(), text_tokens });
    };
    let truncation = vision.nominal.zip(offsets.as_deref()).map(|(budget, offsets)| {
        let prefix = &row.truth[..occ_core::cut_at_offsets(&row.truth, offsets, budget as usize)];
        score(&gt_norm, &options.normalization.apply(prefix, lang), lang)
    });
    let out_norm = options.normalization.apply(&row.prediction, lang);
    let sc = score(&gt_norm, &out_norm, lang);
    let flag = runaway(&out_norm, false, &options.repetition);
    let sample = sample_row(row, options, mode, vision, text_tokens, &sc, flag, truncation.as_ref());
    let prediction = PredictionRow {
        run_id: String::new(),
        sample_index: 0,
        sample_id: row.id.clone(),
        mode: sample.mode.clone(),
        ground_truth: row.truth.clone(),
        prediction: row.prediction.clone(),
    };
    Outcome::Scored(Box::new((sample, prediction, bin)))
}

fn sample_row(
    row: &InputRow,
    options: &ScoreOptions,
    mode: Option<Mode>,
    vision: Vision,
    text_tokens: u32,
    sc: &Scores,
    flag: Runaway,
    truncation: Option<&Scores>,
) -> SampleRow {
    let ratio = |v: u32| compression_ratio(text_tokens as usize, v).unwrap_or(f64::NAN);
    let mut sample = SampleRow {
        experiment: options.name.clone(),
        run_id: String::new(),
        sample_index: 0,
        sample_id: row.id.clone(),
        status: SampleStatus::Ok,
        error: None,
        corpus: row.group.clone().unwrap_or_else(|| DEFAULT_GROUP.into()),
        lang: options.lang.as_str().into(),
        passage_id: row.id.clone(),
        mode: mode.map_or_else(|| UNKNOWN_MODE.into(), |m| m.to_string()),
        base_size_px: mode.map_or(0, Mode::base_size),
        image_size_px: mode.map_or(0, Mode::image_size),
        crop_mode: mode.is_some_and(Mode::crop),
        n_tiles: 0,
        target_ratio: 0.0,
        n_text_tokens: text_tokens,
        n_vision_tokens_nominal: vision.nominal.unwrap_or(0),
        n_vision_tokens_valid: vision.valid,
        n_vision_tokens_valid_floor: vision.valid_floor,
        n_vision_slots: vision.slots,
        ratio_nominal: ratio(vision.nominal.unwrap_or(0)),
        ratio_valid: ratio(vision.valid),
        ratio_slots: ratio(vision.slots),
        font_px: f64::NAN,
        page_w_px: 0,
        page_h_px: 0,
        // Pages made elsewhere: no degradation of ours, typography unknown.
        degradation: crate::axes::NO_DEGRADATION.into(),
        blur_sigma: 0.0,
        jpeg_quality: None,
        noise_sigma: 0.0,
        downscale: 1.0,
        font_family: String::new(),
        line_height: 0.0,
        runaway: flag != Runaway::None,
        runaway_reason: flag.as_str().into(),
        hit_max_tokens: false,
        n_generated_tokens: None,
        n_prompt_tokens: None,
        engine: options.engine.clone(),
        engine_version: String::new(),
        weights: None,
        synthetic_weights: false,
        device: "n/a".into(),
        dtype: "n/a".into(),
        git_commit: String::new(),
        render_ms: 0.0,
        ocr_ms: 0.0,
        preprocess_ms: 0.0,
        vision_ms: 0.0,
        prefill_ms: 0.0,
        decode_ms: 0.0,
        // The metric and baseline columns, set below.
        ..SampleRow::default()
    };
    sample.set_scores(sc);
    sample.set_truncation(truncation);
    sample
}

/// Groups rows into cells (first appearance order) and sets each row's `target_ratio`.
fn form_cells(samples: &mut [SampleRow], bins: &[Bin]) -> Result<Vec<Cell>, ScoreError> {
    let mut index: HashMap<(String, String, Bin), usize> = HashMap::new();
    let mut cells: Vec<Cell> = Vec::new();
    for (i, (s, bin)) in samples.iter().zip(bins).enumerate() {
        let key = (s.corpus.clone(), s.mode.clone(), *bin);
        let c = *index.entry(key).or_insert_with(|| {
            cells.push(Cell {
                group: s.corpus.clone(),
                mode: s.mode.clone(),
                bin: *bin,
                target_ratio: 0.0,
                members: Vec::new(),
            });
            cells.len() - 1
        });
        cells[c].members.push(i);
    }
    let mut taken: HashMap<(String, String, u64), Bin> = HashMap::new();
    for cell in &mut cells {
        let ratios: Vec<f64> =
            cell.members.iter().map(|&i| samples[i].ratio_nominal).filter(|r| r.is_finite()).collect();
        cell.target_ratio = if ratios.is_empty() { 0.0 } else { (crate::stats::mean(&ratios) * 100.0).round() / 100.0 };
        let key = (cell.group.clone(), cell.mode.clone(), cell.target_ratio.to_bits());
        if let Some(other) = taken.insert(key, cell.bin) {
            return Err(ScoreError::Cells(format!(
                "bins {other} and {} of mode {} in group {} have the same compression {:.2} and would be \
                 one cell; use wider bins (--bin-tokens)",
                cell.bin, cell.mode, cell.group, cell.target_ratio
            )));
        }
        for &i in &cell.members {
            samples[i].target_ratio = cell.target_ratio;
        }
    }
    Ok(cells)
}

/// Mean [95% CI] of the headline metrics over every scored page of a group × mode (the report
/// recomputes it from `samples.parquet`; it is a pure function of the rows and the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub group: String,
    pub mode: String,
    pub n_pages: usize,
    /// Fox set precision, unique output words found in the GT ÷ unique output words.
    pub fox_precision_out_words: CellStats,
    /// Fox set precision, unique GT words found in the output ÷ unique GT words.
    pub fox_precision_gt_words: CellStats,
    pub char_precision: CellStats,
}

/// The headline of every group × mode (first appearance order), seeded like the summary.
pub fn headline(samples: &[SampleRow], seed: u64) -> Vec<Headline> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in samples {
        let k = (s.corpus.clone(), s.mode.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(group, mode)| {
            let rows: Vec<&SampleRow> = samples.iter().filter(|s| s.corpus == group && s.mode == mode).collect();
            let stats = |metric: &str, f: fn(&SampleRow) -> f64| {
                let values: Vec<f64> = rows.iter().map(|r| f(r)).collect();
                let key = format!("headline/{group}/{mode}/{metric}");
                cell_stats(&values, SplitMix64::stream(seed, &key).next_u64())
            };
            Headline {
                n_pages: rows.len(),
                fox_precision_out_words: stats("fox_precision_out_words", |r| r.fox_precision_out_words),
                fox_precision_gt_words: stats("fox_precision_gt_words", |r| r.fox_precision_gt_words),
                char_precision: stats("char_precision", |r| r.char_precision),
                group,
                mode,
            }
        })
        .collect()
}

/// The rows of `bins.csv`: one per cell, its statistics taken from the summary; groups and modes
/// in order of first appearance, bins ascending.
pub fn bin_rows(scored: &Scored, summary: &[SummaryRow]) -> Vec<BinRow> {
    let rows: Vec<BinRow> = scored
        .cells
        .iter()
        .map(|c| {
            let find = |metric: &str| {
                summary.iter().find(|r| {
                    r.corpus == c.group && r.mode == c.mode && r.target_ratio == c.target_ratio && r.metric == metric
                })
            };
            let stat =
                |metric: &str| find(metric).map_or((f64::NAN, f64::NAN, f64::NAN), |r| (r.mean, r.ci_low, r.ci_high));
            let members: Vec<&SampleRow> = c.members.iter().map(|&i| &scored.samples[i]).collect();
            let tokens: Vec<f64> = members.iter().map(|s| f64::from(s.n_text_tokens)).collect();
            let vision: Vec<f64> = members
                .iter()
                .filter(|s| s.n_vision_tokens_nominal > 0)
                .map(|s| f64::from(s.n_vision_tokens_nominal))
                .collect();
            let ratios: Vec<f64> = members.iter().map(|s| s.ratio_nominal).filter(|r| r.is_finite()).collect();
            let (out, out_lo, out_hi) = stat("fox_precision_out_words");
            let (gt, gt_lo, gt_hi) = stat("fox_precision_gt_words");
            let (ch, ch_lo, ch_hi) = stat("char_precision");
            BinRow {
                group: c.group.clone(),
                mode: c.mode.clone(),
                tokens_lo: c.bin.lo,
                tokens_hi: c.bin.hi,
                target_ratio: c.target_ratio,
                n_pages: members.len() as u32,
                mean_text_tokens: crate::stats::mean(&tokens),
                mean_vision_tokens: (!vision.is_empty()).then(|| crate::stats::mean(&vision)),
                compression: (!ratios.is_empty()).then(|| crate::stats::mean(&ratios)),
                fox_precision_out_words: out,
                fox_precision_out_words_ci_low: out_lo,
                fox_precision_out_words_ci_high: out_hi,
                fox_precision_gt_words: gt,
                fox_precision_gt_words_ci_low: gt_lo,
                fox_precision_gt_words_ci_high: gt_hi,
                char_precision: ch,
                char_precision_ci_low: ch_lo,
                char_precision_ci_high: ch_hi,
            }
        })
        .collect();
    // Groups and modes in order of first appearance, bins by their lower end.
    let position = |list: &mut Vec<String>, item: &str| match list.iter().position(|x| x == item) {
        Some(p) => p,
        None => {
            list.push(item.to_string());
            list.len() - 1
        }
    };
    let (mut groups, mut modes) = (Vec::new(), Vec::new());
    let mut keyed: Vec<_> = rows
        .into_iter()
        .map(|r| ((position(&mut groups, &r.group), position(&mut modes, &r.mode), r.tokens_lo), r))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// `score.json`: what was read, what was left out and why, and how (the statistics are in
/// `summary.csv` and `bins.csv`, whose undefined values are NaN rather than JSON's null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// The predictions file as given.
    pub input: String,
    /// SHA-256 of its bytes.
    pub input_sha256: String,
    /// Non-blank lines read.
    pub n_lines: usize,
    pub n_scored: usize,
    pub n_bad: usize,
    pub n_out_of_range: usize,
    pub strict: bool,
    pub lang: Lang,
    pub normalization: Normalization,
    pub bins: TokenBins,
    pub default_mode: Option<Mode>,
    pub bad_rows: Vec<BadRow>,
    pub out_of_range: Vec<OutOfRange>,
}

impl ScoreRecord {
    /// Reads `dir/score.json`; `None` when the run is not a score run.
    pub fn load(dir: &Path) -> Result<Option<ScoreRecord>, ResultsError> {
        let path = dir.join(SCORE_FILE);
        let display = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ResultsError::Io { path: display, source: e }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ResultsError::Manifest { path: display, message: e.to_string() })
    }

    /// Whether the rows were binned by ground-truth tokens.
    pub fn binned(&self) -> bool {
        self.bins.width.is_some()
    }
}

/// Facts of the invocation that the library cannot know.
#[derive(Debug, Clone)]
pub struct RunMeta {
    /// The predictions file.
    pub input: PathBuf,
    /// SHA-256 of the predictions file (hex).
    pub input_sha256: String,
    /// Results root: the run goes to `<out_root>/<name>/<run_id>`.
    pub out_root: PathBuf,
    pub git_commit: String,
    pub host: String,
    pub tokenizer: String,
    pub command: Vec<String>,
    pub started_utc: String,
    pub wall_time_s: f64,
}

/// A written score run.
#[derive(Debug, Clone)]
pub struct ScoreRun {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub summary: Vec<SummaryRow>,
    pub record: ScoreRecord,
    /// The rows of `bins.csv`.
    pub bins: Vec<BinRow>,
    /// The headline ([`headline`]) of the scored rows.
    pub headline: Vec<Headline>,
}

/// Reads `bins.csv` of a score run, typed by [`BinRow`]'s schema (NaN and empty cells read back
/// as NaN and `None`).
pub fn read_bins(dir: &Path) -> Result<Vec<BinRow>, ScoreError> {
    let path = dir.join(BINS_FILE);
    let schema: Schema = BinRow::columns().into_iter().map(|c| Field::new(c.name.into(), c.dtype)).collect();
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_schema(Some(Arc::new(schema)))
        .try_into_reader_with_file_path(Some(path.clone()))
        .and_then(|reader| reader.finish())
        .map_err(|source| SchemaError::Polars { context: format!("reading {}", path.display()), source })?;
    Ok(BinRow::from_frame(&df)?)
}

/// SHA-256 (hex) of bytes, for [`RunMeta::input_sha256`].
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `dir` (created if needed) takes a file, before any work is done.
pub fn check_writable(dir: &Path) -> Result<(), ScoreError> {
    let unwritable = |e| ScoreError::Unwritable { path: dir.display().to_string(), source: e };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let probe = dir.join(format!(".score-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe)).map_err(unwritable)
}

/// The experiment spec recorded in the manifest of a score run: the cells' groups, modes and
/// ratios, the token range as the passage range, the input file as the dataset, no pages per
/// cell (0) and no generation budget (0).
pub fn spec_of(scored: &Scored, options: &ScoreOptions, input: &Path) -> ExperimentSpec {
    let mut corpora: Vec<String> = Vec::new();
    let mut modes: Vec<Mode> = Vec::new();
    let mut ratios_by_mode: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in &scored.cells {
        if !corpora.contains(&c.group) {
            corpora.push(c.group.clone());
        }
        if let Ok(m) = c.mode.parse::<Mode>() {
            if !modes.contains(&m) {
                modes.push(m);
            }
        }
        if c.target_ratio > 0.0 {
            ratios_by_mode.entry(c.mode.clone()).or_default().push(c.target_ratio);
        }
    }
    let mut ratios: Vec<f64> = ratios_by_mode.values().flatten().copied().collect();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup();
    for r in ratios_by_mode.values_mut() {
        r.sort_by(f64::total_cmp);
        r.dedup();
    }
    ExperimentSpec {
        name: options.name.clone(),
        description: format!("predictions scored from {}", input.display()),
        corpora,
        modes,
        ratios,
        ratios_by_mode,
        pages: 0,
        seed: options.seed,
        engine: EngineKind::External,
        max_new_tokens: 0,
        min_passage_tokens: options.bins.min_tokens.map_or(0, |m| m as usize),
        max_passage_tokens: options.bins.max_tokens.map_or(usize::MAX, |m| m as usize),
        datasets_dir: input.display().to_string(),
        normalization: options.normalization,
        repetition: options.repetition,
        tesseract_psm: 0,
        degradations: crate::spec::default_degradations(),
        fonts: crate::spec::default_fonts(),
        line_heights: crate::spec::default_line_heights(),
        baseline: None,
    }
}

/// Writes a score run: `samples.parquet`, `predictions.parquet`, `summary.csv` (the sweep's
/// writer), `bins.csv`, `score.json` and `manifest.json` in a fresh `<out_root>/<name>/<run_id>`.
pub fn write_run(scored: Scored, options: &ScoreOptions, meta: &RunMeta) -> Result<ScoreRun, ScoreError> {
    write_run_locked(scored, options, meta).map(|(run, _lock)| run)
}

/// [`write_run`], with the run folder locked ([`crate::lock`], the command of `meta`) from its
/// creation on; the lock is returned so that the caller holds it while it adds files (the report).
pub fn write_run_locked(
    scored: Scored,
    options: &ScoreOptions,
    meta: &RunMeta,
) -> Result<(ScoreRun, RunLock), ScoreError> {
    let spec = spec_of(&scored, options, &meta.input);
    let (dir, run_id) = results::create_run_dir(&meta.out_root, &spec, None)?;
    let lock = RunLock::acquire(&dir, &meta.command.join(" "))?;
    let history = History::new();
    let run = write_files(dir, run_id, scored, options, meta, &history)?;
    Ok((run, lock))
}

/// When a run was created and the sessions of the processes that worked on it before this one.
#[derive(Debug, Clone)]
struct History {
    created_utc: String,
    /// Sessions of earlier processes, from the manifest of a resumed run.
    previous: Vec<Session>,
    /// Rows journaled before this session.
    done_before: usize,
}

impl History {
    /// A new run's: created now, no earlier session.
    fn new() -> History {
        History { created_utc: results::utc_now().0, previous: Vec::new(), done_before: 0 }
    }

    /// Every session: the earlier ones, then this one with `done` rows journaled in all (this
    /// session's time is `meta.wall_time_s`: 0 while it works).
    fn sessions(&self, meta: &RunMeta, done: usize) -> Vec<Session> {
        let mut sessions = self.previous.clone();
        sessions.push(Session {
            started_utc: meta.started_utc.clone(),
            wall_time_s: meta.wall_time_s,
            samples: done.saturating_sub(self.done_before),
            command: meta.command.clone(),
        });
        sessions
    }
}

/// What a journaled score run was started with (`score-state.json`): `--resume` refuses
/// another input or other scoring flags.
pub const STATE_FILE: &str = "score-state.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    pub input_sha256: String,
    pub engine: String,
    pub lang: Lang,
    pub normalization: Normalization,
    pub bins: TokenBins,
    pub default_mode: Option<Mode>,
    pub seed: u64,
    pub strict: bool,
}

impl ScoreState {
    /// Reads `dir/score-state.json` of a journaled score run.
    pub fn load(dir: &Path) -> Result<ScoreState, ScoreError> {
        let refuse = |message: String| ScoreError::Resume { path: dir.display().to_string(), message };
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| refuse(format!("{} cannot be read ({e}): not a journaled score run", path.display())))?;
        serde_json::from_str(&text).map_err(|e| refuse(format!("{}: {e}", path.display())))
    }

    fn of(options: &ScoreOptions, meta: &RunMeta) -> ScoreState {
        ScoreState {
            input_sha256: meta.input_sha256.clone(),
            engine: options.engine.clone(),
            lang: options.lang,
            normalization: options.normalization,
            bins: options.bins,
            default_mode: options.default_mode,
            seed: options.seed,
            strict: options.strict,
        }
    }
}

/// A journaled score run in progress: its folder (locked), the rows already journaled (by input
/// line) and the journal to append to.
pub struct OpenRun {
    pub dir: PathBuf,
    pub run_id: String,
    pub lock: RunLock,
    /// Rows scored by earlier sessions, keyed by input line.
    pub done: BTreeMap<u64, JournalEntry>,
    journal: JournalWriter,
    history: History,
}

impl OpenRun {
    /// Appends scored rows to the journal and writes them through to the disk.
    pub fn append(&mut self, entries: &[JournalEntry]) -> Result<(), ScoreError> {
        for e in entries {
            self.journal.append(e)?;
        }
        Ok(self.journal.flush()?)
    }

    /// Marks the run `interrupted` with `done` of `planned` rows journaled.
    pub fn mark_interrupted(&self, options: &ScoreOptions, meta: &RunMeta, planned: usize) -> Result<(), ScoreError> {
        let (n_done, _) = crate::journal::read(&self.dir.join(JOURNAL_FILE))?;
        let spec = spec_of(&Scored::empty(), options, &meta.input);
        let (status, done) = (RunStatus::Interrupted, n_done.len());
        Ok(manifest_of(spec, &self.run_id, options, meta, status, planned, done, 0, &self.history).save(&self.dir)?)
    }
}

impl Scored {
    fn empty() -> Scored {
        Scored {
            samples: Vec::new(),
            predictions: Vec::new(),
            cells: Vec::new(),
            bad: Vec::new(),
            out_of_range: Vec::new(),
            n_lines: 0,
        }
    }
}

/// Creates a fresh run folder for a journaled score run, locks it, and writes its state and a
/// `running` manifest before any row is scored.
pub fn open_run(options: &ScoreOptions, meta: &RunMeta, planned: usize) -> Result<OpenRun, ScoreError> {
    let spec = spec_of(&Scored::empty(), options, &meta.input);
    let (dir, run_id) = results::create_run_dir(&meta.out_root, &spec, None)?;
    let lock = RunLock::acquire(&dir, &meta.command.join(" "))?;
    let path = dir.join(STATE_FILE);
    let text = serde_json::to_string_pretty(&ScoreState::of(options, meta))
        .map_err(|e| ScoreError::Write { path: path.display().to_string(), message: e.to_string() })?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| ScoreError::Write { path: path.display().to_string(), message: e.to_string() })?;
    let history = History::new();
    manifest_of(spec, &run_id, options, meta, RunStatus::Running, planned, 0, 0, &history).save(&dir)?;
    let journal = JournalWriter::open(&dir.join(JOURNAL_FILE), 0)?;
    Ok(OpenRun { dir, run_id, lock, done: BTreeMap::new(), journal, history })
}

/// Reopens the journaled score run in `dir` (`--resume`): locks it, checks that it was started on
/// the same input with the same scoring flags and is not complete, reads its journal (a torn last
/// line dropped) and marks it `running`.
pub fn resume_run(dir: &Path, options: &ScoreOptions, meta: &RunMeta, planned: usize) -> Result<OpenRun, ScoreError> {
    let refuse = |message: String| ScoreError::Resume { path: dir.display().to_string(), message };
    let state = ScoreState::load(dir)?;
    let lock = RunLock::acquire(dir, &meta.command.join(" "))?;
    let manifest = Manifest::load(dir)?;
    if manifest.status == RunStatus::Complete {
        return Err(refuse("the run is complete; there is nothing to resume".into()));
    }
    if state.input_sha256 != meta.input_sha256 {
        return Err(refuse(format!(
            "it scored another input (SHA-256 {}), not {} (SHA-256 {})",
            state.input_sha256,
            meta.input.display(),
            meta.input_sha256
        )));
    }
    let now = ScoreState::of(options, meta);
    if state != now {
        return Err(refuse(format!(
            "it was started with other scoring flags ({}); give the same flags as the run's command",
            serde_json::to_string(&state).unwrap_or_default()
        )));
    }
    let (done, valid) = crate::journal::read(&dir.join(JOURNAL_FILE))?;
    let journal = JournalWriter::open(&dir.join(JOURNAL_FILE), valid)?;
    let run_id = manifest.run_id.clone();
    let mut previous = manifest.sessions.clone();
    if manifest.status == RunStatus::Running {
        // Its last process was killed: its session (recorded as it began) read what the journal
        // holds beyond the sessions before it; its time was never recorded.
        let before: usize = previous.iter().rev().skip(1).map(|s| s.samples).sum();
        if let Some(killed) = previous.last_mut() {
            killed.samples = done.len().saturating_sub(before);
        }
    }
    let history = History { created_utc: manifest.created_utc.clone(), previous, done_before: done.len() };
    let spec = spec_of(&Scored::empty(), options, &meta.input);
    let (status, n_done) = (RunStatus::Running, done.len());
    manifest_of(spec, &run_id, options, meta, status, planned, n_done, 0, &history).save(dir)?;
    Ok(OpenRun { dir: dir.to_path_buf(), run_id, lock, done, journal, history })
}

/// Writes the tables, `score.json` and the `complete` manifest of a journaled run into its folder;
/// the lock is returned so that the caller holds it while it adds files (the report).
pub fn finish_run(
    open: OpenRun,
    scored: Scored,
    options: &ScoreOptions,
    meta: &RunMeta,
) -> Result<(ScoreRun, RunLock), ScoreError> {
    let OpenRun { dir, run_id, lock, journal, history, .. } = open;
    drop(journal);
    let run = write_files(dir, run_id, scored, options, meta, &history)?;
    Ok((run, lock))
}

/// Marks the journaled run in `dir` `failed`, with `error_chain` (the error and its causes,
/// outermost first) and this session (`meta`, with its wall time), when its manifest still says
/// `running`: a run whose process failed for another reason than a signal. `done_before`: the rows
/// the journal held when this session began. Returns whether the manifest was changed (a run
/// already `complete`, e.g. one whose report failed, is left as it is).
pub fn mark_failed(
    dir: &Path,
    meta: &RunMeta,
    done_before: usize,
    error_chain: Vec<String>,
) -> Result<bool, ScoreError> {
    let mut manifest = Manifest::load(dir)?;
    if manifest.status != RunStatus::Running {
        return Ok(false);
    }
    let (journaled, _) = crate::journal::read(&dir.join(JOURNAL_FILE))?;
    if let Some(this) = manifest.sessions.last_mut() {
        this.wall_time_s = meta.wall_time_s;
        this.samples = journaled.len().saturating_sub(done_before);
    }
    manifest.wall_time_s = manifest.sessions.iter().map(|s| s.wall_time_s).sum();
    manifest.n_samples_done = journaled.len();
    manifest.status = RunStatus::Failed;
    manifest.error_chain = error_chain;
    manifest.save(dir)?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn manifest_of(
    spec: ExperimentSpec,
    run_id: &str,
    options: &ScoreOptions,
    meta: &RunMeta,
    status: RunStatus,
    planned: usize,
    done: usize,
    failed: usize,
    history: &History,
) -> Manifest {
    let sessions = history.sessions(meta, done);
    Manifest {
        manifest_version: results::MANIFEST_VERSION,
        tool: "compress-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: meta.git_commit.clone(),
        experiment: options.name.clone(),
        run_id: run_id.to_string(),
        created_utc: history.created_utc.clone(),
        status,
        spec_fingerprint: spec.fingerprint(),
        spec,
        shard: None,
        merged_from: Vec::new(),
        engines: vec![EngineInfo {
            name: options.engine.clone(),
            version: String::new(),
            weights: None,
            synthetic_weights: false,
            device: "n/a".into(),
            dtype: "n/a".into(),
        }],
        synthetic_weights: false,
        renderer: format!("none: predictions scored from {}", meta.input.display()),
        tokenizer: meta.tokenizer.clone(),
        host: meta.host.clone(),
        n_samples_planned: planned,
        n_samples_done: done,
        n_failed: failed,
        wall_time_s: sessions.iter().map(|s| s.wall_time_s).sum(),
        sessions,
        reader_flags: None,
        prompt: None,
        error_chain: Vec::new(),
    }
}

fn write_files(
    dir: PathBuf,
    run_id: String,
    mut scored: Scored,
    options: &ScoreOptions,
    meta: &RunMeta,
    history: &History,
) -> Result<ScoreRun, ScoreError> {
    let spec = spec_of(&scored, options, &meta.input);
    for s in &mut scored.samples {
        s.run_id = run_id.clone();
        s.git_commit = meta.git_commit.clone();
    }
    for p in &mut scored.predictions {
        p.run_id = run_id.clone();
    }
    let (written, summary) = results::write_tables(&dir, &scored.samples, &scored.predictions, options.seed)?;
    let bins = bin_rows(&scored, &summary);
    schema::write_csv(&mut BinRow::to_frame(&bins)?, &dir.join(BINS_FILE))?;
    let headline = headline(&scored.samples, options.seed);
    let record = ScoreRecord {
        input: meta.input.display().to_string(),
        input_sha256: meta.input_sha256.clone(),
        n_lines: scored.n_lines,
        n_scored: written.samples,
        n_bad: scored.bad.len(),
        n_out_of_range: scored.out_of_range.len(),
        strict: options.strict,
        lang: options.lang,
        normalization: options.normalization,
        bins: options.bins,
        default_mode: options.default_mode,
        bad_rows: scored.bad,
        out_of_range: scored.out_of_range,
    };
    let path = dir.join(SCORE_FILE);
    let write_err = |message: String| ScoreError::Write { path: path.display().to_string(), message };
    let text = serde_json::to_string_pretty(&record).map_err(|e| write_err(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| write_err(e.to_string()))?;
    let manifest = manifest_of(
        spec,
        &run_id,
        options,
        meta,
        RunStatus::Complete,
        written.samples,
        written.samples,
        written.failed,
        history,
    );
    manifest.save(&dir)?;
    Ok(ScoreRun { dir, manifest, summary, record, bins, headline })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_half_open_and_anchored_at_the_minimum() {
        let fox = TokenBins::FOX;
        assert_eq!(fox.bin_of(599), None);
        assert_eq!(fox.bin_of(600), Some(Bin { lo: Some(600), hi: Some(700) }));
        assert_eq!(fox.bin_of(699), Some(Bin { lo: Some(600), hi: Some(700) }));
        assert_eq!(fox.bin_of(700), Some(Bin { lo: Some(700), hi: Some(800) }));
        assert_eq!(fox.bin_of(1299), Some(Bin { lo: Some(1200), hi: Some(1300) }));
        assert_eq!(fox.bin_of(1300), None);
        let ragged = TokenBins { width: Some(100), min_tokens: Some(50), max_tokens: Some(220) };
        assert_eq!(ragged.bin_of(219), Some(Bin { lo: Some(150), hi: Some(220) }));
        let open = TokenBins::default();
        assert_eq!(open.bin_of(0), Some(Bin { lo: None, hi: None }));
        assert_eq!(
            TokenBins { width: Some(10), ..TokenBins::default() }.bin_of(25).map(|b| b.to_string()),
            Some("20–30".into())
        );
        assert!(TokenBins { width: Some(0), ..TokenBins::default() }.validate().is_err());
        assert!(TokenBins { min_tokens: Some(5), max_tokens: Some(5), ..TokenBins::default() }.validate().is_err());
    }

    #[test]
    fn every_kind_of_bad_line_is_named_with_its_line() {
        let input = b"{\"id\": \"a\", \"truth\": \"x\", \"prediction\": \"x\"}\n\
            \n\
            not json\n\
            [1, 2]\n\
            {\"id\": \"b\", \"truth\": \"x\"}\n\
            {\"id\": 7, \"truth\": \"x\", \"prediction\": 3}\n\
            {\"id\": \"\", \"truth\": \"x\", \"prediction\": \"\"}\n\
            {\"id\": \"c\", \"truth\": \"x\", \"prediction\": \"\xff\"}\n\
            {\"id\": \"d\", \"truth\": \"x\", \"prediction\": \"y\", \"mode\": \"huge\"}\n\
            {\"id\": \"e\", \"truth\": \"x\", \"prediction\": \"y\", \"vision_tokens\": 0}\n\
            {\"id\": \"a\", \"truth\": \"y\", \"prediction\": \"y\"}\n\
            {\"id\": 12, \"truth\": \"x\", \"prediction\": \"y\", \"text_tokens\": 5, \"group\": \"g\"}\r\n";
        let parsed = parse_input(input);
        assert_eq!(parsed.n_lines, 11, "the blank line is not counted");
        let kinds: Vec<(usize, &str)> = parsed.bad.iter().map(|b| (b.line, b.problem.kind())).collect();
        assert_eq!(
            kinds,
            vec![
                (1, "duplicate_id"),
                (3, "invalid_json"),
                (4, "not_an_object"),
                (5, "missing_field"),
                (6, "wrong_type"),
                (7, "empty_id"),
                (8, "not_utf8"),
                (9, "bad_mode"),
                (10, "wrong_type"),
                (11, "duplicate_id"),
            ]
        );
        assert_eq!(parsed.bad[0].problem, Problem::DuplicateId { lines: vec![1, 11] });
        assert_eq!(parsed.bad[3].to_string(), "line 5 (id \"b\"): missing field `prediction`");
        assert_eq!(parsed.rows.len(), 1);
        let r = &parsed.rows[0];
        assert_eq!((r.line, r.id.as_str(), r.text_tokens, r.group.as_deref()), (12, "12", Some(5), Some("g")));
    }

    #[test]
    fn bins_csv_reads_back_nan_and_open_ends() {
        let row = BinRow {
            group: "all".into(),
            mode: "unknown".into(),
            tokens_lo: Some(600),
            tokens_hi: None,
            target_ratio: 0.0,
            n_pages: 1,
            mean_text_tokens: 650.0,
            mean_vision_tokens: None,
            compression: None,
            fox_precision_out_words: 0.5,
            fox_precision_out_words_ci_low: f64::NAN,
            fox_precision_out_words_ci_high: f64::NAN,
            fox_precision_gt_words: 0.25,
            fox_precision_gt_words_ci_low: 0.0,
            fox_precision_gt_words_ci_high: 1.0,
            char_precision: 0.75,
            char_precision_ci_low: f64::NAN,
            char_precision_ci_high: f64::NAN,
        };
        let dir = std::env::temp_dir().join(format!("occ-score-bins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        schema::write_csv(&mut BinRow::to_frame(std::slice::from_ref(&row)).unwrap(), &dir.join(BINS_FILE)).unwrap();
        let back = read_bins(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.len(), 1);
        let b = &back[0];
        assert_eq!((b.tokens_lo, b.tokens_hi, b.compression, b.mean_vision_tokens), (Some(600), None, None, None));
        assert!(b.fox_precision_out_words_ci_low.is_nan() && b.char_precision_ci_high.is_nan());
        assert_eq!((b.fox_precision_out_words, b.fox_precision_gt_words_ci_high), (0.5, 1.0));
    }

    #[test]
    fn vision_tokens_follow_the_mode() {
        let tiny = vision_of(Some(Mode::Tiny), None, true).unwrap();
        assert_eq!((tiny.nominal, tiny.valid, tiny.slots), (Some(64), 64, 73));
        assert!(vision_of(Some(Mode::Tiny), Some(64), true).is_ok());
        assert!(matches!(vision_of(Some(Mode::Tiny), Some(100), false), Err(Problem::VisionTokens { .. })));
        let base = vision_of(Some(Mode::Base), None, false).unwrap();
        assert_eq!((base.nominal, base.valid), (Some(256), 0), "valid depends on the page's aspect");
        assert!(vision_of(Some(Mode::Gundam), None, false).is_err());
        assert_eq!(vision_of(Some(Mode::Gundam), Some(856), false).unwrap().nominal, Some(856));
        assert_eq!(vision_of(None, None, false).unwrap().nominal, None);
        assert!(vision_of(None, None, true).is_err(), "bins need a compression ratio");
    }
}
