//! DeepSeek-OCR-2, image → text in one call (docs/MODEL.md §14): the v2 vision tower
//! ([`Ocr2Encoder`]) and v1's decoder, prompt and generation, unchanged.
//!
//! The decoder rows of an image replace its `Mode::vision_tokens(..).slots` `<image>` placeholders
//! (`[BOS] + encode(text before <image>) + slots × <image> + encode(text after)`, the same plain
//! template as v1, docs/MODEL.md §9.3), then the decoder continues the sequence. Pages are read as
//! v1's are ([`crate::reader::read_pages`], [`DeepseekOcr2`] is a [`PageReader`]): the vision tower
//! over all pages of a call at once (views of one size batched, [`Ocr2Encoder::encode_batch`]), then
//! v1's continuous batcher ([`crate::batcher`]: CUDA-graph decode on the GPU); the server's live path
//! admits v2 pages into the same batcher. [`DeepseekOcr2::generate_pages`] is the plain path (each
//! page through the tower alone, one static-batch [`crate::generate::generate`]), kept as the
//! reference the batched path is tested against.
//!
//! Checkpoints: [`DeepseekOcr2::from_weights_dir`] tells the checkpoint apart by its tensor names
//! before anything else ([`crate::encoder_v2::identify`]): a DeepSeek-OCR (v1) checkpoint is refused
//! naming the mismatch, transformers' converted naming is refused naming the conversion, and the
//! original release is validated name by name and shape by shape against the table of the typed
//! configs.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use occ_core::{EngineError, EngineInfo, Mode, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer};

use crate::config_v2::Ocr2VisionConfig;
use crate::decoder::{DecoderConfig, DecoderModel};
use crate::encoder_v2::{self, Ocr2Encoder, Ocr2Naming};
use crate::generate::{generate, BatchOutput, GenerationConfig, PromptInput};
use crate::load::{check_tensors, expected_decoder_tensors, LoadError, WeightsDir};
use crate::pipeline::{device_name, dtype_name, splice, PageOutput, PreparedPage};
use crate::preprocess::{PreparedImage, ResizeOrder};
use crate::preprocess_v2::prepare_v2;
use crate::prompt::build_prompt;
use crate::reader::{generation_for_options, read_pages, PageReader, ReadableModes};
use crate::synth::{synth_var_builder_with, Recipe};

/// Sizes of synthetic DeepSeek-OCR-2 models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ocr2SyntheticSize {
    /// The released shapes: [`Ocr2VisionConfig::deepseek_ocr2`] + [`DecoderConfig::deepseek_ocr`].
    Full,
    /// The CPU goldens' shapes: [`Ocr2VisionConfig::reduced`] + [`DecoderConfig::tiny`].
    Reduced,
}

impl Ocr2SyntheticSize {
    /// The vision and decoder configs of this size.
    pub fn configs(self) -> (Ocr2VisionConfig, DecoderConfig) {
        match self {
            Ocr2SyntheticSize::Full => (Ocr2VisionConfig::deepseek_ocr2(), DecoderConfig::deepseek_ocr()),
            Ocr2SyntheticSize::Reduced => (Ocr2VisionConfig::reduced(), DecoderConfig::tiny()),
        }
    }
}

/// The whole checkpoint table of DeepSeek-OCR-2 in the original naming: the vision tower's
/// ([`encoder_v2::expected_tensors`]) and v1's decoder's.
pub fn expected_tensors(vision: &Ocr2VisionConfig, dec: &DecoderConfig) -> BTreeMap<String, Vec<usize>> {
    let mut t = encoder_v2::expected_tensors(vision);
    t.extend(expected_decoder_tensors(dec));
    t
}

/// DeepSeek-OCR-2: vision tower + decoder + tokenizer.
#[derive(Debug, Clone)]
pub struct DeepseekOcr2 {
    encoder: Ocr2Encoder,
    decoder: DecoderModel,
    tokenizer: TextTokenizer,
    /// Pass order of every resize (the Pillow version to match).
    pub resize_order: ResizeOrder,
    /// What the weights are (`synthetic:recipe-vN:seed-S`, or the snapshot folder).
    pub weights: String,
    pub synthetic: bool,
    /// Generation settings of engine-trait calls (greedy, the DeepSeek blocker, by default); a
    /// call's options set the budget, EOS rule, temperature and seed, and a sampled call keeps this
    /// `top_p` ([`generation_for_options`]).
    pub generation: GenerationConfig,
    /// Pages generated together by [`OcrEngine::ocr`].
    pub max_batch: usize,
}

/// The engine name of DeepSeek-OCR-2.
pub const ENGINE_NAME: &str = "deepseek-ocr-2";

