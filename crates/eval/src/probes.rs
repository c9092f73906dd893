//! The `probes` corpus, generated in code from a seed: text a reader cannot guess from language
//! priors (the "semantic corruption" probes of arXiv 2601.03714).
//!
//! - `probe-shuffle-NNNN`: an English passage with its words shuffled (same glyphs and word
//!   lengths, no syntax);
//! - `probe-random-NNNN`: random strings of letters, digits and punctuation in word-like groups
//!   (no words at all).
//!
//! A reader that only "reads" through its language model collapses on these while the truncation
//! baseline does not care.

use crate::corpus::{Corpus, Passage};
use crate::normalize::Lang;
use crate::rng::SplitMix64;

/// Passages of each probe kind.
pub const PROBES_PER_KIND: usize = 64;

const RANDOM_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:-'()";

/// Builds the probes corpus from the English corpus `en` and `seed`. Token counts are estimates
/// (the shuffled passage keeps its source's count; random strings assume 2.2 characters per token,
/// measured on the DeepSeek-OCR tokenizer) and only steer how much text is drawn; the renderer
/// counts exactly.
pub fn probes(en: &Corpus, seed: u64) -> Corpus {
    let mut rng = SplitMix64::stream(seed, "probes");
    let mut passages = Vec::with_capacity(2 * PROBES_PER_KIND);
    let n_src = en.passages.len();
    for i in 0..PROBES_PER_KIND.min(n_src) {
        let src = &en.passages[rng.below(n_src)];
        let mut words: Vec<&str> = src.text.split_whitespace().collect();
        rng.shuffle(&mut words);
        passages.push(Passage {
            id: format!("probe-shuffle-{:04}", i + 1),
            source: format!("shuffle of {}", src.id),
            lang: Lang::En,
            n_tokens: src.n_tokens,
            text: words.join(" "),
        });
    }
    for i in 0..PROBES_PER_KIND {
        let mut text = String::with_capacity(3000);
        while text.len() < 2600 {
            let len = 1 + rng.below(9);
            for _ in 0..len {
                text.push(char::from(RANDOM_ALPHABET[rng.below(RANDOM_ALPHABET.len())]));
            }
            text.push(' ');
        }
        let text = text.trim_end().to_string();
        passages.push(Passage {
            id: format!("probe-random-{:04}", i + 1),
            source: "random characters".into(),
            lang: Lang::En,
            n_tokens: (text.chars().count() as f64 / 2.2).round() as usize,
            text,
        });
    }
    Corpus { name: "probes".into(), lang: Lang::En, passages }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn en() -> Corpus {
        let passages = (0..3)
            .map(|i| Passage {
                id: format!("p{i}"),
                source: String::new(),
                lang: Lang::En,
                n_tokens: 9,
                text: format!("one two three four five six seven eight nine {i}"),
            })
            .collect();
        Corpus { name: "en".into(), lang: Lang::En, passages }
    }

    #[test]
    fn probes_are_seeded_and_keep_the_words() {
        let a = probes(&en(), 3);
        assert_eq!(a, probes(&en(), 3));
        assert_ne!(a, probes(&en(), 4));
        assert_eq!(a.passages.len(), 3 + PROBES_PER_KIND);
        let shuffled = &a.passages[0];
        let mut got: Vec<&str> = shuffled.text.split_whitespace().collect();
        got.sort_unstable();
        assert_eq!(got.len(), 10);
        assert!(got.contains(&"nine"));
        let random = &a.passages[3];
        assert!(random.id.starts_with("probe-random-") && random.text.len() >= 2600);
    }
}
