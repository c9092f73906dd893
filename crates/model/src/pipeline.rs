//! The whole DeepSeek-OCR path, image → text: preprocessing, DeepEncoder, prompt with the vision
//! rows spliced in place of the `<image>` slots, batched generation, decoding and post-processing.
//!
//! [`DeepseekOcr::ocr`] is the one call; [`DeepseekOcr`] also implements [`occ_core::OcrEngine`]
//! (batched, `preferred_batch` = [`DeepseekOcr::max_batch`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use occ_core::{
    EngineError, EngineInfo, Mode, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer, Timings,
    VisionTokens,
};

use crate::config::VisionConfig;
use crate::decoder::{DecoderConfig, DecoderModel};
use crate::encoder::DeepEncoder;
use crate::generate::GenerationConfig;
use crate::grounding::GroundedBlock;
use crate::load::{expected_tensors, LoadError, WeightsDir};
use crate::mini::{self, MiniConfig, OutputVocab};
use crate::preprocess::{prepare_with_options, PrepareOptions, PreparedImage, ResizeOrder};
use crate::prompt::{build_prompt, PromptTokens};
use crate::reader::{generation_for_options, read_pages, PageReader, ReadableModes};
use crate::synth::Recipe;

/// Sizes of synthetic-weight engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntheticSize {
    /// The real architecture (3.3 B parameters).
    Full,
    /// The full encoder and the reduced decoder of the CI goldens ([`DecoderConfig::reduced`]).
    Reduced,
    /// Toy encoder and decoder ([`VisionConfig::tiny`], [`DecoderConfig::tiny`]).
    Tiny,
}

/// Where the weights came from, for manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsIdentity {
    /// A path, or `synthetic:recipe-v{1,2}:seed-N:<size>`.
    pub id: String,
    pub synthetic: bool,
}

/// What one page gave.
#[derive(Debug, Clone, PartialEq)]
pub struct PageOutput {
    /// Decoded with special tokens kept, trailing EOS removed, trimmed (docs/MODEL.md §10.4).
    pub text: String,
    /// `<|ref|>/<|det|>` blocks of `text` (empty without the grounding prompt).
    pub blocks: Vec<GroundedBlock>,
    /// Generated ids, the stopping EOS included when there was one.
    pub token_ids: Vec<u32>,
    pub n_prompt_tokens: usize,
    pub stopped_at_eos: bool,
    pub vision_tokens: VisionTokens,
    pub timings: Timings,
}

/// One page ready for the encoder and the decoder ([`DeepseekOcr::prepare_page`]).
#[derive(Debug, Clone)]
pub struct PreparedPage {
    /// The views the vision encoder reads.
    pub image: PreparedImage,
    /// The decoder prompt with the page's image slots (a mini reader's output ids).
    pub tokens: PromptTokens,
    pub vision: VisionTokens,
}

/// Encoder + decoder + tokenizer.
#[derive(Debug)]
pub struct DeepseekOcr {
    encoder: DeepEncoder,
    decoder: DecoderModel,
    tokenizer: TextTokenizer,
    weights: WeightsIdentity,
    /// A trained mini reader's output vocabulary (its decoder works in these ids); `None` for
    /// DeepSeek-OCR, whose decoder works in the tokenizer's ids.
    vocab: Option<OutputVocab>,
    /// The engine name in reports: `deepseek-ocr` or `mini`.
    name: &'static str,
    /// The only mode a mini reader reads (its canvas); `None`: every mode.
    native_mode: Option<Mode>,
    /// Pages per batch of [`OcrEngine::ocr`].
    pub max_batch: usize,
    /// Settings the engine trait starts from (its options override budget, sampling and EOS).
    pub generation: GenerationConfig,
    /// Pass order of every resize of preprocessing ([`ResizeOrder`]; default
    /// [`ResizeOrder::Pillow12`], the order the released weights were trained with). Set
    /// [`ResizeOrder::Pillow13`] to match a reference run under Pillow ≥ 13 bit for bit.
    pub resize_order: ResizeOrder,
}

impl DeepseekOcr {
    /// Builds the model from a [`VarBuilder`] at the checkpoint root.
    pub fn new(
        vision: &VisionConfig,
        decoder: &DecoderConfig,
        vb: VarBuilder<'_>,
        tokenizer: TextTokenizer,
        weights: WeightsIdentity,
    ) -> Result<DeepseekOcr> {
        if vision.projector.n_embed != decoder.hidden_size {
            candle_core::bail!(
                "projector width {} differs from the decoder hidden size {}",
                vision.projector.n_embed,
                decoder.hidden_size
            )
        }
        Ok(DeepseekOcr {
            encoder: DeepEncoder::new(vision, vb.clone())?,
            decoder: DecoderModel::new(decoder, vb)?,
            tokenizer,
            weights,
            vocab: None,
            name: "deepseek-ocr",
            native_mode: None,
            max_batch: 8,
            generation: GenerationConfig::default(),
            resize_order: ResizeOrder::default(),
        })
    }

