//! Right-to-left text: lines drawn in the visual order of the Unicode Bidirectional Algorithm, Arabic
//! shaped, mixed directions, and the refusal of joining scripts that the font cannot shape.

use occ_core::Mode;
use occ_render::{render_page, Face, FontSet, Lang, RenderError, RenderSpec, RenderedPage};
use unicode_bidi::BidiInfo;

use crate::common::assert_consistent;

/// Left-to-right override … pop: forces its content to be drawn in typing order, left to right.
const LRO: char = '\u{202D}';
const PDF: char = '\u{202C}';

fn spec() -> RenderSpec {
    RenderSpec::for_mode(Mode::Tiny, Lang::En).with_font_px(24.0)
}

fn render(text: &str, spec: &RenderSpec) -> RenderedPage {
    let page = render_page(text, spec).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_consistent(&page, spec, text);
    page
}

/// Each line of the page as the bidi algorithm orders it for display (unicode-bidi's
/// `reorder_line` over the page's ground truth).
fn bidi_lines(page: &RenderedPage) -> Vec<String> {
    let info = BidiInfo::new(&page.text, None);
    page.lines
        .iter()
        .map(|l| {
            let para = info.paragraphs.iter().find(|p| p.range.start <= l.start && l.end <= p.range.end).unwrap();
            info.reorder_line(para, l.start..l.end).into_owned()
        })
        .collect()
}

fn drawn_lines(page: &RenderedPage) -> Vec<String> {
    page.visual_text().split('\n').map(str::to_string).collect()
}

#[test]
fn a_hebrew_line_is_drawn_right_to_left() {
    let spec = spec();
    let page = render("עברית", &spec);
    assert_eq!(page.text, "עברית", "the ground truth stays in reading order");
    assert_eq!(page.lines[0].visual.as_deref(), Some("תירבע"));
    assert_eq!(drawn_lines(&page), bidi_lines(&page));
    // The pixels are those of the letters forced into left-to-right order by an override, i.e. the
    // visual order the bidi algorithm prescribes, drawn without any reordering.
    let forced = render(&format!("{LRO}תירבע{PDF}"), &spec);
    let shown: String = forced.visual_text().chars().filter(|c| ![LRO, PDF].contains(c)).collect();
    assert_eq!(shown, "תירבע", "an override to left-to-right is drawn as typed");
    assert!(page.image == forced.image, "עברית must look like the override of its visual order");
    // And not like the letters in typing order (what the renderer used to draw).
    let typed = render(&format!("{LRO}עברית{PDF}"), &spec);
    assert!(page.image != typed.image);
}

#[test]
fn an_arabic_line_is_shaped_and_drawn_right_to_left() {
    let spec = spec();
    let page = render("سلام", &spec);
    assert_eq!(page.text, "سلام");
    assert_eq!(page.lines[0].visual.as_deref(), Some("مالس"));
    assert_eq!(drawn_lines(&page), bidi_lines(&page));
    assert!(page.missing_glyphs.is_empty());
    // Shaped: initial seen, lam-alef ligature (final), isolated meem, left to right on the page. The same
    // word written with Unicode's presentation forms in visual order and forced left to right gives
    // the same pixels.
    let presentation = render(&format!("{LRO}\u{FEE1}\u{FEFC}\u{FEB3}{PDF}"), &spec);
    assert!(page.image == presentation.image, "سلام must be drawn as ﻡﻼﺳ (its joined forms, right to left)");
    // Unjoined letters (each one isolated by a zero-width non-joiner) look different.
    let isolated = render("س\u{200C}ل\u{200C}ا\u{200C}م", &spec);
    assert!(page.image != isolated.image, "joining must change the glyphs");
}

#[test]
fn arabic_words_and_sentences_follow_the_bidi_algorithm() {
    let spec = spec();
    for text in ["مرحبا بالعالم", "السلام عليكم ورحمة الله", "العدد ١٢٣ والعدد 456", "بِسْمِ اللَّهِ"]
    {
        let page = render(text, &spec);
        assert_eq!(drawn_lines(&page), bidi_lines(&page), "{text}");
        assert!(page.missing_glyphs.is_empty(), "{text}: {:?}", page.missing_glyphs);
    }
    // Digits keep their left-to-right order inside a right-to-left line.
    let page = render("العدد 456", &spec);
    assert_eq!(page.lines[0].visual.as_deref(), Some("456 ددعلا"));
}

