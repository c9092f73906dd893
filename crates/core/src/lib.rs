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
//! - `fakes` (feature `fakes`): fake engines for tests that need no model.
//!
//! # Invariants
//! - Nothing here depends on candle; `occ-eval` and `occ-memory` build in seconds on top of it.
//! - Every function is deterministic and free of panics on data.

pub mod engine;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod mode;
pub mod ratio;
pub mod tokenizer;

pub use engine::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, Timings};
pub use mode::{GundamGrid, Mode, ModeError, VisionTokens};
pub use ratio::compression_ratio;
pub use tokenizer::{TextTokenizer, TokenizerError};