    /// A reader trained by this toolkit (`compress-bench train`) from its folder: `mini.json`,
    /// `vocab.json`, `model.safetensors` ([`crate::mini`]). Weights stored in any float dtype are
    /// converted to `dtype`; a missing or misshapen tensor is an error naming it.
    pub fn from_mini_dir(dir: &Path, dtype: DType, device: &Device) -> std::result::Result<DeepseekOcr, LoadError> {
        let corrupt = |path: PathBuf, problem: String| LoadError::Corrupt { path, problem };
        let cfg = MiniConfig::load(&dir.join(mini::CONFIG_FILE))
            .map_err(|e| corrupt(dir.join(mini::CONFIG_FILE), e.to_string()))?;
        let tokenizer = TextTokenizer::deepseek_ocr().map_err(|e| corrupt(dir.into(), e.to_string()))?;
        let vocab = OutputVocab::load(&dir.join(mini::VOCAB_FILE), &tokenizer)
            .map_err(|e| corrupt(dir.join(mini::VOCAB_FILE), e.to_string()))?;
        if vocab.len() != cfg.vocab_size {
            return Err(corrupt(
                dir.join(mini::VOCAB_FILE),
                format!("{} ids, but mini.json says vocab_size = {}", vocab.len(), cfg.vocab_size),
            ));
        }
        let path = dir.join(mini::WEIGHTS_FILE);
        let tensors =
            candle_core::safetensors::load(&path, device).map_err(|e| corrupt(path.clone(), e.to_string()))?;
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let id = WeightsIdentity { id: dir.display().to_string(), synthetic: false };
        DeepseekOcr::mini(&cfg, vb, tokenizer, vocab, id).map_err(|e| corrupt(path.clone(), e.to_string()))
    }

    /// A mini reader from its parts (training evaluates through this).
    pub fn mini(
        cfg: &MiniConfig,
        vb: VarBuilder<'_>,
        tokenizer: TextTokenizer,
        vocab: OutputVocab,
        weights: WeightsIdentity,
    ) -> Result<DeepseekOcr> {
        if vocab.len() != cfg.vocab_size {
            candle_core::bail!(
                "the vocabulary has {} ids, the config says vocab_size = {}",
                vocab.len(),
                cfg.vocab_size
            )
        }
        let mut engine = DeepseekOcr::new(&cfg.vision(), &cfg.decoder_config(), vb, tokenizer, weights)?;
        engine.native_mode = Some(cfg.mode().map_err(|e| candle_core::Error::Msg(e.to_string()))?);
        engine.vocab = Some(vocab);
        engine.name = "mini";
        // a small reader repeats itself when lost: block 20-gram repeats as HF `infer` does
        engine.generation = GenerationConfig::hf_infer();
        Ok(engine)
    }

    /// The mode a mini reader reads (`None` for DeepSeek-OCR, which reads every mode).
    pub fn native_mode(&self) -> Option<Mode> {
        self.native_mode
    }

    /// The output vocabulary of a mini reader (`None` for DeepSeek-OCR).
    pub fn vocab(&self) -> Option<&OutputVocab> {
        self.vocab.as_ref()
    }

    /// An engine on synthetic weights (the default recipe, [`crate::synth::RECIPE_VERSION`]) and the
    /// embedded tokenizer. Its outputs are meaningless text; it exists for tests, benchmarks and parity.
    pub fn synthetic(size: SyntheticSize, seed: u64, dtype: DType, device: &Device) -> Result<DeepseekOcr> {
        DeepseekOcr::synthetic_with_recipe(size, Recipe::V1, seed, dtype, device)
    }

