//! What DeepSeek-OCR ([`crate::pipeline::DeepseekOcr`], and the mini readers it loads) and
//! DeepSeek-OCR-2 ([`crate::pipeline_v2::DeepseekOcr2`]) share once a page's vision rows are in the
//! decoder prompt: the same DeepSeek3B-MoE decoder, the same continuous batcher
//! ([`crate::batcher`]), the same text. [`PageReader`] is the part that differs (preprocessing, the
//! vision tower, the modes a reader reads); [`read_pages`] is the one path from pages to text that
//! both engines' `ocr` calls take, and the server's live path (crate `occ-serve`) admits pages
//! prepared and encoded through the same trait into the same batcher.
//!
//! The path of a batch of pages:
//! 1. [`PageReader::prepare_page`]: views and decoder prompt ids (image slots in place), page by page;
//! 2. [`PageReader::encode_images`]: every page's vision rows in one call, views of one size batched;
//! 3. [`crate::pipeline::splice`]: the rows written over the image slots of each prompt;
//! 4. [`crate::batcher::generate_queue`]: every page in its own decoder slot (greedy; CUDA-graph decode
//!    on the GPU; sampled settings fall back to [`crate::generate::generate`]);
//! 5. decoded with special tokens kept and post-processed (docs/MODEL.md §10.4).

use std::time::{Duration, Instant};

use candle_core::{Result, Tensor};
use image::RgbImage;
use occ_core::{Mode, OcrOptions, Prompt, TextTokenizer, Timings};

use crate::batcher::{generate_queue, BatcherConfig};
use crate::decoder::DecoderModel;
use crate::generate::{GenerationConfig, PromptInput, Sampling};
use crate::grounding::{parse_grounding, postprocess};
use crate::mini::OutputVocab;
use crate::pipeline::{splice, PageOutput, PreparedPage};
use crate::preprocess::PreparedImage;

/// The modes a reader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadableModes {
    /// Every mode (test readers).
    Any,
    /// DeepSeek-OCR (v1)'s modes: tiny, small, base, large, gundam and custom modes.
    V1,
    /// DeepSeek-OCR-2's modes: `v2` and `v2-single` (docs/MODEL.md §14.6).
    V2,
    /// One mode only (a mini reader's canvas).
    Only(Mode),
}

impl ReadableModes {
    /// Why a page in `mode` cannot be read (`None`: it can), naming the mode and what is read instead.
    pub fn refuses(self, mode: Mode) -> Option<String> {
        match self {
            ReadableModes::Any => None,
            ReadableModes::V1 if mode.is_v2() => Some(format!(
                "deepseek-ocr reads DeepSeek-OCR (v1)'s modes (tiny, small, base, large, gundam, custom), not {mode}, \
                 a DeepSeek-OCR-2 mode (read by the deepseek-ocr-2 engine)"
            )),
            ReadableModes::V2 if !mode.is_v2() => {
                Some(format!("deepseek-ocr-2 reads modes v2 and v2-single, not DeepSeek-OCR (v1)'s {mode}"))
            }
            ReadableModes::Only(native) if native != mode => {
                Some(format!("this model reads {native} pages only, not {mode}"))
            }
            _ => None,
        }
    }

    /// The one mode a reader of [`ReadableModes::Only`] reads.
    pub fn native(self) -> Option<Mode> {
        match self {
            ReadableModes::Only(m) => Some(m),
            _ => None,
        }
    }

    /// The mode a reader takes when none is asked for: its native mode, DeepSeek-OCR-2's `v2` when
    /// `fallback` is a v1 mode it does not read, else `fallback`.
    pub fn default_mode(self, fallback: Mode) -> Mode {
        match self {
            ReadableModes::Only(m) => m,
            ReadableModes::V2 if !fallback.is_v2() => Mode::V2,
            _ => fallback,
        }
    }
}

