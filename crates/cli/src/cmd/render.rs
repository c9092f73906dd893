//! `compress-bench render`: text → page PNG + metadata JSON.
//!
//! With `--ratio R` (the default, R = 10) the page holds `round(R · vision tokens)` text tokens of the
//! input at the largest font that fits (`occ_render::fit::fit_to_ratio`); with `--font-size PX` the text
//! is set at that size and whatever does not fit is reported as overflow.
//!
//! Nothing is dropped or missed silently. The metadata counts the input's tokens, the tokens on the
//! page and the input left off it (`input_tokens`, `used_tokens`, `dropped_tokens`, `dropped_chars`,
//! `dropped_bytes`), and, with a ratio, compares the page with its target (`ratio_check`, see
//! `occ_render::RatioCheck`). Text left off the page is a warning; a page off its target ratio by more
//! than `occ_render::RATIO_TOLERANCE` (a blank page, a text too short for the budget) is a warning, and
//! an error with `--strict` (then no file is written).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::messages::{RenderMeta, RenderVision};
use crate::output::Output;
use anyhow::Context;
use occ_core::{Lang, Mode, TextTokenizer};
use occ_render::fit::{fit_to_ratio_with, FitOptions, Ratios};
use occ_render::{normalize, render_page, Align, Margins, NewlinePolicy, RatioCheck, RenderSpec};

/// Horizontal alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlignArg {
    Left,
    Center,
    Right,
    Justify,
}

/// What a newline of the input becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewlineArg {
    /// A line break.
    Keep,
    /// The visible `--newline-marker` character, inline.
    Marker,
    /// A space.
    Space,
}

