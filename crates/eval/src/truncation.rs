//! The analytic truncation baseline and token-budget cutting.
//!
//! A text-only context of the same size as the vision-token budget can hold `budget` text tokens:
//! it "reads" the first `budget` tokens of the ground truth and nothing else, i.e. 1/r of the text
//! at compression ratio r. Its character precision is exactly `len(prefix) / len(gt)` in
//! characters (the edit distance of a prefix is the number of missing characters), ≈ min(1, 1/r).
//! Every plot draws it: a reader below this line does worse than simply keeping the text tokens.

use occ_core::{TextTokenizer, TokenizerError};

/// The prefix of `text` made of its first `budget` tokens (the whole text if it has fewer).
/// The cut is at the end offset of token `budget − 1`, so it never splits a character.
pub fn prefix_tokens<'a>(text: &'a str, tokenizer: &TextTokenizer, budget: usize) -> Result<&'a str, TokenizerError> {
    if budget == 0 {
        return Ok("");
    }
    let (_, offsets) = tokenizer.encode_with_offsets(text)?;
    Ok(prefix_from_offsets(text, &offsets, budget))
}

/// [`prefix_tokens`] for a text already tokenised: `offsets` are the byte ranges of its tokens
/// ([`TextTokenizer::encode_with_offsets`]), one per token.
pub fn prefix_from_offsets<'a>(text: &'a str, offsets: &[(usize, usize)], budget: usize) -> &'a str {
    if budget == 0 {
        return "";
    }
    if offsets.len() <= budget {
        return text;
    }
    // Byte-level BPE tokens may end inside a multi-byte character; offsets are byte offsets that
    // the tokenizer maps back onto character boundaries, but be defensive.
    let mut end = offsets.get(budget - 1).map(|o| o.1).unwrap_or(text.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::char_precision;

    #[test]
    fn prefix_has_the_budget_of_tokens() {
        let tok = TextTokenizer::deepseek_ocr().unwrap();
        let text = "Call me Ishmael. Some years ago, never mind how long precisely, having little money.";
        let n = tok.count(text).unwrap();
        assert!(n > 10);
        let half = prefix_tokens(text, &tok, n / 2).unwrap();
        assert!(text.starts_with(half));
        assert_eq!(tok.count(half).unwrap(), n / 2);
        assert_eq!(prefix_tokens(text, &tok, n + 5).unwrap(), text);
        assert_eq!(prefix_tokens(text, &tok, 0).unwrap(), "");
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
        for budget in 1..n {
            let p = prefix_tokens(text, &tok, budget).unwrap();
            assert!(text.starts_with(p));
        }
    }
}
