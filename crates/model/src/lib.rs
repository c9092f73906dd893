//! DeepSeek-OCR in candle: the DeepEncoder (SAM-base → 16× compressor → CLIP-large → projector) and
//! the DeepSeek3B-MoE decoder, on CPU and CUDA, numerically faithful to the PyTorch reference.
//!
//! The model itself (stages, shapes, checkpoint names, token layout, generation rules) is described
//! in docs/MODEL.md.
//!
//! Module map (one component per file, named after its checkpoint prefix):
//! - [`synth`]: the synthetic-weights recipe shared with `tests/reference/synth_weights.py`.
//! - [`config`]: `config.json` ([`config::HfConfig`]) and the typed vision configs with presets
//!   (`VisionConfig::deepseek_ocr()`, `VisionConfig::tiny()`).
//! - [`load`]: the HF snapshot folder, the checkpoint's tensor table (the one source of names and
//!   shapes, tied by tests to what the constructors request), the safetensors header and index
//!   readers with the check against the table, and the one memory-mapping function.
//! - [`preprocess`]: image loading (EXIF), Pillow-exact bicubic resize, `ImageOps.pad`, Gundam tiling,
//!   normalisation — bit-identical to the reference.
//! - [`sam`] (`model.sam_model.*`), [`clip`] (`model.vision_model.*`), [`projector`]
//!   (`model.projector.*`), [`layout`] (newline / separator rows), [`encoder`] (the DeepEncoder).
//! - [`decoder`] (`model.layers.*`, `model.embed_tokens`, `model.norm`, `lm_head`): the
//!   DeepSeek3B-MoE decoder, its configs and key/value caches.
//! - [`prompt`]: prompt ids with the `<image>` slots; [`generate`]: batched generation;
//!   [`ngram`]: the repetition blockers; [`batcher`]: continuous batching with CUDA-graph decode;
//!   [`grounding`]: post-processing and `<|ref|>`/`<|det|>` parsing; [`memory_plan`]: the device
//!   memory of a decoder slot and the largest slot count that fits a free-memory figure;
//!   [`bandwidth`]: the weights one decode step reads (achieved bandwidth from a step time).
//! - [`pipeline`]: image → text in one call ([`pipeline::DeepseekOcr`], an `occ_core::OcrEngine`);
//!   [`reader`]: what it shares with DeepSeek-OCR-2 ([`pipeline_v2::DeepseekOcr2`]): the
//!   [`reader::PageReader`] trait and the one path from pages to text through the batcher.
//! - [`mini`]: configs and output vocabularies of the small readers this toolkit trains (loaded as
//!   engines by [`pipeline::DeepseekOcr::from_mini_dir`]).
//! - [`nn`]: shared layers (attention, LayerNorm2d, position-table resampling, window partition).
//! - [`ops`]: fused ops with a CPU specification and CUDA kernels (decode step, vision attention).
//!
//! # Vision API
//! ```no_run
//! # use occ_model::{config::VisionConfig, encoder::DeepEncoder, preprocess};
//! # fn main() -> candle_core::Result<()> {
//! # let device = candle_core::Device::Cpu;
//! # let vb = occ_model::synth::synth_var_builder(0, candle_core::DType::F32, &device);
//! let encoder = DeepEncoder::new(&VisionConfig::deepseek_ocr(), vb)?; // vb at the checkpoint root
//! let page = preprocess::load_image(std::path::Path::new("page.png"))?;
//! let prepared = preprocess::prepare(&page, occ_core::Mode::Gundam)?; // global view, tiles, grid
//! let rows = encoder.encode(&[prepared], &device)?; // per image: (slots, 1280), batched over views
//! # Ok(()) }
//! ```
//! `rows[i].dim(0)` equals `Mode::vision_tokens(w, h).slots`: the rows replace the `<image>`
//! placeholder embeddings in order.
//!
//! # Invariants
//! - No file is read except the weights and config handed in; no environment variable is read,
//!   nothing is printed, and no device is chosen here (the CLI does that).
//! - One forward path for every dtype; sensitive ops upcast locally.
//! - No `unwrap`/`expect`/`panic!` on data: errors are `candle_core::Error` naming the tensor or stage.

pub mod bandwidth;
pub mod batcher;
pub mod clip;
pub mod config;
pub mod config_v2;
pub mod decoder;
pub mod encoder;
pub mod encoder_v2;
pub mod generate;
pub mod grounding;
pub mod layout;
pub mod load;
pub mod memory_plan;
pub mod mini;
pub mod ngram;
pub mod nn;
pub mod ops;
pub mod pipeline;
pub mod pipeline_v2;
pub mod preprocess;
pub mod preprocess_v2;
pub mod projector;
pub mod prompt;
pub mod qwen2_encoder;
pub mod reader;
pub mod sam;
pub mod synth;
