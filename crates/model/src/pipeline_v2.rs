//! DeepSeek-OCR-2, image → text in one call (docs/MODEL.md §14): the v2 vision tower
//! ([`Ocr2Encoder`]) and v1's decoder, prompt and generation, unchanged.
//!
//! The decoder rows of an image replace its `Mode::vision_tokens(..).slots` `<image>` placeholders
//! (`[BOS] + encode(text before <image>) + slots × <image> + encode(text after)`, the same plain
//! template as v1, docs/MODEL.md §9.3), then [`crate::generate::generate`] continues the sequence.
//!
//! Checkpoints: [`DeepseekOcr2::from_weights_dir`] tells the checkpoint apart by its tensor names
//! before anything else ([`crate::encoder_v2::identify`]): a DeepSeek-OCR (v1) checkpoint is refused
//! naming the mismatch, transformers' converted naming is refused naming the conversion, and the
//! original release is validated name by name and shape by shape against the table of the typed
//! configs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use occ_core::{
    EngineError, EngineInfo, Mode, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer, Timings,
};

use crate::config_v2::Ocr2VisionConfig;
use crate::decoder::{DecoderConfig, DecoderModel};
use crate::encoder_v2::{self, Ocr2Encoder, Ocr2Naming};
use crate::generate::{generate, BatchOutput, GenerationConfig, PromptInput, Sampling};
use crate::grounding::postprocess;
use crate::load::{check_tensors, expected_decoder_tensors, LoadError, WeightsDir};
use crate::pipeline::{device_name, dtype_name, splice};
use crate::preprocess::{PreparedImage, ResizeOrder};
use crate::preprocess_v2::prepare_v2;
use crate::prompt::build_prompt;
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
    /// Generation settings of engine-trait calls (greedy, the DeepSeek blocker, by default).
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
        if !mode.is_v2() {
            candle_core::bail!("DeepSeek-OCR-2 reads modes v2 and v2-single, not the DeepSeek-OCR (v1) mode {mode}")
        }
        prepare_v2(image, mode, self.resize_order)
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

    /// Reads pages (each in its own v2 mode) with one prompt, generated together.
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

    /// Reads pages in v2 modes (v1 modes are refused per page), `max_batch` at a time: preprocessing
    /// and the vision tower page by page, one batched [`generate`]; text decoded with special tokens
    /// kept and post-processed as v1's (docs/MODEL.md §10.4).
    fn ocr(
        &mut self,
        pages: &[OcrPage],
        prompt: &Prompt,
        options: &OcrOptions,
    ) -> std::result::Result<Vec<OcrOutput>, EngineError> {
        let sampling = if options.temperature > 0.0 {
            Sampling::TopP { temperature: options.temperature, top_p: 1.0, seed: options.seed }
        } else {
            Sampling::Greedy
        };
        let cfg = GenerationConfig {
            max_new_tokens: options.max_new_tokens,
            ignore_eos: options.ignore_eos,
            sampling,
            ..self.generation.clone()
        };
        let backend =
            |e: candle_core::Error| EngineError::Backend { engine: ENGINE_NAME.into(), message: e.to_string() };
        let mut outputs = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(self.preferred_batch()) {
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut times = Vec::with_capacity(chunk.len());
            for page in chunk {
                if !page.mode.is_v2() {
                    return Err(EngineError::Input {
                        page: page.id.clone(),
                        message: format!(
                            "{ENGINE_NAME} reads modes v2 and v2-single, not DeepSeek-OCR (v1)'s {}",
                            page.mode
                        ),
                    });
                }
                let t = Instant::now();
                let prepared = self.prepare(&page.image, page.mode).map_err(backend)?;
                let pre = t.elapsed();
                let t = Instant::now();
                inputs.push(self.input_from_prepared(&prepared, prompt).map_err(backend)?);
                times.push((pre, t.elapsed()));
            }
            let out = generate(&self.decoder, &inputs, &cfg).map_err(backend)?;
            let share = |d: Duration| d / chunk.len() as u32;
            for ((page, g), (input, (preprocess, vision))) in chunk.iter().zip(out.rows).zip(inputs.iter().zip(times)) {
                let decoded = self.tokenizer.decode(&g.tokens, false).map_err(|e| EngineError::Backend {
                    engine: ENGINE_NAME.into(),
                    message: format!("decoding page {}: {e}", page.id),
                })?;
                outputs.push(OcrOutput {
                    id: page.id.clone(),
                    text: postprocess(&decoded),
                    n_prompt_tokens: Some(input.ids.len()),
                    n_generated_tokens: Some(g.tokens.len()),
                    hit_max_tokens: !g.stopped_at_eos,
                    token_ids: Some(g.tokens),
                    timings: Timings { preprocess, vision, prefill: share(out.prefill), decode: share(out.decode) },
                });
            }
        }
        Ok(outputs)
    }
}
