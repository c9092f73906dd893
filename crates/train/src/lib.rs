//! Trains small DeepEncoder-style optical compressors from scratch (`compress-bench train`).
//!
//! The reader is built from occ-model's own modules ([`occ_model::mini`]): a SAM-style patch
//! encoder, the 16× conv compressor, a CLIP-style global encoder, the linear projector and a
//! DeepSeek-V2 MoE decoder, every size from the config. Pages are rendered on the fly by occ-render
//! at a drawn compression ratio, and the loss is the teacher-forced next-token cross-entropy on the
//! page's exact ground truth. Token accounting is DeepSeek-OCR's (the real tokenizer counts text,
//! the reader's mode counts vision tokens).
//!
//! Module map:
//! - [`config`]: the TOML training config (`experiments/train/*.toml`), validated by name.
//! - [`data`]: passages, deterministic page generation (prose and probes), rendering threads.
//! - [`model`]: variables, initialisation, the teacher-forced loss through the inference modules.
//! - [`optim`]: AdamW with owned state, warm-up + cosine schedule, gradient clipping.
//! - [`checkpoint`]: atomic checkpoints, exact resume, warm restart from weights only.
//! - [`eval`]: validation precision through the inference engine.
//! - [`trainer`]: the loop, journals and observer.
//! - [`curves`]: Parquet tables and SVG charts of a run.
//!
//! # Invariants
//! - Training never has a second model: gradients flow through the same module code as inference,
//!   whose fused ops switch to differentiable compositions on tracked tensors
//!   (`occ_model::ops::tracks_grad`), tested equal to the fused path.
//! - No environment variable is read and nothing is printed; the CLI observes progress through
//!   [`trainer::Observer`].

pub mod checkpoint;
pub mod config;
pub mod curves;
pub mod data;
pub mod error;
pub mod eval;
pub mod model;
pub mod optim;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{TrainError, TrainResult};
pub use trainer::{train, Observer, TrainOptions};
