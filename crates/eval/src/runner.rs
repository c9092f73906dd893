//! The sweep loop: render on CPU threads while the engine reads batches, score, journal.
//!
//! A producer thread cuts the pending samples into batches of `engine.preferred_batch()` pages
//! (never mixing corpora, so a per-language engine can be chosen) and renders each batch in
//! parallel with rayon, at most [`RENDER_AHEAD`] batches ahead of the engine. The calling thread
//! runs the engine, scores the outputs (in parallel), appends them to the journal and flushes it
//! after every batch. An observer can stop the loop between batches (a signal): the batch in
//! flight is finished and journaled first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use occ_core::{
    compression_ratio, EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer,
};
use rayon::prelude::*;

use crate::journal::{self, JournalEntry, JournalError, JournalWriter, JOURNAL_FILE};
use crate::metrics::{runaway, score, Runaway, Scores};
use crate::normalize::Lang;
use crate::plan::PlannedSample;
use crate::render::{FittedPage, PageRenderer};
use crate::schema::{PredictionRow, SampleRow, SampleStatus};
use crate::spec::ExperimentSpec;

/// Batches rendered ahead of the engine.
pub const RENDER_AHEAD: usize = 2;

/// Errors that stop a run (per-sample failures are rows with a status instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Engine(EngineError),
    #[error("no engine for language {0} (the CLI builds one per corpus language)")]
    NoEngine(String),
}

/// The engines of a run: one for every language, or one per language (Tesseract).
pub enum Engines {
    Shared(Box<dyn OcrEngine>),
    PerLang(BTreeMap<Lang, Box<dyn OcrEngine>>),
}

impl Engines {
    /// The engine reading pages of `lang`.
    pub fn get(&mut self, lang: Lang) -> Result<&mut dyn OcrEngine, RunError> {
        match self {
            Engines::Shared(e) => Ok(e.as_mut()),
            Engines::PerLang(m) => m
                .get_mut(&lang)
                .map(|e| e.as_mut() as &mut dyn OcrEngine)
                .ok_or(RunError::NoEngine(lang.as_str().into())),
        }
    }

    /// The engine reading pages of `lang`, taken out (runs in one language).
    pub fn into_one(self, lang: Lang) -> Result<Box<dyn OcrEngine>, RunError> {
        match self {
            Engines::Shared(e) => Ok(e),
            Engines::PerLang(mut m) => m.remove(&lang).ok_or(RunError::NoEngine(lang.as_str().into())),
        }
    }

    /// Identities of every engine (one per language for `PerLang`).
    pub fn infos(&self) -> Vec<EngineInfo> {
        match self {
            Engines::Shared(e) => vec![e.info()],
            Engines::PerLang(m) => m.values().map(|e| e.info()).collect(),
        }
    }

    fn batch_size(&self) -> usize {
        match self {
            Engines::Shared(e) => e.preferred_batch(),
            Engines::PerLang(m) => m.values().map(|e| e.preferred_batch()).max().unwrap_or(1),
        }
        .max(1)
    }
}

/// Progress callbacks (the CLI draws bars and writes `--json` lines from them).
pub trait Observer {
    /// Before the first batch: samples of this run (shard) and how many the journal already has.
    fn started(&mut self, _total: usize, _already_done: usize) {}
    /// After each sample is journaled.
    fn sample(&mut self, _row: &SampleRow) {}
    /// A non-fatal problem.
    fn warning(&mut self, _message: &str) {}
    /// Asked before each batch: `true` stops the run there (the batches before it are journaled;
    /// [`RunCounts::interrupted`] says so). The CLI answers from its SIGINT/SIGTERM flag.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// What a run needs besides the plan and the engines.
pub struct RunContext<'a> {
    pub spec: &'a ExperimentSpec,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub git_commit: String,
    pub renderer: &'a dyn PageRenderer,
    pub tokenizer: &'a TextTokenizer,
    pub prompt: Prompt,
}

