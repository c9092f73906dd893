//! Every `--json` message of every subcommand, as a typed struct (docs/cli-json.md documents each).
//!
//! A message is a [`Message`]: its `type` in the `{"type": …, "data": …}` envelope is the struct's
//! [`Message::TYPE`], its `data` the struct serialised. Subcommands build these and hand them to
//! [`crate::output::Output::send`]; none writes a JSON literal.

use std::collections::BTreeMap;
use std::path::Path;

use occ_core::{EngineInfo, Mode, Timings, VisionTokens};
use occ_eval::compare::Pairing;
use occ_eval::decay::ScheduleSummary;
use occ_eval::plan::Shard;
use occ_eval::schema::{SampleRow, SummaryRow};
use occ_eval::{RunStatus, SampleStatus};
use occ_model::grounding::GroundedBlock;
use occ_render::fit::Ratios;
use occ_render::{LineBox, MissingGlyphs, RatioCheck, RenderSpec};
use occ_report::compare::RunEntry;
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

        /// Every [`Message::TYPE`], in the order of the list below.
        #[cfg(test)]
        const TYPES: &[&str] = &[$($name),*];
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

// ---- sweep and decay --dry-run

/// `sweep --dry-run`, `decay --dry-run`: what the run would do and how long it would take.
#[derive(Debug, Serialize)]
pub struct DryRun<'a> {
    pub command: &'static str,
    pub engine: &'a [EngineInfo],
    /// What the counts count: `samples` (sweep) or `read-backs` (decay).
    pub unit: &'static str,
    pub n_total: usize,
    /// Already in a resumed run's journal.
    pub n_done: usize,
    pub n_pending: usize,
    /// Pages the engine would read for the pending items.
    pub n_pages: usize,
    /// Seconds taken to load the engine (not in the estimate).
    pub engine_load_s: f64,
    /// `None` when nothing is left to run.
    pub estimate: Option<Estimate>,
    /// `sweep --baseline`: the same counts for the baseline engine's run of the same pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<DryRunBaseline>,
}

/// The baseline run's part of a `sweep --dry-run` (`sweep --baseline`).
#[derive(Debug, Clone, Serialize)]
pub struct DryRunBaseline {
    pub engine: Vec<EngineInfo>,
    pub n_total: usize,
    pub n_done: usize,
    pub n_pending: usize,
    pub engine_load_s: f64,
    pub estimate: Option<Estimate>,
}

/// An estimated time and how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// `measured`: items of this run made by its engine in this process, timed.
    pub method: &'static str,
    /// What was measured, e.g. `4 samples spread over the plan, rendered, read and scored`.
    pub measured: String,
    pub measured_items: usize,
    pub measured_s: f64,
    /// Seconds of work not proportional to the items (decay: building and rendering the
    /// conversation's pages, timed in full).
    pub fixed_s: f64,
    pub seconds_per_item: f64,
    pub estimated_s: f64,
}

impl Estimate {
    /// `seconds` for `items` samples (rendered, read and scored), extrapolated to `pending`.
    pub fn measured(items: usize, seconds: f64, pending: usize) -> Estimate {
        let per = seconds / items.max(1) as f64;
        Estimate {
            method: "measured",
            measured: format!(
                "{items} sample{} spread over the plan, rendered, read and scored",
                if items == 1 { "" } else { "s" }
            ),
            measured_items: items,
            measured_s: seconds,
            fixed_s: 0.0,
            seconds_per_item: per,
            estimated_s: per * pending as f64,
        }
    }

    /// One line: the estimate and how it was made.
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "estimated time: {} ({}: {} in {:.2} s, {:.3} s per {}{})",
            crate::output::duration_text(self.estimated_s),
            self.method,
            self.measured,
            self.measured_s,
            self.seconds_per_item,
            unit.trim_end_matches('s'),
            if self.fixed_s > 0.0 { format!(", plus {:.2} s of rendering", self.fixed_s) } else { String::new() }
        )
    }
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
    pub status: SampleStatus,
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
            status: r.status,
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

