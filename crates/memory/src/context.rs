//! What [`crate::OpticalMemory::context`] returns: the ordered mixture of text and page images with
//! the token cost of each.
//!
//! Costs: a text segment costs `TextTokenizer::count(text)` tokens (DeepSeek-OCR tokenizer, no BOS,
//! no role tags — the prompt template is the caller's); a page costs
//! `Mode::vision_tokens(w, h).slots` decoder positions (also reported: `.nominal`). A context's
//! [`Totals::tokens`] is text tokens + vision slots: what the decoder pays for.

use std::sync::Arc;

use serde::Serialize;

use crate::cache::Page;
use crate::round::Role;
use crate::schedule::Representation;

/// Token cost of a segment or of a whole context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Cost {
    /// Text tokens (no BOS).
    pub text_tokens: usize,
    /// `<image>` placeholder slots of the pages (newline and separator rows included).
    pub vision_slots: usize,
    /// Nominal vision tokens of the pages (paper Table 1).
    pub vision_nominal: usize,
}

impl Cost {
    /// Decoder positions: text tokens + vision slots.
    pub fn tokens(&self) -> usize {
        self.text_tokens + self.vision_slots
    }

    /// Sum of two costs.
    pub fn plus(self, o: Cost) -> Cost {
        Cost {
            text_tokens: self.text_tokens + o.text_tokens,
            vision_slots: self.vision_slots + o.vision_slots,
            vision_nominal: self.vision_nominal + o.vision_nominal,
        }
    }

    /// The cost of a list of pages.
    pub fn of_pages(pages: &[Page]) -> Cost {
        Cost {
            text_tokens: 0,
            vision_slots: pages.iter().map(|p| p.vision.slots as usize).sum(),
            vision_nominal: pages.iter().map(|p| p.vision.nominal as usize).sum(),
        }
    }
}

/// The content of a segment.
#[derive(Debug, Clone)]
pub enum Content {
    /// The round's text.
    Text(String),
    /// The round's pages, in reading order.
    Pages(Arc<[Page]>),
}

/// One round in the context.
#[derive(Debug, Clone)]
pub struct Segment {
    pub round_id: String,
    pub role: Role,
    /// Age in the schedule's unit (rounds or seconds).
    pub age: u64,
    /// Index of the schedule level.
    pub level: usize,
    pub representation: Representation,
    pub content: Content,
    pub cost: Cost,
}

/// Totals of a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Sum of the segments' costs.
    pub cost: Cost,
    /// Decoder positions: `cost.text_tokens + cost.vision_slots`.
    pub tokens: usize,
    /// What every round (dropped ones included) would cost as text.
    pub all_text_tokens: usize,
    /// Rounds in the memory.
    pub rounds: usize,
    /// Rounds held as text, as images, and dropped.
    pub text_rounds: usize,
    pub image_rounds: usize,
    pub dropped_rounds: usize,
    /// Page images in the context.
    pub pages: usize,
}

impl Totals {
    /// `all_text_tokens / tokens` (how many times cheaper than all text); `None` for an empty context.
    pub fn saving(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.all_text_tokens as f64 / self.tokens as f64)
    }
}

/// The ordered context (oldest round first), ready for a VLM prompt.
#[derive(Debug, Clone)]
pub struct Context {
    /// Name of the schedule used (the chosen candidate under a budget).
    pub schedule: String,
    pub segments: Vec<Segment>,
    /// Ids of dropped rounds, oldest first.
    pub dropped: Vec<String>,
    pub totals: Totals,
}

impl Context {
    /// Decoder positions of the whole context.
    pub fn tokens(&self) -> usize {
        self.totals.tokens
    }
}
