//! Property tests of the tokenizer path on arbitrary text (budget and guarantees in
//! docs/RELIABILITY.md, "Fuzzing and property tests").

use std::sync::OnceLock;

use occ_core::TextTokenizer;
use proptest::prelude::*;

fn tok() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| TextTokenizer::deepseek_ocr().unwrap())
}

/// Any Unicode: every scalar value, weighted towards the characters that matter to the pre-tokenizer
/// (newlines and every kind of whitespace, marks, digits, CJK, punctuation, RTL, controls, the special
/// tokens' spellings).
fn any_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        3 => "[a-zA-Z]{1,10}",
        2 => "[\n\r\t \u{0B}\u{0C}]{1,4}",
        2 => "[\u{85}\u{A0}\u{1680}\u{2000}-\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}]",
        1 => "[\u{0300}-\u{036F}\u{05B0}-\u{05BC}\u{064B}-\u{0652}]{1,3}",
        1 => "[0-9\u{0660}-\u{0669}\u{FF10}-\u{FF19}]{1,5}",
        1 => "[一-龥぀-ゟ゠-ヿ，。]{1,6}",
        1 => "[!-/:-@\\[-`{-~«»¶]{1,3}",
        1 => "[אבגדהוזחטיכלמנסעפצקרשתابتثجحخدذرز]{1,6}",
        1 => "[\u{0}-\u{1F}\u{7F}-\u{9F}\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{FEFF}]",
        1 => prop::sample::select(vec![
            "<image>", "<|grounding|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<|ref|>",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|v| v.concat())
}

/// Text made of lines: every neighbour of a newline the pre-tokenizer distinguishes.
fn lines_text() -> impl Strategy<Value = String> {
    let line_start = prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9]{1,6}",
        "[ \t]{1,3}",
        "[\u{85}\u{A0}\u{2028}\u{3000}\u{2003}]",
        "[.,!?'\\-(]{1,2}",
        "[\u{0301}\u{05B4}]",
        "[中文，]{1,3}",
        Just("\r".to_string()),
    ];
    let line = (line_start, "[a-z .,]{0,8}", prop_oneof![Just("\n"), Just("\n\n"), Just("\r\n"), Just(" \n")]);
    prop::collection::vec(line, 0..24).prop_map(|v| v.into_iter().map(|(a, b, c)| format!("{a}{b}{c}")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// encode / count / encode_with_offsets / decode never fail or panic; count is the number of ids;
    /// offsets are in range and in order; decoding the ids gives the text back byte for byte.
    #[test]
    fn encode_count_and_decode_agree_on_any_text(text in any_text()) {
        let t = tok();
        let ids = t.encode(&text).unwrap();
        prop_assert_eq!(t.count(&text).unwrap(), ids.len());
        let (ids2, offsets) = t.encode_with_offsets(&text).unwrap();
        prop_assert_eq!(&ids2, &ids);
        prop_assert_eq!(offsets.len(), ids.len());
        let mut prev_end = 0;
        for &(a, b) in &offsets {
            prop_assert!(a <= b && b <= text.len(), "offset {}..{} of {} bytes", a, b, text.len());
            prop_assert!(b >= prev_end, "offsets go back: {:?}", offsets);
            prev_end = b;
        }
        prop_assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        prop_assert_eq!(t.decode(&ids, false).unwrap(), text.clone());
        prop_assert!(text.is_empty() == ids.is_empty());
    }

    /// `count_long` (the count behind `input_tokens`) is the exact count, whatever the piece size.
    #[test]
    fn counting_in_pieces_is_the_exact_count(text in prop_oneof![any_text(), lines_text()], piece in 1usize..64) {
        let t = tok();
        let whole = t.count(&text).unwrap();
        prop_assert_eq!(t.count_long(&text).unwrap(), whole);
        prop_assert_eq!(t.count_long_in_pieces(&text, piece).unwrap(), whole, "pieces of {} bytes", piece);
    }

    /// Decoding arbitrary ids (in and out of the vocabulary) never panics: an id past the vocabulary is
    /// an error or dropped, never a crash.
    #[test]
    fn decoding_arbitrary_ids_never_panics(ids in prop::collection::vec(prop_oneof![0u32..128_827, any::<u32>()], 0..48), skip in any::<bool>()) {
        let t = tok();
        if let Ok(text) = t.decode(&ids, skip) {
            // What decodes in the vocabulary re-encodes without error.
            prop_assert!(t.encode(&text).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Texts longer than [`occ_core::tokenizer::COUNT_PIECE_BYTES`]: the default pieces of `count_long`.
    #[test]
    fn counting_a_long_text_in_pieces_is_the_exact_count(block in lines_text(), extra in any_text()) {
        let t = tok();
        let unit = format!("{block}{extra}\n");
        let text = unit.repeat((3 * occ_core::tokenizer::COUNT_PIECE_BYTES).div_ceil(unit.len()).min(200_000));
        prop_assert_eq!(t.count_long(&text).unwrap(), t.count(&text).unwrap());
    }
}