/// One cell (corpus × mode × ratio × page setting) of a [`SweepSummary`].
#[derive(Debug, Serialize)]
pub struct Cell<'a> {
    pub corpus: &'a str,
    pub mode: &'a str,
    pub target_ratio: f64,
    /// The page setting of the cell (the spec's robustness axes, `occ_eval::axes`).
    pub degradation: &'a str,
    pub font_family: &'a str,
    pub line_height: f64,
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
                r.corpus == c.corpus
                    && r.mode == c.mode
                    && r.target_ratio == c.target_ratio
                    && r.degradation == c.degradation
                    && r.font_family == c.font_family
                    && r.line_height == c.line_height
                    && r.metric == metric
            })
        };
        summary
            .iter()
            .filter(|r| r.metric == "char_precision")
            .map(|c| Cell {
                corpus: &c.corpus,
                mode: &c.mode,
                target_ratio: c.target_ratio,
                degradation: &c.degradation,
                font_family: &c.font_family,
                line_height: c.line_height,
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
    pub status: RunStatus,
    pub n_samples: usize,
    pub n_failed: usize,
    pub wall_time_s: f64,
    pub files: BTreeMap<&'a str, String>,
    pub cells: Vec<Cell<'a>>,
}

/// `sweep --baseline`: the baseline engine's run of the same pages and its comparison with the
/// main run, after both are written (before the main run's `summary`).
#[derive(Debug, Serialize)]
pub struct SweepBaseline<'a> {
    /// The baseline engine's name and the main engine's.
    pub engine: &'a str,
    pub main_engine: &'a str,
    /// The baseline's run folder (`<run_dir>/baseline-<engine>`) and run id.
    pub run_dir: String,
    pub run_id: &'a str,
    pub status: RunStatus,
    pub n_samples: usize,
    pub n_failed: usize,
    /// The comparison's folder (`<run_dir>/compare`).
    pub compare_dir: String,
    /// File name → path: the baseline run's tables and report, the comparison's files.
    pub files: BTreeMap<String, String>,
    /// Pages paired by the comparison.
    pub n_pairs: usize,
    /// As in `compare`: per corpus × mode over every ratio, baseline first.
    pub headline: Vec<CompareHeadline<'a>>,
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

// ---- score

/// `score`: the input read, before scoring.
#[derive(Debug, Serialize)]
pub struct ScoreStart<'a> {
    pub schema_version: u32,
    pub input: String,
    pub input_sha256: &'a str,
    pub n_lines: usize,
    pub n_rows: usize,
    pub n_bad: usize,
}

/// `score`: one bad input row (skipped, or refused with `--strict`).
#[derive(Debug, Serialize)]
pub struct BadRowMessage<'a> {
    pub line: usize,
    pub id: Option<&'a str>,
    pub kind: &'static str,
    pub message: String,
}

/// One group × mode of a [`ScoreSummary`], over all its pages.
#[derive(Debug, Serialize)]
pub struct ScoreHeadline<'a> {
    pub group: &'a str,
    pub mode: &'a str,
    pub n_pages: usize,
    pub fox_precision_out_words: f64,
    pub fox_precision_out_words_ci: [f64; 2],
    pub fox_precision_gt_words: f64,
    pub char_precision: f64,
}

/// One token bin of a [`ScoreSummary`] (with `--bin-tokens`).
#[derive(Debug, Serialize)]
pub struct ScoreBin<'a> {
    pub group: &'a str,
    pub mode: &'a str,
    pub tokens_lo: Option<u32>,
    pub tokens_hi: Option<u32>,
    pub n_pages: u32,
    pub compression: Option<f64>,
    pub fox_precision_out_words: f64,
    pub fox_precision_out_words_ci: [f64; 2],
    pub fox_precision_gt_words: f64,
    pub char_precision: f64,
}

/// `score`: the written run, at the end.
#[derive(Debug, Serialize)]
pub struct ScoreSummary<'a> {
    pub run_dir: String,
    pub run_id: &'a str,
    pub n_lines: usize,
    pub n_scored: usize,
    pub n_bad: usize,
    pub n_out_of_range: usize,
    pub wall_time_s: f64,
    pub files: BTreeMap<&'static str, String>,
    pub headline: Vec<ScoreHeadline<'a>>,
    pub bins: Vec<ScoreBin<'a>>,
}

