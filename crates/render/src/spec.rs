//! [`RenderSpec`]: every knob of a page, serialisable into page metadata.

use occ_core::Mode;
use serde::{Deserialize, Serialize};

use crate::error::{RenderError, Result};
use crate::font::FontSet;

/// Horizontal alignment of each line inside the margins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    #[default]
    Left,
    Center,
    Right,
    /// Soft-wrapped lines are stretched to the full width by widening their spaces; the last line of a
    /// paragraph and lines without spaces stay left-aligned.
    Justify,
}

/// What a `\n` of the input becomes (applied by [`crate::normalize`], before layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewlinePolicy {
    /// A line break (an empty line for `\n\n`).
    #[default]
    Keep,
    /// The given visible character (e.g. `¶` or `⏎`) inline, no line break.
    Marker(char),
    /// A space.
    Space,
}

/// Language of the text; selects the default font chain order ([`RenderSpec::for_mode`]). The one
/// `Lang` of the toolkit, defined in occ-core.
pub use occ_core::Lang;

/// Page margins in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Margins {
    pub left: u32,
    pub right: u32,
    pub top: u32,
    pub bottom: u32,
}

impl Margins {
    /// The same margin on all four sides.
    pub fn uniform(px: u32) -> Margins {
        Margins { left: px, right: px, top: px, bottom: px }
    }
}

/// The largest page [`RenderSpec::validate_page`] accepts, in pixels (width × height): 64 Mpx (an A4 page at
/// 600 DPI is 35 Mpx). A larger canvas is refused before anything is allocated.
pub const MAX_PAGE_PIXELS: u64 = 1 << 26;

/// The largest font size (em px) [`RenderSpec::validate`] accepts and the ratio fitting tries: a glyph is
/// rasterised whole before it is clipped, so its size bounds the memory one glyph takes.
pub const MAX_FONT_PX: f32 = 1024.0;

/// Everything that determines a page's pixels, apart from the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderSpec {
    /// Page width in pixels.
    pub width: u32,
    /// Page height in pixels.
    pub height: u32,
    /// Dots per inch; metadata only (pixels are pixels).
    pub dpi: u32,
    /// Fallback chain; the first face is primary.
    pub fonts: FontSet,
    /// Font size: the em size in pixels (as CSS `px` and Pillow's `ImageFont.truetype(size=…)`).
    pub font_px: f32,
    /// Line pitch as a multiple of `font_px`.
    pub line_height: f32,
    pub margins: Margins,
    pub align: Align,
    /// Text colour (RGB).
    pub fg: [u8; 3],
    /// Page colour (RGB).
    pub bg: [u8; 3],
    pub newline: NewlinePolicy,
    /// Tab stops every `tab_width` characters (columns counted in characters since the last `\n`).
    pub tab_width: u32,
}

impl RenderSpec {
    /// Defaults for a mode: canvas = [`Mode::default_canvas`], margins 3 % of the width, line height
    /// 1.2 em, black on white, newlines kept, tab width 4, 96 DPI, font size 12 px (the ratio fitting
    /// replaces it). Both languages use DejaVu Sans with Droid Sans Fallback behind it.
    pub fn for_mode(mode: Mode, lang: Lang) -> RenderSpec {
        let (width, height) = mode.default_canvas();
        let _ = lang; // same chain for both: DejaVu has no CJK, so CJK falls through to Droid
        let margin = (width * 3).div_ceil(100);
        RenderSpec {
            width,
            height,
            dpi: 96,
            fonts: FontSet::default_chain(),
            font_px: 12.0,
            line_height: 1.2,
            margins: Margins::uniform(margin),
            align: Align::Left,
            fg: [0, 0, 0],
            bg: [255, 255, 255],
            newline: NewlinePolicy::Keep,
            tab_width: 4,
        }
    }

    /// The same spec at another font size.
    pub fn with_font_px(&self, font_px: f32) -> RenderSpec {
        RenderSpec { font_px, ..self.clone() }
    }

    /// Width of the text area (inside the margins).
    pub fn content_width(&self) -> u32 {
        self.width.saturating_sub(self.margins.left.saturating_add(self.margins.right))
    }

    /// Height of the text area (inside the margins).
    pub fn content_height(&self) -> u32 {
        self.height.saturating_sub(self.margins.top.saturating_add(self.margins.bottom))
    }

    /// Line pitch in pixels.
    pub fn line_pitch(&self) -> f32 {
        self.line_height * self.font_px
    }

    /// How many lines fit inside the margins.
    pub fn max_lines(&self) -> usize {
        max_lines(self.content_height(), self.line_pitch())
    }

    /// Checks everything except the font size (which the fitting chooses).
    pub fn validate_page(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(RenderError::EmptyPage { width: self.width, height: self.height });
        }
        if u64::from(self.width) * u64::from(self.height) > MAX_PAGE_PIXELS {
            return Err(RenderError::PageTooLarge { width: self.width, height: self.height, max: MAX_PAGE_PIXELS });
        }
        if self.content_width() == 0 || self.content_height() == 0 {
            let m = self.margins;
            return Err(RenderError::MarginsTooLarge {
                width: self.width,
                height: self.height,
                left: m.left,
                right: m.right,
                top: m.top,
                bottom: m.bottom,
            });
        }
        if !(self.line_height.is_finite() && self.line_height > 0.0) {
            return Err(RenderError::InvalidLineHeight { value: self.line_height });
        }
        if !(1..=64).contains(&self.tab_width) {
            return Err(RenderError::InvalidTabWidth { columns: self.tab_width });
        }
        if let NewlinePolicy::Marker(m) = self.newline {
            if m.is_control() || m.is_whitespace() {
                return Err(RenderError::InvalidNewlineMarker { marker: m });
            }
        }
        Ok(())
    }

    /// Checks the whole spec.
    pub fn validate(&self) -> Result<()> {
        self.validate_page()?;
        if !(self.font_px.is_finite() && self.font_px > 0.0 && self.font_px <= MAX_FONT_PX) {
            return Err(RenderError::InvalidFontSize { px: self.font_px });
        }
        Ok(())
    }
}

/// Lines of pitch `pitch` that fit in `content_height` pixels (a hair of tolerance for float error).
pub(crate) fn max_lines(content_height: u32, pitch: f32) -> usize {
    if !(pitch.is_finite() && pitch > 0.0) {
        return 0;
    }
    let n = (f64::from(content_height) + 1e-4) / f64::from(pitch);
    if n >= 1e9 {
        1_000_000_000
    } else {
        n.floor() as usize
    }
}
