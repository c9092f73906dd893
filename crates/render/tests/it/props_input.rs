//! Property tests of the renderer on arbitrary input: any Unicode text (controls,
//! combining marks, right-to-left, unpaired bidi controls, megabytes) and any spec numbers (canvas,
//! margins, font size, line height, tab width, newline marker, ratio) never panic, never allocate
//! without bound, and either give a consistent page or the spec's own validation error. Budget and
//! guarantees: docs/RELIABILITY.md, "Fuzzing and property tests".

use occ_core::Mode;
use occ_render::degrade::{apply, Degradation, Filter};
use occ_render::fit::{cut_tokens, fit_to_ratio};
use occ_render::{
    normalize, render_page, Align, Lang, Margins, NewlinePolicy, RatioCheck, RenderError, RenderSpec, RenderedPage,
    MAX_FONT_PX, MAX_PAGE_PIXELS,
};
use proptest::prelude::*;

use crate::common::tokenizer;

/// Any Unicode text: every scalar value, weighted towards what stresses layout.
fn any_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        4 => "[a-zA-Z]{1,12}",
        3 => Just(" ".to_string()),
        1 => "[\n\r\t\u{0B}\u{0C}\u{85}\u{A0}\u{2028}\u{2029}\u{3000}]{1,3}",
        1 => "[\u{0300}-\u{036F}\u{0591}-\u{05C7}\u{064B}-\u{065F}\u{20D0}-\u{20F0}]{1,6}",
        1 => "[\u{0}-\u{1F}\u{7F}-\u{9F}\u{AD}\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2060}-\u{2069}\u{FEFF}]{1,3}",
        2 => "[אבגדהוזחטיכלמנסעפצקרשתابتثجحخدذرزسشلام]{1,8}",
        1 => "[ﻡﻼﺳ\u{FB1D}-\u{FB4F}\u{FDFD}\u{FE70}-\u{FEFC}]{1,3}",
        1 => "[ߊ-ߪ܀-ݏހ-ޱ]{1,4}",
        2 => "[三国演义滚长江东逝水浪花淘尽英雄，。]{1,8}",
        1 => "[\u{1F300}-\u{1F6FF}\u{E000}-\u{E0FF}\u{F0000}-\u{F00FF}]{1,2}",
        1 => "[0-9.,;:!?()\\[\\]<>«»'\"-]{1,4}",
    ];
    prop::collection::vec(piece, 0..64).prop_map(|v| v.concat())
}

/// Mostly small texts; now and then one of 1–3 MB (a small text repeated).
fn text_any_size() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => any_text(),
        1 => (any_text(), 1usize..3).prop_map(|(t, mb)| {
            let unit = if t.is_empty() { "x ".to_string() } else { t };
            unit.repeat((mb << 20).div_ceil(unit.len()))
        }),
    ]
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>(),
        Just(0.0f32),
        Just(-0.0f32),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(f32::MIN_POSITIVE),
        Just(1e-30f32),
        Just(MAX_FONT_PX),
        Just(MAX_FONT_PX * 1.001),
        Just(1e30f32),
    ]
}

/// A canvas side: mostly page-sized, sometimes empty, tiny or far too large.
fn side() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 1u32..1400,
        1 => Just(0u32),
        1 => 1u32..8,
        1 => 8193u32..=u32::MAX,
    ]
}

fn margin() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0u32..80, 1 => 80u32..2000, 1 => any::<u32>()]
}

fn newline() -> impl Strategy<Value = NewlinePolicy> {
    prop_oneof![
        Just(NewlinePolicy::Keep),
        Just(NewlinePolicy::Space),
        Just(NewlinePolicy::Marker('¶')),
        any::<char>().prop_map(NewlinePolicy::Marker),
    ]
}

fn align() -> impl Strategy<Value = Align> {
    prop_oneof![Just(Align::Left), Just(Align::Center), Just(Align::Right), Just(Align::Justify)]
}