// ---- compare

/// Paired difference of character precision per comparison, corpus and mode over every ratio.
#[derive(Debug, Serialize)]
pub struct CompareHeadline<'a> {
    pub baseline: &'a str,
    pub other: &'a str,
    pub corpus: &'a str,
    pub mode: &'a str,
    /// The other run's mode: `mode`, or another where the runs share no mode (paired by passage and ratio).
    pub other_mode: &'a str,
    pub n_pairs: u32,
    pub char_precision_baseline: Option<f64>,
    pub char_precision_other: Option<f64>,
    pub char_precision_diff: Option<f64>,
    pub char_precision_diff_ci: Option<[f64; 2]>,
    pub ci_method: &'a str,
}

impl<'a> CompareHeadline<'a> {
    /// One headline per comparison, corpus and mode: the rows over every ratio of character precision
    /// (`compare`'s message and `sweep --baseline`'s).
    pub fn of(comparison: &'a occ_eval::compare::Comparison) -> Vec<CompareHeadline<'a>> {
        let finite = |v: f64| v.is_finite().then_some(v);
        comparison
            .rows
            .iter()
            .filter(|r| r.target_ratio.is_none() && r.metric == "char_precision")
            .map(|r| CompareHeadline {
                baseline: &r.baseline,
                other: &r.other,
                corpus: &r.corpus,
                mode: &r.mode,
                other_mode: &r.other_mode,
                n_pairs: r.n_pairs,
                char_precision_baseline: finite(r.mean_baseline),
                char_precision_other: finite(r.mean_other),
                char_precision_diff: finite(r.mean_diff),
                char_precision_diff_ci: finite(r.ci_low).zip(finite(r.ci_high)).map(|(a, b)| [a, b]),
                ci_method: &r.ci_method,
            })
            .collect()
    }
}

/// The files of a written comparison by name (`compare.md`, `compare.html`, `paired.csv`, `compare.json`).
pub fn compare_files(files: &occ_report::compare::CompareFiles) -> BTreeMap<&'static str, String> {
    use occ_report::compare::{CSV_FILE, HTML_FILE, JSON_FILE, MARKDOWN_FILE};
    [(MARKDOWN_FILE, &files.markdown), (HTML_FILE, &files.html), (CSV_FILE, &files.csv), (JSON_FILE, &files.json)]
        .into_iter()
        .map(|(name, path)| (name, path.display().to_string()))
        .collect()
}

/// `compare`: the written comparison (one message at the end).
#[derive(Debug, Serialize)]
pub struct Compare<'a> {
    pub out_dir: String,
    pub files: BTreeMap<&'static str, String>,
    pub plots: Vec<String>,
    pub runs: &'a [RunEntry],
    pub pairings: &'a [Pairing],
    pub headline: Vec<CompareHeadline<'a>>,
}

// ---- report

/// `report`: the files written.
#[derive(Debug, Serialize)]
pub struct ReportFiles {
    pub run_dir: String,
    pub markdown: String,
    pub html: String,
    pub plots: Vec<String>,
    /// `pages.html`, or null for a run without predictions.
    pub pages: Option<String>,
    /// A decay run's status (`complete`, `running`, `interrupted`, `failed`); absent for sweeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// What the run folder lacks, one line each (empty for a complete run).
    pub missing: Vec<String>,
}

// ---- bench

