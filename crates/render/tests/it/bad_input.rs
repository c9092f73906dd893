//! Bad input: each case gives a clear error or a documented result, never a panic.

use occ_core::Mode;
use occ_render::fit::fit_to_ratio;
use occ_render::{render_page, Lang, Margins, NewlinePolicy, RenderError, RenderSpec};

use crate::common::{assert_consistent, tokenizer};

fn spec() -> RenderSpec {
    RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(14.0)
}

#[test]
fn empty_text_gives_a_blank_page_and_no_fit() {
    let s = spec();
    let page = render_page("", &s).unwrap();
    assert!(page.lines.is_empty() && page.text.is_empty() && page.overflow.is_empty());
    assert!(page.image.pixels().all(|p| p.0 == s.bg));
    let err = fit_to_ratio("", tokenizer(), Mode::Tiny, 10.0, &s).unwrap_err();
    assert!(matches!(err, RenderError::EmptyText), "{err}");
}

#[test]
fn emoji_are_counted_as_missing_glyphs_and_kept() {
    let s = spec();
    let text = "whale 🐋 and 🦀🦀 crab";
    let page = render_page(text, &s).unwrap();
    assert_consistent(&page, &s, text);
    assert_eq!(page.text, text);
    let m = &page.missing_glyphs;
    assert_eq!(m.count, 3);
    let listed: Vec<(char, &str, usize)> = m.chars.iter().map(|g| (g.ch, g.codepoint.as_str(), g.count)).collect();
    assert_eq!(listed, [('🐋', "U+1F40B", 1), ('🦀', "U+1F980", 2)]);
    // The .notdef box is drawn: the page differs from one without the emoji.
    let without = render_page("whale  and  crab", &s).unwrap();
    assert_ne!(page.image, without.image);
}

#[test]
fn right_to_left_text_is_laid_out_in_logical_order() {
    let s = spec();
    for text in ["שלום עולם", "مرحبا بالعالم", "abc שלום def"] {
        let page = render_page(text, &s).unwrap();
        assert_consistent(&page, &s, text);
        assert_eq!(page.text, text, "no bidi reordering");
        assert!(page.missing_glyphs.is_empty(), "{text}: {:?}", page.missing_glyphs);
        assert!(page.image.pixels().any(|p| p.0 != s.bg));
    }
}

#[test]
fn invalid_font_sizes_are_errors() {
    for px in [0.0, -3.0, f32::NAN, f32::INFINITY] {
        let err = render_page("text", &spec().with_font_px(px)).unwrap_err();
        assert!(matches!(err, RenderError::InvalidFontSize { .. }), "{px}: {err}");
    }
    let mut s = spec();
    s.line_height = 0.0;
    assert!(matches!(render_page("x", &s), Err(RenderError::InvalidLineHeight { .. })));
}

#[test]
fn pages_smaller_than_their_margins_are_errors() {
    let mut s = spec();
    s.margins = Margins { left: 300, right: 300, top: 10, bottom: 10 };
    let err = render_page("text", &s).unwrap_err();
    assert!(matches!(err, RenderError::MarginsTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("512x512"), "{err}");
    assert!(matches!(fit_to_ratio("text", tokenizer(), Mode::Tiny, 5.0, &s), Err(RenderError::MarginsTooLarge { .. })));
    s.margins = Margins::uniform(0);
    s.width = 0;
    assert!(matches!(render_page("text", &s), Err(RenderError::EmptyPage { .. })));
}

#[test]
fn a_glyph_wider_than_the_page_overflows_instead_of_spilling() {
    let mut s = spec().with_font_px(200.0);
    s.margins = Margins { left: 200, right: 200, top: 10, bottom: 10 };
    let page = render_page("WWW", &s).unwrap();
    assert!(page.lines.is_empty());
    assert_eq!(page.overflow, "WWW");
    // A font taller than the page: nothing fits either.
    let page = render_page("abc", &spec().with_font_px(500.0)).unwrap();
    assert_eq!((page.text.as_str(), page.overflow.as_str()), ("", "abc"));
}

#[test]
fn invalid_spec_fields_are_errors() {
    let mut s = spec();
    s.tab_width = 0;
    assert!(matches!(render_page("a", &s), Err(RenderError::InvalidTabWidth { columns: 0 })));
    let mut s = spec();
    s.newline = NewlinePolicy::Marker('\n');
    assert!(matches!(render_page("a", &s), Err(RenderError::InvalidNewlineMarker { .. })));
}
