//! Page rendering as the sweep sees it: a [`PageRenderer`] turns (source text, mode, target ratio,
//! typography) into a page whose ground truth carries `ratio × vision tokens` text tokens. The
//! degradation of a [`PageSetting`] is applied to the fitted page afterwards
//! ([`DegradationLevel::apply`](crate::axes::DegradationLevel::apply), by the runner and by
//! [`OccRenderer::redraw`]).
//!
//! [`OccRenderer`] is the real one (occ-render's ratio fitting); [`BlankRenderer`] cuts the text
//! the same way but draws nothing, for tests of the bookkeeping without fonts.

use image::RgbImage;
use occ_core::{cut_tokens, tokens_for_ratio, Lang, Mode, TextTokenizer, VisionTokens};

use crate::axes::{noise_seed, PageSetting};
use crate::schema::SampleRow;

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

    /// Renders a prefix of `text` in the font family and line height of `setting` so that its token
    /// count over the page's nominal vision tokens is as close to `ratio` as possible. `text` must
    /// hold enough tokens. The setting's degradation is not applied here.
    fn render(
        &self,
        text: &str,
        lang: Lang,
        mode: Mode,
        ratio: f64,
        setting: &PageSetting,
    ) -> Result<FittedPage, String>;
}

/// Cuts the text to the ratio's token budget as the real renderer does (the budget of
/// [`occ_core::tokens_for_ratio`] on the nominal vision tokens, the cut of [`occ_core::cut_tokens`]), and
/// draws a blank page of the mode's default canvas. For tests only: engines that look at pixels read
/// nothing.
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

    fn render(
        &self,
        text: &str,
        _lang: Lang,
        mode: Mode,
        ratio: f64,
        _setting: &PageSetting,
    ) -> Result<FittedPage, String> {
        let (w, h) = self.canvas(mode);
        let vision = mode.vision_tokens(w, h).map_err(|e| e.to_string())?;
        let budget = tokens_for_ratio(ratio, vision.nominal).ok_or_else(|| format!("invalid ratio {ratio}"))?;
        let (cut, n_text_tokens) = cut_tokens(text, &self.tokenizer, budget).map_err(|e| e.to_string())?;
        let image = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        Ok(FittedPage { image, text: text[..cut].to_string(), n_text_tokens, vision, font_px: 0.0 })
    }
}

/// The real renderer: `occ_render::fit_to_ratio` on `RenderSpec::for_mode(mode, lang)` (the mode's
/// default canvas, 3 % margins) with the setting's font family and line height (by default 1.2 and
/// DejaVu Sans + Droid Sans Fallback), font size chosen by the fitting.
#[derive(Debug, Clone)]
pub struct OccRenderer {
    tokenizer: TextTokenizer,
}

impl OccRenderer {
    pub fn new(tokenizer: TextTokenizer) -> OccRenderer {
        OccRenderer { tokenizer }
    }

    fn spec(mode: Mode, lang: Lang, setting: &PageSetting) -> occ_render::RenderSpec {
        // The default family's chain is `for_mode`'s own, and 1.2 as f32 its line height.
        occ_render::RenderSpec {
            fonts: setting.font.chain(),
            line_height: setting.line_height as f32,
            ..occ_render::RenderSpec::for_mode(mode, lang)
        }
    }

    /// What [`PageRenderer::describe`] says of this renderer (recorded as `renderer` in a run's
    /// manifest).
    pub fn description() -> String {
        let s = Self::spec(Mode::Tiny, Lang::En, &PageSetting::default());
        format!(
            "occ-render {} fit_to_ratio: RenderSpec::for_mode (default canvas per mode, margins 3% of the width, \
             line height {}, {} DPI, newline kept), fonts {:?}, font size fitted in 0.25 px steps from 3 px",
            env!("CARGO_PKG_VERSION"),
            s.line_height,
            s.dpi,
            s.fonts
        )
    }

    /// Whether a run's `renderer` (its manifest) is this renderer, of any version: its pages can be
    /// drawn again with [`OccRenderer::redraw`].
    pub fn drew(renderer: &str) -> bool {
        renderer.starts_with("occ-render ")
    }

