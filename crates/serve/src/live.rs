//! Live decoding of an occ-model reader: pages prepared and admitted into one running continuous
//! batcher ([`occ_model::batcher::Batcher`]) while others decode, each token sent to its request at
//! once, a cancelled request's pages freed before the next decode step.
//!
//! One session for every occ-model reader ([`PageReader`]: DeepSeek-OCR, the mini readers,
//! DeepSeek-OCR-2). A page goes through the same steps as the engines' `ocr`
//! ([`occ_model::reader::read_pages`]: the same [`PageReader::prepare_page`]: preprocessing in the
//! engine's resize order, the prompt with its image slots, a mini reader's output vocabulary; the
//! vision tower over the round's pages at once, the splice, the engine's generation settings for the
//! request, the same [`PageReader::within_positions`] cap of a mini reader's budget, the text
//! decoded and post-processed), so a greedy answer equals the in-process engine's on the same page
//! (tests).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use image::RgbImage;
use occ_core::{Mode, Prompt};
use occ_model::batcher::{fit_slots, Batcher, BatcherConfig, Cancel, SeqEvent, Sink, SlotFit};
use occ_model::generate::{PromptInput, Sampling};
use occ_model::grounding::postprocess;
use occ_model::memory_plan::{initial_capacity, Sequences};
use occ_model::mini::OutputVocab;
use occ_model::pipeline::{splice, PreparedPage};
use occ_model::preprocess::PreparedImage;
use occ_model::reader::PageReader;

use crate::scheduler::{
    options, Admission, Detokenizer, Events, LiveError, LivePlan, LiveSession, PageEvent, Params, Reading,
};

/// Columns per slot the batcher's cache starts with (prompt and output; it grows as needed).
const INITIAL_COLUMNS: usize = 1536;

/// The engine's text of generated ids (an undecodable answer gives no text).
pub(crate) fn detokenizer<R: PageReader>(engine: &R) -> Detokenizer {
    let text = text_of(engine);
    Arc::new(move |ids: &[u32]| text(ids).unwrap_or_default())
}

/// Generated ids (the tokenizer's) → the answer's text, as the engine's `ocr` gives it.
fn text_of<R: PageReader>(engine: &R) -> TextOf {
    let tokenizer = engine.tokenizer().clone();
    Arc::new(move |ids: &[u32]| {
        let decoded = tokenizer.decode(ids, false).map_err(|e| format!("decoding the answer: {e}"))?;
        Ok(postprocess(&decoded))
    })
}

/// The prompt length the slots are planned for: a blank page of `mode` at its default canvas with
/// the Free-OCR prompt, prepared as a request's page is; [`INITIAL_COLUMNS`] / 2 when the reader
/// cannot prepare such a page (a mode it does not read).
fn planned_prompt_len<R: PageReader>(engine: &R, mode: Mode) -> usize {
    let (w, h) = mode.default_canvas();
    let blank = RgbImage::from_pixel(w.max(1), h.max(1), image::Rgb([255, 255, 255]));
    match engine.prepare_page(&blank, mode, &Prompt::FreeOcr) {
        Ok(page) => page.tokens.ids.len(),
        Err(e) => {
            tracing::warn!(
                "planning the decoder slots: a {mode} page cannot be prepared ({e}); planning prompts of {} tokens",
                INITIAL_COLUMNS / 2
            );
            INITIAL_COLUMNS / 2
        }
    }
}

/// Generated ids → text, shared by the sinks of a session (a tokenizer is cloned once per session).
type TextOf = Arc<dyn Fn(&[u32]) -> Result<String, String> + Send + Sync>;

/// The engine's live session.
pub(crate) struct EngineSession<'e, R: PageReader> {
    engine: &'e R,
    batcher: Batcher<'e>,
    /// Its slots: asked for, used, and the memory plan behind them.
    fit: SlotFit,
    /// Tokens reported since the last step (the sinks count them).
    tokens: Arc<AtomicUsize>,
    /// The answer's text and a mini reader's output vocabulary, shared by the sinks.
    text: TextOf,
    vocab: Arc<Option<OutputVocab>>,
}