/// Counts of one `execute` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Samples of the plan handed in.
    pub total: usize,
    /// Already in the journal when the call started (resumed).
    pub resumed: usize,
    /// Journaled by this call.
    pub done: usize,
    /// Of `done`, samples whose status is not `ok`.
    pub failed: usize,
    /// Stopped on request ([`Observer::should_stop`]) before the plan was done.
    pub interrupted: bool,
}

struct Prepared {
    render_ms: f64,
    page: Result<PreparedPage, String>,
}

struct PreparedPage {
    fitted: FittedPage,
    gt_norm: String,
    truncation: Scores,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn prepare(ctx: &RunContext<'_>, s: &PlannedSample) -> Prepared {
    let t0 = Instant::now();
    let page =
        ctx.renderer.render(&s.source_text, s.lang, s.mode, s.target_ratio, &s.setting).and_then(|mut fitted| {
            fitted.image = s.setting.degradation.apply(&fitted.image, crate::axes::noise_seed(&s.sample_id))?;
            let norm = &ctx.spec.normalization;
            let gt_norm = norm.apply(&fitted.text, s.lang);
            let budget = fitted.vision.nominal as usize;
            let (cut, _) = occ_core::cut_tokens(&fitted.text, ctx.tokenizer, budget).map_err(|e| e.to_string())?;
            let truncation = score(&gt_norm, &norm.apply(&fitted.text[..cut], s.lang), s.lang);
            Ok(PreparedPage { fitted, gt_norm, truncation })
        });
    Prepared { render_ms: ms(t0.elapsed()), page }
}

/// Runs every sample of `plan` that the journal of `ctx.run_dir` does not hold yet.
pub fn execute(
    ctx: &RunContext<'_>,
    plan: &[PlannedSample],
    engines: &mut Engines,
    observer: &mut dyn Observer,
) -> Result<RunCounts, RunError> {
    let journal_path = ctx.run_dir.join(JOURNAL_FILE);
    let (done, valid_len) = journal::read(&journal_path)?;
    let pending: Vec<&PlannedSample> = plan.iter().filter(|s| !done.contains_key(&s.index)).collect();
    let mut counts = RunCounts { total: plan.len(), resumed: plan.len() - pending.len(), ..RunCounts::default() };
    observer.started(plan.len(), counts.resumed);
    let mut writer = JournalWriter::open(&journal_path, valid_len)?;
    let batch_size = engines.batch_size();
    let mut batches: Vec<Vec<&PlannedSample>> = Vec::new();
    for s in pending {
        match batches.last_mut() {
            Some(b) if b.len() < batch_size && b[0].corpus == s.corpus => b.push(s),
            _ => batches.push(vec![s]),
        }
    }
    let options = OcrOptions {
        max_new_tokens: ctx.spec.max_new_tokens,
        temperature: 0.0,
        seed: ctx.spec.seed,
        ignore_eos: false,
    };
    std::thread::scope(|scope| -> Result<(), RunError> {
        let (tx, rx) = sync_channel::<(usize, Vec<Prepared>)>(RENDER_AHEAD);
        let batches_ref = &batches;
        scope.spawn(move || {
            for (i, batch) in batches_ref.iter().enumerate() {
                let prepared: Vec<Prepared> = batch.par_iter().map(|s| prepare(ctx, s)).collect();
                if tx.send((i, prepared)).is_err() {
                    break; // the consumer stopped (error); stop rendering
                }
            }
        });
        for (i, prepared) in rx {
            if observer.should_stop() {
                counts.interrupted = true;
                break; // dropping the receiver stops the renderer
            }
            let batch = &batches[i];
            let mut entries = read_batch(ctx, batch, prepared, engines, &options, observer)?;
            if observer.should_stop() {
                // A stop requested while the batch was read may have reached the engine's own
                // processes (Ctrl-C goes to the whole process group): its engine errors are left
                // out of the journal, so the resumed run reads those pages again.
                entries.retain(|e| e.sample.status != SampleStatus::EngineError);
            }
            for e in &entries {
                writer.append(e)?;
            }
            writer.flush()?;
            for e in &entries {
                counts.done += 1;
                counts.failed += usize::from(e.sample.status != SampleStatus::Ok);
                observer.sample(&e.sample);
            }
        }
        Ok(())
    })?;
    Ok(counts)
}

fn read_batch(
    ctx: &RunContext<'_>,
    batch: &[&PlannedSample],
    prepared: Vec<Prepared>,
    engines: &mut Engines,
    options: &OcrOptions,
    observer: &mut dyn Observer,
) -> Result<Vec<JournalEntry>, RunError> {
    let lang = batch[0].lang;
    let engine = engines.get(lang)?;
    let info = engine.info();
    let mut pages = Vec::new();
    for (s, p) in batch.iter().zip(&prepared) {
        if let Ok(pp) = &p.page {
            engine.ground_truth(&s.sample_id, &pp.fitted.text);
            pages.push(OcrPage { id: s.sample_id.clone(), image: pp.fitted.image.clone(), mode: s.mode });
        }
    }
    let t0 = Instant::now();
    let outputs: Result<Vec<OcrOutput>, String> = if pages.is_empty() {
        Ok(Vec::new())
    } else {
        match engine.ocr(&pages, &ctx.prompt, options) {
            Ok(o) if o.len() == pages.len() => Ok(o),
            Ok(o) => Err(format!("engine returned {} outputs for {} pages", o.len(), pages.len())),
            Err(e @ EngineError::Unavailable { .. }) => return Err(RunError::Engine(e)),
            Err(e) => Err(e.to_string()),
        }
    };
    let ocr_ms = ms(t0.elapsed()) / pages.len().max(1) as f64;
    if let Err(e) = &outputs {
        observer.warning(&format!("engine failed on a batch of {} pages: {e}", pages.len()));
    }
    let mut outputs = match outputs {
        Ok(o) => o.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e); pages.len()],
    }
    .into_iter();
    // Pair every rendered page with its output, in order.
    let mut work = Vec::with_capacity(batch.len());
    for (s, p) in batch.iter().zip(prepared) {
        let out = if p.page.is_ok() { outputs.next() } else { None };
        work.push((*s, p, out));
    }
    let entries = work.into_par_iter().map(|(s, p, out)| make_entry(ctx, s, p, out, &info, ocr_ms)).collect::<Vec<_>>();
    Ok(entries)
}

