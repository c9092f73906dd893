//! `render`, `paginate` and `Page`: text → page images through `occ_render`, with the same calls and
//! the same spec as `compress-bench render` (`crates/cli/src/cmd/render.rs`), so a page's PNG is
//! byte-identical to the command's for the same arguments.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use image::RgbImage;
use occ_core::{Lang, Mode, TextTokenizer, VisionTokens};
use occ_render::fit::{fit_to_ratio_with, paginate_with, FitOptions, FittedPage, Ratios};
use occ_render::{normalize, render_page, Align, Margins, NewlinePolicy, RatioCheck, RenderSpec};
use pyo3::exceptions::{PyImportError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};

use crate::{raise, CompressBenchError, RenderError};

/// The embedded DeepSeek-OCR tokenizer, loaded once per process.
pub(crate) fn tokenizer() -> PyResult<&'static TextTokenizer> {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    if let Some(t) = TOK.get() {
        return Ok(t);
    }
    let t = TextTokenizer::deepseek_ocr().map_err(|e| raise::<CompressBenchError>(&e))?;
    Ok(TOK.get_or_init(|| t))
}

pub(crate) fn parse_mode(mode: &str) -> PyResult<Mode> {
    mode.parse::<Mode>().map_err(|e| PyValueError::new_err(format!("mode {mode:?}: {}", crate::chain(&e))))
}

pub(crate) fn parse_lang(lang: &str) -> PyResult<Lang> {
    lang.parse::<Lang>().map_err(PyValueError::new_err)
}

/// The page options of `render` and `paginate` (the flags of `compress-bench render`).
struct SpecArgs<'a> {
    lang: &'a str,
    width: Option<u32>,
    height: Option<u32>,
    margin: Option<u32>,
    line_height: f32,
    align: &'a str,
    newline: &'a str,
    newline_marker: char,
    tab_width: u32,
    dpi: u32,
}

impl SpecArgs<'_> {
    /// The spec `compress-bench render` builds from the same flags (its `build_spec`).
    fn build(&self, mode: Mode) -> PyResult<RenderSpec> {
        let mut spec = RenderSpec::for_mode(mode, parse_lang(self.lang)?);
        if let Some(w) = self.width {
            spec.width = w;
            spec.margins = Margins::uniform((w * 3).div_ceil(100));
        }
        if let Some(h) = self.height {
            spec.height = h;
        }
        if let Some(m) = self.margin {
            spec.margins = Margins::uniform(m);
        }
        spec.line_height = self.line_height;
        spec.align = match self.align {
            "left" => Align::Left,
            "center" => Align::Center,
            "right" => Align::Right,
            "justify" => Align::Justify,
            other => {
                return Err(PyValueError::new_err(format!("align {other:?}: expected left, center, right or justify")))
            }
        };
        spec.newline = match self.newline {
            "keep" => NewlinePolicy::Keep,
            "marker" => NewlinePolicy::Marker(self.newline_marker),
            "space" => NewlinePolicy::Space,
            other => return Err(PyValueError::new_err(format!("newline {other:?}: expected keep, marker or space"))),
        };
        spec.tab_width = self.tab_width;
        spec.dpi = self.dpi;
        Ok(spec)
    }
}

/// A rendered page: the pixels, the exact ground truth and its token accounting.
///
/// Pages come from `render` and `paginate` (every field set) and from an optical memory's context
/// (`mode`, `text`, `vision_tokens` and `font_px`; the fields of ratio fitting are `None`).
#[pyclass(frozen, module = "compress_bench")]
pub struct Page {
    pub(crate) image: Arc<RgbImage>,
    pub(crate) mode: Mode,
    pub(crate) text: String,
    font_px: f32,
    vision: VisionTokens,
    text_tokens: Option<usize>,
    input_tokens: Option<usize>,
    target_ratio: Option<f64>,
    target_tokens: Option<usize>,
    check: Option<RatioCheck>,
    overflow: String,
    offset: usize,
    complete: bool,
    lines: usize,
    missing_glyphs: usize,
    spec: Option<RenderSpec>,
    png: OnceLock<Vec<u8>>,
}