    /// [`DeepseekOcr::synthetic`] with the synthetic-weights `recipe` chosen (identity
    /// `synthetic:recipe-v{N}:seed-{seed}:{size}`).
    pub fn synthetic_with_recipe(
        size: SyntheticSize,
        recipe: Recipe,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<DeepseekOcr> {
        let (vision, decoder, name) = match size {
            SyntheticSize::Full => (VisionConfig::deepseek_ocr(), DecoderConfig::deepseek_ocr(), "full"),
            SyntheticSize::Reduced => (VisionConfig::deepseek_ocr(), DecoderConfig::reduced(), "reduced"),
            SyntheticSize::Tiny => (VisionConfig::tiny(), DecoderConfig::tiny(), "tiny"),
        };
        let vb = crate::synth::synth_var_builder_with(recipe, seed, dtype, device);
        let tokenizer = TextTokenizer::deepseek_ocr().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let id = format!("synthetic:recipe-v{}:seed-{seed}:{name}", recipe.version());
        DeepseekOcr::new(&vision, &decoder, vb, tokenizer, WeightsIdentity { id, synthetic: true })
    }

    /// The real model from an HF snapshot folder; every tensor name and shape is validated first.
    pub fn from_weights_dir(
        dir: &WeightsDir,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<DeepseekOcr, LoadError> {
        // a DeepSeek-OCR-2 checkpoint is named as such before its config is read
        if let Ok(naming) = crate::encoder_v2::identify(dir.tensors()?.keys().map(String::as_str)) {
            return Err(LoadError::Corrupt {
                path: dir.root.clone(),
                problem: format!(
                    "this is a DeepSeek-OCR-2 checkpoint ({naming:?} naming: a Qwen2 encoder with learnable queries, no \
                     CLIP-L `model.vision_model.*`); use the deepseek-ocr-2 engine"
                ),
            });
        }
        let (vision, decoder) = dir.configs()?;
        dir.validate(&expected_tensors(&vision, &decoder))?;
        let tokenizer = TextTokenizer::from_file(&dir.tokenizer)
            .map_err(|e| LoadError::Corrupt { path: dir.tokenizer.clone(), problem: e.to_string() })?;
        let vb = dir.var_builder(dtype, device)?;
        let id = WeightsIdentity { id: dir.root.display().to_string(), synthetic: false };
        Ok(DeepseekOcr::new(&vision, &decoder, vb, tokenizer, id)?)
    }

    pub fn encoder(&self) -> &DeepEncoder {
        &self.encoder
    }

    pub fn decoder(&self) -> &DecoderModel {
        &self.decoder
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn weights(&self) -> &WeightsIdentity {
        &self.weights
    }

    /// Prompt embeddings: token embeddings with the vision rows written over the image slots, in
    /// order (the reference's `masked_scatter`; nothing is added).
    ///
    /// # Shapes
    /// `rows`: `(slots, hidden)` → `(len(ids), hidden)`.
    pub fn splice(&self, tokens: &PromptTokens, rows: &Tensor) -> Result<Tensor> {
        splice(&self.decoder, tokens, rows)
    }

    /// One page made ready for the vision encoder and the decoder, as [`DeepseekOcr::ocr`] reads it:
    /// the views in the engine's resize order, the prompt's ids with the page's image slots (spelled
    /// in a mini reader's output vocabulary), the vision-token counts. A mini reader refuses a mode
    /// other than its own. The server's live path prepares its pages through this too.
    pub fn prepare_page(&self, img: &RgbImage, mode: Mode, prompt: &Prompt) -> Result<PreparedPage> {
        if let Some(native) = self.native_mode.filter(|&m| m != mode) {
            candle_core::bail!("this mini reader reads {native} pages (its canvas), not {mode}: use --modes {native}")
        }
        let image = prepare_with_options(img, mode, PrepareOptions { order: self.resize_order, ..Default::default() })?;
        let vision = mode
            .vision_tokens(img.width(), img.height())
            .map_err(|e| candle_core::Error::Msg(format!("vision tokens: {e}")))?;
        let mut tokens = build_prompt(&self.tokenizer, prompt, &[vision.slots as usize])
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if let Some(vocab) = &self.vocab {
            tokens =
                vocab.spell_prompt(&self.tokenizer, &tokens).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        }
        Ok(PreparedPage { image, tokens, vision })
    }

    /// `cfg` for pages whose longest prompt is `longest` ids: a mini reader was trained for prompt +
    /// output within its decoder's positions, so it writes no more than that (a reader that misses
    /// EOS would otherwise run to the caller's budget); DeepSeek-OCR's budget is left as it is.
    pub fn within_positions(&self, cfg: &GenerationConfig, longest: usize) -> GenerationConfig {
        match self.native_mode {
            Some(_) => {
                let room = self.decoder.config().max_position_embeddings.saturating_sub(longest).max(1);
                GenerationConfig { max_new_tokens: cfg.max_new_tokens.min(room), ..cfg.clone() }
            }
            None => cfg.clone(),
        }
    }

    /// Reads every page (each in its own mode) with one prompt; outputs are in input order
    /// ([`crate::reader::read_pages`]: the vision encoder over all pages at once, then the continuous
    /// batcher).
    pub fn ocr(&self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, cfg: &GenerationConfig) -> Result<Vec<PageOutput>> {
        read_pages(self, pages, prompt, cfg)
    }

    /// The generation settings of an engine-trait call ([`generation_for_options`]: the engine's
    /// settings with the call's budget, EOS rule and sampling).
    pub fn generation_for(&self, options: &OcrOptions) -> GenerationConfig {
        generation_for_options(&self.generation, options)
    }
}

impl PageReader for DeepseekOcr {
    fn decoder(&self) -> &DecoderModel {
        &self.decoder
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn vocab(&self) -> Option<&OutputVocab> {
        self.vocab.as_ref()
    }

    fn modes(&self) -> ReadableModes {
        self.native_mode.map_or(ReadableModes::V1, ReadableModes::Only)
    }

    fn prepare_page(&self, image: &RgbImage, mode: Mode, prompt: &Prompt) -> Result<PreparedPage> {
        DeepseekOcr::prepare_page(self, image, mode, prompt)
    }

    fn encode_images(&self, images: &[PreparedImage]) -> Result<Vec<Tensor>> {
        self.encoder.encode(images, self.decoder.device())
    }

    fn generation_for(&self, options: &OcrOptions) -> GenerationConfig {
        DeepseekOcr::generation_for(self, options)
    }

    fn within_positions(&self, cfg: &GenerationConfig, longest: usize) -> GenerationConfig {
        DeepseekOcr::within_positions(self, cfg, longest)
    }
}

/// Prompt embeddings: token embeddings with the vision rows written over the image slots, in order
/// (the reference's `masked_scatter`; nothing is added). Differentiable when the decoder's
/// embeddings or the rows are tracked (training).
///
/// # Shapes
/// `rows`: `(slots, hidden)` → `(len(ids), hidden)`.
pub fn splice(decoder: &DecoderModel, tokens: &PromptTokens, rows: &Tensor) -> Result<Tensor> {
    let (n_rows, _) = rows.dims2()?;
    if n_rows != tokens.slots() {
        candle_core::bail!("the prompt has {} image slots but the encoder gave {n_rows} rows", tokens.slots())
    }
    // Slot ids are looked up as id 0: their embeddings are overwritten anyway.
    let ids: Vec<u32> = tokens.ids.iter().zip(&tokens.image_mask).map(|(&id, &m)| if m { 0 } else { id }).collect();
    let n = ids.len();
    let text = decoder.embed(&Tensor::from_vec(ids, (1, n), decoder.device())?)?.squeeze(0)?;
    let rows = rows.to_dtype(text.dtype())?.to_device(text.device())?;
    let mut parts = Vec::new();
    let (mut i, mut used) = (0usize, 0usize);
    while i < n {
        let is_img = tokens.image_mask[i];
        let mut j = i;
        while j < n && tokens.image_mask[j] == is_img {
            j += 1;
        }
        if is_img {
            parts.push(rows.narrow(0, used, j - i)?);
            used += j - i;
        } else {
            parts.push(text.narrow(0, i, j - i)?);
        }
        i = j;
    }
    Tensor::cat(&parts, 0)
}

/// `cpu` or `cuda:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// `f32`, `bf16`, `f16`, …
pub fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_lowercase()
}

impl OcrEngine for DeepseekOcr {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: self.name.into(),
            // the resize order changes what the encoder sees, so it is part of the reader's identity
            // (a resumed run refuses another order)
            version: format!("{} (resize order {})", env!("CARGO_PKG_VERSION"), self.resize_order),
            weights: Some(self.weights.id.clone()),
            synthetic_weights: self.weights.synthetic,
            device: device_name(self.decoder.device()),
            dtype: dtype_name(self.decoder.dtype()),
        }
    }

    fn preferred_batch(&self) -> usize {
        self.max_batch.max(1)
    }

    fn ocr(
        &mut self,
        pages: &[OcrPage],
        prompt: &Prompt,
        options: &OcrOptions,
    ) -> std::result::Result<Vec<OcrOutput>, EngineError> {
        let cfg = self.generation_for(options);
        let mut outputs = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(self.preferred_batch()) {
            let batch: Vec<(&RgbImage, Mode)> = chunk.iter().map(|p| (&p.image, p.mode)).collect();
            let res = DeepseekOcr::ocr(self, &batch, prompt, &cfg).map_err(|e| EngineError::Backend {
                engine: self.name.into(),
                message: format!("pages {}: {e}", chunk.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")),
            })?;
            for (page, r) in chunk.iter().zip(res) {
                let n_gen = r.token_ids.len();
                outputs.push(OcrOutput {
                    id: page.id.clone(),
                    text: r.text,
                    token_ids: Some(r.token_ids),
                    n_prompt_tokens: Some(r.n_prompt_tokens),
                    n_generated_tokens: Some(n_gen),
                    hit_max_tokens: !r.stopped_at_eos,
                    timings: r.timings,
                });
            }
        }
        Ok(outputs)
    }
}
