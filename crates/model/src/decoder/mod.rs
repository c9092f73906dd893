//! The DeepSeek3B-MoE-A570M decoder of DeepSeek-OCR (docs/MODEL.md §7): DeepSeek-V2 layout with plain
//! multi-head attention.
//!
//! Real dimensions: vocabulary 129,280, hidden 1280, 12 layers, 10 heads × 128 (no GQA), RoPE θ
//! 10,000 over the full head, RMSNorm ε 1e-6; layer 0 is a dense SwiGLU MLP (6848), layers 1–11 are
//! MoE with 64 routed experts (896 wide, top-6 by float32 softmax, no renormalisation) and shared
//! experts 1792 wide; separate `lm_head` (129,280 × 1280).
//!
//! - [`config`]: [`DecoderConfig`] from `config.json`, presets, rejection of what is not ported;
//! - [`attention`], [`mlp`], [`moe`], [`norm`], [`layer`]: the blocks (checkpoint names as fields);
//! - [`cache`]: the key/value cache of a left-padded batch (the batching design);
//! - [`slots`]: the fixed-slot cache of continuous batching (one sequence per slot, own length);
//! - [`model`]: [`DecoderModel`] with `forward_embeds(embeds, seqlen_offset, cache)`.

pub mod attention;
pub mod cache;
pub mod config;
pub mod layer;
pub mod mlp;
pub mod model;
pub mod moe;
pub mod norm;
pub mod slots;

pub use cache::KvCache;
pub use config::{DecoderConfig, TopkMethod};
pub use model::DecoderModel;
pub use slots::SlotCache;
