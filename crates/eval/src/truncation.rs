//! The analytic truncation baseline.
//!
//! A text-only context of the same size as the vision-token budget can hold `budget` text tokens:
//! it "reads" the first `budget` tokens of the ground truth and nothing else, i.e. 1/r of the text
//! at compression ratio r. Its character precision is exactly `len(prefix) / len(gt)` in
//! characters (the edit distance of a prefix is the number of missing characters), ≈ min(1, 1/r).
//! Every plot draws it: a reader below this line does worse than simply keeping the text tokens.
//!
//! The prefix is cut by the toolkit's one token cut, [`occ_core::cut_tokens`] (or
//! [`occ_core::cut_at_offsets`] for a text already tokenized), the cut the renderer makes when it fills
//! a page: the sweep's runner cuts the page's ground truth after the page's nominal vision tokens,
//! `score` each row's truth, and the decay sweep the oldest round that only partly fits.

#[cfg(test)]
mod tests {
    use occ_core::{cut_tokens, TextTokenizer};

    use crate::metrics::char_precision;

    #[test]
    fn prefix_has_the_budget_of_tokens() {
        let tok = TextTokenizer::deepseek_ocr().unwrap();
        let text = "Call me Ishmael. Some years ago, never mind how long precisely, having little money.";
        let n = tok.count(text).unwrap();
        assert!(n > 10);
        let (cut, count) = cut_tokens(text, &tok, n / 2).unwrap();
        let half = &text[..cut];
        assert_eq!(count, n / 2);
        assert_eq!(tok.count(half).unwrap(), n / 2);
        assert_eq!(cut_tokens(text, &tok, n + 5).unwrap(), (text.len(), n));
        assert_eq!(cut_tokens(text, &tok, 0).unwrap(), (0, 0));
        // Character precision of a prefix = its share of the characters.
        let cp = char_precision(text, half);
        let share = half.chars().count() as f64 / text.chars().count() as f64;
        assert!((cp - share).abs() < 1e-12);
    }

    #[test]
    fn chinese_prefix_cuts_on_character_boundaries() {
        let tok = TextTokenizer::deepseek_ocr().unwrap();
        let text = "滚滚长江东逝水，浪花淘尽英雄。是非成败转头空。青山依旧在，几度夕阳红。";
        let n = tok.count(text).unwrap();
        let mut last = 0;
        for budget in 1..n {
            let (cut, _) = cut_tokens(text, &tok, budget).unwrap();
            assert!(text.is_char_boundary(cut) && cut > 0, "budget {budget}: cut {cut}");
            assert!(cut >= last, "a larger budget keeps no less");
            last = cut;
        }
    }
}
