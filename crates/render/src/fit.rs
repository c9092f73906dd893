//! Ratio targeting: put `round(r · vision tokens)` text tokens on a page at the largest font that fits.
//!
//! 1. The text is normalised ([`crate::normalize`]); everything below works on the normalised text, so
//!    the ground truth of a page is exactly the text that was counted.
//! 2. The budget is `round(r · nominal vision tokens)` of the page in the mode
//!    ([`occ_core::tokens_for_ratio`] of [`occ_core::Mode::vision_tokens`] on the spec's page size); it
//!    may be 0, which [`crate::RatioCheck`] reports as an empty budget.
//! 3. The text is cut where the `budget`-th token ends ([`occ_core::cut_tokens`], re-exported here as
//!    [`cut_tokens`]: only a prefix of the text is tokenized, so a 10 MB text costs no more than a
//!    page-sized one). A character is never split: a budget that ends among a character's byte-level
//!    BPE pieces keeps the whole character, so a budget of one token or more keeps at least one
//!    character. The kept text is re-counted: that count is the page's text tokens.
//! 4. The font size is searched by bisection over multiples of [`FitOptions::step_px`] (0.25 px by
//!    default) between [`FitOptions::min_px`] (3 px) and the size at which one line fills the page
//!    height (capped by [`FitOptions::max_px`]). Bisection assumes that text that fits at a size also
//!    fits at every smaller size, which greedy wrapping satisfies in practice; the returned size always
//!    fits (the page is checked).
//! 5. The achieved ratio is `compression_ratio(text tokens of the ground truth, vision tokens)` on each
//!    basis: nominal, valid (paper Eq. 1) and slots.

use occ_core::budget::floor_char_boundary;
use occ_core::{compression_ratio, tokens_for_ratio, Mode, TextTokenizer, VisionTokens};
use serde::Serialize;

use crate::error::{RenderError, Result};
use crate::layout::Shaper;
use crate::normalize::normalize;
use crate::page::{draw, layout_normalized, RenderedPage};
use crate::spec::RenderSpec;

/// Font-size search range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FitOptions {
    /// Smallest font size tried (em px).
    pub min_px: f32,
    /// Largest font size tried (em px); also capped by one line filling the page.
    pub max_px: f32,
    /// Granularity of the search (em px).
    pub step_px: f32,
}

impl Default for FitOptions {
    fn default() -> FitOptions {
        FitOptions { min_px: 3.0, max_px: 400.0, step_px: 0.25 }
    }
}

/// Compression ratio of a page on each vision-token basis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub nominal: f64,
    pub valid: f64,
    pub slots: f64,
}

impl Ratios {
    /// `text_tokens / vision` on each basis (0 where the basis is 0).
    pub fn new(text_tokens: usize, vision: &VisionTokens) -> Ratios {
        let r = |v: u32| compression_ratio(text_tokens, v).unwrap_or(0.0);
        Ratios { nominal: r(vision.nominal), valid: r(vision.valid), slots: r(vision.slots) }
    }
}

/// A page filled to a target compression ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FittedPage {
    pub page: RenderedPage,
    pub mode: Mode,
    pub target_ratio: f64,
    /// `round(target_ratio · vision.nominal)`.
    pub target_tokens: usize,
    /// Tokens of the ground truth (`page.text`), without BOS.
    pub text_tokens: usize,
    pub vision: VisionTokens,
    /// Achieved `text_tokens / vision tokens`.
    pub ratio: Ratios,
    /// The chosen font size (em px).
    pub font_px: f32,
    /// Byte offset of this page's text in the normalised input (pages of [`paginate`]).
    pub offset: usize,
    /// Whether the page holds all the rest of the normalised input (nothing after it is left out).
    pub complete: bool,
}

/// Cuts a text after its first `n` tokens (the one cut of the toolkit, see [`occ_core::budget`]).
pub use occ_core::cut_tokens;

/// The text-token budget of a page: `round(ratio · nominal vision tokens)`
/// ([`occ_core::tokens_for_ratio`]), and the vision tokens.
pub fn target_tokens(mode: Mode, spec: &RenderSpec, ratio: f64) -> Result<(usize, VisionTokens)> {
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(RenderError::InvalidRatio { ratio });
    }
    let vision = mode.vision_tokens(spec.width, spec.height).map_err(|source| RenderError::Mode {
        mode: mode.to_string(),
        width: spec.width,
        height: spec.height,
        source,
    })?;
    let n = tokens_for_ratio(ratio, vision.nominal).ok_or(RenderError::InvalidRatio { ratio })?;
    Ok((n, vision))
}