/// A spec with every number arbitrary.
fn any_spec() -> impl Strategy<Value = RenderSpec> {
    let font_px = prop_oneof![4 => 1.0f32..60.0, 1 => 60.0f32..MAX_FONT_PX, 2 => any_f32()];
    let line_height = prop_oneof![4 => 0.8f32..2.5, 1 => 0.01f32..0.8, 1 => 2.5f32..50.0, 2 => any_f32()];
    let tab = prop_oneof![4 => 1u32..=8, 1 => any::<u32>()];
    (
        (side(), side(), font_px, line_height),
        (margin(), margin(), margin(), margin()),
        (tab, newline(), align(), any::<[u8; 3]>(), any::<[u8; 3]>()),
    )
        .prop_map(|((w, h, px, lh), (l, r, t, b), (tab, nl, al, fg, bg))| {
            let mut s = RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(px);
            s.width = w;
            s.height = h;
            s.line_height = lh;
            s.margins = Margins { left: l, right: r, top: t, bottom: b };
            s.tab_width = tab;
            s.newline = nl;
            s.align = al;
            s.fg = fg;
            s.bg = bg;
            s
        })
}

/// What holds for every page, whatever the numbers: the canvas, the ground truth, the line slices and
/// count, and no ink outside the text area.
fn page_problems(page: &RenderedPage, spec: &RenderSpec, input: &str) -> Vec<String> {
    let mut v = Vec::new();
    if page.image.dimensions() != (spec.width, spec.height) || (page.width, page.height) != (spec.width, spec.height) {
        v.push(format!("canvas {:?}, spec {}x{}", page.image.dimensions(), spec.width, spec.height));
    }
    let norm = normalize(input, spec.newline, spec.tab_width);
    if page.text.len() + page.overflow.len() != norm.len() || format!("{}{}", page.text, page.overflow) != norm {
        v.push("text + overflow != normalize(input)".into());
    }
    if page.lines.len() > spec.max_lines() {
        v.push(format!("{} lines, {} fit", page.lines.len(), spec.max_lines()));
    }
    if page.chars != page.text.chars().count() {
        v.push(format!("chars {} != {}", page.chars, page.text.chars().count()));
    }
    let (l, r) = (spec.margins.left as f32, (spec.width - spec.margins.right) as f32);
    let mut pos = 0;
    for (i, line) in page.lines.iter().enumerate() {
        if page.text.get(line.start..line.end) != Some(line.text.as_str()) || line.start < pos {
            v.push(format!("line {i} {:?} is not text[{}..{}] after {pos}", line.text, line.start, line.end));
        }
        if line.x < l - 1e-3 || line.x + line.width > r + 1e-3 {
            v.push(format!("line {i} spans {}..{} outside {l}..{r}", line.x, line.x + line.width));
        }
        pos = line.end;
    }
    let m = spec.margins;
    let bg = image::Rgb(spec.bg);
    let inside = |x: u32, y: u32| x >= m.left && x < spec.width - m.right && y >= m.top && y < spec.height - m.bottom;
    if let Some((x, y, _)) = page.image.enumerate_pixels().find(|&(x, y, p)| !inside(x, y) && *p != bg) {
        v.push(format!("ink in the margin at ({x}, {y})"));
    }
    v
}

/// The spec for the ratio fitter: a mode's canvas, arbitrary margins, line height and newlines.
fn fit_spec() -> impl Strategy<Value = (Mode, RenderSpec)> {
    (
        prop_oneof![Just(Mode::Tiny), Just(Mode::Small)],
        prop_oneof![4 => 0u32..60, 1 => 60u32..400],
        prop_oneof![4 => 1.0f32..1.8, 1 => 0.5f32..4.0],
        newline(),
        align(),
    )
        .prop_map(|(mode, m, lh, nl, al)| {
            let mut s = RenderSpec::for_mode(mode, Lang::En);
            s.margins = Margins { left: m, right: m / 2, top: m / 3, bottom: m };
            s.line_height = lh;
            s.newline = nl;
            s.align = al;
            (mode, s)
        })
}

