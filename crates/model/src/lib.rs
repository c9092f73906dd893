//! DeepSeek-OCR in candle: the DeepEncoder (SAM-base → 16× compressor → CLIP-large → projector) and
//! the DeepSeek3B-MoE decoder, on CPU and CUDA, numerically faithful to the PyTorch reference.
//!
//! Module map (one component per file, named after its checkpoint prefix):
//! - [`synth`]: the synthetic-weights recipe shared with `tests/reference/synth_weights.py`.
//!
//! # Invariants
//! - No file is read except the weights and config handed in; no environment variable is read,
//!   nothing is printed, and no device is chosen here (the CLI does that).
//! - One forward path for every dtype; sensitive ops upcast locally.
//! - No `unwrap`/`expect`/`panic!` on data: errors are `candle_core::Error` naming the tensor or stage.

pub mod config;
pub mod preprocess;
pub mod synth;
