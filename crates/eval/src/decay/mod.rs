//! The decay sweep of optical memory (`compress-bench decay`): what is still recallable at each age
//! under each schedule of `occ_memory`, and what it costs.
//!
//! 1. [`conversation::build`] makes a synthetic conversation from a corpus with planted needles.
//! 2. All rounds are pushed into one [`OpticalMemory`] (one render cache for every schedule).
//! 3. For each schedule (a budget spec resolves to its chosen candidate), every round is read back as
//!    the schedule holds it after the last round ([`OpticalMemory::recall_as`]); read-backs are cached
//!    per (round, representation), so a deterministic engine reads each page once per run.
//! 4. Each read-back is scored against the round's text with [`crate::metrics::score`] after
//!    [`Normalization`] (character precision 1 − NED, word F1, …). Dropped rounds read back
//!    empty (score 0). Text rounds read back exactly (score 1).
//! 5. Needle-in-a-haystack: an OCR engine cannot be asked a question, so the "question" is answered
//!    by reading the needle's round back; the needle is **retrieved** when the read-back, with all
//!    whitespace removed, contains the answer (the 4-digit code). `fact_recalled` is stricter: the
//!    normalised fact sentence occurs in the normalised read-back.
//! 6. Truncation baseline: the same number of context tokens spent on text only — the newest rounds
//!    whole, the next one cut to the remaining tokens, older ones gone — gives a per-round character
//!    precision (`baseline_char_precision`).
//!
//! Journal and resume: every read-back (round × representation) is appended to `journal.jsonl` in
//! the run folder and flushed as soon as it is made ([`DecayJournal`]). [`run_journaled`] takes the
//! read-backs the journal holds instead of reading those pages again, so a run killed at any point
//! and resumed makes every engine call once and writes the same tables as an uninterrupted run
//! (the read-back times included: they are journaled too). It can also be stopped between two
//! read-backs (a signal) and reports [`Outcome::Interrupted`].
//!
//! Output ([`output`]): `decay.parquet` (one row per round × schedule, [`DecayRow`]), `needles.parquet`
//! ([`NeedleRow`]) and `manifest.json`; the report (`plots/*.svg`, `report.md`, `report.html`) is
//! occ-report's (`occ_report::decay`), which also writes a whole run in order.

pub mod conversation;
pub mod output;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use occ_core::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer};
use occ_memory::schedule::file::{self, ScheduleDef};
use occ_memory::schedule::{Representation, ScheduleSpec};
use occ_memory::{ManualClock, MemoryConfig, MemoryError, OpticalMemory, Recall, ScheduleError};
use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, CorpusError};
use crate::journal::{self, JournalError, JournalWriter, JOURNAL_FILE};
use crate::metrics::{char_precision, score};
use crate::normalize::{Lang, Normalization};

pub use crate::schema::{DecayRow, NeedleRow};
pub use conversation::{Conversation, Needle};

/// Errors of the decay sweep.
#[derive(Debug, thiserror::Error)]
pub enum DecayError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error("decay sweep: {0}")]
    Invalid(String),
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
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
    pub fn load(path: &std::path::Path) -> Result<DecayFile, DecayError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DecayError::Invalid(format!("reading {display}: {e}")))?;
        toml::from_str(&text).map_err(|e| DecayError::Invalid(format!("{display}: {e}")))
    }
}

/// Command-line values of a decay run (every `Some` replaces the experiment file's value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecayOverrides {
    /// Schedules in their command-line spelling (replace the file's `[[schedule]]` tables).
    pub schedules: Vec<String>,
    pub rounds: Option<usize>,
    pub round_tokens: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub corpus: Option<String>,
    pub datasets: Option<PathBuf>,
    pub seed: Option<u64>,
    pub needles: Option<usize>,
    pub page_ratio: Option<f64>,
}

