//! Every `--json` message of every subcommand, as a typed struct (docs/cli-json.md documents each).
//!
//! A message is a [`Message`]: its `type` in the `{"type": …, "data": …}` envelope is the struct's
//! [`Message::TYPE`], its `data` the struct serialised. Subcommands build these and hand them to
//! [`crate::output::Output::send`]; none writes a JSON literal.

use std::collections::BTreeMap;
use std::path::Path;

use occ_core::EngineInfo;
use occ_eval::plan::Shard;
use occ_eval::schema::{SampleRow, SummaryRow};
use occ_memory::sweep::ScheduleSummary;
use serde::Serialize;

/// A `--json` message: its envelope type and its data.
pub trait Message: Serialize {
    /// The `type` of the envelope.
    const TYPE: &'static str;
}

macro_rules! message {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Message for $ty {
            const TYPE: &'static str = $name;
        })*
    };
}

// ---- every subcommand

/// A non-fatal problem (stderr without `--json`).
#[derive(Debug, Serialize)]
pub struct Warning<'a> {
    pub message: &'a str,
}

/// The error that ended a command, with its cause chain (outermost first).
#[derive(Debug, Serialize)]
pub struct Error {
    pub message: String,
    pub causes: Vec<String>,
}

// ---- sweep, merge

/// `sweep`: once the run directory exists, before the first page.
#[derive(Debug, Serialize)]
pub struct SweepStart<'a> {
    pub schema_version: u32,
    pub experiment: &'a str,
    pub run_id: &'a str,
    pub run_dir: String,
    pub git_commit: &'a str,
    pub spec_fingerprint: &'a str,
    pub engines: &'a [EngineInfo],
    pub host: &'a str,
    pub shard: Option<Shard>,
    /// Samples of this run (of its shard).
    pub n_samples: usize,
    /// Of those, samples the journal already held (`--resume`).
    pub n_resumed: usize,
}

/// `sweep`: one journaled sample.
#[derive(Debug, Serialize)]
pub struct Sample<'a> {
    pub sample_index: u64,
    pub sample_id: &'a str,
    pub status: &'a str,
    pub error: Option<&'a str>,
    pub corpus: &'a str,
    pub mode: &'a str,
    pub target_ratio: f64,
    pub ratio_nominal: f64,
    pub n_text_tokens: u32,
    pub n_vision_tokens_nominal: u32,
    pub char_precision: f64,
    pub word_f1: f64,
    pub fox_precision_gt_words: f64,
    pub fox_precision_out_words: f64,
    pub runaway: bool,
    pub ocr_ms: f64,
}

impl<'a> Sample<'a> {
    pub fn new(r: &'a SampleRow) -> Sample<'a> {
        Sample {
            sample_index: r.sample_index,
            sample_id: &r.sample_id,
            status: &r.status,
            error: r.error.as_deref(),
            corpus: &r.corpus,
            mode: &r.mode,
            target_ratio: r.target_ratio,
            ratio_nominal: r.ratio_nominal,
            n_text_tokens: r.n_text_tokens,
            n_vision_tokens_nominal: r.n_vision_tokens_nominal,
            char_precision: r.char_precision,
            word_f1: r.word_f1,
            fox_precision_gt_words: r.fox_precision_gt_words,
            fox_precision_out_words: r.fox_precision_out_words,
            runaway: r.runaway,
            ocr_ms: r.ocr_ms,
        }
    }
}

/// One cell (corpus × mode × ratio) of a [`SweepSummary`].
#[derive(Debug, Serialize)]
pub struct Cell<'a> {
    pub corpus: &'a str,
    pub mode: &'a str,
    pub target_ratio: f64,
    pub n: u32,
    pub n_failed: u32,
    pub char_precision: f64,
    /// `null` when the cell has too few samples for a CI (see `ci_method`).
    pub char_precision_ci: Option<[f64; 2]>,
    /// How the CI was made, or "n too small".
    pub ci_method: &'a str,
    /// Fox precision, unique output words found in the GT ÷ unique output words (mean).
    pub fox_precision_out_words: f64,
    /// Fox precision, unique GT words found in the output ÷ unique GT words (mean).
    pub fox_precision_gt_words: f64,
    pub truncation_char_precision: f64,
}

impl Cell<'_> {
    /// The cells of a summary table (one per `char_precision` row, with the other metrics' means).
    pub fn all(summary: &[SummaryRow]) -> Vec<Cell<'_>> {
        let get = |c: &SummaryRow, metric: &str| {
            summary.iter().find(|r| {
                r.corpus == c.corpus && r.mode == c.mode && r.target_ratio == c.target_ratio && r.metric == metric
            })
        };
        summary
            .iter()
            .filter(|r| r.metric == "char_precision")
            .map(|c| Cell {
                corpus: &c.corpus,
                mode: &c.mode,
                target_ratio: c.target_ratio,
                n: c.n,
                n_failed: c.n_failed,
                char_precision: c.mean,
                char_precision_ci: (c.ci_low.is_finite() && c.ci_high.is_finite()).then_some([c.ci_low, c.ci_high]),
                ci_method: &c.ci_method,
                fox_precision_out_words: get(c, "fox_precision_out_words").map_or(f64::NAN, |r| r.mean),
                fox_precision_gt_words: get(c, "fox_precision_gt_words").map_or(f64::NAN, |r| r.mean),
                truncation_char_precision: get(c, "truncation_char_precision").map_or(f64::NAN, |r| r.mean),
            })
            .collect()
    }
}

/// `sweep` and `merge`: the written run, at the end.
#[derive(Debug, Serialize)]
pub struct SweepSummary<'a> {
    pub run_dir: String,
    pub run_id: &'a str,
    pub status: &'a str,
    pub n_samples: usize,
    pub n_failed: usize,
    pub wall_time_s: f64,
    pub files: BTreeMap<&'a str, String>,
    pub cells: Vec<Cell<'a>>,
}

// ---- decay

/// `decay`: before the first round is read.
#[derive(Debug, Serialize)]
pub struct DecayStart<'a> {
    pub schema_version: u32,
    /// Always `decay`.
    pub command: &'static str,
    pub run_id: &'a str,
    /// The run directory (created when the run ends).
    pub dir: &'a Path,
    pub engine: &'a EngineInfo,
    /// Names of the schedules, in run order.
    pub schedules: &'a [String],
    pub rounds: usize,
    pub round_tokens: usize,
}

/// `decay`: one schedule's totals, once per schedule at the end.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct DecaySummary<'a>(pub &'a ScheduleSummary);

message! {
    Warning<'_> => "warning",
    Error => "error",
    SweepStart<'_> => "run_start",
    Sample<'_> => "sample",
    SweepSummary<'_> => "summary",
    DecayStart<'_> => "run_start",
    DecaySummary<'_> => "summary",
}