/// One timed configuration.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct BenchRun {
    pub mode: String,
    /// Decoder slots measured (smaller than `requested_batch` when the batch was lowered to fit the
    /// free device memory, or after out-of-memory retries).
    pub batch: usize,
    /// The `--batch` size this configuration was asked for: with `mode`, what a resumed bench
    /// skips (absent in journals written before resume: `batch`).
    #[serde(default)]
    pub requested_batch: Option<usize>,
    pub pages: usize,
    pub new_tokens: usize,
    pub prompt_tokens: usize,
    pub wall_s: f64,
    pub pages_per_s: f64,
    /// Generated tokens per second of wall time (all pages).
    pub tok_s: f64,
    /// Decode tokens per second per sequence (decode time only).
    pub decode_tok_s: f64,
    /// Decode tokens per second, all slots together.
    pub decode_tok_s_total: f64,
    pub encode_s_per_page: f64,
    pub prefill_s: f64,
    pub decode_steps: usize,
    /// Seconds per decode step (decode time / `decode_steps`); null without decode steps.
    #[serde(default)]
    pub decode_step_s: Option<f64>,
    /// GB (10⁹ bytes) of weights one decode step reads (`occ_model::bandwidth::DecodeWeights` for
    /// `batch` slots in the run's dtype; docs/cli-json.md says what is counted).
    #[serde(default)]
    pub decode_weight_gb_per_step: Option<f64>,
    /// Achieved decode weight bandwidth: `decode_weight_gb_per_step / decode_step_s`, GB/s; null
    /// without decode steps (and in journals written before it).
    #[serde(default)]
    pub decode_weight_gb_s: Option<f64>,
    pub cuda_graph: bool,
    /// Kernel nodes of the captured decode step's CUDA graph (the kernels one step launches); null
    /// when the step was not captured (CPU, `--no-cuda-graph`, f32, a failed capture).
    #[serde(default)]
    pub decode_kernels_per_step: Option<usize>,
    pub peak_gpu_gb: Option<f64>,
    pub oom_retries: usize,
    /// The largest batch that fits (`occ_model::memory_plan`: this mode's prompt, `new_tokens`, one
    /// page per slot) in the free device memory at the start of this configuration (or
    /// `--free-memory-gb`); absent without a figure (CPU) and in journals written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fits_batch: Option<usize>,
    /// The planner's bytes per slot behind `fits_batch`, in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_per_slot: Option<f64>,
    /// The free device memory the plan used, in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_gpu_gb: Option<f64>,
    /// The session that measured it: 0 the run's first process, 1 its first resume, …
    #[serde(default)]
    pub session: usize,
}

/// The vision encoder alone.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EncoderRun {
    pub mode: String,
    pub batch: usize,
    pub s_per_page: f64,
    /// The session that measured it (as [`BenchRun::session`]).
    #[serde(default)]
    pub session: usize,
}

/// The `bench` message.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub engine: String,
    pub device: String,
    pub dtype: String,
    pub weights: String,
    /// The run folder the measurements are journaled in.
    pub run_dir: String,
    /// Sessions (process starts) whose measurements make up `runs` and `encoder`: 1 for a
    /// benchmark measured in one process, more for one interrupted and resumed.
    pub sessions: usize,
    pub runs: Vec<BenchRun>,
    pub encoder: Vec<EncoderRun>,
}

// ---- render

/// `render`: the page's metadata, also written to the metadata JSON file (one message).
#[derive(Debug, Serialize)]
pub struct RenderMeta<'a> {
    pub image: String,
    pub source: String,
    pub mode: Mode,
    pub spec: &'a RenderSpec,
    pub font_px: f32,
    pub target_ratio: Option<f64>,
    pub target_tokens: Option<usize>,
    pub text_tokens: usize,
    pub input_tokens: usize,
    pub used_tokens: usize,
    pub dropped_tokens: usize,
    pub dropped_chars: usize,
    pub dropped_bytes: usize,
    pub ratio_check: Option<&'a RatioCheck>,
    pub vision_tokens: RenderVision,
    pub ratio: Ratios,
    pub ground_truth: &'a str,
    pub chars: usize,
    pub lines: &'a [LineBox],
    pub missing_glyphs: &'a MissingGlyphs,
    pub overflow_chars: usize,
    pub overflow_bytes: usize,
}

/// The vision tokens of a rendered page, the tile grid as `[across, down]`.
#[derive(Debug, Serialize)]
pub struct RenderVision {
    pub nominal: u32,
    pub valid: u32,
    pub valid_floor: u32,
    pub slots: u32,
    pub grid: [u32; 2],
}

