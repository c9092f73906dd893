//! Decoder prompts in the "plain" template (docs/MODEL.md §9.3).
//!
//! The reference strips the user text, splits it on `<image>`, and builds
//! `[BOS] + enc(text₀) + slots₀ × <image> + enc(text₁) + …` with the tokenizer's
//! `add_special_tokens = False`; no role tags, no EOS. Every placeholder (image newline and view
//! separator rows included) is id 128815; the vision rows later overwrite their embeddings.

use occ_core::tokenizer::{BOS_ID, IMAGE_ID};
use occ_core::{Prompt, TextTokenizer};

/// The image placeholder text.
pub const IMAGE_TOKEN: &str = "<image>";

/// Token ids of a prompt and where its image slots are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    pub ids: Vec<u32>,
    /// `true` at every image slot (the reference's `images_seq_mask`).
    pub image_mask: Vec<bool>,
}

impl PromptTokens {
    /// Number of image slots.
    pub fn slots(&self) -> usize {
        self.image_mask.iter().filter(|&&m| m).count()
    }
}

/// Errors of prompt building.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt {text:?} has {found} `<image>` markers but {images} images were given")]
    ImageCount { text: String, found: usize, images: usize },
    #[error("tokenizing the prompt: {0}")]
    Tokenizer(#[from] occ_core::TokenizerError),
}

/// The prompt text the model sees: the plain template reduces to the stripped user text.
pub fn plain_template(prompt: &Prompt) -> String {
    prompt.text().trim().to_string()
}

/// Builds the ids of `prompt` for images with `slots[i]` placeholders each (from
/// `occ_core::Mode::vision_tokens(..).slots`).
pub fn build_prompt(tok: &TextTokenizer, prompt: &Prompt, slots: &[usize]) -> Result<PromptTokens, PromptError> {
    let text = plain_template(prompt);
    let pieces: Vec<&str> = text.split(IMAGE_TOKEN).collect();
    if pieces.len() != slots.len() + 1 {
        let found = pieces.len() - 1;
        return Err(PromptError::ImageCount { text: text.clone(), found, images: slots.len() });
    }
    let mut ids = vec![BOS_ID];
    let mut image_mask = vec![false];
    for (i, piece) in pieces.iter().enumerate() {
        let t = tok.encode(piece)?;
        image_mask.extend(std::iter::repeat_n(false, t.len()));
        ids.extend(t);
        if let Some(&n) = slots.get(i) {
            ids.extend(std::iter::repeat_n(IMAGE_ID, n));
            image_mask.extend(std::iter::repeat_n(true, n));
        }
    }
    Ok(PromptTokens { ids, image_mask })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> TextTokenizer {
        TextTokenizer::deepseek_ocr().unwrap()
    }

    #[test]
    fn free_ocr_tiny_layout() {
        let t = tok();
        let p = build_prompt(&t, &Prompt::FreeOcr, &[73]).unwrap();
        let text_ids = t.encode("\nFree OCR.").unwrap();
        assert_eq!(p.ids[0], 0);
        assert!(p.ids[1..74].iter().all(|&i| i == IMAGE_ID));
        assert_eq!(&p.ids[74..], &text_ids[..]);
        assert_eq!(p.slots(), 73);
        assert_eq!(p.ids.len(), p.image_mask.len());
        assert!(!p.image_mask[0] && p.image_mask[1] && p.image_mask[73] && !p.image_mask[74]);
        // trailing space of the prompt text is stripped by the template
        assert_ne!(text_ids, t.encode("\nFree OCR. ").unwrap());
    }

    #[test]
    fn grounding_prompt_has_the_switch_token() {
        let t = tok();
        let p = build_prompt(&t, &Prompt::Grounding, &[111]).unwrap();
        assert_eq!(p.ids.len(), 1 + 111 + t.encode("\n<|grounding|>OCR this image.").unwrap().len());
        assert!(p.ids.contains(&128_820));
    }

    #[test]
    fn text_before_the_image_and_count_mismatch() {
        let t = tok();
        let p = build_prompt(&t, &Prompt::Custom("Read: <image> now".into()), &[3]).unwrap();
        let before = t.encode("Read: ").unwrap();
        assert_eq!(&p.ids[1..1 + before.len()], &before[..]);
        assert_eq!(p.slots(), 3);
        let err = build_prompt(&t, &Prompt::Custom("no image".into()), &[3]).unwrap_err();
        assert!(err.to_string().contains("0 `<image>` markers"), "{err}");
    }
}