impl Page {
    /// A page of an optical memory's context.
    pub(crate) fn from_memory(p: &occ_memory::Page) -> Page {
        Page {
            image: p.image.clone(),
            mode: p.mode,
            text: p.text.clone(),
            font_px: p.font_px,
            vision: p.vision,
            text_tokens: None,
            input_tokens: None,
            target_ratio: None,
            target_tokens: None,
            check: None,
            overflow: String::new(),
            offset: 0,
            complete: true,
            lines: 0,
            missing_glyphs: 0,
            spec: None,
            png: OnceLock::new(),
        }
    }

    fn from_fitted(f: FittedPage, spec: &RenderSpec, input_tokens: Option<usize>) -> Page {
        let check = RatioCheck::of(&f);
        let spec = spec.with_font_px(f.font_px);
        let page = f.page;
        Page {
            mode: f.mode,
            font_px: f.font_px,
            vision: f.vision,
            text_tokens: Some(f.text_tokens),
            input_tokens,
            target_ratio: Some(f.target_ratio),
            target_tokens: Some(f.target_tokens),
            check: Some(check),
            offset: f.offset,
            complete: f.complete,
            lines: page.lines.len(),
            missing_glyphs: page.missing_glyphs.count,
            overflow: page.overflow,
            text: page.text,
            image: Arc::new(page.image),
            spec: Some(spec),
            png: OnceLock::new(),
        }
    }

    /// The PNG encoding (`image`'s encoder with its defaults, as the CLI writes it), made once.
    fn png_bytes(&self) -> PyResult<&[u8]> {
        if let Some(b) = self.png.get() {
            return Ok(b);
        }
        let mut buf = Vec::new();
        self.image
            .write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png)
            .map_err(|e| raise::<RenderError>(&e))?;
        Ok(self.png.get_or_init(|| buf))
    }

    fn achieved(&self) -> Option<Ratios> {
        self.text_tokens.map(|n| Ratios::new(n, &self.vision))
    }
}

fn vision_dict<'py>(py: Python<'py>, v: &VisionTokens) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("nominal", v.nominal)?;
    d.set_item("valid", v.valid)?;
    d.set_item("valid_floor", v.valid_floor)?;
    d.set_item("slots", v.slots)?;
    Ok(d)
}