fn make_entry(
    ctx: &RunContext<'_>,
    s: &PlannedSample,
    p: Prepared,
    out: Option<Result<OcrOutput, String>>,
    info: &EngineInfo,
    ocr_ms: f64,
) -> JournalEntry {
    let spec = ctx.spec;
    let (w, h) = ctx.renderer.canvas(s.mode);
    let mut row = SampleRow {
        experiment: spec.name.clone(),
        run_id: ctx.run_id.clone(),
        sample_index: s.index,
        sample_id: s.sample_id.clone(),
        status: SampleStatus::Ok,
        error: None,
        corpus: s.corpus.clone(),
        lang: s.lang.as_str().into(),
        passage_id: s.passage_id.clone(),
        mode: s.mode.to_string(),
        base_size_px: s.mode.base_size(),
        image_size_px: s.mode.image_size(),
        crop_mode: s.mode.crop(),
        n_tiles: 0,
        target_ratio: s.target_ratio,
        n_text_tokens: 0,
        n_vision_tokens_nominal: 0,
        n_vision_tokens_valid: 0,
        n_vision_tokens_valid_floor: 0,
        n_vision_slots: 0,
        ratio_nominal: 0.0,
        ratio_valid: 0.0,
        ratio_slots: 0.0,
        font_px: 0.0,
        page_w_px: w,
        page_h_px: h,
        degradation: s.setting.degradation.to_string(),
        blur_sigma: s.setting.degradation.blur_sigma(),
        jpeg_quality: s.setting.degradation.jpeg_quality(),
        noise_sigma: s.setting.degradation.noise_sigma(),
        downscale: s.setting.degradation.downscale(),
        font_family: s.setting.font.name().into(),
        line_height: s.setting.line_height,
        n_chars_gt: 0,
        n_chars_out: 0,
        n_words_gt: 0,
        n_words_out: 0,
        char_precision: 0.0,
        edit_distance: 0,
        word_precision: 0.0,
        word_recall: 0.0,
        word_f1: 0.0,
        fox_precision_gt_words: 0.0,
        fox_precision_out_words: 0.0,
        exact_match: false,
        runaway: false,
        runaway_reason: String::new(),
        hit_max_tokens: false,
        n_generated_tokens: None,
        n_prompt_tokens: None,
        truncation_char_precision: 0.0,
        truncation_word_precision: 0.0,
        truncation_word_recall: 0.0,
        truncation_word_f1: 0.0,
        truncation_fox_precision_gt_words: 0.0,
        truncation_fox_precision_out_words: 0.0,
        truncation_exact_match: 0.0,
        engine: info.name.clone(),
        engine_version: info.version.clone(),
        weights: info.weights.clone(),
        synthetic_weights: info.synthetic_weights,
        device: info.device.clone(),
        dtype: info.dtype.clone(),
        git_commit: ctx.git_commit.clone(),
        render_ms: p.render_ms,
        ocr_ms: 0.0,
        preprocess_ms: 0.0,
        vision_ms: 0.0,
        prefill_ms: 0.0,
        decode_ms: 0.0,
    };
    let mut prediction = PredictionRow {
        run_id: ctx.run_id.clone(),
        sample_index: s.index,
        sample_id: s.sample_id.clone(),
        mode: s.mode.to_string(),
        ground_truth: String::new(),
        prediction: String::new(),
    };
    let page = match p.page {
        Ok(page) => page,
        Err(e) => {
            row.status = SampleStatus::RenderError;
            row.error = Some(e);
            return JournalEntry { sample: row, prediction };
        }
    };
    let f = &page.fitted;
    let v = f.vision;
    row.n_tiles = v.grid.tiles();
    row.n_text_tokens = f.n_text_tokens as u32;
    row.n_vision_tokens_nominal = v.nominal;
    row.n_vision_tokens_valid = v.valid;
    row.n_vision_tokens_valid_floor = v.valid_floor;
    row.n_vision_slots = v.slots;
    row.ratio_nominal = compression_ratio(f.n_text_tokens, v.nominal).unwrap_or(0.0);
    row.ratio_valid = compression_ratio(f.n_text_tokens, v.valid).unwrap_or(0.0);
    row.ratio_slots = compression_ratio(f.n_text_tokens, v.slots).unwrap_or(0.0);
    row.font_px = f64::from(f.font_px);
    row.page_w_px = f.image.width();
    row.page_h_px = f.image.height();
    let t = &page.truncation;
    row.set_truncation(Some(t));
    // The ground truth's counts, also on rows the engine failed (the baseline read the same truth).
    row.n_chars_gt = t.n_chars_gt as u32;
    row.n_words_gt = t.n_words_gt as u32;
    prediction.ground_truth = f.text.clone();
    let output = match out {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            row.status = SampleStatus::EngineError;
            row.error = Some(e);
            return JournalEntry { sample: row, prediction };
        }
        None => {
            row.status = SampleStatus::EngineError;
            row.error = Some("no output for the page".into());
            return JournalEntry { sample: row, prediction };
        }
    };
    let out_norm = ctx.spec.normalization.apply(&output.text, s.lang);
    let sc = score(&page.gt_norm, &out_norm, s.lang);
    let flag = runaway(&out_norm, output.hit_max_tokens, &ctx.spec.repetition);
    row.set_scores(&sc);
    row.runaway = flag != Runaway::None;
    row.runaway_reason = flag.as_str().into();
    row.hit_max_tokens = output.hit_max_tokens;
    row.n_generated_tokens = output.n_generated_tokens.map(|n| n as u32);
    row.n_prompt_tokens = output.n_prompt_tokens.map(|n| n as u32);
    row.ocr_ms = ocr_ms;
    row.preprocess_ms = ms(output.timings.preprocess);
    row.vision_ms = ms(output.timings.vision);
    row.prefill_ms = ms(output.timings.prefill);
    row.decode_ms = ms(output.timings.decode);
    prediction.prediction = output.text;
    JournalEntry { sample: row, prediction }
}