/// Render text to a page image.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// UTF-8 text file to render (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub text_file: PathBuf,
    /// Mode: tiny, small, base, large, gundam or custom:<base>x<image>[:crop] (DeepSeek-OCR); v2 or
    /// v2-single (DeepSeek-OCR-2).
    #[arg(long, default_value = "tiny")]
    pub mode: Mode,
    /// Target compression ratio (text tokens per nominal vision token); the font size is fitted.
    #[arg(long, conflicts_with = "font_size")]
    pub ratio: Option<f64>,
    /// Render at this font size (em px) instead of fitting a ratio.
    #[arg(long, value_name = "PX")]
    pub font_size: Option<f32>,
    /// Language of the text (en or zh): selects the default font chain.
    #[arg(long, default_value = "en")]
    pub lang: Lang,
    /// Margin on all four sides in pixels [default: 3% of the page width].
    #[arg(long, value_name = "PX")]
    pub margin: Option<u32>,
    /// Page width in pixels [default: the mode's canvas].
    #[arg(long, value_name = "PX")]
    pub width: Option<u32>,
    /// Page height in pixels [default: the mode's canvas].
    #[arg(long, value_name = "PX")]
    pub height: Option<u32>,
    /// Line pitch as a multiple of the font size.
    #[arg(long, default_value_t = 1.2)]
    pub line_height: f32,
    /// Horizontal alignment.
    #[arg(long, value_enum, default_value = "left")]
    pub align: AlignArg,
    /// What a newline becomes.
    #[arg(long, value_enum, default_value = "keep")]
    pub newline: NewlineArg,
    /// Marker character for `--newline marker`.
    #[arg(long, default_value_t = '¶')]
    pub newline_marker: char,
    /// Tab stops every N characters.
    #[arg(long, default_value_t = 4)]
    pub tab_width: u32,
    /// DPI written into the metadata.
    #[arg(long, default_value_t = 96)]
    pub dpi: u32,
    /// Smallest font size the fitting may choose (em px).
    #[arg(long, default_value_t = 3.0)]
    pub min_font_size: f32,
    /// Fail (writing nothing) when the page misses the asked ratio by more than the tolerance (1 %, or
    /// half a token) instead of warning.
    #[arg(long, conflicts_with = "font_size")]
    pub strict: bool,
    /// Output PNG.
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// Metadata JSON [default: the PNG path with extension .json].
    #[arg(long, value_name = "PATH")]
    pub meta: Option<PathBuf>,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let text = read_text(&args.text_file)?;
    let spec = build_spec(&args);
    let tok = TextTokenizer::deepseek_ocr().context("loading the DeepSeek-OCR tokenizer")?;
    let vision = args
        .mode
        .vision_tokens(spec.width, spec.height)
        .with_context(|| format!("vision tokens of mode {} for a {}x{} page", args.mode, spec.width, spec.height))?;
    // The whole input as the page sees it, counted once: the page's text is a prefix of it.
    let norm = normalize(&text, spec.newline, spec.tab_width);
    let input_tokens = tok.count_long(&norm).context("counting the input's text tokens")?;
    let (page, font_px, text_tokens, target_ratio, target_tokens, used_spec, check) = match args.font_size {
        Some(px) => {
            let spec = spec.with_font_px(px);
            let page = render_page(&text, &spec).context("rendering the page")?;
            let n = tok.count(&page.text).context("counting text tokens")?;
            (page, px, n, None, None, spec, None)
        }
        None => {
            let ratio = args.ratio.unwrap_or(10.0);
            let opts = FitOptions { min_px: args.min_font_size, ..FitOptions::default() };
            let fitted = fit_to_ratio_with(&text, &tok, args.mode, ratio, &spec, &opts).with_context(|| {
                format!("fitting {} to ratio {ratio} in mode {}", args.text_file.display(), args.mode)
            })?;
            let check = RatioCheck::of(&fitted);
            if args.strict && !check.on_target() {
                anyhow::bail!(
                    "{} in mode {}: {} (--strict: nothing written)",
                    args.text_file.display(),
                    args.mode,
                    check.message()
                );
            }
            let used = spec.with_font_px(fitted.font_px);
            let (n, target) = (fitted.text_tokens, fitted.target_tokens);
            (fitted.page, fitted.font_px, n, Some(ratio), Some(target), used, Some(check))
        }
    };
    let dropped = norm.get(page.text.len()..).unwrap_or("");
    let dropped_chars = dropped.chars().count();
    let dropped_tokens = input_tokens.saturating_sub(text_tokens);
    let ratios = Ratios::new(text_tokens, &vision);
    let meta_path = args.meta.clone().unwrap_or_else(|| args.out.with_extension("json"));
    for path in [&args.out, &meta_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    page.image
        .save_with_format(&args.out, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let overflow_chars = page.overflow.chars().count();
    let meta = RenderMeta {
        image: args.out.display().to_string(),
        source: args.text_file.display().to_string(),
        mode: args.mode,
        spec: &used_spec,
        font_px,
        target_ratio,
        target_tokens,
        text_tokens,
        input_tokens,
        used_tokens: text_tokens,
        dropped_tokens,
        dropped_chars,
        dropped_bytes: dropped.len(),
        ratio_check: check.as_ref(),
        vision_tokens: RenderVision::from(&vision),
        ratio: ratios,
        ground_truth: &page.text,
        chars: page.chars,
        lines: &page.lines,
        missing_glyphs: &page.missing_glyphs,
        overflow_chars,
        overflow_bytes: page.overflow.len(),
    };
    // Through a JSON value, so the file's keys are sorted (as they have always been written).
    let body = serde_json::to_string_pretty(&serde_json::to_value(&meta)?)?;
    std::fs::write(&meta_path, body + "\n").with_context(|| format!("writing {}", meta_path.display()))?;
    if !page.missing_glyphs.is_empty() {
        let chars: String =
            page.missing_glyphs.chars.iter().map(|g| g.codepoint.as_str()).collect::<Vec<_>>().join(" ");
        out.warn(&format!(
            "{} characters have no glyph in any font (drawn as boxes): {chars}",
            page.missing_glyphs.count
        ));
    }
    if let Some(check) = check.as_ref().filter(|c| !c.on_target()) {
        out.warn(&format!("{} in mode {}: {}", args.text_file.display(), args.mode, check.message()));
    }
    if dropped_chars > 0 {
        let why = match args.font_size {
            Some(px) => format!("did not fit the page at {px} px"),
            None => format!("are beyond the page's budget of {} tokens", target_tokens.unwrap_or(0)),
        };
        out.warn(&format!(
            "{dropped_chars} characters ({} bytes, {dropped_tokens} tokens) of {} {why}: the page holds \
             {text_tokens} of its {input_tokens} text tokens",
            dropped.len(),
            args.text_file.display()
        ));
    }
    out.send(&meta)?;
    out.result(&format!(
        "wrote {} ({}x{}, {} lines, font {font_px} px, {text_tokens} text tokens, ratio {:.3} nominal / {:.3} valid / \
         {:.3} slots) and {}",
        args.out.display(),
        page.width,
        page.height,
        page.lines.len(),
        ratios.nominal,
        ratios.valid,
        ratios.slots,
        meta_path.display()
    ));
    Ok(())
}

fn build_spec(args: &Args) -> RenderSpec {
    let mut spec = RenderSpec::for_mode(args.mode, args.lang);
    if let Some(w) = args.width {
        spec.width = w;
        spec.margins = Margins::uniform((w * 3).div_ceil(100));
    }
    if let Some(h) = args.height {
        spec.height = h;
    }
    if let Some(m) = args.margin {
        spec.margins = Margins::uniform(m);
    }
    spec.line_height = args.line_height;
    spec.align = match args.align {
        AlignArg::Left => Align::Left,
        AlignArg::Center => Align::Center,
        AlignArg::Right => Align::Right,
        AlignArg::Justify => Align::Justify,
    };
    spec.newline = match args.newline {
        NewlineArg::Keep => NewlinePolicy::Keep,
        NewlineArg::Marker => NewlinePolicy::Marker(args.newline_marker),
        NewlineArg::Space => NewlinePolicy::Space,
    };
    spec.tab_width = args.tab_width;
    spec.dpi = args.dpi;
    spec
}

/// Reads UTF-8 text from a file or stdin (`-`); invalid UTF-8 is an error naming the byte offset.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let (bytes, name) = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).context("reading text from stdin")?;
        (b, "<stdin>".to_string())
    } else {
        (std::fs::read(path).with_context(|| format!("reading {}", path.display()))?, path.display().to_string())
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        anyhow::anyhow!("{name}: invalid UTF-8 at byte offset {at} (the text file must be UTF-8)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_an_error_naming_the_file_and_byte_offset() {
        let path = std::env::temp_dir().join(format!("occ-render-cli-bad-utf8-{}.txt", std::process::id()));
        std::fs::write(&path, b"whale \xe9\xff tail").unwrap();
        let err = read_text(&path).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("invalid UTF-8 at byte offset 6"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = read_text(Path::new("/nonexistent/occ-text.txt")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/occ-text.txt"), "{err:#}");
    }
}