/// Everything a decay run needs besides the engine. Serialised into the manifest (the schedules
/// beside it, as `schedules[].spec`), from which `--resume` reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Merges an experiment file (`path` names it in errors; empty without a file) and the
    /// command-line values over the defaults, and validates the result.
    pub fn resolve(file: &DecayFile, path: &str, o: DecayOverrides) -> Result<DecayConfig, DecayError> {
        let d = DecayConfig::default();
        let t = &file.decay;
        let schedules = if !o.schedules.is_empty() {
            o.schedules
                .iter()
                .map(|s| s.parse::<ScheduleSpec>().map_err(|e| DecayError::Invalid(format!("--schedule {s:?}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?
        } else if !file.schedule.is_empty() {
            file::resolve_all(&file.schedule, path)?
        } else {
            d.schedules.clone()
        };
        let cfg = DecayConfig {
            rounds: o.rounds.or(t.rounds).unwrap_or(d.rounds),
            round_tokens: o.round_tokens.or(t.round_tokens).unwrap_or(d.round_tokens),
            max_new_tokens: o.max_new_tokens.unwrap_or(d.max_new_tokens),
            corpus: o.corpus.or_else(|| t.corpus.clone()).unwrap_or(d.corpus),
            datasets: o.datasets.unwrap_or(d.datasets),
            seed: o.seed.or(t.seed).unwrap_or(d.seed),
            needles: o.needles.or(t.needles).unwrap_or(d.needles),
            page_ratio: o.page_ratio.or(t.page_ratio).unwrap_or(d.page_ratio),
            schedules,
            normalization: d.normalization,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), DecayError> {
        if self.rounds == 0 {
            return Err(DecayError::Invalid("rounds must be at least 1".into()));
        }
        if self.round_tokens == 0 {
            return Err(DecayError::Invalid("round_tokens must be at least 1".into()));
        }
        if self.schedules.is_empty() {
            return Err(DecayError::Invalid("no schedules: give --schedule or [[schedule]] tables".into()));
        }
        if !(self.page_ratio.is_finite() && self.page_ratio > 0.0) {
            return Err(MemoryError::InvalidPageRatio { ratio: self.page_ratio }.into());
        }
        Ok(())
    }
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

/// One read-back of a round in one representation, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadBack {
    pub round_id: String,
    pub representation: Representation,
    /// The text read back (the round's own text for text rounds, empty for dropped ones).
    pub text: String,
    /// Engine outputs (pages read).
    pub pages: usize,
    /// Time of the read-back.
    pub ocr_ms: f64,
}

/// The read-backs of a run: those of `journal.jsonl` in its folder (appended and flushed as they
/// are made), or in memory only.
pub struct DecayJournal {
    reads: HashMap<(String, Representation), ReadBack>,
    writer: Option<JournalWriter>,
}

impl DecayJournal {
    /// A journal kept in memory only (nothing survives the process).
    pub fn in_memory() -> DecayJournal {
        DecayJournal { reads: HashMap::new(), writer: None }
    }

    /// Opens `dir/journal.jsonl` (created if missing; a line torn by a crash is dropped).
    pub fn open(dir: &Path) -> Result<DecayJournal, DecayError> {
        let mut journal = DecayJournal::read(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let (_, valid_len) = journal::read_lines::<ReadBack>(&path)?;
        journal.writer = Some(JournalWriter::open(&path, valid_len)?);
        Ok(journal)
    }

    /// Reads `dir/journal.jsonl` without opening it for writing (a missing file is empty).
    pub fn read(dir: &Path) -> Result<DecayJournal, DecayError> {
        let (lines, _) = journal::read_lines::<ReadBack>(&dir.join(JOURNAL_FILE))?;
        let mut reads = HashMap::new();
        for r in lines {
            reads.entry((r.round_id.clone(), r.representation)).or_insert(r);
        }
        Ok(DecayJournal { reads, writer: None })
    }

    /// Read-backs held.
    pub fn len(&self) -> usize {
        self.reads.len()
    }

    /// Whether it holds no read-back.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    fn record(&mut self, read: ReadBack) -> Result<(), DecayError> {
        if let Some(w) = &mut self.writer {
            w.append(&read)?;
            w.flush()?;
        }
        self.reads.insert((read.round_id.clone(), read.representation), read);
        Ok(())
    }
}

/// How [`run_journaled`] ended.
#[derive(Debug)]
pub enum Outcome {
    Complete(Box<DecayResults>),
    /// Stopped on request before every read-back was made (those made are in the journal).
    Interrupted,
}

/// Runs the sweep with `engine` (handed each page's text before it reads it: [`OcrEngine::ground_truth`]).
pub fn run(
    config: &DecayConfig,
    run_id: &str,
    tokenizer: &TextTokenizer,
    engine: &mut dyn OcrEngine,
    progress: Progress<'_>,
) -> Result<DecayResults, DecayError> {
    let mut journal = DecayJournal::in_memory();
    match run_journaled(config, run_id, tokenizer, engine, &mut journal, progress, &mut || false)? {
        Outcome::Complete(results) => Ok(*results),
        Outcome::Interrupted => Err(DecayError::Invalid("stopped without a stop request".into())),
    }
}

/// Runs the sweep, taking the read-backs `journal` holds and journaling every new one before it is
/// used. `stop` is asked before each new read-back; `true` ends the run with
/// [`Outcome::Interrupted`] (the read-back in flight has been journaled).
pub fn run_journaled(
    config: &DecayConfig,
    run_id: &str,
    tokenizer: &TextTokenizer,
    engine: &mut dyn OcrEngine,
    journal: &mut DecayJournal,
    progress: Progress<'_>,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Outcome, DecayError> {
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
    let mut used: HashSet<(String, Representation)> = HashSet::new();
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
            if !journal.reads.contains_key(&key) {
                if stop() {
                    return Ok(Outcome::Interrupted);
                }
                for (k, p) in memory.pages(&round.id, repr)?.iter().enumerate() {
                    engine.ground_truth(&format!("{}#p{k}", round.id), &p.text);
                }
                let t0 = Instant::now();
                let recall: Recall = memory.recall_as(&round.id, repr, engine)?;
                let ocr_ms = t0.elapsed().as_secs_f64() * 1e3;
                journal.record(ReadBack {
                    round_id: round.id.clone(),
                    representation: repr,
                    text: recall.text,
                    pages: recall.outputs.len(),
                    ocr_ms,
                })?;
            }
            let recall = &journal.reads[&key];
            // The first row to use a read-back carries its time and pages, as when it was made.
            let ocr_ms = if used.insert(key.clone()) {
                pages_read += recall.pages;
                recall.ocr_ms
            } else {
                0.0
            };
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
                mode: repr.reading_mode().map(|m| m.to_string()),
                n_pages: pages.len() as u32,
                n_text_tokens: memory.tokenizer().count(&round.text).map_err(MemoryError::from)? as u32,
                cost_tokens: seg_cost as u32,
                cost_vision_nominal: nominal as u32,
                font_px: pages.first().map(|p| f64::from(p.font_px)),
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
    Ok(Outcome::Complete(Box::new(DecayResults {
        rows,
        needles: needle_rows,
        summaries,
        conversation: conv,
        pages_read,
    })))
}

/// An engine that never reads: [`replay`] runs with it, so any read-back the journal lacks ends
/// the run as [`Outcome::Interrupted`] instead of reading.
struct JournalOnly(EngineInfo);

impl OcrEngine for JournalOnly {
    fn info(&self) -> EngineInfo {
        self.0.clone()
    }

    fn ocr(&mut self, _: &[OcrPage], _: &Prompt, _: &OcrOptions) -> Result<Vec<OcrOutput>, EngineError> {
        Err(EngineError::Unavailable {
            engine: self.0.name.clone(),
            reason: "a replay reads from the journal only".into(),
            how: "resume the run to read the rest".into(),
        })
    }
}

/// Computes a run's results again from its journal alone (no engine): [`Outcome::Complete`] when
/// the journal holds every read-back the run needs, else [`Outcome::Interrupted`]. `engine` is the
/// identity of the engine that made the read-backs (its name goes into the rows).
pub fn replay(
    config: &DecayConfig,
    run_id: &str,
    tokenizer: &TextTokenizer,
    engine: EngineInfo,
    journal: &mut DecayJournal,
) -> Result<Outcome, DecayError> {
    let mut engine = JournalOnly(engine);
    run_journaled(config, run_id, tokenizer, &mut engine, journal, &mut |_, _, _| {}, &mut || true)
}

/// A decay run folder read back (for `compress-bench report`).
#[derive(Debug)]
pub struct Folder {
    pub state: output::DecayState,
    /// Read-backs in its journal.
    pub reads_journaled: usize,
    /// The results replayed from the journal; `None` when it lacks read-backs (an unfinished run)
    /// or the run has no journal (written before decay runs were journaled).
    pub results: Option<Box<DecayResults>>,
}

/// Reads a decay run folder: its manifest and, replayed from its journal, its results.
pub fn load_folder(dir: &Path) -> Result<Folder, DecayError> {
    let state = output::DecayState::load(dir)?;
    let mut journal = DecayJournal::read(dir)?;
    let reads_journaled = journal.len();
    let results = if journal.is_empty() {
        None
    } else {
        let tokenizer = TextTokenizer::deepseek_ocr()
            .map_err(|e| DecayError::Invalid(format!("loading the DeepSeek-OCR tokenizer: {e}")))?;
        let config = state.config();
        match replay(&config, &state.meta.run_id, &tokenizer, state.meta.engine.clone(), &mut journal)? {
            Outcome::Complete(r) => Some(r),
            Outcome::Interrupted => None,
        }
    };
    Ok(Folder { state, reads_journaled, results })
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
            let (cut, _) = occ_core::cut_tokens(&r.text, tok, left)?;
            let kept = &r.text[..cut];
            out[i] = char_precision(&normalization.apply(&r.text, conv.lang), &normalization.apply(kept, conv.lang));
            left = 0;
        }
    }
    Ok(out)
}