#[pymethods]
impl Page {
    /// Page width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.image.width()
    }

    /// Page height in pixels.
    #[getter]
    fn height(&self) -> u32 {
        self.image.height()
    }

    /// The DeepSeek-OCR mode the page is read in (`tiny`, `small`, `base`, `large`, `gundam`,
    /// `custom:<base>x<image>[:crop]`).
    #[getter]
    fn mode(&self) -> String {
        self.mode.to_string()
    }

    /// The exact ground truth: the normalised text drawn on the page.
    #[getter]
    fn text(&self) -> &str {
        &self.text
    }

    /// Font size the page was laid out at (em px).
    #[getter]
    fn font_px(&self) -> f32 {
        self.font_px
    }

    /// Text tokens of the ground truth (DeepSeek-OCR tokenizer, no BOS); `None` for memory pages.
    #[getter]
    fn text_tokens(&self) -> Option<usize> {
        self.text_tokens
    }

    /// Text tokens of the whole normalised input (`render` only).
    #[getter]
    fn input_tokens(&self) -> Option<usize> {
        self.input_tokens
    }

    /// Input tokens left off the page (`render` only).
    #[getter]
    fn dropped_tokens(&self) -> Option<usize> {
        Some(self.input_tokens?.saturating_sub(self.text_tokens?))
    }

    /// The asked compression ratio (`None` with `font_px=` and for memory pages).
    #[getter]
    fn target_ratio(&self) -> Option<f64> {
        self.target_ratio
    }

    /// The page's text-token budget, `round(target_ratio × nominal vision tokens)`.
    #[getter]
    fn target_tokens(&self) -> Option<usize> {
        self.target_tokens
    }

    /// Vision tokens of the page in its mode: `{"nominal", "valid", "valid_floor", "slots"}`.
    #[getter]
    fn vision_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        vision_dict(py, &self.vision)
    }

    /// Achieved compression ratio on each basis: `{"nominal", "valid", "slots"}` (text tokens per
    /// vision token); `None` for memory pages.
    #[getter]
    fn ratios<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(r) = self.achieved() else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("nominal", r.nominal)?;
        d.set_item("valid", r.valid)?;
        d.set_item("slots", r.slots)?;
        Ok(Some(d))
    }

    /// Achieved compression ratio on the nominal basis (text tokens / nominal vision tokens).
    #[getter]
    fn ratio(&self) -> Option<f64> {
        self.achieved().map(|r| r.nominal)
    }

    /// Whether a fitted page is within the ratio tolerance of its target (`None` without a target).
    #[getter]
    fn on_target(&self) -> Option<bool> {
        self.check.as_ref().map(RatioCheck::on_target)
    }

    /// The ratio check's verdict in words (`None` without a target).
    #[getter]
    fn ratio_message(&self) -> Option<String> {
        self.check.as_ref().map(RatioCheck::message)
    }

    /// Text that did not fit the page (`font_px=` pages).
    #[getter]
    fn overflow(&self) -> &str {
        &self.overflow
    }

    /// Byte offset of this page's text in the normalised input (`paginate`).
    #[getter]
    fn offset(&self) -> usize {
        self.offset
    }

    /// Whether the page holds all the rest of the input.
    #[getter]
    fn complete(&self) -> bool {
        self.complete
    }

    /// Number of text lines on the page.
    #[getter]
    fn lines(&self) -> usize {
        self.lines
    }

    /// Characters drawn as boxes because no font has their glyph.
    #[getter]
    fn missing_glyphs(&self) -> usize {
        self.missing_glyphs
    }

    /// The page's render spec as a dict (`None` for memory pages).
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(spec) = &self.spec else { return Ok(None) };
        let json = serde_json::to_string(spec).map_err(|e| raise::<RenderError>(&e))?;
        Ok(Some(py.import("json")?.call_method1("loads", (json,))?))
    }

    /// The page as PNG bytes (byte-identical to `compress-bench render --out` for the same spec).
    #[getter]
    fn png<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.png_bytes().map(<[u8]>::to_vec))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The raw pixels: `height × width × 3` bytes, RGB, row-major.
    #[getter]
    fn pixels<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.image.as_raw())
    }

    /// The pixels as a writable numpy array of shape `(height, width, 3)` and dtype uint8
    /// (needs numpy).
    fn array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let np = py
            .import("numpy")
            .map_err(|e| PyImportError::new_err(format!("Page.array() needs numpy (pip install numpy): {e}")))?;
        let buf = PyByteArray::new(py, self.image.as_raw());
        let flat = np.call_method1("frombuffer", (buf, "uint8"))?;
        flat.call_method1("reshape", ((self.image.height() as usize, self.image.width() as usize, 3usize),))
    }

    /// The page as a `PIL.Image.Image` in mode RGB (needs Pillow).
    fn pil<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let img = py
            .import("PIL.Image")
            .map_err(|e| PyImportError::new_err(format!("Page.pil() needs Pillow (pip install Pillow): {e}")))?;
        img.call_method1(
            "frombytes",
            ("RGB", (self.image.width(), self.image.height()), PyBytes::new(py, self.image.as_raw())),
        )
    }

    /// Writes the PNG to `path`.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        py.detach(|| {
            let png = self.png_bytes()?;
            std::fs::write(&path, png)
                .map_err(|e| PyErr::new::<RenderError, _>(format!("writing {}: {}", path.display(), crate::chain(&e))))
        })
    }

    /// The metadata as a dict (the fields of `compress-bench render`'s JSON that a page knows).
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("mode", self.mode.to_string())?;
        d.set_item("width", self.image.width())?;
        d.set_item("height", self.image.height())?;
        d.set_item("font_px", self.font_px)?;
        d.set_item("ground_truth", &self.text)?;
        d.set_item("text_tokens", self.text_tokens)?;
        d.set_item("input_tokens", self.input_tokens)?;
        d.set_item("dropped_tokens", self.dropped_tokens())?;
        d.set_item("target_ratio", self.target_ratio)?;
        d.set_item("target_tokens", self.target_tokens)?;
        d.set_item("vision_tokens", vision_dict(py, &self.vision)?)?;
        d.set_item("ratio", self.ratios(py)?)?;
        d.set_item("on_target", self.on_target())?;
        d.set_item("lines", self.lines)?;
        d.set_item("missing_glyphs", self.missing_glyphs)?;
        d.set_item("overflow_chars", self.overflow.chars().count())?;
        d.set_item("offset", self.offset)?;
        d.set_item("complete", self.complete)?;
        d.set_item("spec", self.spec(py)?)?;
        Ok(d)
    }

    /// PNG for Jupyter's rich display.
    fn _repr_png_<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.png(py)
    }

    fn __repr__(&self) -> String {
        let ratio = match self.achieved() {
            Some(r) => format!(", {} text tokens, ratio {:.3}", self.text_tokens.unwrap_or(0), r.nominal),
            None => String::new(),
        };
        format!(
            "<Page {} {}x{}, font {} px{ratio}, {} vision tokens>",
            self.mode,
            self.image.width(),
            self.image.height(),
            self.font_px,
            self.vision.nominal
        )
    }
}

