//! Text-token budgets: how many text tokens a page holds at a compression ratio, and where a text is cut
//! after that many tokens. The renderer's ratio fitting (occ-render `fit`), the sweep's test renderer and
//! its truncation baseline, `score`'s baseline and the decay sweep all call these two functions, so a
//! page and the baselines it is compared with follow one rule.
//!
//! # The budget of a ratio
//! [`tokens_for_ratio`] is `round(ratio · vision tokens)` (half away from zero), capped at 10¹². It may
//! be 0 (a ratio below `0.5 / vision tokens`): the page then holds no text, which the renderer reports
//! as an empty budget (occ-render `RatioCheck`); it is not raised to 1 behind the caller's back. A ratio
//! that is not a finite number above 0 has no budget (`None`).
//!
//! # The cut after `n` tokens
//! [`cut_tokens`] keeps the text up to the end of its `n`-th token (tokenized as a whole, BOS not
//! counted), as the tokenizer reports that end. The edge is a token that ends inside a UTF-8
//! character: byte-level BPE splits rare ideographs and emoji into pieces of one to three bytes, and
//! the DeepSeek-OCR tokenizer reports every piece's range as the whole character's. So a budget that
//! ends among a character's pieces keeps the whole character: a character is never split, a budget of
//! at least one token always keeps at least one character (the pages of occ-render's `paginate` always
//! advance), and the kept text may hold up to three tokens more than `n` (a 4-byte character is at most
//! four pieces). Its own count, which [`cut_tokens`] returns, is what callers record. Should a
//! tokenizer report a range that ends inside a character, the cut moves back to that character's start,
//! or forward to its end when moving back would leave nothing.

use crate::tokenizer::{TextTokenizer, TokenizerError};

/// The largest budget [`tokens_for_ratio`] returns.
pub const MAX_BUDGET: usize = 1_000_000_000_000;

/// Text tokens a page of `vision_tokens` holds at `ratio`: `round(ratio · vision_tokens)`, capped at
/// [`MAX_BUDGET`]; `None` when `ratio` is not a finite number above 0 (see the module docs for 0).
pub fn tokens_for_ratio(ratio: f64, vision_tokens: u32) -> Option<usize> {
    if !(ratio.is_finite() && ratio > 0.0) {
        return None;
    }
    let n = (ratio * f64::from(vision_tokens)).round();
    Some(n.min(MAX_BUDGET as f64) as usize)
}

/// Cuts `text` after its first `n` tokens: returns the cut (a char boundary, see the module docs for the
/// edge) and the token count of `text[..cut]`. `n == 0` or an empty text gives `(0, 0)`; a text of at
/// most `n` tokens is kept whole.
///
/// Only a prefix of the text is tokenized (`6 · n + 256` bytes, doubled until it holds at least `n + 8`
/// tokens or the whole text), so cutting a page from a 10 MB text costs no more than from a page-sized
/// one. The 8 tokens of look-ahead keep the first `n` tokens those of the whole text.
pub fn cut_tokens(text: &str, tok: &TextTokenizer, n: usize) -> Result<(usize, usize), TokenizerError> {
    if n == 0 || text.is_empty() {
        return Ok((0, 0));
    }
    let mut window = floor_char_boundary(text, n.saturating_mul(6).saturating_add(256));
    loop {
        let (ids, offsets) = tok.encode_with_offsets(&text[..window])?;
        let whole = window == text.len();
        if ids.len() <= n && whole {
            return Ok((text.len(), ids.len()));
        }
        if ids.len() < n.saturating_add(8) && !whole {
            window = floor_char_boundary(text, window.saturating_mul(2));
            continue;
        }
        let cut = cut_at_offsets(&text[..window], &offsets, n);
        return Ok((cut, tok.count(&text[..cut])?));
    }
}

/// [`cut_tokens`]'s cut for a text already tokenized: `offsets` are the byte ranges of its tokens
/// ([`TextTokenizer::encode_with_offsets`] of the whole `text`), one per token. The same rule, edge
/// included; no count.
pub fn cut_at_offsets(text: &str, offsets: &[(usize, usize)], n: usize) -> usize {
    if n == 0 || text.is_empty() {
        return 0;
    }
    if offsets.len() <= n {
        return text.len();
    }
    let end = offsets[n - 1].1;
    match floor_char_boundary(text, end) {
        0 => ceil_char_boundary(text, end.max(1)),
        cut => cut,
    }
}

/// The largest char boundary of `text` at or before byte `i` (`text.len()` when `i` is past the end).
pub fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary of `text` at or after byte `i` (`text.len()` when `i` is past the end).
fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_the_rounded_product_and_may_be_zero() {
        assert_eq!(tokens_for_ratio(10.0, 100), Some(1000));
        assert_eq!(tokens_for_ratio(7.125, 100), Some(713)); // 712.5 rounds away from zero
        assert_eq!(tokens_for_ratio(0.004, 64), Some(0)); // 0.256 tokens: an empty budget, not 1
        assert_eq!(tokens_for_ratio(0.008, 64), Some(1)); // 0.512
        assert_eq!(tokens_for_ratio(1e300, 64), Some(MAX_BUDGET));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(tokens_for_ratio(bad, 64), None, "{bad}");
        }
    }

    #[test]
    fn offsets_inside_a_character_move_back_and_forward_only_at_the_start() {
        // "a" then a 4-byte character whose byte tokens end at 2, 3 and 5.
        let text = "a😀b";
        let offsets = [(0, 1), (1, 3), (3, 4), (4, 5), (5, 6)];
        assert_eq!(cut_at_offsets(text, &offsets, 1), 1);
        assert_eq!(cut_at_offsets(text, &offsets, 2), 1); // inside 😀: back to its start
        assert_eq!(cut_at_offsets(text, &offsets, 4), 5); // 😀 complete
        assert_eq!(cut_at_offsets(text, &offsets, 5), text.len());
        assert_eq!(cut_at_offsets(text, &offsets, 0), 0);
        // The first character split: forward to its end rather than an empty cut.
        let text = "😀b";
        let offsets = [(0, 2), (2, 3), (3, 4), (4, 5)];
        assert_eq!(cut_at_offsets(text, &offsets, 1), 4);
        assert_eq!(cut_at_offsets(text, &offsets, 3), 4);
        assert_eq!(cut_at_offsets(text, &offsets, 4), 5);
        assert_eq!(cut_at_offsets("", &[], 3), 0);
    }

    #[test]
    fn a_budget_of_one_token_keeps_a_first_character_of_several_tokens_whole() {
        let tok = TextTokenizer::deepseek_ocr().unwrap();
        // A rare ideograph: byte-level pieces, more than one token.
        let text = "𠀀 whale";
        let first = tok.count("𠀀").unwrap();
        assert!(first > 1, "{first}");
        assert_eq!(cut_tokens(text, &tok, 1).unwrap(), (4, first));
        let (_, offsets) = tok.encode_with_offsets(text).unwrap();
        assert_eq!(cut_at_offsets(text, &offsets, 1), 4);
        // A budget that ends among a later character's pieces keeps that character whole: the
        // tokenizer reports each piece's range as the character's.
        let text = "ab𠀀c";
        let ab = tok.count("ab").unwrap();
        assert_eq!(cut_tokens(text, &tok, ab).unwrap(), (2, ab));
        let (cut, count) = cut_tokens(text, &tok, ab + 1).unwrap();
        assert_eq!((cut, count), (6, tok.count("ab𠀀").unwrap()));
        assert!(count > ab + 1 && count <= ab + 4, "{count}");
    }
}
