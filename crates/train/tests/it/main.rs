//! Integration tests of occ-train on a tiny config, CPU only (seconds each).
//!
//! - `config`: bad configs are refused by field name.
//! - `training`: the loss falls; resume equals an uninterrupted run; checkpoints round-trip bit
//!   for bit; divergence, truncated and foreign checkpoints, interrupted writes.
//! - `gradients`: every trainable module's gradient against central finite differences.
//! - `data`: pages are a pure function of their coordinates; ground truth spelt exactly.

mod common;
mod config;
mod data;
mod gradients;
mod props;
mod training;
