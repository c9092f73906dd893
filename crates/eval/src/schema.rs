//! The result tables, defined once: each row struct below generates its Parquet schema (column
//! names, dtypes, docs), its DataFrame conversion both ways and its JSON form (the journal).
//!
//! Conventions: one long, tidy row per page × setting, snake_case names with units
//! (`_px`, `_ms`), counts prefixed `n_`. [`VOLATILE_COLUMNS`] are the columns that legitimately
//! differ between two runs of the same spec (run id and wall-clock timings); everything else is
//! reproducible bit for bit.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::status::SampleStatus;
use crate::status::UnknownStatus;

/// Errors of table conversion and Parquet I/O.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{context}: {source}")]
    Polars { context: String, source: PolarsError },
    #[error("column {column}: {message}")]
    Column { column: String, message: String },
}

fn polars_err(context: impl Into<String>) -> impl FnOnce(PolarsError) -> SchemaError {
    let context = context.into();
    move |source| SchemaError::Polars { context, source }
}

/// One column of a table: name, dtype, meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: &'static str,
    pub dtype: DataType,
    pub doc: &'static str,
}

/// A Rust type stored in one Parquet column.
pub trait ColumnValue: Sized + Clone {
    fn dtype() -> DataType;
    fn to_column(name: &str, values: Vec<Self>) -> Column;
    fn from_column(col: &Column) -> Result<Vec<Self>, SchemaError>;
}

fn missing(col: &Column) -> SchemaError {
    SchemaError::Column { column: col.name().to_string(), message: "null in a non-nullable column".into() }
}

macro_rules! column_value {
    ($ty:ty, $dtype:expr, $getter:ident, |$v:ident| $conv:expr) => {
        impl ColumnValue for $ty {
            fn dtype() -> DataType {
                $dtype
            }
            fn to_column(name: &str, values: Vec<Self>) -> Column {
                Column::new(name.into(), values)
            }
            fn from_column(col: &Column) -> Result<Vec<Self>, SchemaError> {
                let ca = col.$getter().map_err(polars_err(format!("column {}", col.name())))?;
                ca.iter().map(|o| o.map(|$v| $conv).ok_or_else(|| missing(col))).collect()
            }
        }
        impl ColumnValue for Option<$ty> {
            fn dtype() -> DataType {
                $dtype
            }
            fn to_column(name: &str, values: Vec<Self>) -> Column {
                Column::new(name.into(), values)
            }
            fn from_column(col: &Column) -> Result<Vec<Self>, SchemaError> {
                let ca = col.$getter().map_err(polars_err(format!("column {}", col.name())))?;
                Ok(ca.iter().map(|o| o.map(|$v| $conv)).collect())
            }
        }
    };
}

column_value!(String, DataType::String, str, |v| v.to_string());
column_value!(u32, DataType::UInt32, u32, |v| v);
column_value!(u64, DataType::UInt64, u64, |v| v);
column_value!(f64, DataType::Float64, f64, |v| v);
column_value!(bool, DataType::Boolean, bool, |v| v);

