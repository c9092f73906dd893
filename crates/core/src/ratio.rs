//! The one formula for the compression ratio: text tokens ÷ vision tokens, implemented once, here.

/// `text_tokens / vision_tokens`: how many text tokens each vision token stands for.
///
/// `text_tokens` are counted with the model's own tokenizer on the ground truth without BOS
/// ([`crate::TextTokenizer::count`]); `vision_tokens` is whichever basis the caller reports
/// (nominal, valid or slots, see [`crate::VisionTokens`]). Returns `None` for zero vision tokens.
pub fn compression_ratio(text_tokens: usize, vision_tokens: u32) -> Option<f64> {
    (vision_tokens > 0).then(|| text_tokens as f64 / f64::from(vision_tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_text_over_vision() {
        assert_eq!(compression_ratio(640, 64), Some(10.0));
        assert_eq!(compression_ratio(0, 100), Some(0.0));
        assert_eq!(compression_ratio(5, 0), None);
    }
}
