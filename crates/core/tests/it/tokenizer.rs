use occ_core::tokenizer::{BOS_ID, EOS_ID, IMAGE_ID};
use occ_core::TextTokenizer;

/// Token ids from `assets/deepseek-ocr/PROVENANCE.md` of the shared folder (HF `tokenizers` 0.23,
/// `add_special_tokens=False`).
#[test]
fn provenance_token_ids_match_exactly() {
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let cases: [(&str, &[u32]); 4] = [
        ("The quick brown fox jumps over the lazy dog.", &[671, 4787, 13769, 46012, 54994, 1060, 270, 41638, 6397, 16]),
        ("光学上下文压缩是一种新的方法。", &[49566, 82600, 23954, 8332, 5676, 2821, 320]),
        (
            "<image>\n<|grounding|>Convert the document to markdown.",
            &[128815, 201, 128820, 21842, 270, 4940, 304, 2121, 7919, 16],
        ),
        (
            "Free OCR.  Tabs\tand  double  spaces, digits 1234567 and émigré.",
            &[
                21431, 126041, 16, 223, 330, 10284, 200, 458, 223, 6042, 223, 13564, 14, 10923, 223, 6895, 18009, 25,
                305, 90039, 350, 17713, 16,
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (text, want) in cases {
        let got = tok.encode(text).unwrap();
        if got != want {
            failures.push(format!("{text:?}: want {want:?}, got {got:?}"));
        }
        assert_eq!(tok.count(text).unwrap(), want.len());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn special_token_ids_and_vocab_size() {
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    assert_eq!(tok.vocab_size(), 128_827);
    assert_eq!(tok.token_to_id("<image>"), Some(IMAGE_ID));
    assert_eq!(tok.token_to_id("<｜begin▁of▁sentence｜>"), Some(BOS_ID));
    assert_eq!(tok.token_to_id("<｜end▁of▁sentence｜>"), Some(EOS_ID));
}

#[test]
fn decode_inverts_encode_on_prose() {
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let text = "Call me Ishmael. 话说天下大势，分久必合，合久必分。\n\tTabs and  spaces.";
    let ids = tok.encode(text).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
}

#[test]
fn missing_tokenizer_file_names_the_path() {
    let err = TextTokenizer::from_file(std::path::Path::new("/nonexistent/tokenizer.json")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tokenizer.json"), "{err}");
}

/// `count_long` splits only where the pre-tokenizer always splits, so its sum is the whole count:
/// checked on the corpora (large pieces) and on text where every newline is a split point.
#[test]
fn counting_in_pieces_equals_counting_the_whole_text() {
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    let mut corpora = String::new();
    for name in ["en.jsonl", "zh.jsonl"] {
        corpora.push_str(&std::fs::read_to_string(root.join(name)).unwrap());
    }
    let whole = tok.count(&corpora).unwrap();
    assert_eq!(tok.count_long(&corpora).unwrap(), whole);
    assert_eq!(tok.count_long_in_pieces(&corpora, 4096).unwrap(), whole);
    // Every kind of neighbour of a newline, split at every eligible newline.
    let tricky = "end.\nNext 123\n456 digits\n\n  indented\n\t tab\n中文\n，标点\n'quoted'\n-dash\n<image>\n\
                  <|grounding|>x\n\u{00e9}t\u{00e9}\n\u{0301}mark\n!?\n\r\nCRLF\n \n space\n\n\nend";
    for piece in [1, 2, 3, 7, 1 << 20] {
        assert_eq!(tok.count_long_in_pieces(tricky, piece).unwrap(), tok.count(tricky).unwrap(), "pieces of {piece}");
    }
    assert_eq!(tok.count_long("").unwrap(), 0);
}