/// A reader whose decoder is the DeepSeek3B-MoE decoder fed with vision rows: what [`read_pages`] and
/// the server's live path need of it.
pub trait PageReader {
    fn decoder(&self) -> &DecoderModel;
    fn tokenizer(&self) -> &TextTokenizer;
    /// A mini reader's output vocabulary (its decoder works in these ids); `None`: the tokenizer's ids.
    fn vocab(&self) -> Option<&OutputVocab> {
        None
    }
    fn modes(&self) -> ReadableModes;
    /// One page made ready for the vision tower and the decoder: the views (in the reader's resize
    /// order), the prompt ids with the page's image slots, the vision-token counts. A mode the reader
    /// does not read is refused, naming it.
    fn prepare_page(&self, image: &RgbImage, mode: Mode, prompt: &Prompt) -> Result<PreparedPage>;
    /// The decoder rows of every prepared image, in order: `(slots, hidden)` each, views of one size
    /// from all images run through the vision tower together.
    fn encode_images(&self, images: &[PreparedImage]) -> Result<Vec<Tensor>>;
    /// The settings of an engine-trait call with `options`, starting from the reader's own.
    fn generation_for(&self, options: &OcrOptions) -> GenerationConfig;
    /// `cfg` for pages whose longest prompt is `longest` ids (a reader may cap its budget there).
    fn within_positions(&self, cfg: &GenerationConfig, _longest: usize) -> GenerationConfig {
        cfg.clone()
    }
}

/// An engine's generation settings for one engine-trait call: `base` (the engine's settings: its
/// blockers, and `top_p` when it samples) with the call's budget, EOS rule, temperature and seed.
/// `temperature` 0 is greedy; a sampled call keeps `base`'s `top_p` (1.0 when `base` is greedy).
pub fn generation_for_options(base: &GenerationConfig, options: &OcrOptions) -> GenerationConfig {
    let sampling = if options.temperature > 0.0 {
        let top_p = match base.sampling {
            Sampling::TopP { top_p, .. } => top_p,
            Sampling::Greedy => 1.0,
        };
        Sampling::TopP { temperature: options.temperature, top_p, seed: options.seed }
    } else {
        Sampling::Greedy
    };
    GenerationConfig {
        max_new_tokens: options.max_new_tokens,
        ignore_eos: options.ignore_eos,
        sampling,
        ..base.clone()
    }
}

/// The decoder prompts of prepared pages: their vision rows (one [`PageReader::encode_images`] call)
/// spliced over the image slots, in order.
pub fn prompt_inputs<R: PageReader + ?Sized>(reader: &R, pages: &[PreparedPage]) -> Result<Vec<PromptInput>> {
    let images: Vec<PreparedImage> = pages.iter().map(|p| p.image.clone()).collect();
    let rows = reader.encode_images(&images)?;
    if rows.len() != pages.len() {
        candle_core::bail!("the vision tower gave rows for {} of {} pages", rows.len(), pages.len())
    }
    pages
        .iter()
        .zip(&rows)
        .map(|(p, r)| Ok(PromptInput { embeds: splice(reader.decoder(), &p.tokens, r)?, ids: p.tokens.ids.clone() }))
        .collect()
}