impl From<&VisionTokens> for RenderVision {
    fn from(v: &VisionTokens) -> RenderVision {
        RenderVision {
            nominal: v.nominal,
            valid: v.valid,
            valid_floor: v.valid_floor,
            slots: v.slots,
            grid: [v.grid.across, v.grid.down],
        }
    }
}

// ---- ocr

/// `ocr`: the loaded reader, before the first page.
#[derive(Debug, Serialize)]
pub struct EngineLoaded<'a> {
    pub info: &'a EngineInfo,
    pub load_seconds: f64,
}

/// `ocr`: one join problem of `--truth` (an image without truth, a truth row without image, …).
#[derive(Debug, Serialize)]
pub struct TruthProblem<'a> {
    pub kind: &'static str,
    pub image: Option<&'a str>,
    pub message: String,
}

/// `ocr`: one page read. The model's fields are `null` for Tesseract.
#[derive(Debug, Serialize)]
pub struct OcrPageRead<'a> {
    pub image: String,
    /// The truth row's id (with `--truth`).
    pub id: Option<&'a str>,
    pub mode: Mode,
    pub text: &'a str,
    pub blocks: &'a [GroundedBlock],
    pub token_ids: Option<&'a [u32]>,
    pub n_prompt_tokens: Option<usize>,
    pub n_generated_tokens: Option<usize>,
    pub stopped_at_eos: Option<bool>,
    pub vision_tokens: Option<VisionTokens>,
    pub timings_ms: StageTimes,
    pub decode_tok_per_s: Option<f64>,
    pub engine: &'a str,
    pub synthetic_weights: bool,
    pub device: &'a str,
    pub dtype: &'a str,
    pub peak_rss_bytes: Option<u64>,
}

/// Stage times of a page, in milliseconds.
#[derive(Debug, Serialize)]
pub struct StageTimes {
    pub preprocess: f64,
    pub vision: f64,
    pub prefill: f64,
    pub decode: f64,
}

impl From<&Timings> for StageTimes {
    fn from(t: &Timings) -> StageTimes {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        StageTimes { preprocess: ms(t.preprocess), vision: ms(t.vision), prefill: ms(t.prefill), decode: ms(t.decode) }
    }
}

// ---- inspect

/// `inspect`: the model configuration and parameter counts.
#[derive(Debug, Serialize)]
pub struct InspectConfig<'a> {
    pub model_type: &'a str,
    pub sam: SamSummary,
    pub clip: ClipSummary,
    pub projector: ProjectorSummary,
    pub decoder: DecoderSummary,
}

#[derive(Debug, Serialize)]
pub struct SamSummary {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub window: usize,
    pub global_blocks: Vec<usize>,
    pub compressor_channels: [usize; 2],
    pub parameters: usize,
}

#[derive(Debug, Serialize)]
pub struct ClipSummary {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub position_grid: usize,
    pub parameters_loaded: usize,
}

#[derive(Debug, Serialize)]
pub struct ProjectorSummary {
    pub input_dim: usize,
    pub n_embed: usize,
    pub parameters: usize,
}

/// Decoder fields as the config file has them (`null` when absent).
#[derive(Debug, Serialize)]
pub struct DecoderSummary {
    pub hidden_size: serde_json::Value,
    pub num_hidden_layers: serde_json::Value,
    pub n_routed_experts: serde_json::Value,
    pub num_experts_per_tok: serde_json::Value,
    pub vocab_size: serde_json::Value,
    pub use_mla: serde_json::Value,
}

/// `inspect`: vision tokens of each mode for an image size.
#[derive(Debug, Serialize)]
pub struct InspectVisionTokens {
    pub width: u32,
    pub height: u32,
    pub modes: Vec<ModeTokens>,
}

/// One mode of [`InspectVisionTokens`].
#[derive(Debug, Serialize)]
pub struct ModeTokens {
    pub mode: String,
    pub base_size: u32,
    pub image_size: u32,
    pub crop: bool,
    #[serde(flatten)]
    pub tokens: VisionTokens,
}