/// A sample's status is stored as its name (a string column).
impl ColumnValue for SampleStatus {
    fn dtype() -> DataType {
        DataType::String
    }
    fn to_column(name: &str, values: Vec<Self>) -> Column {
        Column::new(name.into(), values.iter().map(|v| v.as_str()).collect::<Vec<&str>>())
    }
    fn from_column(col: &Column) -> Result<Vec<Self>, SchemaError> {
        let ca = col.str().map_err(polars_err(format!("column {}", col.name())))?;
        ca.iter()
            .map(|o| {
                let text = o.ok_or_else(|| missing(col))?;
                text.parse().map_err(|e: UnknownStatus| SchemaError::Column {
                    column: col.name().to_string(),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

/// A row type with a generated schema.
pub trait Table: Sized {
    /// The columns, in order.
    fn columns() -> Vec<ColumnDef>;
    /// Rows → DataFrame.
    fn to_frame(rows: &[Self]) -> Result<DataFrame, SchemaError>;
    /// DataFrame → rows (columns found by name; extra columns ignored).
    fn from_frame(df: &DataFrame) -> Result<Vec<Self>, SchemaError>;
}

/// A row struct with its schema. Each field takes exactly one `///` line (its column doc) and may
/// then take attributes (e.g. serde's, for a float that may be NaN). A field may end in
/// `= <value>`: the value of every row when a file lacks the column (a column added after files were
/// written without it); a missing column without one is an error.
macro_rules! table {
    ($(#[$meta:meta])* pub struct $name:ident { $( #[doc = $doc:literal] $(#[$fmeta:meta])* pub $field:ident : $ty:ty $(= $absent:expr)?, )* }) => {
        $(#[$meta])*
        pub struct $name { $( #[doc = $doc] $(#[$fmeta])* pub $field: $ty, )* }

        impl Table for $name {
            fn columns() -> Vec<ColumnDef> {
                vec![$( ColumnDef { name: stringify!($field), dtype: <$ty as ColumnValue>::dtype(), doc: $doc.trim() } ),*]
            }

            fn to_frame(rows: &[Self]) -> Result<DataFrame, SchemaError> {
                let columns = vec![$(
                    <$ty as ColumnValue>::to_column(stringify!($field), rows.iter().map(|r| r.$field.clone()).collect())
                ),*];
                DataFrame::new(rows.len(), columns).map_err(polars_err(stringify!($name)))
            }

            fn from_frame(df: &DataFrame) -> Result<Vec<Self>, SchemaError> {
                $(
                    let absent: Option<$ty> = table!(@absent $($absent)?);
                    let mut $field = match (df.column(stringify!($field)), absent) {
                        (Ok(col), _) => <$ty as ColumnValue>::from_column(col)?.into_iter(),
                        (Err(_), Some(value)) => vec![value; df.height()].into_iter(),
                        (Err(e), None) => return Err(polars_err(concat!("reading ", stringify!($name)))(e)),
                    };
                )*
                let mut rows = Vec::with_capacity(df.height());
                for _ in 0..df.height() {
                    rows.push($name { $( $field: $field.next().ok_or_else(|| SchemaError::Column {
                        column: stringify!($field).into(),
                        message: "shorter than the frame".into(),
                    })?, )* });
                }
                Ok(rows)
            }
        }
    };
    (@absent $value:expr) => { Some($value) };
    (@absent) => { None };
}

table! {
    /// One page read in one setting: the row of `samples.parquet`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct SampleRow {
        /// Experiment name (the spec's `name`).
        pub experiment: String,
        /// Run id (`<UTC time>-<spec hash>[-sK of N]`); volatile.
        pub run_id: String,
        /// Position of the sample in the experiment's deterministic sample list.
        pub sample_index: u64,
        /// `<corpus>/<passage_id>/<mode>/r<target_ratio>`.
        pub sample_id: String,
        /// `ok`, `render_error` or `engine_error` (metrics are 0 and excluded from statistics unless `ok`).
        pub status: SampleStatus,
        /// Error message when status is not `ok`.
        pub error: Option<String>,
        /// Corpus name (`en`, `zh`, `probes`).
        pub corpus: String,
        /// Language of the corpus (`en`, `zh`).
        pub lang: String,
        /// Passage the page text starts with (later passages follow when one is too short).
        pub passage_id: String,
        /// DeepSeek-OCR mode name.
        pub mode: String,
        /// Global view side of the mode, px.
        pub base_size_px: u32,
        /// Tile side of the mode, px.
        pub image_size_px: u32,
        /// Whether the mode tiles (Gundam).
        pub crop_mode: bool,
        /// Local tiles of the page (0 = global view only).
        pub n_tiles: u32,
        /// Requested compression ratio (text tokens per nominal vision token).
        #[serde(with = "crate::stats::nan_as_null")]
        pub target_ratio: f64,
        /// Ground-truth text tokens (DeepSeek-OCR tokenizer, no BOS).
        pub n_text_tokens: u32,
        /// Nominal vision tokens (paper Table 1).
        pub n_vision_tokens_nominal: u32,
        /// Valid vision tokens (paper Eq. 1, ceil).
        pub n_vision_tokens_valid: u32,
        /// Valid vision tokens, HF code's floor variant.
        pub n_vision_tokens_valid_floor: u32,
        /// Decoder placeholder slots (newline and separator rows included).
        pub n_vision_slots: u32,
        /// n_text_tokens / n_vision_tokens_nominal.
        #[serde(with = "crate::stats::nan_as_null")]
        pub ratio_nominal: f64,
        /// n_text_tokens / n_vision_tokens_valid.
        #[serde(with = "crate::stats::nan_as_null")]
        pub ratio_valid: f64,
        /// n_text_tokens / n_vision_slots.
        #[serde(with = "crate::stats::nan_as_null")]
        pub ratio_slots: f64,
        /// Font size (em) chosen by the ratio fitting, px.
        #[serde(with = "crate::stats::nan_as_null")]
        pub font_px: f64,
        /// Page width, px.
        pub page_w_px: u32,
        /// Page height, px.
        pub page_h_px: u32,
        /// Degradation level of the page (`none`, `blur:1.5`, `blur:1+jpeg:30`, …; occ_eval::axes).
        #[serde(default = "crate::schema::absent_degradation")]
        pub degradation: String = absent_degradation(),
        /// Gaussian blur of the page, standard deviation in px (0 = none).
        #[serde(default)]
        #[serde(with = "crate::stats::nan_as_null")]
        pub blur_sigma: f64 = 0.0,
        /// JPEG quality the page was compressed at (null = no JPEG round trip).
        #[serde(default)]
        pub jpeg_quality: Option<u32> = None,
        /// Gaussian noise added to the page, standard deviation on the 0–255 scale (0 = none).
        #[serde(default)]
        #[serde(with = "crate::stats::nan_as_null")]
        pub noise_sigma: f64 = 0.0,
        /// Factor the page was downscaled by and restored from (1 = none).
        #[serde(default = "crate::schema::absent_downscale")]
        #[serde(with = "crate::stats::nan_as_null")]
        pub downscale: f64 = absent_downscale(),
        /// Font family of the page (`dejavu-sans`, `dejavu-serif`, …; empty when the toolkit did not draw the page).
        #[serde(default = "crate::schema::absent_font_family")]
        pub font_family: String = absent_font_family(),
        /// Line pitch of the page × the font size (0 when the toolkit did not draw the page).
        #[serde(default = "crate::schema::absent_line_height")]
        #[serde(with = "crate::stats::nan_as_null")]
        pub line_height: f64 = absent_line_height(),
        /// Characters of the normalised ground truth.
        pub n_chars_gt: u32,
        /// Characters of the normalised output.
        pub n_chars_out: u32,
        /// Words of the normalised ground truth.
        pub n_words_gt: u32,
        /// Words of the normalised output.
        pub n_words_out: u32,
        /// 1 − Levenshtein ÷ max length, characters.
        #[serde(with = "crate::stats::nan_as_null")]
        pub char_precision: f64,
        /// Levenshtein distance, characters.
        pub edit_distance: u32,
        /// Word multiset precision.
        #[serde(with = "crate::stats::nan_as_null")]
        pub word_precision: f64,
        /// Word multiset recall.
        #[serde(with = "crate::stats::nan_as_null")]
        pub word_recall: f64,
        /// Word multiset F1.
        #[serde(with = "crate::stats::nan_as_null")]
        pub word_f1: f64,
        /// Fox set precision, reading 1: unique GT words found in the output ÷ unique GT words.
        #[serde(with = "crate::stats::nan_as_null")]
        pub fox_precision_gt_words: f64,
        /// Fox set precision, reading 2: unique output words found in the GT ÷ unique output words.
        #[serde(with = "crate::stats::nan_as_null")]
        pub fox_precision_out_words: f64,
        /// Normalised output equals normalised ground truth.
        pub exact_match: bool,
        /// Runaway generation (hit max tokens or a repetition loop).
        pub runaway: bool,
        /// `max_tokens`, `repetition` or empty.
        pub runaway_reason: String,
        /// Generation stopped at max_new_tokens.
        pub hit_max_tokens: bool,
        /// Generated tokens, for engines that have tokens.
        pub n_generated_tokens: Option<u32>,
        /// Prompt tokens the reader was given for the page (the prompt's text tokens and vision slots; the server's count for the openai engine); null for readers without a prompt (Tesseract) and predictions made elsewhere.
        #[serde(default)]
        pub n_prompt_tokens: Option<u32> = None,
        /// Truncation baseline (first n_vision_tokens_nominal text tokens): char_precision.
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_char_precision: f64,
        /// Truncation baseline: word_precision.
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_word_precision: f64,
        /// Truncation baseline: word_recall.
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_word_recall: f64,
        /// Truncation baseline: word_f1.
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_word_f1: f64,
        /// Truncation baseline: fox_precision_gt_words.
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_fox_precision_gt_words: f64,
        /// Truncation baseline: fox_precision_out_words.
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_fox_precision_out_words: f64,
        /// Truncation baseline: exact_match (0/1).
        #[serde(with = "crate::stats::nan_as_null")]
        pub truncation_exact_match: f64,
        /// Engine name (`tesseract`, `deepseek-ocr`, `fake-perfect`).
        pub engine: String,
        /// Engine or program version.
        pub engine_version: String,
        /// Weights identity, if any.
        pub weights: Option<String>,
        /// The weights are synthetic: scores are meaningless.
        pub synthetic_weights: bool,
        /// Device of the engine.
        pub device: String,
        /// Compute dtype of the engine.
        pub dtype: String,
        /// `git rev-parse HEAD` of the toolkit, or `unknown`.
        pub git_commit: String,
        /// Rendering time of the page, ms; volatile.
        #[serde(with = "crate::stats::nan_as_null")]
        pub render_ms: f64,
        /// Engine wall time per page (batch time ÷ batch size), ms; volatile.
        #[serde(with = "crate::stats::nan_as_null")]
        pub ocr_ms: f64,
        /// Engine preprocessing time, ms; volatile.
        #[serde(with = "crate::stats::nan_as_null")]
        pub preprocess_ms: f64,
        /// Vision encoder time, ms; volatile.
        #[serde(with = "crate::stats::nan_as_null")]
        pub vision_ms: f64,
        /// Prefill time, ms; volatile.
        #[serde(with = "crate::stats::nan_as_null")]
        pub prefill_ms: f64,
        /// Decode time, ms; volatile.
        #[serde(with = "crate::stats::nan_as_null")]
        pub decode_ms: f64,
    }
}

table! {
    /// The text of one sample: the row of `predictions.parquet`, keyed like `samples.parquet`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PredictionRow {
        /// Run id; volatile.
        pub run_id: String,
        /// Position in the sample list (join key).
        pub sample_index: u64,
        /// Sample id (join key).
        pub sample_id: String,
        /// Mode name.
        pub mode: String,
        /// The text drawn on the page, exactly.
        pub ground_truth: String,
        /// The engine's output, unnormalised.
        pub prediction: String,
    }
}

table! {
    /// One cell × metric of `summary.csv` (long format).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SummaryRow {
        /// Corpus name.
        pub corpus: String,
        /// Mode name.
        pub mode: String,
        /// Requested compression ratio.
        pub target_ratio: f64,
        /// Degradation level of the cell's pages (`none` = clean).
        pub degradation: String = absent_degradation(),
        /// Font family of the cell's pages (empty when the toolkit did not draw them).
        pub font_family: String = absent_font_family(),
        /// Line height of the cell's pages (0 when the toolkit did not draw them).
        pub line_height: f64 = absent_line_height(),
        /// Metric column of samples.parquet (`truncation_*` = the baseline, `runaway` = share flagged).
        pub metric: String,
        /// Samples with status ok.
        pub n: u32,
        /// Samples that failed (not in the statistics).
        pub n_failed: u32,
        /// Mean ratio_nominal of the cell's samples.
        #[serde(with = "crate::stats::nan_as_null")]
        pub mean_ratio_nominal: f64,
        /// Mean of the metric.
        #[serde(with = "crate::stats::nan_as_null")]
        pub mean: f64,
        /// Median of the metric.
        #[serde(with = "crate::stats::nan_as_null")]
        pub median: f64,
        /// 95% CI of the mean, low end (NaN when `ci_method` is "n too small").
        #[serde(with = "crate::stats::nan_as_null")]
        pub ci_low: f64,
        /// 95% CI of the mean, high end (NaN when `ci_method` is "n too small").
        #[serde(with = "crate::stats::nan_as_null")]
        pub ci_high: f64,
        /// How the CI was made (a percentile bootstrap), or "n too small" below 5 samples (no CI).
        pub ci_method: String,
    }
}

table! {
    /// One bin of scored predictions: the row of `bins.csv` written by `compress-bench score`
    /// (a group × mode × ground-truth-token bin; the headline reading of Fox precision first).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct BinRow {
        /// Group of the rows (the `corpus` column of samples.parquet).
        pub group: String,
        /// Mode name, or `unknown` for rows without a mode.
        pub mode: String,
        /// Lowest ground-truth token count of the bin (inclusive); null = no lower bound.
        pub tokens_lo: Option<u32>,
        /// Upper end of the bin (exclusive); null = no upper bound.
        pub tokens_hi: Option<u32>,
        /// The cell's `target_ratio` in samples.parquet and summary.csv (mean ratio_nominal rounded to 2 decimals; 0 = no vision tokens known).
        pub target_ratio: f64,
        /// Pages scored in the bin.
        pub n_pages: u32,
        /// Mean ground-truth text tokens of the bin's pages.
        pub mean_text_tokens: f64,
        /// Mean nominal vision tokens of the pages that have them; null if none does.
        pub mean_vision_tokens: Option<f64>,
        /// Compression of the bin: mean text tokens ÷ nominal vision tokens of its pages (mean ratio_nominal); null without vision tokens.
        pub compression: Option<f64>,
        /// Mean Fox set precision, unique output words found in the GT ÷ unique output words (the headline reading).
        pub fox_precision_out_words: f64,
        /// Bootstrap 95% CI of fox_precision_out_words, low end (NaN, `null` in JSON, below 5 pages: n too small).
        #[serde(with = "crate::stats::nan_as_null")]
        pub fox_precision_out_words_ci_low: f64,
        /// Bootstrap 95% CI of fox_precision_out_words, high end (NaN, `null` in JSON, below 5 pages: n too small).
        #[serde(with = "crate::stats::nan_as_null")]
        pub fox_precision_out_words_ci_high: f64,
        /// Mean Fox set precision, unique GT words found in the output ÷ unique GT words.
        pub fox_precision_gt_words: f64,
        /// Bootstrap 95% CI of fox_precision_gt_words, low end (NaN, `null` in JSON, below 5 pages: n too small).
        #[serde(with = "crate::stats::nan_as_null")]
        pub fox_precision_gt_words_ci_low: f64,
        /// Bootstrap 95% CI of fox_precision_gt_words, high end (NaN, `null` in JSON, below 5 pages: n too small).
        #[serde(with = "crate::stats::nan_as_null")]
        pub fox_precision_gt_words_ci_high: f64,
        /// Mean character precision (1 − NED).
        pub char_precision: f64,
        /// Bootstrap 95% CI of char_precision, low end (NaN, `null` in JSON, below 5 pages: n too small).
        #[serde(with = "crate::stats::nan_as_null")]
        pub char_precision_ci_low: f64,
        /// Bootstrap 95% CI of char_precision, high end (NaN, `null` in JSON, below 5 pages: n too small).
        #[serde(with = "crate::stats::nan_as_null")]
        pub char_precision_ci_high: f64,
    }
}

table! {
    /// One comparison × cell × metric of `paired.csv`, written by `compress-bench compare`: the
    /// difference other − baseline of one metric over the samples both runs read on the same page
    /// (an identical page, or the same passage at the same ratio when the runs share no mode:
    /// `crate::compare`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PairedRow {
        /// Label of the baseline run (the first run given).
        pub baseline: String,
        /// Label of the run compared with the baseline.
        pub other: String,
        /// Corpus name.
        pub corpus: String,
        /// Mode name (of the baseline's pages).
        pub mode: String,
        /// Mode of the other run's pages: `mode` when the runs share a mode (pairing by the same page),
        /// another mode when they share none (pairing by the same passage and ratio, crate::compare).
        pub other_mode: String,
        /// Degradation level of the pages (`none` = clean; occ_eval::axes).
        pub degradation: String = absent_degradation(),
        /// Font family of the pages (empty when the toolkit did not draw them).
        pub font_family: String = absent_font_family(),
        /// Line height of the pages (0 when the toolkit did not draw them).
        pub line_height: f64 = absent_line_height(),
        /// Requested compression ratio; null = every ratio of the corpus, mode and page setting pooled.
        pub target_ratio: Option<f64>,
        /// Metric column of samples.parquet (exact_match as 0/1).
        pub metric: String,
        /// Pairs in the cell: identical pages read by both runs, both with status ok.
        pub n_pairs: u32,
        /// Mean of the metric in the baseline run over the pairs.
        #[serde(with = "crate::stats::nan_as_null")]
        pub mean_baseline: f64,
        /// Mean of the metric in the other run over the pairs.
        #[serde(with = "crate::stats::nan_as_null")]
        pub mean_other: f64,
        /// Mean of the paired differences other − baseline.
        #[serde(with = "crate::stats::nan_as_null")]
        pub mean_diff: f64,
        /// Median of the paired differences.
        #[serde(with = "crate::stats::nan_as_null")]
        pub median_diff: f64,
        /// 95% CI of the mean difference, low end (NaN when `ci_method` is "n too small").
        #[serde(with = "crate::stats::nan_as_null")]
        pub ci_low: f64,
        /// 95% CI of the mean difference, high end (NaN when `ci_method` is "n too small").
        #[serde(with = "crate::stats::nan_as_null")]
        pub ci_high: f64,
        /// How the CI was made (a percentile bootstrap of the paired differences), or "n too small" below 5 pairs.
        pub ci_method: String,
        /// Pairs on which the other run scores higher.
        pub n_other_better: u32,
        /// Pairs on which the other run scores lower.
        pub n_other_worse: u32,
        /// Pairs with equal scores.
        pub n_tied: u32,
    }
}

table! {
    /// One round under one schedule of a decay run: the row of `decay.parquet`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DecayRow {
        /// Run id; volatile.
        pub run_id: String,
        /// The schedule's name (its command-line spelling).
        pub schedule: String,
        /// The levels of the schedule used (for a budget spec, of its chosen candidate).
        pub schedule_levels: String,
        /// Engine name.
        pub engine: String,
        /// Corpus the conversation is made from.
        pub corpus: String,
        /// Round id (`r000`, `r001`, …).
        pub round_id: String,
        /// Position of the round in the conversation (oldest = 0).
        pub round_index: u32,
        /// `user` or `assistant`.
        pub role: String,
        /// Passage id of the corpus the round is cut from.
        pub source_passage: String,
        /// Age in rounds after the last round (newest = 0).
        pub age: u32,
        /// Index of the schedule level holding the round.
        pub level: u32,
        /// `text`, a mode, `from>to` or `dropped`.
        pub representation: String,
        /// Reading mode of imaged rounds; null for text and dropped rounds (no mode).
        pub mode: Option<String>,
        /// Page images of the round.
        pub n_pages: u32,
        /// Text tokens of the round (what it costs as text).
        pub n_text_tokens: u32,
        /// What the round costs in the context: text tokens or vision slots (0 when dropped).
        pub cost_tokens: u32,
        /// Nominal vision tokens of the round's pages.
        pub cost_vision_nominal: u32,
        /// Font size of the round's first page; null for text and dropped rounds (no page).
        pub font_px: Option<f64>,
        /// 1 − normalised edit distance of the read-back.
        pub char_precision: f64,
        /// Word multiset precision of the read-back.
        pub word_precision: f64,
        /// Word multiset recall of the read-back.
        pub word_recall: f64,
        /// Word multiset F1 of the read-back.
        pub word_f1: f64,
        /// The normalised read-back equals the normalised round.
        pub exact_match: bool,
        /// Characters of the normalised round.
        pub n_chars_gt: u32,
        /// Characters of the normalised read-back.
        pub n_chars_out: u32,
        /// Character precision of the truncation baseline at the schedule's context size.
        pub baseline_char_precision: f64,
        /// A needle is planted in the round.
        pub has_needle: bool,
        /// Tokens of the whole context under this schedule (same on every row of the schedule).
        pub context_tokens: u32,
        /// Tokens of the whole conversation as text.
        pub all_text_tokens: u32,
        /// Engine time for this round's pages (0 when cached or not imaged); volatile.
        pub ocr_ms: f64,
    }
}

table! {
    /// One needle under one schedule of a decay run: the row of `needles.parquet`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct NeedleRow {
        /// Run id; volatile.
        pub run_id: String,
        /// The schedule's name.
        pub schedule: String,
        /// Engine name.
        pub engine: String,
        /// Needle id (`n00`, `n01`, …).
        pub needle_id: String,
        /// Round holding the needle.
        pub round_id: String,
        /// Age of that round after the last round.
        pub age: u32,
        /// Share of the round's text before the fact.
        pub depth: f64,
        /// How the schedule holds the round (`text`, a mode, `from>to` or `dropped`).
        pub representation: String,
        /// The sentence planted.
        pub fact: String,
        /// The code a read-back must contain (whitespace ignored).
        pub answer: String,
        /// The read-back of the round, whitespace removed, contains the answer.
        pub retrieved: bool,
        /// The normalised read-back contains the normalised fact sentence.
        pub fact_recalled: bool,
        /// What the round costs in the context.
        pub cost_tokens: u32,
    }
}

/// `degradation` of a row written before the robustness axes: the clean page.
pub fn absent_degradation() -> String {
    crate::axes::NO_DEGRADATION.into()
}

/// `downscale` of a row written before the robustness axes: not downscaled.
pub fn absent_downscale() -> f64 {
    1.0
}

/// `font_family` of a row written before the robustness axes: the default family.
pub fn absent_font_family() -> String {
    occ_render::FontFamily::default().name().into()
}

/// `line_height` of a row written before the robustness axes: the default line height.
pub fn absent_line_height() -> f64 {
    crate::axes::DEFAULT_LINE_HEIGHT
}

/// Columns of `samples.parquet` that differ between two runs of the same spec.
pub const VOLATILE_COLUMNS: [&str; 7] =
    ["run_id", "render_ms", "ocr_ms", "preprocess_ms", "vision_ms", "prefill_ms", "decode_ms"];

/// Writes a frame as Parquet (zstd).
///
/// The Arrow schema stored in the file (`ARROW:schema`, which readers use for the column types) is
/// that of Arrow's oldest types: plain (large) strings, not the string-view type polars holds in
/// memory, which pyarrow 14 and older cannot read ("Unrecognized type: 24"). The pages are the same
/// either way (Parquet `BYTE_ARRAY` strings).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), SchemaError> {
    let display = path.display().to_string();
    let arrow_schema = polars_parquet::write::schema_to_metadata_key(&df.schema().to_arrow(CompatLevel::oldest()));
    let file = File::create(path).map_err(|e| SchemaError::Io { path: display.clone(), source: e })?;
    ParquetWriter::new(file)
        .with_key_value_metadata(Some(KeyValueMetadata::Static(vec![arrow_schema])))
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(polars_err(format!("writing {display}")))?;
    Ok(())
}

/// Reads a Parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame, SchemaError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|e| SchemaError::Io { path: display.clone(), source: e })?;
    ParquetReader::new(file).finish().map_err(polars_err(format!("reading {display}")))
}

/// Writes a frame as CSV with a header.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<(), SchemaError> {
    let display = path.display().to_string();
    let mut file = File::create(path).map_err(|e| SchemaError::Io { path: display.clone(), source: e })?;
    CsvWriter::new(&mut file).include_header(true).finish(df).map_err(polars_err(format!("writing {display}")))
}