/// Renders `text` on one page, as `compress-bench render` does.
///
/// With `ratio=R` (the default, R = 10) the page holds the first `round(R × nominal vision tokens)`
/// text tokens at the largest font that fits; with `font_px=PX` the text is set at that size and
/// what does not fit is `overflow`. `strict=True` raises `RenderError` when a fitted page misses its
/// ratio by more than the tolerance (1 %, or half a token).
#[pyfunction]
#[pyo3(signature = (
    text, mode = "tiny", ratio = None, font_px = None, *, lang = "en", width = None, height = None,
    margin = None, line_height = 1.2, align = "left", newline = "keep", newline_marker = '¶', tab_width = 4,
    dpi = 96, min_font_px = 3.0, strict = false
))]
fn render(
    py: Python<'_>,
    text: &str,
    mode: &str,
    ratio: Option<f64>,
    font_px: Option<f32>,
    lang: &str,
    width: Option<u32>,
    height: Option<u32>,
    margin: Option<u32>,
    line_height: f32,
    align: &str,
    newline: &str,
    newline_marker: char,
    tab_width: u32,
    dpi: u32,
    min_font_px: f32,
    strict: bool,
) -> PyResult<Page> {
    if ratio.is_some() && font_px.is_some() {
        return Err(PyValueError::new_err("give either ratio= or font_px=, not both"));
    }
    if strict && font_px.is_some() {
        return Err(PyValueError::new_err("strict=True checks a fitted ratio; it cannot be used with font_px="));
    }
    let mode = parse_mode(mode)?;
    let spec = SpecArgs { lang, width, height, margin, line_height, align, newline, newline_marker, tab_width, dpi }
        .build(mode)?;
    let tok = tokenizer()?;
    py.detach(|| -> PyResult<Page> {
        let err = |what: &str, e: &(dyn std::error::Error + 'static)| {
            PyErr::new::<RenderError, _>(format!("{what}: {}", crate::chain(e)))
        };
        let vision = mode
            .vision_tokens(spec.width, spec.height)
            .map_err(|e| err(&format!("vision tokens of mode {mode} for a {}x{} page", spec.width, spec.height), &e))?;
        let norm = normalize(text, spec.newline, spec.tab_width);
        let input_tokens = tok.count_long(&norm).map_err(|e| err("counting the input's text tokens", &e))?;
        match font_px {
            Some(px) => {
                let spec = spec.with_font_px(px);
                let page = render_page(text, &spec).map_err(|e| err("rendering the page", &e))?;
                let n = tok.count(&page.text).map_err(|e| err("counting text tokens", &e))?;
                Ok(Page {
                    mode,
                    font_px: px,
                    vision,
                    text_tokens: Some(n),
                    input_tokens: Some(input_tokens),
                    target_ratio: None,
                    target_tokens: None,
                    check: None,
                    offset: 0,
                    complete: page.overflow.is_empty(),
                    lines: page.lines.len(),
                    missing_glyphs: page.missing_glyphs.count,
                    overflow: page.overflow,
                    text: page.text,
                    image: Arc::new(page.image),
                    spec: Some(spec),
                    png: OnceLock::new(),
                })
            }
            None => {
                let ratio = ratio.unwrap_or(10.0);
                let opts = FitOptions { min_px: min_font_px, ..FitOptions::default() };
                let fitted = fit_to_ratio_with(text, tok, mode, ratio, &spec, &opts)
                    .map_err(|e| err(&format!("fitting the text to ratio {ratio} in mode {mode}"), &e))?;
                let check = RatioCheck::of(&fitted);
                if strict && !check.on_target() {
                    return Err(PyErr::new::<RenderError, _>(format!(
                        "mode {mode}: {} (strict=True)",
                        check.message()
                    )));
                }
                Ok(Page::from_fitted(fitted, &spec, Some(input_tokens)))
            }
        }
    })
}