fn any_ratio() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.05f64..30.0,
        1 => 30.0f64..2000.0,
        1 => 1e-6f64..0.05,
        2 => any::<f64>(),
        1 => prop::sample::select(vec![0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e9, 1e300, f64::MIN_POSITIVE]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `render_page` never panics: with a valid spec it gives a consistent page, and it fails exactly
    /// when `RenderSpec::validate` does, with that error.
    #[test]
    fn any_text_and_spec_give_a_consistent_page_or_the_spec_error(text in text_any_size(), spec in any_spec()) {
        let valid = spec.validate();
        match render_page(&text, &spec) {
            Ok(page) => {
                prop_assert!(valid.is_ok(), "rendered with an invalid spec: {:?}", valid);
                let v = page_problems(&page, &spec, &text);
                prop_assert!(v.is_empty(), "{}", v.join("\n"));
            }
            Err(e) => {
                let want = valid.err().map(|v| v.to_string());
                prop_assert_eq!(Some(e.to_string()), want);
            }
        }
    }

    /// Fitting a ratio either fits (the page holds all of its text, a prefix of the normalised input,
    /// with its exact token count, at a font size of the search grid, and the ratio check agrees with
    /// the counts) or fails with a clear error that matches the input: an invalid ratio, an empty text,
    /// or text that does not fit at the minimum size.
    #[test]
    fn ratio_fitting_fits_or_gives_a_clear_error((mode, spec) in fit_spec(), text in text_any_size(), ratio in any_ratio()) {
        let tok = tokenizer();
        let result = fit_to_ratio(&text, tok, mode, ratio, &spec);
        if let Err(invalid) = spec.validate_page() {
            // An invalid page (a newline marker that is a control character …) is its own error.
            prop_assert_eq!(result.err().map(|e| e.to_string()), Some(invalid.to_string()));
            return Ok(());
        }
        let norm = normalize(&text, spec.newline, spec.tab_width);
        match result {
            Ok(p) => {
                prop_assert!(ratio.is_finite() && ratio > 0.0);
                let v = page_problems(&p.page, &spec.with_font_px(p.font_px), &p.page.text);
                prop_assert!(v.is_empty(), "{}", v.join("\n"));
                prop_assert!(p.page.is_complete(), "fitted text overflows: {:?}", p.page.overflow);
                prop_assert!(norm.starts_with(&p.page.text));
                prop_assert_eq!(p.complete, p.page.text.len() == norm.len());
                prop_assert_eq!(p.text_tokens, tok.count(&p.page.text).unwrap());
                let budget = (ratio * f64::from(p.vision.nominal)).round().min(1e12) as usize;
                prop_assert_eq!(p.target_tokens, budget);
                prop_assert!((3.0..=400.0).contains(&p.font_px) && (p.font_px * 4.0).fract() == 0.0, "font {}", p.font_px);
                let check = RatioCheck::of(&p);
                prop_assert_eq!(check.text_tokens, p.text_tokens);
                if check.on_target() {
                    let exact = ratio * f64::from(p.vision.nominal);
                    prop_assert!((p.text_tokens as f64 - exact).abs() <= (0.01 * exact).max(0.5) + 1e-6);
                }
                if p.target_tokens == 0 {
                    prop_assert!(p.page.text.is_empty() && p.page.lines.is_empty());
                }
            }
            Err(RenderError::InvalidRatio { .. }) => prop_assert!(!(ratio.is_finite() && ratio > 0.0)),
            Err(RenderError::EmptyText) => prop_assert!(norm.is_empty(), "refused as empty: {:?}", text),
            Err(e @ RenderError::DoesNotFit { .. }) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("do not fit") && msg.contains("minimum font size"), "{}", msg);
            }
            Err(e) => prop_assert!(false, "unexpected error: {}", e),
        }
    }

    /// `cut_tokens` cuts at a character boundary and returns the exact count of what it keeps; a budget
    /// of at least the whole text keeps all of it.
    #[test]
    fn cutting_after_n_tokens_is_exact(text in any_text(), n in prop_oneof![0usize..40, 40usize..400, Just(usize::MAX)]) {
        let tok = tokenizer();
        let (cut, count) = cut_tokens(&text, tok, n).unwrap();
        prop_assert!(text.is_char_boundary(cut));
        prop_assert_eq!(count, tok.count(&text[..cut]).unwrap());
        let whole = tok.count(&text).unwrap();
        if n == 0 || text.is_empty() {
            prop_assert_eq!((cut, count), (0, 0));
        } else {
            prop_assert!(cut > 0);
        }
        if n >= whole {
            prop_assert_eq!(cut, text.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Degradations with any parameters never panic: a valid step keeps (or sets) the page size, an
    /// invalid one is an `InvalidDegradation` error naming the step.
    #[test]
    fn degradations_with_any_parameters_never_panic(
        w in 1u32..64, h in 1u32..64,
        sigma in prop_oneof![0.01f32..8.0, any_f32()],
        quality in any::<u8>(),
        seed in any::<u64>(),
        (tw, th) in prop_oneof![4 => (1u32..96, 1u32..96), 1 => (any::<u32>(), any::<u32>()), 1 => (0u32..2, 0u32..2)],
        restore in any::<bool>(),
    ) {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 13) as u8, (x ^ y) as u8]));
        let steps = [
            Degradation::GaussianBlur { sigma },
            Degradation::Jpeg { quality },
            Degradation::Noise { sigma, seed },
            Degradation::Downscale { width: tw, height: th, filter: Filter::Triangle, restore },
        ];
        for d in steps {
            match apply(&img, &d) {
                Ok(out) => {
                    let want = match d {
                        Degradation::Downscale { width, height, restore: false, .. } => (width, height),
                        _ => (w, h),
                    };
                    prop_assert_eq!(out.dimensions(), want, "{:?}", d);
                }
                Err(e @ RenderError::InvalidDegradation { .. }) => {
                    let ok = match d {
                        Degradation::GaussianBlur { sigma } => sigma.is_finite() && sigma > 0.0 && sigma <= 1000.0,
                        Degradation::Jpeg { quality } => (1..=100).contains(&quality),
                        Degradation::Noise { sigma, .. } => sigma.is_finite() && sigma >= 0.0,
                        Degradation::Downscale { width, height, .. } => {
                            width > 0 && height > 0 && u64::from(width) * u64::from(height) <= MAX_PAGE_PIXELS
                        }
                    };
                    prop_assert!(!ok, "{:?} refused: {}", d, e);
                }
                Err(e) => prop_assert!(false, "{:?}: {}", d, e),
            }
        }
    }
}