    /// Draws a page of a finished sample again from what its run recorded: the ground truth (the
    /// exact text on the page, `predictions.parquet`), the language, the mode, the fitted font size,
    /// the page setting and the sample id (which seeds its noise) (`samples.parquet`). Rendering and
    /// degrading are deterministic, so with the same renderer version and fonts this is the page the
    /// engine read, pixel for pixel; the ratio fitting is not repeated, because the font size it chose
    /// is known.
    ///
    /// Errors when the text does not come out as the whole ground truth at that size (a run of
    /// another renderer or font set, or an edited file): such a page would not be the one that was
    /// read.
    pub fn redraw(
        ground_truth: &str,
        lang: Lang,
        mode: Mode,
        font_px: f32,
        setting: &PageSetting,
        sample_id: &str,
    ) -> Result<RgbImage, String> {
        if !(font_px.is_finite() && font_px > 0.0) {
            return Err(format!("no font size recorded ({font_px} px)"));
        }
        let spec = Self::spec(mode, lang, setting).with_font_px(font_px);
        let page = occ_render::render_page(ground_truth, &spec).map_err(|e| e.to_string())?;
        if page.text != ground_truth || !page.overflow.is_empty() {
            return Err(format!(
                "the ground truth does not re-render as recorded at {font_px} px: {} of {} characters on the page",
                page.chars,
                ground_truth.chars().count()
            ));
        }
        setting.degradation.apply(&page.image, noise_seed(sample_id))
    }

    /// [`OccRenderer::redraw`] with the mode, language, font size, setting and id of a row of
    /// `samples.parquet`.
    pub fn redraw_sample(sample: &SampleRow, ground_truth: &str) -> Result<RgbImage, String> {
        let mode: Mode = sample.mode.parse().map_err(|e: occ_core::ModeError| e.to_string())?;
        let lang: Lang = sample.lang.parse()?;
        let setting = PageSetting::of_row(sample)?.ok_or("the page was not drawn by the toolkit (no font family)")?;
        Self::redraw(ground_truth, lang, mode, sample.font_px as f32, &setting, &sample.sample_id)
    }
}

impl PageRenderer for OccRenderer {
    fn describe(&self) -> String {
        Self::description()
    }

    fn canvas(&self, mode: Mode) -> (u32, u32) {
        let s = Self::spec(mode, Lang::En, &PageSetting::default());
        (s.width, s.height)
    }

    fn render(
        &self,
        text: &str,
        lang: Lang,
        mode: Mode,
        ratio: f64,
        setting: &PageSetting,
    ) -> Result<FittedPage, String> {
        let spec = Self::spec(mode, lang, setting);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_redrawn_from_its_recorded_settings_is_the_page_that_was_read() {
        let tok = TextTokenizer::deepseek_ocr().unwrap();
        let renderer = OccRenderer::new(tok);
        let text = "Call me Ishmael.\tSome years ago, never mind how long precisely, having little or no money \
                    in my purse, and nothing particular to interest me on shore, I thought I would sail about \
                    a little and see the watery part of the world.\n\nIt is a way I have. "
            .repeat(6);
        let plain = PageSetting::default();
        for (mode, ratio) in [(Mode::Tiny, 8.0), (Mode::Small, 5.0)] {
            let page = renderer.render(&text, Lang::En, mode, ratio, &plain).unwrap();
            // As recorded: the font size goes through samples.parquet as f64.
            let font_px = f64::from(page.font_px) as f32;
            let again = OccRenderer::redraw(&page.text, Lang::En, mode, font_px, &plain, "id").unwrap();
            assert!(again == page.image, "{mode} at {ratio}x: pixels differ");
        }
        let page = renderer.render(&text, Lang::En, Mode::Tiny, 8.0, &plain).unwrap();
        let bigger =
            OccRenderer::redraw(&page.text, Lang::En, Mode::Tiny, page.font_px * 2.0, &plain, "id").unwrap_err();
        assert!(bigger.contains("does not re-render as recorded"), "{bigger}");
        assert!(OccRenderer::redraw(&page.text, Lang::En, Mode::Tiny, 0.0, &plain, "id").is_err());
        // Another font and line height: another fitting, redrawn with its degradation.
        let setting = PageSetting {
            degradation: crate::axes::DegradationLevel::parse("noise:20").unwrap(),
            font: occ_render::FontFamily::DejavuSerif,
            line_height: 1.6,
        };
        let set = renderer.render(&text, Lang::En, Mode::Tiny, 8.0, &setting).unwrap();
        assert!(set.image != page.image);
        assert_eq!(set.n_text_tokens, page.n_text_tokens, "the same token budget");
        let degraded = setting.degradation.apply(&set.image, noise_seed("s")).unwrap();
        let again = OccRenderer::redraw(&set.text, Lang::En, Mode::Tiny, set.font_px, &setting, "s").unwrap();
        assert!(again == degraded, "the redrawn page carries the same noise");
    }
}