impl<'e, R: PageReader> EngineSession<'e, R> {
    /// A session whose slots are `plan.slots`, lowered to what fits the free device memory for
    /// pages of `plan.mode` generating `plan.max_new_tokens` ([`fit_slots`]: a warning when lowered;
    /// "out of memory" when not even one slot fits).
    pub(crate) fn new(engine: &'e R, plan: &LivePlan) -> Result<EngineSession<'e, R>, LiveError> {
        let requested = plan.slots.max(1);
        let prompt_len = planned_prompt_len(engine, plan.mode);
        let base = BatcherConfig {
            slots: requested,
            prefill_batch: requested.min(8),
            initial_new_tokens: INITIAL_COLUMNS.saturating_sub(prompt_len).max(1),
            free_memory: plan.free_memory,
            ..Default::default()
        };
        let seq = Sequences { prompt_len, max_new_tokens: plan.max_new_tokens.max(1) };
        // fit_slots fails only when not even one slot fits; its message is one line (a backtrace,
        // when RUST_BACKTRACE asks for one, follows on the next lines)
        let fit = fit_slots(engine.decoder(), &base, seq, requested)
            .map_err(|e| LiveError::OutOfMemory(e.to_string().lines().next().unwrap_or_default().to_string()))?;
        let bc = BatcherConfig { slots: fit.used, prefill_batch: fit.used.min(8), ..base };
        // the planned start: the prompt and its budget, at most INITIAL_COLUMNS (it grows as needed)
        let capacity = initial_capacity(prompt_len, seq.max_new_tokens, bc.initial_new_tokens);
        let batcher = Batcher::new(engine.decoder(), &bc, fit.used, capacity)
            .map_err(|e| LiveError::Unavailable(e.to_string()))?;
        let (text, vocab) = (text_of(engine), Arc::new(engine.vocab().cloned()));
        Ok(EngineSession { engine, batcher, fit, tokens: Arc::new(AtomicUsize::new(0)), text, vocab })
    }

    /// A request's pages preprocessed and its prompt tokens (as the engine's `ocr` builds them).
    fn prepare(&self, pages: &[(&RgbImage, Mode)], prompt: &Prompt) -> Result<Vec<PreparedPage>, String> {
        pages
            .iter()
            .map(|&(img, mode)| self.engine.prepare_page(img, mode, prompt).map_err(|e| e.to_string()))
            .collect()
    }

    /// Admits one request's decoder prompts (`(prompt, image slots)` per page).
    fn admit_one(
        &mut self,
        inputs: Vec<(PromptInput, usize)>,
        params: &Params,
        events: &Events,
        cancelled: &Arc<AtomicBool>,
    ) -> Result<(), String> {
        // a mini reader writes no more than its decoder's positions allow (as the engine's `ocr`)
        let longest = inputs.iter().map(|(p, _)| p.ids.len()).max().unwrap_or(0);
        let cfg = self.engine.within_positions(&self.engine.generation_for(&options(params)), longest);
        let cancel = Cancel::from(cancelled.clone());
        for (page, (input, vision)) in inputs.into_iter().enumerate() {
            let sink = self.sink(page, input.ids.len(), vision, events.clone());
            self.batcher.admit(input, cfg.clone(), sink, cancel.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The sink of page `page`: tokens in the tokenizer's ids to `events`, then its reading.
    fn sink(&self, page: usize, prompt_tokens: usize, vision_tokens: usize, events: Events) -> Sink {
        let (engine_vocab, text) = (self.vocab.clone(), self.text.clone());
        let count = self.tokens.clone();
        Box::new(move |event| {
            let real = |ids: &[u32]| match engine_vocab.as_ref() {
                Some(v) => v.to_real(ids).map_err(|e| e.to_string()),
                None => Ok(ids.to_vec()),
            };
            let sent = match event {
                SeqEvent::Token(id) => {
                    count.fetch_add(1, Ordering::Relaxed);
                    match real(&[id])
                        .and_then(|ids| ids.first().copied().ok_or_else(|| format!("token {id} has no id")))
                    {
                        Ok(real) => events.send((page, PageEvent::Token(real))),
                        Err(e) => {
                            let _ = events.send((page, PageEvent::Failed(e)));
                            return false;
                        }
                    }
                }
                SeqEvent::Done(g) => {
                    let reading = real(&g.tokens).and_then(|ids| {
                        Ok(Reading {
                            text: text(&ids)?,
                            token_ids: ids,
                            prompt_tokens,
                            vision_tokens,
                            stopped_at_eos: g.stopped_at_eos,
                        })
                    });
                    match reading {
                        Ok(r) => events.send((page, PageEvent::Done(r))),
                        Err(e) => events.send((page, PageEvent::Failed(e))),
                    }
                }
                SeqEvent::Failed(e) => events.send((page, PageEvent::Failed(e))),
            };
            // a closed channel: the request is gone, its slot is freed
            sent.is_ok()
        })
    }
}

impl<R: PageReader> LiveSession for EngineSession<'_, R> {
    fn accepts(&self, params: &Params) -> bool {
        self.engine.generation_for(&options(params)).sampling == Sampling::Greedy
    }

    fn free_slots(&self) -> usize {
        self.batcher.free_slots()
    }

    fn active(&self) -> usize {
        self.batcher.active()
    }

    fn is_idle(&self) -> bool {
        self.batcher.is_idle()
    }

    fn admit(&mut self, requests: &[Admission<'_>]) -> Vec<Result<(), String>> {
        // every page of the round through the vision tower in one call (views of one size batched)
        let prepared: Vec<_> = requests.iter().map(|r| self.prepare(r.pages, r.prompt)).collect();
        let images: Vec<PreparedImage> =
            prepared.iter().flatten().flat_map(|pages| pages.iter().map(|p| p.image.clone())).collect();
        let e = self.engine;
        let mut rows = match e.encode_images(&images) {
            Ok(rows) => rows.into_iter(),
            Err(err) => {
                let msg = format!("the vision encoder failed: {err}");
                return requests.iter().map(|_| Err(msg.clone())).collect();
            }
        };
        requests
            .iter()
            .zip(prepared)
            .map(|(r, prepared)| {
                let prepared = prepared?;
                let inputs = prepared
                    .into_iter()
                    .map(|p| {
                        let row = rows.next().ok_or("the vision encoder gave fewer rows than pages")?;
                        let embeds = splice(e.decoder(), &p.tokens, &row).map_err(|e| e.to_string())?;
                        Ok((PromptInput { embeds, ids: p.tokens.ids }, p.vision.slots as usize))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                self.admit_one(inputs, r.params, &r.events, &r.cancelled)
            })
            .collect()
    }

    fn step(&mut self) -> Result<Option<usize>, String> {
        self.tokens.store(0, Ordering::Relaxed);
        let ran = self.batcher.step().map_err(|e| e.to_string())?;
        Ok(ran.then(|| self.tokens.load(Ordering::Relaxed)))
    }

    fn fail_all(&mut self, message: &str) {
        self.batcher.fail_all(message);
    }

    fn slots(&self) -> SlotFit {
        self.fit
    }
}
