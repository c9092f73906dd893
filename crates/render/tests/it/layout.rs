//! Layout: wrapping, tabs, newline policies, alignment, boxes, overflow (hand-computed cases).

use occ_core::Mode;
use occ_render::{render_page, Align, Lang, Margins, NewlinePolicy, RenderSpec};

use crate::common::{assert_consistent, en_text, zh_text};

fn tiny(px: f32) -> RenderSpec {
    RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(px)
}

/// A spec whose content width is exactly `w` pixels.
fn narrow(px: f32, w: u32) -> RenderSpec {
    let mut s = tiny(px);
    s.margins = Margins { left: 10, right: s.width - 10 - w, top: 10, bottom: 10 };
    s
}

fn line_texts(text: &str, spec: &RenderSpec) -> Vec<String> {
    let page = render_page(text, spec).unwrap();
    assert_consistent(&page, spec, text);
    page.lines.iter().map(|l| l.text.clone()).collect()
}

#[test]
fn canvas_is_exactly_the_mode_canvas() {
    for (mode, size) in [
        (Mode::Tiny, (512, 512)),
        (Mode::Small, (640, 640)),
        (Mode::Base, (1024, 1024)),
        (Mode::Large, (1280, 1280)),
        (Mode::Gundam, (1280, 1920)),
    ] {
        let spec = RenderSpec::for_mode(mode, Lang::En);
        let page = render_page("Call me Ishmael.", &spec).unwrap();
        assert_eq!(page.image.dimensions(), size, "{mode}");
        assert_eq!((page.width, page.height), size, "{mode}");
        // 3 % margins, rounded up.
        assert_eq!(spec.margins.left, (size.0 * 3).div_ceil(100), "{mode}");
    }
}

#[test]
fn words_wrap_at_spaces_and_the_spaces_stay_in_the_ground_truth() {
    let px = 16.0;
    let spec = tiny(px);
    let w_word = spec.fonts.measure("aaaa bbbb", px);
    // Room for "aaaa bbbb" but not for "aaaa bbbb cccc".
    let spec = narrow(px, (w_word + 1.0).ceil() as u32);
    let text = "aaaa bbbb  cccc dddd";
    assert_eq!(line_texts(text, &spec), ["aaaa bbbb", "cccc dddd"]);
    let page = render_page(text, &spec).unwrap();
    assert_eq!(page.text, text, "the double space at the break is in the ground truth");
    assert_eq!(page.lines[1].start, 11);
    assert!(page.lines[0].wrapped && !page.lines[1].wrapped);
    assert_eq!(page.visual_text(), "aaaa bbbb\ncccc dddd");
}

#[test]
fn line_widths_are_the_advance_widths_of_their_text() {
    let px = 13.0;
    let spec = tiny(px);
    let text = en_text(3000);
    let page = render_page(&text, &spec).unwrap();
    assert_consistent(&page, &spec, &text);
    for l in &page.lines {
        let w = spec.fonts.measure(&l.text, px);
        assert!((w - l.width).abs() < 1e-3, "line {:?}: width {} != measured {w}", l.text, l.width);
        assert!(l.width <= spec.content_width() as f32 + 1e-3);
    }
    // Greedy: the next line's first word would not have fitted.
    for pair in page.lines.windows(2) {
        if pair[0].wrapped {
            let next_word = pair[1].text.split(' ').next().unwrap();
            let joined = format!("{} {next_word}", pair[0].text);
            assert!(spec.fonts.measure(&joined, px) > spec.content_width() as f32, "{joined:?} would have fitted");
        }
    }
}

#[test]
fn a_word_longer_than_the_line_is_broken_between_characters() {
    let px = 20.0;
    let spec = tiny(px);
    let w = spec.fonts.measure("xxxxx", px);
    let spec = narrow(px, (w + 0.5).ceil() as u32);
    assert_eq!(line_texts("ab xxxxxxxxxxxx", &spec), ["ab", "xxxxx", "xxxxx", "xx"]);
}

#[test]
fn cjk_breaks_between_any_two_characters() {
    let px = 20.0;
    let spec = tiny(px);
    // Droid Sans Fallback's ideographs advance exactly one em.
    assert_eq!(spec.fonts.measure("三国演义", px), 80.0);
    let spec = narrow(px, 100);
    let text = "滚滚长江东逝水浪花淘尽英雄是非成败转头空";
    let lines = line_texts(text, &spec);
    assert_eq!(lines, ["滚滚长江东", "逝水浪花淘", "尽英雄是非", "成败转头空"]);
    // Latin next to CJK may break there too.
    let lines = line_texts("三国abcdefgh", &narrow(px, 60));
    assert_eq!(lines[0], "三国");
}

#[test]
fn tabs_expand_to_tab_stops_in_the_ground_truth() {
    let spec = tiny(12.0);
    let page = render_page("a\tb\n\tc\tdd\te", &spec).unwrap();
    assert_eq!(page.text, "a   b\n    c   dd  e");
    let mut s8 = spec.clone();
    s8.tab_width = 8;
    assert_eq!(render_page("ab\tc", &s8).unwrap().text, "ab      c");
}

