//! The decay sweep (feature `sweep`): what is still recallable at each age under each schedule, and
//! what it costs.
//!
//! 1. [`conversation::build`] makes a synthetic conversation from a corpus with planted needles.
//! 2. All rounds are pushed into one [`OpticalMemory`] (one render cache for every schedule).
//! 3. For each schedule (a budget spec resolves to its chosen candidate), every round is read back as
//!    the schedule holds it after the last round ([`OpticalMemory::recall_as`]); read-backs are cached
//!    per (round, representation), so a deterministic engine reads each page once per run.
//! 4. Each read-back is scored against the round's text with `occ_eval::metrics::score` after
//!    `occ_eval::Normalization` (character precision 1 − NED, word F1, …). Dropped rounds read back
//!    empty (score 0). Text rounds read back exactly (score 1).
//! 5. Needle-in-a-haystack: an OCR engine cannot be asked a question, so the "question" is answered
//!    by reading the needle's round back; the needle is **retrieved** when the read-back, with all
//!    whitespace removed, contains the answer (the 4-digit code). `fact_recalled` is stricter: the
//!    normalised fact sentence occurs in the normalised read-back.
//! 6. Truncation baseline: the same number of context tokens spent on text only — the newest rounds
//!    whole, the next one cut to the remaining tokens, older ones gone — gives a per-round character
//!    precision (`baseline_char_precision`).
//!
//! Output ([`output`]): `decay.parquet` (one row per round × schedule), `needles.parquet`,
//! `manifest.json`, `plots/*.svg`, `report.md`, `report.html`.

pub mod conversation;
pub mod output;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use occ_core::{OcrEngine, OcrOptions, TextTokenizer};
use occ_eval::corpus::Corpus;
use occ_eval::metrics::{char_precision, score};
use occ_eval::normalize::{Lang, Normalization};
use occ_eval::oracle::TruthTap;
use occ_eval::truncation::prefix_tokens;
use serde::{Deserialize, Serialize};

use crate::clock::ManualClock;
use crate::error::MemoryError;
use crate::memory::{MemoryConfig, OpticalMemory, Recall};
use crate::schedule::file::ScheduleDef;
use crate::schedule::{Representation, ScheduleSpec};

pub use conversation::{Conversation, Needle};

/// Errors of the sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Corpus(#[from] occ_eval::corpus::CorpusError),
    #[error("decay sweep: {0}")]
    Invalid(String),
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
}

/// The `[decay]` table of an experiment file (every field optional; command-line flags override).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecayTable {
    pub rounds: Option<usize>,
    pub round_tokens: Option<usize>,
    pub corpus: Option<String>,
    pub seed: Option<u64>,
    pub needles: Option<usize>,
    pub page_ratio: Option<f64>,
}

/// An experiment file: `[decay]` and `[[schedule]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecayFile {
    #[serde(default)]
    pub decay: DecayTable,
    #[serde(default)]
    pub schedule: Vec<ScheduleDef>,
}

impl DecayFile {
    /// Reads an experiment file.
    pub fn load(path: &std::path::Path) -> Result<DecayFile, SweepError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::Invalid(format!("reading {display}: {e}")))?;
        toml::from_str(&text).map_err(|e| SweepError::Invalid(format!("{display}: {e}")))
    }
}

/// Everything a decay run needs besides the engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecayConfig {
    pub rounds: usize,
    pub round_tokens: usize,
    /// Corpus name (`<datasets>/<corpus>.jsonl`).
    pub corpus: String,
    pub datasets: PathBuf,
    pub seed: u64,
    pub needles: usize,
    pub page_ratio: f64,
    /// Upper bound of generated tokens per page read back (engines that generate).
    pub max_new_tokens: usize,
    #[serde(skip)]
    pub schedules: Vec<ScheduleSpec>,
    pub normalization: Normalization,
}