/// Regression (found by `any_text_and_spec_give_a_consistent_page_or_the_spec_error`): a combining
/// mark has no advance, so at a huge font size with a tiny line height it "fits" a line, and drawing it
/// asked the rasteriser for 22 TB (abort). Font sizes above `MAX_FONT_PX` are now refused.
#[test]
fn a_huge_font_size_is_refused_not_rasterised() {
    let mut s = RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(1.0e7);
    s.line_height = 1e-6;
    let err = render_page("\u{301}", &s).unwrap_err();
    assert!(matches!(err, RenderError::InvalidFontSize { .. }), "{err}");
    assert!(err.to_string().contains("at most 1024 px"), "{err}");
    assert!(render_page("\u{301}x", &s.with_font_px(MAX_FONT_PX)).is_ok());
}

/// Regression: a canvas of 100000 × 100000 px (`render --width 100000 --height 100000`) was allocated
/// (30 GB) and filled; pages over `MAX_PAGE_PIXELS` are now refused before anything is allocated.
#[test]
fn a_huge_canvas_is_refused_before_allocating() {
    let mut s = RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(12.0);
    for (w, h) in [(100_000, 100_000), (u32::MAX, u32::MAX), (8193, 8192), (1 << 26, 2)] {
        (s.width, s.height) = (w, h);
        let err = render_page("text", &s).unwrap_err();
        assert!(matches!(err, RenderError::PageTooLarge { .. }), "{w}x{h}: {err}");
        assert!(err.to_string().contains(&format!("{w}x{h}")), "{err}");
        let fit = fit_to_ratio("text", tokenizer(), Mode::Tiny, 10.0, &s).unwrap_err();
        assert!(matches!(fit, RenderError::PageTooLarge { .. }), "{w}x{h}: {fit}");
    }
}

/// Regression: a blur of sigma 1e30 overflowed the kernel's allocation (panic), and a downscale to
/// 100000 × 100000 px allocated 30 GB; both are now `InvalidDegradation` errors.
#[test]
fn a_huge_blur_or_downscale_target_is_refused() {
    let img = image::RgbImage::new(4, 4);
    for d in [
        Degradation::GaussianBlur { sigma: 1e30 },
        Degradation::GaussianBlur { sigma: 1000.5 },
        Degradation::Downscale { width: 100_000, height: 100_000, filter: Filter::Nearest, restore: true },
    ] {
        let err = apply(&img, &d).unwrap_err();
        assert!(matches!(err, RenderError::InvalidDegradation { .. }), "{d:?}: {err}");
    }
    assert!(apply(&img, &Degradation::GaussianBlur { sigma: 1000.0 }).is_ok());
}