/// Splits a long `text` into consecutive pages of `round(ratio × nominal vision tokens)` tokens each
/// (the last holds the rest), each fitted as `render` does; the pages' `text` concatenate to the
/// normalised input. `max_pages` stops early.
#[pyfunction]
#[pyo3(signature = (
    text, mode = "tiny", ratio = 10.0, *, max_pages = None, lang = "en", width = None, height = None,
    margin = None, line_height = 1.2, align = "left", newline = "keep", newline_marker = '¶', tab_width = 4,
    dpi = 96, min_font_px = 3.0
))]
fn paginate(
    py: Python<'_>,
    text: &str,
    mode: &str,
    ratio: f64,
    max_pages: Option<usize>,
    lang: &str,
    width: Option<u32>,
    height: Option<u32>,
    margin: Option<u32>,
    line_height: f32,
    align: &str,
    newline: &str,
    newline_marker: char,
    tab_width: u32,
    dpi: u32,
    min_font_px: f32,
) -> PyResult<Vec<Page>> {
    let mode = parse_mode(mode)?;
    let spec = SpecArgs { lang, width, height, margin, line_height, align, newline, newline_marker, tab_width, dpi }
        .build(mode)?;
    let tok = tokenizer()?;
    py.detach(|| {
        let opts = FitOptions { min_px: min_font_px, ..FitOptions::default() };
        let pages = paginate_with(text, tok, mode, ratio, &spec, max_pages, &opts).map_err(|e| {
            PyErr::new::<RenderError, _>(format!(
                "paginating the text at ratio {ratio} in mode {mode}: {}",
                crate::chain(&e)
            ))
        })?;
        Ok(pages.into_iter().map(|p| Page::from_fitted(p, &spec, None)).collect())
    })
}

/// Text tokens of `text` (the DeepSeek-OCR tokenizer, no BOS): the count every ratio uses.
#[pyfunction]
fn count_tokens(py: Python<'_>, text: &str) -> PyResult<usize> {
    let tok = tokenizer()?;
    py.detach(|| tok.count_long(text).map_err(|e| raise::<CompressBenchError>(&e)))
}

/// Vision tokens of a `width × height` page in `mode` (default: the mode's canvas):
/// `{"nominal", "valid", "valid_floor", "slots"}`.
#[pyfunction]
#[pyo3(signature = (mode, width = None, height = None))]
fn vision_tokens<'py>(
    py: Python<'py>,
    mode: &str,
    width: Option<u32>,
    height: Option<u32>,
) -> PyResult<Bound<'py, PyDict>> {
    let mode = parse_mode(mode)?;
    let (w, h) = mode.default_canvas();
    let (w, h) = (width.unwrap_or(w), height.unwrap_or(h));
    let v = mode.vision_tokens(w, h).map_err(|e| {
        PyValueError::new_err(format!("vision tokens of mode {mode} for a {w}x{h} page: {}", crate::chain(&e)))
    })?;
    vision_dict(py, &v)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Page>()?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_function(wrap_pyfunction!(paginate, m)?)?;
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(vision_tokens, m)?)?;
    Ok(())
}