impl Default for DecayConfig {
    fn default() -> DecayConfig {
        DecayConfig {
            rounds: 50,
            round_tokens: 600,
            corpus: "en".into(),
            datasets: PathBuf::from("datasets"),
            seed: 7,
            needles: 10,
            page_ratio: 10.0,
            max_new_tokens: MemoryConfig::default().ocr.max_new_tokens,
            schedules: vec![ScheduleSpec::default()],
            normalization: Normalization::default(),
        }
    }
}

impl DecayConfig {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), SweepError> {
        if self.rounds == 0 {
            return Err(SweepError::Invalid("rounds must be at least 1".into()));
        }
        if self.round_tokens == 0 {
            return Err(SweepError::Invalid("round_tokens must be at least 1".into()));
        }
        if self.schedules.is_empty() {
            return Err(SweepError::Invalid("no schedules: give --schedule or [[schedule]] tables".into()));
        }
        if !(self.page_ratio.is_finite() && self.page_ratio > 0.0) {
            return Err(MemoryError::InvalidPageRatio { ratio: self.page_ratio }.into());
        }
        Ok(())
    }
}

/// One round under one schedule: the row of `decay.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecayRow {
    pub run_id: String,
    pub schedule: String,
    /// The levels of the schedule used (for a budget spec, of its chosen candidate).
    pub schedule_levels: String,
    pub engine: String,
    pub corpus: String,
    pub round_id: String,
    pub round_index: u32,
    pub role: String,
    pub source_passage: String,
    /// Age in rounds after the last round (newest = 0).
    pub age: u32,
    pub level: u32,
    /// `text`, a mode, `from>to` or `dropped`.
    pub representation: String,
    /// Reading mode of imaged rounds, else empty.
    pub mode: String,
    pub n_pages: u32,
    /// Text tokens of the round (what it costs as text).
    pub n_text_tokens: u32,
    /// What the round costs in the context: text tokens or vision slots (0 when dropped).
    pub cost_tokens: u32,
    pub cost_vision_nominal: u32,
    /// Font size of the round's first page (0 for text and dropped rounds).
    pub font_px: f64,
    pub char_precision: f64,
    pub word_precision: f64,
    pub word_recall: f64,
    pub word_f1: f64,
    pub exact_match: bool,
    pub n_chars_gt: u32,
    pub n_chars_out: u32,
    /// Character precision of the truncation baseline at the schedule's context size.
    pub baseline_char_precision: f64,
    pub has_needle: bool,
    /// Tokens of the whole context under this schedule (same on every row of the schedule).
    pub context_tokens: u32,
    /// Tokens of the whole conversation as text.
    pub all_text_tokens: u32,
    /// Engine time for this round's pages (0 when cached or not imaged).
    pub ocr_ms: f64,
}

/// One needle under one schedule: the row of `needles.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeedleRow {
    pub run_id: String,
    pub schedule: String,
    pub engine: String,
    pub needle_id: String,
    pub round_id: String,
    pub age: u32,
    pub depth: f64,
    pub representation: String,
    pub fact: String,
    pub answer: String,
    pub retrieved: bool,
    pub fact_recalled: bool,
    pub cost_tokens: u32,
}

/// Per-schedule totals (manifest and report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleSummary {
    pub schedule: String,
    pub levels: String,
    pub context_tokens: usize,
    pub all_text_tokens: usize,
    /// `all_text_tokens / context_tokens`.
    pub saving: f64,
    pub mean_char_precision: f64,
    pub mean_word_f1: f64,
    pub baseline_mean_char_precision: f64,
    pub needles_retrieved: usize,
    pub needles: usize,
    pub text_rounds: usize,
    pub image_rounds: usize,
    pub dropped_rounds: usize,
    pub pages: usize,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct DecayResults {
    pub rows: Vec<DecayRow>,
    pub needles: Vec<NeedleRow>,
    pub summaries: Vec<ScheduleSummary>,
    pub conversation: Conversation,
    /// Engine calls actually made (after the read-back cache).
    pub pages_read: usize,
}