#[test]
fn mixed_left_to_right_and_right_to_left_lines() {
    let spec = spec();
    // A left-to-right paragraph with a Hebrew word and a number after it, then a right-to-left
    // paragraph with an English word and a year.
    let text = "abc עברית 123 def\nשלום world 2024 טוב";
    let page = render(text, &spec);
    let drawn = drawn_lines(&page);
    assert_eq!(drawn, bidi_lines(&page));
    assert_eq!(drawn, ["abc 123 תירבע def", "בוט world 2024 םולש"]);
    assert_eq!(page.text, text);
    // The first line looks exactly like its visual order forced left to right.
    let forced = render(&format!("{LRO}abc 123 תירבע def{PDF}"), &spec);
    let first = |p: &RenderedPage| {
        let (w, _) = p.image.dimensions();
        let h = (p.lines[0].y + p.lines[0].height) as u32;
        p.image.view(0, 0, w, h).to_image()
    };
    use image::GenericImageView;
    assert!(first(&page) == first(&forced));
    // Mixed Arabic and Latin.
    let page = render("كلمة English ثم عربي", &spec);
    assert_eq!(drawn_lines(&page), bidi_lines(&page));
    assert_eq!(drawn_lines(&page), ["يبرع مث English ةملك"]);
}

#[test]
fn brackets_in_right_to_left_text_are_mirrored() {
    let page = render("(עברית) [שלום]", &spec());
    // In a right-to-left run "(" is drawn as ")": the reader sees the brackets around the word.
    assert_eq!(page.lines[0].visual.as_deref(), Some("[םולש] (תירבע)"));
}

#[test]
fn wrapped_right_to_left_lines_are_each_reordered() {
    let word = "שלום עולם ומלואו ";
    let text = word.repeat(30);
    let spec = spec();
    let page = render(&text, &spec);
    assert!(page.lines.len() > 3);
    assert_eq!(drawn_lines(&page), bidi_lines(&page));
    // The line order is the reading order: the first line holds the first words.
    assert!(page.lines[0].text.starts_with("שלום עולם"));
    assert!(page.lines[0].visual.as_deref().is_some_and(|v| v.ends_with("םלוע םולש")));
    let long_arabic = "السلام عليكم ورحمة الله وبركاته ".repeat(20);
    let page = render(&long_arabic, &spec);
    assert!(page.lines.len() > 3);
    assert_eq!(drawn_lines(&page), bidi_lines(&page));
}

#[test]
fn pages_without_right_to_left_text_have_no_visual_lines() {
    let page = render("Call me Ishmael. 滚滚长江东逝水", &spec());
    assert!(page.lines.iter().all(|l| l.visual.is_none()));
    let json = serde_json::to_string(&page.lines[0]).unwrap();
    assert!(!json.contains("visual"), "{json}");
}

/// DejaVu Sans with its `GSUB` table hidden: the letters are there, the joining rules are not.
fn dejavu_without_joining() -> FontSet {
    let mut bytes = dejavu::sans::regular().to_vec();
    let tables = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    let record = (0..tables).map(|i| 12 + 16 * i).find(|&o| &bytes[o..o + 4] == b"GSUB").unwrap();
    bytes[record..record + 4].copy_from_slice(b"XSUB");
    FontSet::new(vec![Face::from_bytes("DejaVu Sans without GSUB", bytes).unwrap()]).unwrap()
}

#[test]
fn arabic_is_refused_when_the_font_cannot_join_it() {
    let mut spec = spec();
    spec.fonts = dejavu_without_joining();
    let err = render_page("كلمة English", &spec).unwrap_err();
    assert!(matches!(err, RenderError::UnsupportedScript { script: "Arabic", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Arabic") && msg.contains("DejaVu Sans without GSUB"), "{msg}");
    // Hebrew does not join: it is drawn with the same font.
    let page = render("עברית", &spec);
    assert_eq!(page.lines[0].visual.as_deref(), Some("תירבע"));
    // Arabic that does not reach the page (overflow) is not refused.
    let one_line = spec.with_font_px(300.0);
    assert_eq!(one_line.max_lines(), 1);
    let page = render_page("a\nكلمة", &one_line).unwrap();
    assert!(page.overflow.contains("كلمة"), "{:?}", page.overflow);
    // Already shaped presentation forms need no joining.
    render(&format!("{LRO}\u{FEE1}\u{FEFC}\u{FEB3}{PDF}"), &spec);
}

#[test]
fn fitting_a_ratio_works_on_right_to_left_text() {
    let text = "השפה העברית היא שפה שמית. اللغة العربية لغة سامية. ".repeat(60);
    let spec = RenderSpec::for_mode(Mode::Tiny, Lang::En);
    let fitted = occ_render::fit_to_ratio(&text, crate::common::tokenizer(), Mode::Tiny, 8.0, &spec).unwrap();
    assert!(
        fitted.text_tokens.abs_diff(fitted.target_tokens) <= 2,
        "{} of {}",
        fitted.text_tokens,
        fitted.target_tokens
    );
    let page = &fitted.page;
    assert_eq!(drawn_lines(page), bidi_lines(page));
}
