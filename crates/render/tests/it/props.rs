//! Property tests over random mixed text (ASCII, CJK, spaces, tabs, newlines; right-to-left scripts with
//! bidi controls, marks and brackets).

use occ_core::Mode;
use occ_render::{lines_needed, render_page, Lang, NewlinePolicy, RenderSpec};
use proptest::prelude::*;

use crate::common::violations;

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z]{1,12}",
        1 => "[0-9.,;:!?()'\"-]{1,3}",
        3 => Just(" ".to_string()),
        1 => " {2,5}",
        1 => Just("\t".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\n\n".to_string()),
        2 => "[三国演义滚长江东逝水浪花淘尽英雄，。]{1,8}",
        1 => Just("\r\n".to_string()),
    ];
    prop::collection::vec(piece, 0..120).prop_map(|v| v.concat())
}

/// Text mixing directions: Hebrew (with niqqud), Arabic (with harakat, digits, ligatures), Latin,
/// digits, brackets, bidi embeddings/overrides/isolates/marks and joiners, in any order (unbalanced
/// controls included).
fn bidi_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[a-zA-Z]{1,8}",
        3 => "[אבגדהוזחטיכלמנסעפצקרשת]{1,8}",
        3 => "[ابتثجحخدذرزسشصضطظعغفقكلمنهوي]{1,8}",
        1 => "[\u{05B0}-\u{05BC}\u{064B}-\u{0652}]{1,2}",
        1 => "[0-9\u{0660}-\u{0669}]{1,4}",
        1 => "[()\\[\\]<>«».,:!?-]{1,2}",
        1 => "[\u{200C}-\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{061C}]",
        1 => "[ﻡﻼﺳ\u{FB1D}-\u{FB4F}]{1,3}",
        4 => Just(" ".to_string()),
        1 => Just("\n".to_string()),
    ];
    prop::collection::vec(piece, 0..80).prop_map(|v| v.concat())
}

fn spec_strategy() -> impl Strategy<Value = RenderSpec> {
    (prop_oneof![Just(Mode::Tiny), Just(Mode::Small)], 6.0f32..30.0, 0u32..40, 0usize..3).prop_map(
        |(mode, px, margin, nl)| {
            let mut s = RenderSpec::for_mode(mode, Lang::En).with_font_px((px * 4.0).round() / 4.0);
            s.margins = occ_render::Margins { left: margin, right: margin / 2, top: margin / 3, bottom: margin };
            s.newline = [NewlinePolicy::Keep, NewlinePolicy::Space, NewlinePolicy::Marker('¶')][nl];
            s
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pages_are_deterministic_and_consistent(text in text(), spec in spec_strategy()) {
        let a = render_page(&text, &spec).unwrap();
        let b = render_page(&text, &spec).unwrap();
        prop_assert_eq!(a.image.as_raw(), b.image.as_raw());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.image.dimensions(), (spec.width, spec.height));
        let v = violations(&a, &spec, &text);
        prop_assert!(v.is_empty(), "{}", v.join("\n"));
        prop_assert!(a.lines.len() <= spec.max_lines());
        if text.is_empty() {
            prop_assert!(a.lines.is_empty());
        }
    }

    #[test]
    fn mixed_direction_pages_are_consistent_and_drawn_in_bidi_order(text in bidi_text(), spec in spec_strategy()) {
        let page = render_page(&text, &spec).unwrap();
        let v = violations(&page, &spec, &text);
        prop_assert!(v.is_empty(), "{}", v.join("\n"));
        let again = render_page(&text, &spec).unwrap();
        prop_assert_eq!(page.image.as_raw(), again.image.as_raw());
        // Every line is drawn in the order the bidi algorithm gives its characters (mirrored
        // characters aside).
        let info = unicode_bidi::BidiInfo::new(&page.text, None);
        for l in &page.lines {
            let para = info.paragraphs.iter().find(|p| p.range.start <= l.start && l.end <= p.range.end).unwrap();
            let want = info.reorder_line(para, l.start..l.end);
            let drawn = l.visual.as_deref().unwrap_or(&l.text);
            let unmirror = |s: &str| -> String {
                s.chars().map(|c| if "()[]<>«»".contains(c) { '·' } else { c }).collect()
            };
            prop_assert_eq!(unmirror(drawn), unmirror(&want), "line {:?}", l.text);
        }
    }

    #[test]
    fn a_larger_font_never_gives_fewer_lines(text in text(), spec in spec_strategy(), grow in 0.25f32..8.0) {
        let small = lines_needed(&text, &spec).unwrap();
        let big = lines_needed(&text, &spec.with_font_px(spec.font_px + grow)).unwrap();
        prop_assert!(big >= small, "{} px: {} lines, {} px: {} lines", spec.font_px, small, spec.font_px + grow, big);
    }
}