/// Progress callback: `(schedule name, rounds done, rounds total)`.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Runs the sweep with `engine`. `truth_tap`: fill an oracle engine's page truths before each read.
pub fn run(
    config: &DecayConfig,
    run_id: &str,
    tokenizer: &TextTokenizer,
    engine: &mut dyn OcrEngine,
    truth_tap: Option<&TruthTap>,
    progress: Progress<'_>,
) -> Result<DecayResults, SweepError> {
    config.validate()?;
    let corpus = Corpus::load(&config.corpus, &config.datasets)?;
    let conv =
        conversation::build(&corpus, tokenizer, config.rounds, config.round_tokens, config.needles, config.seed)?;
    let lang = conv.lang;
    let render_lang = match lang {
        Lang::En => occ_render::Lang::En,
        Lang::Zh => occ_render::Lang::Zh,
    };
    let defaults = MemoryConfig::default();
    let ocr = OcrOptions { max_new_tokens: config.max_new_tokens, ..defaults.ocr.clone() };
    let mem_config = MemoryConfig { page_ratio: config.page_ratio, lang: render_lang, ocr, ..defaults };
    let mut memory = OpticalMemory::with_parts(mem_config, tokenizer.clone(), Arc::new(ManualClock::at(0)))?;
    for r in &conv.rounds {
        memory.push(r.clone())?;
    }
    let engine_name = engine.info().name;
    let norm = |s: &str| config.normalization.apply(s, lang);
    let mut reads: HashMap<(String, Representation), (Recall, f64)> = HashMap::new();
    let mut pages_read = 0;
    let (mut rows, mut needle_rows, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
    let needle_of: HashMap<&str, &Needle> = conv.needles.iter().map(|n| (n.round_id.as_str(), n)).collect();
    for spec in &config.schedules {
        let name = spec.name();
        memory.set_schedule(spec.clone());
        let schedule = memory.resolved_schedule()?;
        let ctx = memory.context_with(&schedule)?;
        let levels = schedule.to_string();
        let baseline = truncation_baseline(&conv, tokenizer, ctx.tokens(), &config.normalization)?;
        let n = conv.rounds.len();
        let first_row = rows.len();
        for (i, round) in conv.rounds.iter().enumerate() {
            let age = (n - 1 - i) as u64;
            let level = schedule.level_index(age);
            let repr = schedule.representation(age);
            let key = (round.id.clone(), repr);
            let mut ocr_ms = 0.0;
            if !reads.contains_key(&key) {
                if let Some(tap) = truth_tap {
                    for (k, p) in memory.pages(&round.id, repr)?.iter().enumerate() {
                        tap.insert(&format!("{}#p{k}", round.id), &p.text);
                    }
                }
                let t0 = Instant::now();
                let recall = memory.recall_as(&round.id, repr, engine)?;
                ocr_ms = t0.elapsed().as_secs_f64() * 1e3;
                pages_read += recall.outputs.len();
                reads.insert(key.clone(), (recall, ocr_ms));
            }
            let (recall, _) = &reads[&key];
            let pages = memory.pages(&round.id, repr)?;
            let seg_cost = match repr {
                Representation::Text => memory.tokenizer().count(&round.text).map_err(MemoryError::from)?,
                _ => pages.iter().map(|p| p.vision.slots as usize).sum(),
            };
            let nominal: usize = pages.iter().map(|p| p.vision.nominal as usize).sum();
            let (gt, out) = (norm(&round.text), norm(&recall.text));
            let s = score(&gt, &out, lang);
            let needle = needle_of.get(round.id.as_str());
            rows.push(DecayRow {
                run_id: run_id.into(),
                schedule: name.clone(),
                schedule_levels: levels.clone(),
                engine: engine_name.clone(),
                corpus: config.corpus.clone(),
                round_id: round.id.clone(),
                round_index: i as u32,
                role: round.role.to_string(),
                source_passage: conv.sources.get(i).cloned().unwrap_or_default(),
                age: age as u32,
                level: level as u32,
                representation: repr.to_string(),
                mode: repr.reading_mode().map(|m| m.to_string()).unwrap_or_default(),
                n_pages: pages.len() as u32,
                n_text_tokens: memory.tokenizer().count(&round.text).map_err(MemoryError::from)? as u32,
                cost_tokens: seg_cost as u32,
                cost_vision_nominal: nominal as u32,
                font_px: pages.first().map_or(0.0, |p| f64::from(p.font_px)),
                char_precision: s.char_precision,
                word_precision: s.word_precision,
                word_recall: s.word_recall,
                word_f1: s.word_f1,
                exact_match: s.exact_match,
                n_chars_gt: s.n_chars_gt as u32,
                n_chars_out: s.n_chars_out as u32,
                baseline_char_precision: baseline[i],
                has_needle: needle.is_some(),
                context_tokens: ctx.tokens() as u32,
                all_text_tokens: ctx.totals.all_text_tokens as u32,
                ocr_ms,
            });
            if let Some(nd) = needle {
                let squeezed: String = recall.text.chars().filter(|c| !c.is_whitespace()).collect();
                needle_rows.push(NeedleRow {
                    run_id: run_id.into(),
                    schedule: name.clone(),
                    engine: engine_name.clone(),
                    needle_id: nd.id.clone(),
                    round_id: round.id.clone(),
                    age: age as u32,
                    depth: nd.depth,
                    representation: repr.to_string(),
                    fact: nd.fact.clone(),
                    answer: nd.answer.clone(),
                    retrieved: squeezed.contains(&nd.answer),
                    fact_recalled: out.contains(&norm(&nd.fact)),
                    cost_tokens: seg_cost as u32,
                });
            }
            progress(&name, i + 1, n);
        }
        let mine = &rows[first_row..];
        let mean = |f: &dyn Fn(&DecayRow) -> f64| mine.iter().map(f).sum::<f64>() / mine.len().max(1) as f64;
        let my_needles: Vec<&NeedleRow> = needle_rows.iter().filter(|r| r.schedule == name).collect();
        let t = ctx.totals;
        summaries.push(ScheduleSummary {
            schedule: name.clone(),
            levels,
            context_tokens: t.tokens,
            all_text_tokens: t.all_text_tokens,
            saving: t.saving().unwrap_or(0.0),
            mean_char_precision: mean(&|r| r.char_precision),
            mean_word_f1: mean(&|r| r.word_f1),
            baseline_mean_char_precision: mean(&|r| r.baseline_char_precision),
            needles_retrieved: my_needles.iter().filter(|r| r.retrieved).count(),
            needles: my_needles.len(),
            text_rounds: t.text_rounds,
            image_rounds: t.image_rounds,
            dropped_rounds: t.dropped_rounds,
            pages: t.pages,
        });
    }
    Ok(DecayResults { rows, needles: needle_rows, summaries, conversation: conv, pages_read })
}

/// Character precision per round (oldest first) of a text-only context of `budget` tokens: the
/// newest rounds whole while they fit, the next one cut to the tokens left, older ones empty.
pub fn truncation_baseline(
    conv: &Conversation,
    tok: &TextTokenizer,
    budget: usize,
    normalization: &Normalization,
) -> Result<Vec<f64>, MemoryError> {
    let mut left = budget;
    let mut out = vec![0.0; conv.rounds.len()];
    for (i, r) in conv.rounds.iter().enumerate().rev() {
        if left == 0 {
            break;
        }
        let n = tok.count(&r.text)?;
        if n <= left {
            out[i] = 1.0;
            left -= n;
        } else {
            let kept = prefix_tokens(&r.text, tok, left)?;
            out[i] = char_precision(&normalization.apply(&r.text, conv.lang), &normalization.apply(kept, conv.lang));
            left = 0;
        }
    }
    Ok(out)
}
