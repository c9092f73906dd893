//! The one error type of occ-render.

/// Everything that can go wrong while rendering, fitting or degrading a page.
///
/// Text that does not fit a page is *not* an error of [`crate::render_page`] (it is returned as
/// [`crate::RenderedPage::overflow`]); it is an error of the ratio fitting, which must place all of
/// its text on one page.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("font size {px} px is invalid: it must be a finite number > 0 and at most {max} px", max = crate::spec::MAX_FONT_PX)]
    InvalidFontSize { px: f32 },
    #[error("line height {value} is invalid: it must be a finite multiple of the font size > 0")]
    InvalidLineHeight { value: f32 },
    #[error("page {width}x{height} px is empty")]
    EmptyPage { width: u32, height: u32 },
    #[error("page {width}x{height} px is too large: at most {max} pixels (width × height) are drawn")]
    PageTooLarge { width: u32, height: u32, max: u64 },
    #[error(
        "page {width}x{height} px leaves no room for text inside margins left {left}, right {right}, top {top}, \
         bottom {bottom} px"
    )]
    MarginsTooLarge { width: u32, height: u32, left: u32, right: u32, top: u32, bottom: u32 },
    #[error("tab width {columns} is invalid: it must be 1..=64 columns")]
    InvalidTabWidth { columns: u32 },
    #[error("the newline marker {marker:?} is not a printable character")]
    InvalidNewlineMarker { marker: char },
    #[error("font chain is empty: at least one font is needed")]
    NoFonts,
    #[error("font {name}: {message}")]
    InvalidFont { name: String, message: String },
    #[error(
        "{script} text (first {ch:?}, U+{code:04X}) needs its letters joined, but font {font} has no {script} \
         joining features (OpenType GSUB init/medi/fina): it would be drawn with unjoined letters, so it is \
         refused; use a font chain whose face for {script} shapes it (the built-in DejaVu Sans does)",
        code = u32::from(*ch)
    )]
    UnsupportedScript { script: &'static str, font: String, ch: char },
    #[error("the text is empty: there is nothing to fit to a ratio")]
    EmptyText,
    #[error("target ratio {ratio} is invalid: it must be a finite number > 0")]
    InvalidRatio { ratio: f64 },
    #[error("font size range {min_px}..={max_px} px (step {step_px}) is invalid")]
    InvalidFontRange { min_px: f32, max_px: f32, step_px: f32 },
    #[error(
        "{tokens} text tokens ({chars} chars) do not fit a {width}x{height} px page even at the minimum font size \
         {min_px} px ({overflow_chars} chars overflow): lower the ratio, use a larger mode or a smaller minimum"
    )]
    DoesNotFit { tokens: usize, chars: usize, width: u32, height: u32, min_px: f32, overflow_chars: usize },
    #[error("vision tokens of mode {mode} for a {width}x{height} page: {source}")]
    Mode { mode: String, width: u32, height: u32, source: occ_core::ModeError },
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] occ_core::TokenizerError),
    #[error("degradation {what} has an invalid parameter: {message}")]
    InvalidDegradation { what: &'static str, message: String },
    #[error("image codec ({what}): {source}")]
    Image { what: &'static str, source: image::ImageError },
}

/// Result alias of occ-render.
pub type Result<T, E = RenderError> = std::result::Result<T, E>;
