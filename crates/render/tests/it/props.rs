//! Property tests over random mixed text (ASCII, CJK, spaces, tabs, newlines).

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
    fn a_larger_font_never_gives_fewer_lines(text in text(), spec in spec_strategy(), grow in 0.25f32..8.0) {
        let small = lines_needed(&text, &spec).unwrap();
        let big = lines_needed(&text, &spec.with_font_px(spec.font_px + grow)).unwrap();
        prop_assert!(big >= small, "{} px: {} lines, {} px: {} lines", spec.font_px, small, spec.font_px + grow, big);
    }
}
