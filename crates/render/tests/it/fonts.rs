//! The embedded fonts and per-glyph fallback.

use occ_render::{BuiltinFont, FontSet};

#[test]
fn fonts_embedded_parse_with_pinned_hashes() {
    let set = FontSet::default_chain();
    let info = set.info();
    assert_eq!(info.len(), 2);
    assert_eq!(info[0].name, "DejaVu Sans");
    assert_eq!(info[1].name, "Droid Sans Fallback");
    // assets/fonts/PROVENANCE.md
    assert_eq!(info[1].sha256, "acb6440a713d880a13a21b468ba7cd43f5a2b2934972e51be791c880730777b8");
    assert_eq!(info[0].sha256.len(), 64);
    assert_eq!(BuiltinFont::DroidSansFallback.bytes().len(), 4_033_420);
}

#[test]
fn fallback_covers_latin_rtl_and_cjk_but_not_emoji() {
    let set = FontSet::default_chain();
    for c in "AZaz09.,;:!?\"'()[]{}—–…“”‘’éüßçñ¶⏎�ΑΩαωЖжאבגשתابتثي".chars() {
        assert!(set.has_glyph(c), "{c:?} (U+{:04X}) should be covered", u32::from(c));
    }
    for c in "三国演义滚长江东逝水，。、；：？！「」《》ぁアー".chars() {
        assert!(set.has_glyph(c), "{c:?} (U+{:04X}) should be covered by Droid", u32::from(c));
    }
    // Most emoji and Korean Hangul syllables are in neither face (DejaVu happens to have U+1F600).
    for c in ['🐋', '🦀', '\u{1F3F3}', '한', '글'] {
        assert!(!set.has_glyph(c), "{c:?} is not expected in either font");
    }
    assert!(set.has_glyph('😀'));
    // DejaVu alone has no CJK.
    let dejavu = FontSet::builtin(&[BuiltinFont::DejaVuSans]).unwrap();
    assert!(!dejavu.has_glyph('三'));
}

#[test]
fn font_sets_round_trip_through_json_and_reject_unknown_fonts() {
    let set = FontSet::default_chain();
    let json = serde_json::to_string(&set).unwrap();
    let back: FontSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, set);
    let bad = r#"[{"name":"Comic Sans"}]"#;
    let err = serde_json::from_str::<FontSet>(bad).unwrap_err().to_string();
    assert!(err.contains("Comic Sans"), "{err}");
    let wrong_hash = r#"[{"name":"DejaVu Sans","sha256":"00"}]"#;
    assert!(serde_json::from_str::<FontSet>(wrong_hash).unwrap_err().to_string().contains("sha256"));
    assert!(FontSet::new(vec![]).is_err());
}

#[test]
fn every_family_parses_covers_the_default_chain_and_sets_other_pixels() {
    use occ_core::Mode;
    use occ_render::{render_page, FontFamily, Lang, RenderSpec};

    let text = "Call me Ishmael. Шалом אבג ابت 滚滚长江";
    let base = RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(14.0);
    let sans = render_page(text, &base).unwrap();
    for family in FontFamily::ALL {
        assert_eq!(family.name().parse::<FontFamily>(), Ok(family));
        let chain = family.chain();
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            assert!(chain.has_glyph(c), "{family}: {c:?} not covered");
        }
        let spec = RenderSpec { fonts: chain, ..base.clone() };
        let page = render_page(text, &spec).unwrap();
        assert_eq!(page.text, text, "{family}");
        assert!(page.missing_glyphs.is_empty(), "{family}");
        if family == FontFamily::default() {
            assert!(page.image == sans.image, "the default family is the default chain");
        } else {
            assert!(page.image != sans.image, "{family} draws other pixels than DejaVu Sans");
        }
    }
    assert_eq!(FontFamily::default().chain(), FontSet::default_chain());
    let err = "comic-sans".parse::<FontFamily>().unwrap_err().to_string();
    assert!(err.contains("dejavu-serif"), "{err}");
    // The new faces serialise by name and read back.
    let serif = FontFamily::DejavuSerif.chain();
    let back: FontSet = serde_json::from_str(&serde_json::to_string(&serif).unwrap()).unwrap();
    assert_eq!(back, serif);
}