impl DeepseekOcr2 {
    /// Builds the model from `vb` at the checkpoint root (original naming).
    pub fn new(
        vision: &Ocr2VisionConfig,
        dec: &DecoderConfig,
        vb: VarBuilder<'_>,
        tokenizer: TextTokenizer,
    ) -> Result<Self> {
        if vision.n_embed != dec.hidden_size {
            candle_core::bail!("projector width {} differs from the decoder width {}", vision.n_embed, dec.hidden_size)
        }
        Ok(DeepseekOcr2 {
            encoder: Ocr2Encoder::new(vision, vb.clone())?,
            decoder: DecoderModel::new(dec, vb)?,
            tokenizer,
            resize_order: ResizeOrder::default(),
            weights: "unnamed".into(),
            synthetic: false,
            generation: GenerationConfig::default(),
            max_batch: 8,
        })
    }

    /// A model on synthetic weights (recipe, seed) with the embedded tokenizer.
    pub fn synthetic(
        size: Ocr2SyntheticSize,
        recipe: Recipe,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (vision, dec) = size.configs();
        let tokenizer = TextTokenizer::deepseek_ocr().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut m = DeepseekOcr2::new(&vision, &dec, synth_var_builder_with(recipe, seed, dtype, device), tokenizer)?;
        m.weights = format!("synthetic:recipe-v{}:seed-{seed}:{size:?}", recipe.version());
        m.synthetic = true;
        Ok(m)
    }

    /// The released model from an HF snapshot folder of deepseek-ai/DeepSeek-OCR-2 (module docs).
    pub fn from_weights_dir(dir: &WeightsDir, dtype: DType, device: &Device) -> std::result::Result<Self, LoadError> {
        let found = dir.tensors()?;
        let corrupt = |problem: String| LoadError::Corrupt { path: dir.root.clone(), problem };
        match encoder_v2::identify(found.keys().map(String::as_str)).map_err(corrupt)? {
            Ocr2Naming::Original => {}
            Ocr2Naming::Converted => {
                return Err(corrupt(
                    "this is transformers' converted DeepSeek-OCR-2 (deepseek-community/DeepSeek-OCR-2: \
                     `model.vision_tower.*`, fused `mlp.experts.gate_up_proj`); the deepseek-ocr-2 engine reads \
                     the original release (deepseek-ai/DeepSeek-OCR-2: `model.qwen2_model.*`, one tensor per expert)"
                        .into(),
                ))
            }
        }
        let (vision, dec) = Ocr2SyntheticSize::Full.configs();
        check_tensors(&expected_tensors(&vision, &dec), &found)?;
        let tokenizer = TextTokenizer::from_file(&dir.tokenizer)
            .map_err(|e| LoadError::Corrupt { path: dir.tokenizer.clone(), problem: e.to_string() })?;
        let vb = dir.var_builder(dtype, device)?;
        let mut m = DeepseekOcr2::new(&vision, &dec, vb, tokenizer)?;
        m.weights = dir.root.display().to_string();
        Ok(m)
    }

    pub fn encoder(&self) -> &Ocr2Encoder {
        &self.encoder
    }