/// The frame without its volatile columns (for comparing two runs).
pub fn without_volatile(df: &DataFrame) -> DataFrame {
    df.drop_many(VOLATILE_COLUMNS)
}

/// Markdown table of a row type's columns (for results/README.md).
pub fn columns_markdown<T: Table>() -> String {
    let mut s = String::from("| column | type | meaning |\n| --- | --- | --- |\n");
    for c in T::columns() {
        s.push_str(&format!("| `{}` | {} | {} |\n", c.name, c.dtype, c.doc));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_row(i: u64) -> SampleRow {
        SampleRow {
            experiment: "t".into(),
            run_id: "r".into(),
            sample_index: i,
            sample_id: format!("en/p{i}/tiny/r10"),
            status: SampleStatus::Ok,
            error: if i % 2 == 0 { None } else { Some("boom".into()) },
            corpus: "en".into(),
            lang: "en".into(),
            passage_id: format!("p{i}"),
            mode: "tiny".into(),
            base_size_px: 512,
            image_size_px: 512,
            crop_mode: false,
            n_tiles: 0,
            target_ratio: 10.5,
            n_text_tokens: 672,
            n_vision_tokens_nominal: 64,
            n_vision_tokens_valid: 64,
            n_vision_tokens_valid_floor: 64,
            n_vision_slots: 73,
            ratio_nominal: 10.5,
            ratio_valid: 10.5,
            ratio_slots: 672.0 / 73.0,
            font_px: 9.25,
            page_w_px: 512,
            page_h_px: 512,
            degradation: if i == 2 { "blur:1.5+jpeg:30".into() } else { "none".into() },
            blur_sigma: if i == 2 { 1.5 } else { 0.0 },
            jpeg_quality: if i == 2 { Some(30) } else { None },
            noise_sigma: 0.0,
            downscale: 1.0,
            font_family: "dejavu-sans".into(),
            line_height: 1.2,
            n_chars_gt: 3000,
            n_chars_out: 2900,
            n_words_gt: 500,
            n_words_out: 480,
            char_precision: 0.9,
            edit_distance: 300,
            word_precision: 0.8,
            word_recall: 0.7,
            word_f1: 0.75,
            fox_precision_gt_words: 0.85,
            fox_precision_out_words: 0.95,
            exact_match: false,
            runaway: i == 3,
            runaway_reason: if i == 3 { "repetition".into() } else { String::new() },
            hit_max_tokens: false,
            n_generated_tokens: if i % 2 == 0 { Some(700) } else { None },
            n_prompt_tokens: if i % 2 == 0 { Some(78) } else { None },
            truncation_char_precision: 0.095,
            truncation_word_precision: 1.0,
            truncation_word_recall: 0.095,
            truncation_word_f1: 0.17,
            truncation_fox_precision_gt_words: 0.2,
            truncation_fox_precision_out_words: 1.0,
            truncation_exact_match: 0.0,
            engine: "fake-perfect".into(),
            engine_version: "0".into(),
            weights: None,
            synthetic_weights: false,
            device: "cpu".into(),
            dtype: "n/a".into(),
            git_commit: "abc".into(),
            render_ms: 1.5,
            ocr_ms: 2.5,
            preprocess_ms: 0.0,
            vision_ms: 0.0,
            prefill_ms: 0.0,
            decode_ms: 2.5,
        }
    }

    #[test]
    fn sample_table_round_trips_through_parquet() {
        let rows: Vec<SampleRow> = (0..5).map(sample_row).collect();
        let mut df = SampleRow::to_frame(&rows).unwrap();
        assert_eq!(df.width(), SampleRow::columns().len());
        let dir = std::env::temp_dir().join(format!("occ-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("samples.parquet");
        write_parquet(&mut df, &path).unwrap();
        let back = read_parquet(&path).unwrap();
        assert_eq!(back.dtypes(), SampleRow::columns().into_iter().map(|c| c.dtype).collect::<Vec<_>>());
        assert_eq!(SampleRow::from_frame(&back).unwrap(), rows);
        // An empty table keeps its schema too.
        let mut empty = SampleRow::to_frame(&[]).unwrap();
        write_parquet(&mut empty, &path).unwrap();
        let back = read_parquet(&path).unwrap();
        assert_eq!((back.height(), back.width()), (0, SampleRow::columns().len()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_written_before_the_axis_columns_read_with_their_defaults() {
        let rows: Vec<SampleRow> = (0..3).map(sample_row).collect();
        let old = SampleRow::to_frame(&rows).unwrap().drop_many([
            "degradation",
            "blur_sigma",
            "jpeg_quality",
            "noise_sigma",
            "downscale",
            "font_family",
            "line_height",
        ]);
        let back = SampleRow::from_frame(&old).unwrap();
        for (b, r) in back.iter().zip(&rows) {
            assert_eq!((b.degradation.as_str(), b.font_family.as_str(), b.line_height), ("none", "dejavu-sans", 1.2));
            assert_eq!((b.blur_sigma, b.jpeg_quality, b.noise_sigma, b.downscale), (0.0, None, 0.0, 1.0));
            assert_eq!(b.sample_id, r.sample_id);
        }
        // A column without a value for absent files is still required.
        let err = SampleRow::from_frame(&old.drop("sample_id").unwrap()).unwrap_err().to_string();
        assert!(err.contains("sample_id"), "{err}");
        // A journal line written before the axes reads with the same defaults.
        let mut json: serde_json::Value = serde_json::to_value(&rows[0]).unwrap();
        for k in ["degradation", "blur_sigma", "jpeg_quality", "noise_sigma", "downscale", "font_family", "line_height"]
        {
            json.as_object_mut().unwrap().remove(k);
        }
        let back: SampleRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, SampleRow { degradation: "none".into(), ..rows[0].clone() });
    }

    #[test]
    fn column_names_are_snake_case_and_unique() {
        let cols = SampleRow::columns();
        let mut names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cols.len());
        for v in VOLATILE_COLUMNS {
            assert!(names.contains(&v), "{v}");
        }
        assert!(cols.iter().all(|c| !c.doc.is_empty()));
    }

    #[test]
    fn prediction_and_summary_tables_round_trip() {
        let p = vec![PredictionRow {
            run_id: "r".into(),
            sample_index: 0,
            sample_id: "s".into(),
            mode: "tiny".into(),
            ground_truth: "滚滚长江".into(),
            prediction: "长江".into(),
        }];
        let df = PredictionRow::to_frame(&p).unwrap();
        assert_eq!(PredictionRow::from_frame(&df).unwrap(), p);
        let s = vec![SummaryRow {
            corpus: "en".into(),
            mode: "tiny".into(),
            target_ratio: 10.0,
            degradation: "none".into(),
            font_family: "dejavu-sans".into(),
            line_height: 1.2,
            metric: "char_precision".into(),
            n: 3,
            n_failed: 0,
            mean_ratio_nominal: 10.0,
            mean: 0.5,
            median: 0.5,
            ci_low: 0.4,
            ci_high: 0.6,
            ci_method: crate::stats::CI_METHOD.into(),
        }];
        let df = SummaryRow::to_frame(&s).unwrap();
        assert_eq!(SummaryRow::from_frame(&df).unwrap(), s);
    }
}
