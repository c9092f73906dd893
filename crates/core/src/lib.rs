//! Plain types shared by every crate of compress-bench. No candle, no I/O beyond the embedded tokenizer.
//!
//! - [`mode`]: the DeepSeek-OCR resolution modes and the *one* implementation of vision-token
//!   accounting (nominal, valid per paper Eq. 1, and placeholder slots), plus the Gundam tiling plan.
//!   The renderer's ratio targeting, the model's prompt builder and the sweep's Parquet columns all
//!   call into it.
//! - [`tokenizer`]: the real DeepSeek-OCR tokenizer, embedded, counting text tokens without BOS.
//! - [`engine`]: the [`OcrEngine`] trait every reader (DeepSeek-OCR, Tesseract, the truncation
//!   baseline) implements, and its input/output types.
//! - [`ratio`]: the one formula for the compression ratio.
//! - [`budget`]: the text tokens a page holds at a ratio and the one cut of a text after `n` tokens.
//! - [`lang`]: [`Lang`], the language of a text (`en` / `zh`) for every crate.
//! - [`rng`]: SplitMix64, the one seeded generator (sampling, bootstrap, noise, synthetic weights).
//! - `fakes` (feature `fakes`): fake engines for tests that need no model.
//!
//! # Invariants
//! - Nothing here depends on candle; `occ-eval` and `occ-memory` build in seconds on top of it.
//! - Every function is deterministic and free of panics on data.

pub mod budget;
pub mod engine;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod lang;
pub mod mode;
pub mod ratio;
pub mod rng;
pub mod tokenizer;

pub use budget::{cut_at_offsets, cut_tokens, tokens_for_ratio};
pub use engine::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, Timings};
pub use lang::Lang;
pub use mode::{GundamGrid, Mode, ModeError, VisionTokens};
pub use ratio::compression_ratio;
pub use tokenizer::{TextTokenizer, TokenizerError};
