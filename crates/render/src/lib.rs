//! occ-render: deterministic text → page rendering with exact compression-ratio targeting.
//!
//! Every experiment of compress-bench starts here: text becomes an RGB page whose size fixes the
//! vision-token budget of a DeepSeek-OCR mode, together with **the exact ground truth that is on the
//! page**.
//!
//! - [`render_page`]: text + [`RenderSpec`] (page size, DPI, font chain, font size, line height,
//!   margins, alignment, colours, newline and tab handling) → [`RenderedPage`] (image, ground truth,
//!   [`LineBox`]es, overflow, [`MissingGlyphs`]).
//! - [`fit`]: put `round(r · vision tokens)` text tokens on a page at the largest font that fits
//!   ([`fit::fit_to_ratio`]), and split long text into such pages ([`fit::paginate`]);
//!   [`RatioCheck`] says whether a fitted page is within [`RATIO_TOLERANCE`] of its target and why not.
//! - [`degrade`]: blur, JPEG, noise and downscaling of a page.
//! - [`normalize()`]: the one function deciding which characters go onto a page (tabs, newline policy,
//!   control characters).
//! - [`FontSet`]: DejaVu Sans and Droid Sans Fallback (CJK), embedded, with per-glyph fallback;
//!   [`FontFamily`]: the typefaces a page can be set in (DejaVu Sans, Serif and Sans Mono, Droid Sans
//!   Fallback), each a chain that covers what the default one covers.
//! - Right-to-left text: lines are broken in logical order and drawn in the visual order of the
//!   Unicode Bidirectional Algorithm (unicode-bidi); Arabic, N'Ko, Syriac, Hebrew and Thaana words are
//!   shaped with rustybuzz ([`ShapedScript`]).
//!
//! # Invariants
//! - occ-render knows nothing about models. It counts text tokens (through `occ_core::TextTokenizer`)
//!   and vision tokens (through `occ_core::Mode::vision_tokens`) only in [`fit`], and never recomputes
//!   either.
//! - The same text, [`RenderSpec`] and font bytes give byte-identical pixels and metadata: layout is
//!   sequential, no output depends on hash-map order, and blending is integer arithmetic.
//! - `page.text + page.overflow == normalize(input)`; every line box lies inside the margins, lines do
//!   not overlap, and no ink is drawn outside the margins (glyph ink is clipped to the text area).
//! - Nothing panics on data: bad specs and inputs are [`RenderError`]s.
//!
//! # Documented behaviour on odd input
//! - Empty text: [`render_page`] gives a blank page with no lines; [`fit::fit_to_ratio`] returns
//!   [`RenderError::EmptyText`]; [`fit::paginate`] returns no pages.
//! - Characters no font has (emoji, …) are drawn as the primary font's `.notdef` box, kept in the
//!   ground truth and listed in [`RenderedPage::missing_glyphs`].
//! - Right-to-left scripts (Hebrew, Arabic …) are drawn in **visual order**: each line is reordered by
//!   the bidi algorithm and its right-to-left runs read right to left, with mirrored brackets
//!   ([`LineBox::visual`] is the line as drawn); the ground truth stays in logical (reading) order.
//!   Arabic letters take their joined forms. A joining script whose face lacks the OpenType joining
//!   features is refused ([`RenderError::UnsupportedScript`]), never drawn unjoined. Alignment is
//!   physical (`Align::Left` is the left margin for every paragraph).
//! - Bidi formatting characters (U+200E, U+200F, U+061C, U+202A–U+202E, U+2066–U+2069) and joiners
//!   (U+200C, U+200D) take no room, draw nothing and stay in the ground truth.
//! - Control characters other than `\n`, `\r` and `\t` become U+FFFD (see [`normalize()`]).
//!
//! # Example
//! ```
//! use occ_core::Mode;
//! use occ_render::{render_page, Lang, RenderSpec};
//!
//! let spec = RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(14.0);
//! let page = render_page("Call me Ishmael. 滚滚长江东逝水", &spec)?;
//! assert_eq!(page.image.dimensions(), (512, 512));
//! assert_eq!(page.text, "Call me Ishmael. 滚滚长江东逝水");
//! assert!(page.overflow.is_empty() && page.missing_glyphs.is_empty());
//! # Ok::<(), occ_render::RenderError>(())
//! ```

mod bidi;
pub mod degrade;
mod error;
pub mod fit;
mod font;
mod layout;
mod normalize;
mod page;
mod raster;
mod ratio_check;
mod shape;
mod spec;

pub use error::{RenderError, Result};
pub use fit::{fit_to_ratio, paginate, FitOptions, FittedPage, Ratios};
pub use font::{BuiltinFont, Face, FaceInfo, FontFamily, FontSet, UnknownFontFamily};
pub use layout::is_cjk;
pub use normalize::{normalize, REPLACEMENT};
pub use page::{lines_needed, render_page, LineBox, MissingGlyph, MissingGlyphs, RenderedPage};
pub use ratio_check::{OffTarget, RatioCheck, RATIO_TOLERANCE};
pub use shape::{ShapedScript, MAX_RUN_CHARS};
pub use spec::{Align, Lang, Margins, NewlinePolicy, RenderSpec, MAX_FONT_PX, MAX_PAGE_PIXELS};
