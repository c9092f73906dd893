//! Integration tests of occ-model (one binary, ripgrep style).
//!
//! - `preprocess`: preprocessing bit-identical to the reference (Pillow) for every mode.
//! - `diff`: the differentiable forms of the fused ops (training) equal the fused ops.
//! - `encoder`: DeepEncoder properties on the tiny config (slot counts, batching, layout, loading).
//! - `encoder_parity`: full-size DeepEncoder vs the reference goldens, every stage, CPU f32.
//! - `decoder`: decoder and generation, tiny-config properties and reduced-decoder parity (CPU f32).
//! - `pipeline`: image → text with the full encoder + reduced decoder vs the reference; engine trait.
//! - `pipeline_gpu`: full-size parity on the GPU machine (ignored; docs/PARITY.md).
//! - `encoder_gpu` (feature `cuda`, ignored): every mode on CUDA in f32 and bf16 vs the reference.

mod decoder;
mod diff;
mod encoder;
#[cfg(feature = "cuda")]
mod encoder_gpu;
mod encoder_parity;
mod golden;
#[cfg(feature = "cuda")]
mod ops_gpu;
mod pipeline;
mod pipeline_gpu;
mod preprocess;
mod props;