#[test]
fn newline_policies() {
    let mut spec = tiny(12.0);
    let text = "one\ntwo\r\nthree\n\nfour";
    assert_eq!(line_texts(text, &spec), ["one", "two", "three", "", "four"]);
    spec.newline = NewlinePolicy::Marker('¶');
    assert_eq!(line_texts(text, &spec), ["one¶two¶three¶¶four"]);
    assert!(render_page(text, &spec).unwrap().missing_glyphs.is_empty(), "DejaVu has ¶");
    spec.newline = NewlinePolicy::Space;
    assert_eq!(render_page(text, &spec).unwrap().text, "one two three  four");
    // A trailing newline leaves an empty last line.
    spec.newline = NewlinePolicy::Keep;
    assert_eq!(line_texts("end\n", &spec), ["end", ""]);
}

#[test]
fn runs_of_spaces_and_indentation_are_kept() {
    let spec = tiny(12.0);
    let page = render_page("  indented   three spaces", &spec).unwrap();
    assert_eq!(page.text, "  indented   three spaces");
    assert_eq!(page.lines[0].text, "  indented   three spaces");
    let w = spec.fonts.measure("  indented   three spaces", 12.0);
    assert!((page.lines[0].width - w).abs() < 1e-3);
}

#[test]
fn control_characters_become_replacement_characters() {
    let spec = tiny(12.0);
    let page = render_page("a\u{0}b\u{7}c\u{1b}[0m\u{85}", &spec).unwrap();
    assert_eq!(page.text, "a\u{FFFD}b\u{FFFD}c\u{FFFD}[0m\u{FFFD}");
    assert!(page.missing_glyphs.is_empty(), "U+FFFD is drawn by DejaVu Sans");
}

#[test]
fn alignment_positions_lines_inside_the_margins() {
    let text = en_text(600);
    for align in [Align::Left, Align::Center, Align::Right, Align::Justify] {
        let mut spec = tiny(14.0);
        spec.align = align;
        let page = render_page(&text, &spec).unwrap();
        assert_consistent(&page, &spec, &text);
        let (l, r) = (spec.margins.left as f32, (spec.width - spec.margins.right) as f32);
        for line in page.lines.iter().filter(|l| !l.text.is_empty()) {
            match align {
                Align::Left => assert_eq!(line.x, l),
                Align::Right => assert!((line.x + line.width - r).abs() < 1e-3),
                Align::Center => assert!(((line.x - l) - (r - line.x - line.width)).abs() < 1e-3),
                Align::Justify if line.wrapped => assert_eq!((line.x, line.width), (l, r - l)),
                Align::Justify => assert_eq!(line.x, l),
            }
        }
    }
}

#[test]
fn overflow_is_reported_and_nothing_is_lost() {
    let spec = tiny(20.0);
    let text = en_text(20_000);
    let page = render_page(&text, &spec).unwrap();
    assert_consistent(&page, &spec, &text);
    assert!(!page.is_complete());
    assert_eq!(page.lines.len(), spec.max_lines());
    assert_eq!(spec.max_lines(), ((512 - 2 * 16) as f32 / 24.0) as usize);
    assert!(page.overflow.len() > 15_000);
    // The ground truth ends at a line break; the overflow begins with the next line's text.
    assert!(page.overflow.starts_with(|c: char| !c.is_whitespace()) || page.text.ends_with([' ', '\n']));
}

#[test]
fn line_boxes_stack_at_the_line_pitch_and_hold_the_ink() {
    let spec = tiny(15.0);
    let text = en_text(1500);
    let page = render_page(&text, &spec).unwrap();
    assert_consistent(&page, &spec, &text);
    for (i, l) in page.lines.iter().enumerate() {
        assert!((l.y - (spec.margins.top as f32 + i as f32 * 18.0)).abs() < 1e-3);
        assert_eq!(l.height, 18.0);
        assert!(l.baseline > l.y && l.baseline < l.y + l.height);
    }
    // Every non-empty line draws ink inside its own box.
    for l in page.lines.iter().filter(|l| l.text.trim().len() > 3) {
        let ink = crate::common::ink_in(&page, spec.bg, l.x, l.y, l.x + l.width, l.y + l.height);
        assert!(ink > 20, "line {:?}: {ink} ink pixels", l.text);
    }
}

#[test]
fn cjk_pages_draw_real_glyphs() {
    let spec = RenderSpec::for_mode(Mode::Small, Lang::Zh).with_font_px(18.0);
    let text = zh_text(4000);
    assert!(text.starts_with("第一回"), "三国演义 first");
    let page = render_page(&text, &spec).unwrap();
    assert_consistent(&page, &spec, &text);
    assert!(page.missing_glyphs.is_empty(), "missing: {:?}", page.missing_glyphs);
    let mut boxes_with_ink = 0;
    for l in &page.lines {
        let ink = crate::common::ink_in(&page, spec.bg, l.x, l.y, l.x + l.width, l.y + l.height);
        let cjk = l.text.chars().filter(|c| occ_render::is_cjk(*c)).count();
        // A real ideograph at 18 px covers far more than 20 pixels; a .notdef box or nothing would not
        // scale with the character count like this.
        assert!(ink >= cjk * 20, "line {:?}: {ink} ink pixels for {cjk} CJK chars", l.text);
        boxes_with_ink += usize::from(ink > 0);
    }
    assert!(boxes_with_ink > 10);
    // Distinct glyphs draw distinct pixels: two different ideographs never rasterise alike.
    let a = render_page("三", &spec).unwrap().image;
    let b = render_page("国", &spec).unwrap().image;
    assert_ne!(a, b);
}
