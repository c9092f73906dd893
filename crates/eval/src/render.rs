//! Page rendering as the sweep sees it: a [`PageRenderer`] turns (source text, mode, target ratio)
//! into a page whose ground truth carries `ratio × vision tokens` text tokens.
//!
//! [`OccRenderer`] is the real one (occ-render's ratio fitting); [`BlankRenderer`] cuts the text
//! the same way but draws nothing, for tests of the bookkeeping without fonts.

use image::RgbImage;
use occ_core::{Mode, TextTokenizer, VisionTokens};

use crate::normalize::Lang;
use crate::truncation::prefix_tokens;

/// A rendered page with its token accounting.
#[derive(Debug, Clone)]
pub struct FittedPage {
    pub image: RgbImage,
    /// Exactly the text drawn on the page: the ground truth.
    pub text: String,
    /// Text tokens of `text` (DeepSeek-OCR tokenizer, no BOS).
    pub n_text_tokens: usize,
    /// Vision tokens of the page in its mode.
    pub vision: VisionTokens,
    pub font_px: f32,
}

/// Something that renders pages at a target compression ratio. Must be deterministic.
pub trait PageRenderer: Send + Sync {
    /// Identity for the manifest (name, version, fonts).
    fn describe(&self) -> String;

    /// Page size `(width, height)` in pixels for a mode (decides the vision-token count).
    fn canvas(&self, mode: Mode) -> (u32, u32);

    /// Renders a prefix of `text` so that its token count over the page's nominal vision tokens is
    /// as close to `ratio` as possible. `text` must hold enough tokens.
    fn render(&self, text: &str, lang: Lang, mode: Mode, ratio: f64) -> Result<FittedPage, String>;
}

/// Text tokens a page of `vision` tokens holds at `ratio` (nominal basis, rounded).
pub fn tokens_for_ratio(ratio: f64, vision: &VisionTokens) -> usize {
    (ratio * f64::from(vision.nominal)).round().max(1.0) as usize
}

/// Cuts the text to the ratio's token budget like a real renderer, and draws a blank page of the
/// mode's default canvas. For tests only: engines that look at pixels read nothing.
#[derive(Debug, Clone)]
pub struct BlankRenderer {
    tokenizer: TextTokenizer,
}

impl BlankRenderer {
    pub fn new(tokenizer: TextTokenizer) -> BlankRenderer {
        BlankRenderer { tokenizer }
    }
}

impl PageRenderer for BlankRenderer {
    fn describe(&self) -> String {
        "blank (test renderer: text cut to the token budget, no pixels drawn)".into()
    }

    fn canvas(&self, mode: Mode) -> (u32, u32) {
        mode.default_canvas()
    }

    fn render(&self, text: &str, _lang: Lang, mode: Mode, ratio: f64) -> Result<FittedPage, String> {
        let (w, h) = self.canvas(mode);
        let vision = mode.vision_tokens(w, h).map_err(|e| e.to_string())?;
        let budget = tokens_for_ratio(ratio, &vision);
        let cut = prefix_tokens(text, &self.tokenizer, budget).map_err(|e| e.to_string())?;
        let n_text_tokens = self.tokenizer.count(cut).map_err(|e| e.to_string())?;
        let image = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        Ok(FittedPage { image, text: cut.to_string(), n_text_tokens, vision, font_px: 0.0 })
    }
}

/// The real renderer: `occ_render::fit_to_ratio` on `RenderSpec::for_mode(mode, lang)` (the mode's
/// default canvas, 3 % margins, 1.2 line height, DejaVu Sans + Droid Sans Fallback), font size
/// chosen by the fitting.
#[derive(Debug, Clone)]
pub struct OccRenderer {
    tokenizer: TextTokenizer,
}

impl OccRenderer {
    pub fn new(tokenizer: TextTokenizer) -> OccRenderer {
        OccRenderer { tokenizer }
    }

    fn spec(mode: Mode, lang: Lang) -> occ_render::RenderSpec {
        let lang = match lang {
            Lang::En => occ_render::Lang::En,
            Lang::Zh => occ_render::Lang::Zh,
        };
        occ_render::RenderSpec::for_mode(mode, lang)
    }
}

impl PageRenderer for OccRenderer {
    fn describe(&self) -> String {
        let s = Self::spec(Mode::Tiny, Lang::En);
        format!(
            "occ-render {} fit_to_ratio: RenderSpec::for_mode (default canvas per mode, margins 3% of the width, \
             line height {}, {} DPI, newline kept), fonts {:?}, font size fitted in 0.25 px steps from 3 px",
            env!("CARGO_PKG_VERSION"),
            s.line_height,
            s.dpi,
            s.fonts
        )
    }

    fn canvas(&self, mode: Mode) -> (u32, u32) {
        let s = Self::spec(mode, Lang::En);
        (s.width, s.height)
    }

    fn render(&self, text: &str, lang: Lang, mode: Mode, ratio: f64) -> Result<FittedPage, String> {
        let spec = Self::spec(mode, lang);
        let fp = occ_render::fit_to_ratio(text, &self.tokenizer, mode, ratio, &spec).map_err(|e| e.to_string())?;
        Ok(FittedPage {
            image: fp.page.image,
            text: fp.page.text,
            n_text_tokens: fp.text_tokens,
            vision: fp.vision,
            font_px: fp.font_px,
        })
    }
}
