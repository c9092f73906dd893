//! The engine trait every reader implements: DeepSeek-OCR (occ-model), Tesseract (occ-eval),
//! and the fakes used in tests.
//!
//! Engines take *batches* of pages: the sweep hands over as many pages as the engine wants
//! ([`OcrEngine::preferred_batch`]) while rendering continues on other threads.

use std::fmt;
use std::time::Duration;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::mode::Mode;

/// One page to read.
#[derive(Debug, Clone)]
pub struct OcrPage {
    /// Caller's identifier, echoed in the output order (outputs are in input order).
    pub id: String,
    /// The page pixels, exactly as rendered (the engine does its own preprocessing).
    pub image: RgbImage,
    /// The resolution mode the page is read in.
    pub mode: Mode,
}

/// The task prompt (docs/MODEL.md §9.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Prompt {
    /// `<image>\nFree OCR.` — plain text, the paper's compression study prompt.
    FreeOcr,
    /// `<image>\n<|grounding|>Convert the document to markdown.`
    Markdown,
    /// `<image>\n<|grounding|>OCR this image.` — text with `<|ref|>/<|det|>` boxes.
    Grounding,
    /// Any other text; must contain `<image>` once.
    Custom(String),
}

impl Prompt {
    /// The prompt text in the "plain" template (docs/MODEL.md §9.3): no role tags.
    pub fn text(&self) -> &str {
        match self {
            Prompt::FreeOcr => "<image>\nFree OCR. ",
            Prompt::Markdown => "<image>\n<|grounding|>Convert the document to markdown. ",
            Prompt::Grounding => "<image>\n<|grounding|>OCR this image. ",
            Prompt::Custom(s) => s,
        }
    }
}

/// Generation options shared by all engines (engines ignore what does not apply to them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrOptions {
    /// Upper bound of generated tokens per page.
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy.
    pub temperature: f64,
    /// Seed of the sampler (used only when `temperature > 0`).
    pub seed: u64,
    /// Suppress EOS so exactly `max_new_tokens` are generated (benchmarks).
    pub ignore_eos: bool,
}

impl Default for OcrOptions {
    fn default() -> Self {
        // 8192 is the reference's max_new_tokens; a page of the sweep never needs more than a few
        // thousand, so the sweep lowers it explicitly.
        OcrOptions { max_new_tokens: 8192, temperature: 0.0, seed: 0, ignore_eos: false }
    }
}

/// Wall-clock time per stage of one page (batched stages are divided evenly by the engine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub preprocess: Duration,
    pub vision: Duration,
    pub prefill: Duration,
    pub decode: Duration,
}

/// What an engine read from one page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OcrOutput {
    /// Caller's page id.
    pub id: String,
    /// The decoded text (special tokens removed, post-processing of docs/MODEL.md §10.4 applied).
    pub text: String,
    /// Generated token ids, for engines that have them.
    pub token_ids: Option<Vec<u32>>,
    /// Prompt length in decoder tokens (vision slots included), when applicable.
    pub n_prompt_tokens: Option<usize>,
    /// Number of generated tokens, when applicable.
    pub n_generated_tokens: Option<usize>,
    /// Generation stopped at `max_new_tokens` rather than at EOS.
    pub hit_max_tokens: bool,
    pub timings: Timings,
}

/// Identity of an engine for manifests and the `--json` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Short name: `deepseek-ocr`, `tesseract`, `fake`.
    pub name: String,
    /// Engine or program version.
    pub version: String,
    /// Weights identity (path and hash, or "synthetic:<recipe>"), if any.
    pub weights: Option<String>,
    /// Whether the weights are synthetic (scores are then meaningless).
    pub synthetic_weights: bool,
    /// Device the engine runs on (`cpu`, `cuda:0`).
    pub device: String,
    /// Compute dtype (`f32`, `bf16`), or `n/a`.
    pub dtype: String,
}

/// Errors of an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot run here; `how` says how to get it.
    #[error("engine {engine} is unavailable: {reason}; {how}")]
    Unavailable { engine: String, reason: String, how: String },
    /// A page the engine cannot take.
    #[error("page {page}: {message}")]
    Input { page: String, message: String },
    /// Any other failure inside the engine.
    #[error("{engine}: {message}")]
    Backend { engine: String, message: String },
}

/// A reader of page images.
pub trait OcrEngine: Send {
    /// Identity for manifests.
    fn info(&self) -> EngineInfo;

    /// How many pages the engine wants per call (1 for serial engines).
    fn preferred_batch(&self) -> usize {
        1
    }

    /// Reads every page; outputs are in input order, one per page.
    fn ocr(&mut self, pages: &[OcrPage], prompt: &Prompt, options: &OcrOptions) -> Result<Vec<OcrOutput>, EngineError>;

    /// The exact text of the page `page_id` that a later [`OcrEngine::ocr`] call reads, handed over
    /// by whoever rendered it (the sweep's runner, the decay sweep). Readers ignore it; the fake
    /// engines (`fakes::FakeOcr`) answer with it.
    fn ground_truth(&mut self, _page_id: &str, _text: &str) {}
}

impl fmt::Display for EngineInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} on {} ({})", self.name, self.version, self.device, self.dtype)?;
        if self.synthetic_weights {
            f.write_str(", synthetic weights")?;
        }
        Ok(())
    }
}
