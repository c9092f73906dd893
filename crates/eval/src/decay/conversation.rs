//! A synthetic conversation from a corpus, with planted needles.
//!
//! - Passages of `datasets/<corpus>.jsonl` are shuffled with the seed (`SplitMix64` stream
//!   `"decay-conversation"`) and cut to their first `round_tokens` tokens
//!   ([`occ_core::cut_tokens`]); rounds alternate user / assistant, ids `r000`, `r001`, ….
//! - Needles: `k` facts such as "The secret code of the blue door is 7391." are planted in the rounds
//!   whose final ages (after the last round) are evenly spaced from 0 to `rounds − 1`, at depths cycling
//!   through 10 %, 50 % and 90 % of the round's text (moved forward to the next space, or inserted as is
//!   in Chinese). Each code is a distinct 4-digit number. A round with a needle is `round_tokens` plus
//!   the fact's ~15 tokens long.

use occ_core::TextTokenizer;
use occ_memory::{MemoryError, Role, Round};
use serde::Serialize;

use crate::corpus::Corpus;
use crate::normalize::Lang;
use crate::rng::SplitMix64;

/// Depths (share of the round's text before the fact) cycled through by the needles.
pub const NEEDLE_DEPTHS: [f64; 3] = [0.1, 0.5, 0.9];

const COLORS_EN: [&str; 8] = ["blue", "red", "green", "yellow", "black", "white", "orange", "purple"];
const OBJECTS_EN: [&str; 8] = ["door", "box", "gate", "safe", "locker", "drawer", "chest", "vault"];
const COLORS_ZH: [&str; 8] = ["蓝色", "红色", "绿色", "黄色", "黑色", "白色", "橙色", "紫色"];
const OBJECTS_ZH: [&str; 8] = ["门", "箱子", "大门", "保险箱", "柜子", "抽屉", "宝箱", "金库"];

/// A planted fact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Needle {
    pub id: String,
    pub round_id: String,
    /// Age of its round after the last round is pushed.
    pub age: u64,
    /// Share of the round's text before the fact.
    pub depth: f64,
    /// The sentence planted.
    pub fact: String,
    /// The string a read-back must contain (whitespace ignored) for the needle to count as retrieved.
    pub answer: String,
}

/// The conversation and its needles.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub rounds: Vec<Round>,
    /// Passage id of each round.
    pub sources: Vec<String>,
    pub needles: Vec<Needle>,
    pub lang: Lang,
}

/// Builds `rounds` rounds of `round_tokens` tokens from `corpus` with `needles` planted facts.
pub fn build(
    corpus: &Corpus,
    tok: &TextTokenizer,
    rounds: usize,
    round_tokens: usize,
    needles: usize,
    seed: u64,
) -> Result<Conversation, MemoryError> {
    let mut order: Vec<usize> = (0..corpus.passages.len()).collect();
    SplitMix64::stream(seed, "decay-conversation").shuffle(&mut order);
    let mut out = Vec::with_capacity(rounds);
    let mut sources = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let Some(&p) = order.get(i % order.len().max(1)) else { break };
        let passage = &corpus.passages[p];
        let (cut, _) = occ_core::cut_tokens(&passage.text, tok, round_tokens)?;
        let text = passage.text[..cut].trim_end().to_string();
        let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
        out.push(Round::new(format!("r{i:03}"), role, text));
        sources.push(passage.id.clone());
    }
    let n = out.len();
    let k = needles.min(n);
    let mut rng = SplitMix64::stream(seed, "decay-needles");
    let mut used_codes = std::collections::BTreeSet::new();
    let mut planted = Vec::with_capacity(k);
    for j in 0..k {
        let age = if k == 1 { 0 } else { ((j * (n - 1)) as f64 / (k - 1) as f64).round() as usize };
        let index = n - 1 - age;
        let depth = NEEDLE_DEPTHS[j % NEEDLE_DEPTHS.len()];
        let mut code = 1000 + rng.below(9000);
        while !used_codes.insert(code) {
            code = 1000 + rng.below(9000);
        }
        let (color, object) = (j % 8, (j / 8 + j * 3) % 8);
        let fact = match corpus.lang {
            Lang::En => format!("The secret code of the {} {} is {code}.", COLORS_EN[color], OBJECTS_EN[object]),
            Lang::Zh => format!("{}{}的密码是{code}。", COLORS_ZH[color], OBJECTS_ZH[object]),
        };
        let round = &mut out[index];
        round.text = insert_at_depth(&round.text, &fact, depth, corpus.lang);
        planted.push(Needle {
            id: format!("n{j:02}"),
            round_id: round.id.clone(),
            age: age as u64,
            depth,
            fact,
            answer: code.to_string(),
        });
    }
    Ok(Conversation { rounds: out, sources, needles: planted, lang: corpus.lang })
}

/// `text` with `fact` inserted at `depth` of its length: English moves forward to the next space
/// (the fact becomes its own word run), Chinese inserts at the character boundary.
pub fn insert_at_depth(text: &str, fact: &str, depth: f64, lang: Lang) -> String {
    let mut pos = ((text.len() as f64) * depth.clamp(0.0, 1.0)) as usize;
    while pos < text.len() && !text.is_char_boundary(pos) {
        pos += 1;
    }
    if lang == Lang::En {
        pos = text[pos..].find(' ').map_or(text.len(), |o| pos + o);
    }
    let (a, b) = text.split_at(pos.min(text.len()));
    match lang {
        Lang::En if a.is_empty() => format!("{fact} {}", b.trim_start()),
        Lang::En => format!("{a} {fact}{b}"),
        Lang::Zh => format!("{a}{fact}{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_inserted_at_word_boundaries() {
        let t = "one two three four five six seven eight nine ten";
        let s = insert_at_depth(t, "FACT.", 0.5, Lang::En);
        assert_eq!(s, "one two three four five six FACT. seven eight nine ten");
        assert_eq!(
            insert_at_depth(t, "FACT.", 0.0, Lang::En),
            "one FACT. two three four five six seven eight nine ten"
        );
        assert_eq!(insert_at_depth("一二三四", "事实。", 0.5, Lang::Zh), "一二事实。三四");
        assert_eq!(insert_at_depth("abc", "F.", 1.0, Lang::En), "abc F.");
    }
}