    pub fn decoder(&self) -> &DecoderModel {
        &self.decoder
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The views of a page; v1 modes are refused.
    pub fn prepare(&self, image: &RgbImage, mode: Mode) -> Result<PreparedImage> {
        if let Some(why) = ReadableModes::V2.refuses(mode) {
            candle_core::bail!("{why}")
        }
        prepare_v2(image, mode, self.resize_order)
    }

    /// One page made ready for the tower and the decoder: its views, the prompt ids with its image
    /// slots, its vision-token counts; v1 modes are refused.
    pub fn prepare_page(&self, image: &RgbImage, mode: Mode, prompt: &Prompt) -> Result<PreparedPage> {
        let prepared = self.prepare(image, mode)?;
        let vision = mode
            .vision_tokens(image.width(), image.height())
            .map_err(|e| candle_core::Error::Msg(format!("vision tokens: {e}")))?;
        let tokens = build_prompt(&self.tokenizer, prompt, &[vision.slots as usize])
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(PreparedPage { image: prepared, tokens, vision })
    }

    /// The decoder input of one page: the prompt ids with the page's rows spliced in.
    pub fn prompt_input(&self, image: &RgbImage, mode: Mode, prompt: &Prompt) -> Result<PromptInput> {
        self.input_from_prepared(&self.prepare(image, mode)?, prompt)
    }

    /// [`Self::prompt_input`] of an already prepared page (vision tower, prompt, splice).
    pub fn input_from_prepared(&self, prepared: &PreparedImage, prompt: &Prompt) -> Result<PromptInput> {
        let (w, h) = prepared.original_size;
        let slots = prepared.mode.vision_tokens(w, h).map_err(|e| candle_core::Error::Msg(e.to_string()))?.slots;
        let rows: Tensor = self.encoder.encode(prepared)?;
        let tokens = build_prompt(&self.tokenizer, prompt, &[slots as usize])
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let embeds = splice(&self.decoder, &tokens, &rows)?;
        Ok(PromptInput { embeds, ids: tokens.ids })
    }

    /// Reads pages (each in its own v2 mode) with one prompt: each page through the tower alone,
    /// then one static-batch [`generate`] (the plain path; [`DeepseekOcr2::ocr`] is the fast one).
    pub fn generate_pages(
        &self,
        pages: &[(&RgbImage, Mode)],
        prompt: &Prompt,
        cfg: &GenerationConfig,
    ) -> Result<BatchOutput> {
        let inputs =
            pages.iter().map(|(img, mode)| self.prompt_input(img, *mode, prompt)).collect::<Result<Vec<_>>>()?;
        generate(&self.decoder, &inputs, cfg)
    }

    /// Reads every page (each in its own v2 mode) with one prompt, as v1's `DeepseekOcr::ocr` does
    /// ([`read_pages`]): the tower over all pages at once, then the continuous batcher. Greedy tokens
    /// equal [`DeepseekOcr2::generate_pages`]' (tests).
    pub fn ocr(&self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, cfg: &GenerationConfig) -> Result<Vec<PageOutput>> {
        read_pages(self, pages, prompt, cfg)
    }

    /// The generation settings of an engine-trait call ([`generation_for_options`]).
    pub fn generation_for(&self, options: &OcrOptions) -> GenerationConfig {
        generation_for_options(&self.generation, options)
    }
}

impl PageReader for DeepseekOcr2 {
    fn decoder(&self) -> &DecoderModel {
        &self.decoder
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn modes(&self) -> ReadableModes {
        ReadableModes::V2
    }

    fn prepare_page(&self, image: &RgbImage, mode: Mode, prompt: &Prompt) -> Result<PreparedPage> {
        DeepseekOcr2::prepare_page(self, image, mode, prompt)
    }

    fn encode_images(&self, images: &[PreparedImage]) -> Result<Vec<Tensor>> {
        self.encoder.encode_batch(images)
    }

    fn generation_for(&self, options: &OcrOptions) -> GenerationConfig {
        DeepseekOcr2::generation_for(self, options)
    }
}

impl OcrEngine for DeepseekOcr2 {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: ENGINE_NAME.into(),
            version: format!("{} (resize order {})", env!("CARGO_PKG_VERSION"), self.resize_order),
            weights: Some(self.weights.clone()),
            synthetic_weights: self.synthetic,
            device: device_name(self.decoder.device()),
            dtype: dtype_name(self.decoder.dtype()),
        }
    }

    fn preferred_batch(&self) -> usize {
        self.max_batch.max(1)
    }

    /// Reads pages in v2 modes (a page in a v1 mode is refused before anything is read),
    /// `max_batch` at a time through [`DeepseekOcr2::ocr`]; text decoded with special tokens kept
    /// and post-processed as v1's (docs/MODEL.md §10.4).
    fn ocr(
        &mut self,
        pages: &[OcrPage],
        prompt: &Prompt,
        options: &OcrOptions,
    ) -> std::result::Result<Vec<OcrOutput>, EngineError> {
        if let Some((page, why)) = pages.iter().find_map(|p| ReadableModes::V2.refuses(p.mode).map(|why| (p, why))) {
            return Err(EngineError::Input { page: page.id.clone(), message: why });
        }
        let cfg = self.generation_for(options);
        let mut outputs = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(self.preferred_batch()) {
            let batch: Vec<(&RgbImage, Mode)> = chunk.iter().map(|p| (&p.image, p.mode)).collect();
            let res = DeepseekOcr2::ocr(self, &batch, prompt, &cfg).map_err(|e| EngineError::Backend {
                engine: ENGINE_NAME.into(),
                message: format!("pages {}: {e}", chunk.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")),
            })?;
            for (page, r) in chunk.iter().zip(res) {
                outputs.push(OcrOutput {
                    id: page.id.clone(),
                    text: r.text,
                    n_prompt_tokens: Some(r.n_prompt_tokens),
                    n_generated_tokens: Some(r.token_ids.len()),
                    hit_max_tokens: !r.stopped_at_eos,
                    token_ids: Some(r.token_ids),
                    timings: r.timings,
                });
            }
        }
        Ok(outputs)
    }
}
