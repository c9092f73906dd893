//! occ-memory: optical memory for long-context agents (the paper's memory decay, docs/MODEL.md §11.2).
//!
//! Recent rounds of a conversation stay text; older rounds become page images rendered by
//! `occ-render` for ever smaller DeepSeek-OCR modes, so they cost fewer tokens and fade like memory:
//! text → Gundam → Large → Base → Small → Tiny → dropped.
//!
//! - [`OpticalMemory::push`] stores a [`Round`] (unique id, [`Role`], text);
//! - a [`Schedule`] maps a round's age (rounds, or wall time through an injectable [`Clock`]) to a
//!   [`Representation`]: text, pages for a mode, a downsampled copy of existing pages, or dropped;
//! - [`OpticalMemory::context`] returns the ordered [`Context`] of text segments and page images, each
//!   with its [`Cost`] (text tokens by `occ_core::TextTokenizer::count`, vision slots and nominal tokens
//!   by `occ_core::Mode::vision_tokens`);
//! - [`OpticalMemory::budget`] picks the most faithful schedule of a candidate family whose context
//!   fits a token budget;
//! - [`OpticalMemory::recall`] reads a round back through any `occ_core::OcrEngine`;
//! - pages are rendered once per (text, representation, render spec) in a [`RenderCache`].
//!
//! The decay sweep that measures schedules (`compress-bench decay`) is `occ_eval::decay`, its report
//! `occ_report::decay`; this crate stays the small library above (no Parquet, no plotting).
//!
//! # Invariants
//! - Every token count comes from `occ_core` (`TextTokenizer::count`, `Mode::vision_tokens`); nothing
//!   here recomputes one.
//! - Deterministic: the same rounds, schedule and config give the same context, pixels and costs.
//!   No real time is read unless the memory is given a [`SystemClock`] (the default of
//!   [`OpticalMemory::new`]; ages in rounds never read the clock).
//! - No panics on data: bad schedules, ids and budgets are [`ScheduleError`]s / [`MemoryError`]s.
//!
//! # An agent loop
//! ```
//! use occ_core::fakes::FakeOcr;
//! use occ_memory::{Content, MemoryConfig, OpticalMemory, Role, Round, ScheduleSpec};
//!
//! // The paper's ladder: text for the newest round, then Gundam, Large, Base, Small, Tiny, dropped.
//! let schedule: ScheduleSpec = "paper".parse()?;
//! let mut memory = OpticalMemory::new(MemoryConfig::with_schedule(schedule))?;
//! let turns = ["Find me a flight to Lisbon on May 3.", "TAP 1234 leaves at 09:40 from gate B12.", "Book it."];
//! for (i, text) in turns.iter().enumerate() {
//!     let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
//!     memory.push(Round::new(format!("r{i}"), role, *text))?;
//!
//!     // Build the VLM prompt from the context: text as text, old rounds as images.
//!     let context = memory.context()?;
//!     for segment in &context.segments {
//!         match &segment.content {
//!             Content::Text(text) => { /* prompt.push_text(segment.role, text) */ }
//!             Content::Pages(pages) => {
//!                 for page in pages.iter() { /* prompt.push_image(&page.image, page.mode) */ }
//!             }
//!         }
//!     }
//!     assert_eq!(context.tokens(), context.segments.iter().map(|s| s.cost.tokens()).sum::<usize>());
//! }
//! // The newest round is text; the one before it a Gundam page (903 slots for the 1280×1920 canvas).
//! let context = memory.context()?;
//! assert_eq!(context.segments[1].cost.vision_slots, 903);
//!
//! // Keep the context under 1,000 tokens with as much fidelity as possible.
//! let choice = memory.budget(1_000)?;
//! assert!(memory.context()?.tokens() <= 1_000, "{}", choice.schedule);
//!
//! // Read an imaged round back through an engine (here a fake that answers a fixed text).
//! let mut engine = FakeOcr::fixed("TAP 1234 leaves at 09:40 from gate B12.");
//! let recall = memory.recall("r1", &mut engine)?;
//! assert!(recall.text.contains("B12"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod clock;
mod context;
mod error;
mod memory;
mod round;
pub mod schedule;

pub use cache::{fit_inside, CacheStats, Page, Pages, RenderCache};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{Content, Context, Cost, Segment, Totals};
pub use error::{MemoryError, ScheduleError};
pub use memory::{BudgetChoice, MemoryConfig, OpticalMemory, Recall};
pub use round::{Role, Round};
pub use schedule::{AgeUnit, DecayPolicy, Level, Representation, Schedule, ScheduleSpec};