/// Reads every page (each in its own mode) with one prompt through the continuous batcher; outputs
/// in input order (module docs). Greedy tokens equal [`crate::generate::generate`]'s on each page
/// alone (tests).
pub fn read_pages<R: PageReader + ?Sized>(
    reader: &R,
    pages: &[(&RgbImage, Mode)],
    prompt: &Prompt,
    cfg: &GenerationConfig,
) -> Result<Vec<PageOutput>> {
    let n = pages.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut prepared = Vec::with_capacity(n);
    let mut pre_times = Vec::with_capacity(n);
    for (img, mode) in pages {
        let t = Instant::now();
        prepared.push(reader.prepare_page(img, *mode, prompt)?);
        pre_times.push(t.elapsed());
    }
    let t = Instant::now();
    let inputs = prompt_inputs(reader, &prepared)?;
    let vision = t.elapsed();
    // continuous batching: every page in its own slot; the same tokens as `generate` (tests), with
    // the decode step replayed as a CUDA graph on the GPU
    let bc = BatcherConfig { slots: n, prefill_batch: n.min(8), ..Default::default() };
    let longest = inputs.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let cfg = reader.within_positions(cfg, longest);
    let out = generate_queue(reader.decoder(), &inputs, &cfg, &bc)?;
    let share = |d: Duration| d / n as u32;
    out.rows
        .into_iter()
        .zip(prepared)
        .zip(pre_times)
        .enumerate()
        .map(|(i, ((mut g, page), preprocess))| {
            if let Some(vocab) = reader.vocab() {
                g.tokens = vocab.to_real(&g.tokens).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            }
            let decoded = reader
                .tokenizer()
                .decode(&g.tokens, false)
                .map_err(|e| candle_core::Error::Msg(format!("decoding page {i}: {e}")))?;
            let text = postprocess(&decoded);
            Ok(PageOutput {
                blocks: parse_grounding(&text),
                text,
                token_ids: g.tokens,
                n_prompt_tokens: page.tokens.ids.len(),
                stopped_at_eos: g.stopped_at_eos,
                vision_tokens: page.vision,
                timings: Timings {
                    preprocess,
                    vision: share(vision),
                    prefill: share(out.prefill),
                    decode: share(out.decode),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_refuses_the_others_modes_by_name() {
        let v2 = ReadableModes::V2.refuses(Mode::Base).unwrap();
        assert!(v2.contains("v2 and v2-single") && v2.contains("base"), "{v2}");
        assert_eq!(ReadableModes::V2.refuses(Mode::V2Single), None);
        let v1 = ReadableModes::V1.refuses(Mode::V2).unwrap();
        assert!(v1.contains("not v2") && v1.contains("deepseek-ocr-2"), "{v1}");
        assert_eq!(ReadableModes::V1.refuses(Mode::Gundam), None);
        assert!(ReadableModes::Only(Mode::Tiny).refuses(Mode::Small).unwrap().contains("tiny pages only"));
        assert_eq!(ReadableModes::Any.refuses(Mode::V2), None);
        assert_eq!(ReadableModes::V2.default_mode(Mode::Base), Mode::V2);
        assert_eq!(ReadableModes::V2.default_mode(Mode::V2Single), Mode::V2Single);
        assert_eq!(ReadableModes::Only(Mode::Tiny).default_mode(Mode::Base), Mode::Tiny);
        assert_eq!(ReadableModes::V1.default_mode(Mode::Small), Mode::Small);
    }

    #[test]
    fn a_sampled_call_keeps_the_engines_top_p() {
        let sampled = GenerationConfig {
            sampling: Sampling::TopP { temperature: 1.0, top_p: 0.8, seed: 3 },
            ..GenerationConfig::default()
        };
        let options = OcrOptions { max_new_tokens: 7, temperature: 0.5, seed: 9, ignore_eos: true };
        let cfg = generation_for_options(&sampled, &options);
        assert_eq!(cfg.sampling, Sampling::TopP { temperature: 0.5, top_p: 0.8, seed: 9 });
        assert_eq!((cfg.max_new_tokens, cfg.ignore_eos), (7, true));
        assert_eq!(cfg.ngram, sampled.ngram, "the engine's blockers stay");
        let from_greedy = generation_for_options(&GenerationConfig::default(), &options);
        assert_eq!(from_greedy.sampling, Sampling::TopP { temperature: 0.5, top_p: 1.0, seed: 9 });
        let greedy = generation_for_options(&sampled, &OcrOptions { temperature: 0.0, ..options });
        assert_eq!(greedy.sampling, Sampling::Greedy);
    }
}