/// The largest font size (a multiple of `opts.step_px`) at which all of the already *normalised* `text`
/// fits the spec's page. Errors with [`RenderError::DoesNotFit`] when even `opts.min_px` overflows.
pub fn fit_font_px(text: &str, spec: &RenderSpec, opts: &FitOptions) -> Result<f32> {
    spec.validate_page()?;
    let ok = |v: f32| v.is_finite() && v > 0.0;
    let ok_range = opts.min_px <= opts.max_px.min(crate::spec::MAX_FONT_PX) && opts.step_px >= 1.0 / 1024.0;
    if !(ok(opts.min_px) && ok(opts.max_px) && ok(opts.step_px) && ok_range) {
        return Err(RenderError::InvalidFontRange { min_px: opts.min_px, max_px: opts.max_px, step_px: opts.step_px });
    }
    let mut sh = Shaper::new(text, &spec.fonts);
    let step = f64::from(opts.step_px);
    let one_line_px = f64::from(spec.content_height()) / f64::from(spec.line_height);
    let k_min = (f64::from(opts.min_px) / step).ceil().max(1.0) as u64;
    let max_px = f64::from(opts.max_px.min(crate::spec::MAX_FONT_PX)).min(one_line_px);
    let k_max = (max_px / step).floor().max(k_min as f64) as u64;
    let px_of = |k: u64| (k as f64 * step) as f32;
    let mut fits = |k: u64| {
        let s = spec.with_font_px(px_of(k));
        layout_normalized(&mut sh, &s, s.max_lines()).complete
    };
    if !fits(k_min) {
        let s = spec.with_font_px(px_of(k_min));
        let mut sh = Shaper::new(text, &spec.fonts);
        let lay = layout_normalized(&mut sh, &s, s.max_lines());
        let placed = sh.byte(lay.consumed);
        return Err(RenderError::DoesNotFit {
            tokens: 0,
            chars: text.chars().count(),
            width: spec.width,
            height: spec.height,
            min_px: px_of(k_min),
            overflow_chars: text[placed..].chars().count(),
        });
    }
    // Invariant: fits(lo); hi is the first size not known to fit.
    let (mut lo, mut hi) = (k_min, k_max + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(px_of(lo))
}

/// Fills a page with the first `round(ratio · nominal vision tokens)` tokens of `text` at the largest
/// font size that fits (see the module docs). The spec's page size and margins are used; its font size
/// is replaced.
pub fn fit_to_ratio(text: &str, tok: &TextTokenizer, mode: Mode, ratio: f64, spec: &RenderSpec) -> Result<FittedPage> {
    fit_to_ratio_with(text, tok, mode, ratio, spec, &FitOptions::default())
}

/// [`fit_to_ratio`] with an explicit font-size range.
pub fn fit_to_ratio_with(
    text: &str,
    tok: &TextTokenizer,
    mode: Mode,
    ratio: f64,
    spec: &RenderSpec,
    opts: &FitOptions,
) -> Result<FittedPage> {
    spec.validate_page()?;
    let (n, vision) = target_tokens(mode, spec, ratio)?;
    // Normalise only what the budget can use: 128 input bytes per token is far more than any page
    // needs (English and Chinese prose average 4-5 bytes per token), so a huge text costs no more than a
    // page-sized one.
    let bound = floor_char_boundary(text, n.saturating_mul(128).saturating_add(4096));
    let norm = normalize(&text[..bound], spec.newline, spec.tab_width);
    if norm.is_empty() {
        return Err(RenderError::EmptyText);
    }
    let mut page = fit_normalized(&norm, tok, mode, ratio, spec, opts, n, vision, 0)?;
    page.complete &= bound == text.len();
    Ok(page)
}

fn fit_normalized(
    norm: &str,
    tok: &TextTokenizer,
    mode: Mode,
    ratio: f64,
    spec: &RenderSpec,
    opts: &FitOptions,
    n: usize,
    vision: VisionTokens,
    offset: usize,
) -> Result<FittedPage> {
    let (cut, text_tokens) = cut_tokens(norm, tok, n)?;
    let page_text = &norm[..cut];
    let font_px = fit_font_px(page_text, spec, opts).map_err(|e| match e {
        RenderError::DoesNotFit { chars, width, height, min_px, overflow_chars, .. } => {
            RenderError::DoesNotFit { tokens: text_tokens, chars, width, height, min_px, overflow_chars }
        }
        other => other,
    })?;
    let s = spec.with_font_px(font_px);
    let mut sh = Shaper::new(page_text, &s.fonts);
    let lay = layout_normalized(&mut sh, &s, s.max_lines());
    let page = draw(&mut sh, &lay, &s)?;
    Ok(FittedPage {
        ratio: Ratios::new(text_tokens, &vision),
        page,
        mode,
        target_ratio: ratio,
        target_tokens: n,
        text_tokens,
        vision,
        font_px,
        offset,
        complete: cut == norm.len(),
    })
}

/// Splits `text` into consecutive pages of `round(ratio · vision tokens)` tokens each (the last page
/// holds the rest), each fitted as [`fit_to_ratio`] does. The pages' ground truths concatenate to the
/// normalised text (up to `max_pages`). Empty text gives no pages.
pub fn paginate(
    text: &str,
    tok: &TextTokenizer,
    mode: Mode,
    ratio: f64,
    spec: &RenderSpec,
    max_pages: Option<usize>,
) -> Result<Vec<FittedPage>> {
    paginate_with(text, tok, mode, ratio, spec, max_pages, &FitOptions::default())
}

/// [`paginate`] with an explicit font-size range.
pub fn paginate_with(
    text: &str,
    tok: &TextTokenizer,
    mode: Mode,
    ratio: f64,
    spec: &RenderSpec,
    max_pages: Option<usize>,
    opts: &FitOptions,
) -> Result<Vec<FittedPage>> {
    spec.validate_page()?;
    let (n, vision) = target_tokens(mode, spec, ratio)?;
    let norm = normalize(text, spec.newline, spec.tab_width);
    let mut pages = Vec::new();
    let mut pos = 0;
    while pos < norm.len() && max_pages.is_none_or(|m| pages.len() < m) {
        let page = fit_normalized(&norm[pos..], tok, mode, ratio, spec, opts, n, vision, pos)?;
        let used = page.page.text.len();
        if used == 0 {
            break; // unreachable for n ≥ 1: the cut keeps at least one character (occ_core::budget)
        }
        pos += used;
        pages.push(page);
    }
    Ok(pages)
}