/// `inspect --tensors`: the encoder's expected tensors against a checkpoint and its index.
#[derive(Debug, Serialize)]
pub struct InspectTensors {
    pub tensors: Vec<TensorRow>,
    pub shape_mismatches: usize,
    pub missing_from_index: usize,
}

/// One tensor of [`InspectTensors`].
#[derive(Debug, Serialize)]
pub struct TensorRow {
    pub name: String,
    pub expected_shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_shape: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_dtype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_index: Option<bool>,
}

/// `ocr --truth … --predictions-out …`: the written predictions file, at the end.
#[derive(Debug, Serialize)]
pub struct Predictions {
    pub path: String,
    pub n_images: usize,
    pub n_truth_lines: usize,
    pub n_joined: usize,
    pub n_written: usize,
    pub n_unreadable: usize,
    /// Join problems by kind.
    pub problems: BTreeMap<&'static str, usize>,
}

// ---- serve

/// `serve`: the server listens (once).
#[derive(Debug, Serialize)]
pub struct ServeStart<'a> {
    pub url: String,
    pub model: &'a str,
    pub engine: String,
    /// Decoder slots of the live batcher (fewer than `requested_slots` when they did not fit the
    /// free device memory); `null` when the server reads per request.
    pub slots: Option<usize>,
    /// Decoder slots asked for (`--max-batch`).
    pub requested_slots: Option<usize>,
    /// The most slots the free device memory holds for answers of `--max-tokens` tokens
    /// (`occ_model::memory_plan`); `null` without a memory figure (CPU without `--free-memory-gb`).
    pub fits_slots: Option<usize>,
    /// The planner's bytes per slot behind `fits_slots`, in GB.
    pub gb_per_slot: Option<f64>,
    /// The free device memory the slots were sized against (`--free-memory-gb` or the driver's), GB.
    pub free_gpu_gb: Option<f64>,
}

// ---- train (the journal types of occ-train are the messages: one definition for the file and
// the stream)

/// A checkpoint written (its folder is a reader `--engine mini --weights` loads).
#[derive(Debug, Serialize)]
pub struct TrainCheckpoint<'a> {
    pub step: usize,
    pub path: &'a Path,
}

message! {
    occ_train::trainer::StartInfo => "train_start",
    occ_train::trainer::StepLog => "train_step",
    occ_train::trainer::EvalLog => "train_eval",
    TrainCheckpoint<'_> => "train_checkpoint",
    occ_train::trainer::Summary => "train_summary",
    Warning<'_> => "warning",
    Error => "error",
    DryRun<'_> => "dry_run",
    SweepStart<'_> => "run_start",
    Sample<'_> => "sample",
    SweepSummary<'_> => "summary",
    SweepBaseline<'_> => "baseline",
    DecayStart<'_> => "run_start",
    DecaySummary<'_> => "summary",
    ScoreStart<'_> => "score_start",
    BadRowMessage<'_> => "bad_row",
    ScoreSummary<'_> => "score_summary",
    Compare<'_> => "compare",
    ReportFiles => "report",
    BenchReport => "bench",
    RenderMeta<'_> => "render",
    EngineLoaded<'_> => "engine",
    TruthProblem<'_> => "truth_problem",
    OcrPageRead<'_> => "ocr",
    Predictions => "predictions",
    InspectConfig<'_> => "config",
    InspectVisionTokens => "vision_tokens",
    InspectTensors => "tensors",
    ServeStart<'_> => "serve_start",
}

#[cfg(test)]
mod tests {
    /// docs/cli-json.md names every message type (as `` `type` ``), so it documents each one sent.
    #[test]
    fn every_message_type_is_documented() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli-json.md");
        let doc = std::fs::read_to_string(path).expect("reading docs/cli-json.md");
        let missing: Vec<&str> = super::TYPES.iter().copied().filter(|t| !doc.contains(&format!("`{t}`"))).collect();
        assert!(missing.is_empty(), "message types not in docs/cli-json.md: {missing:?}");
    }
}
