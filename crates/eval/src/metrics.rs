//! Accuracy metrics of one page: one documented definition each.
//!
//! Every metric takes the *normalised* ground truth and prediction ([`crate::normalize`]); lengths
//! count Unicode scalar values (`char`s), not bytes or grapheme clusters.
//!
//! | column | definition |
//! | --- | --- |
//! | `char_precision` | `1 − NED`, NED = Levenshtein(gt, out) ÷ max(len gt, len out); both empty → 1. Fox's `edit_dist` and galah92's "precision". |
//! | `word_precision`, `word_recall`, `word_f1` | over word *multisets*: matches = Σ_w min(count_gt(w), count_out(w)); P = matches ÷ words out, R = matches ÷ words gt, F1 = 2PR ÷ (P+R). |
//! | `fox_precision_gt_words` | Fox reading 1: unique GT words found in the output ÷ unique GT words (what Fox's `eval_ocr_test.py` computes, since it passes its arguments swapped; docs/MODEL.md §11.1). |
//! | `fox_precision_out_words` | Fox reading 2: unique output words found in the GT ÷ unique output words (nltk `precision(reference, test)` as documented; third-party re-implementations). |
//! | `exact_match` | normalised strings equal. |
//! | `runaway` | generation hit `max_new_tokens`, or the output ends in a repetition loop ([`RepetitionRule`]). |
//!
//! Empty sides: when both sides have no words every word metric is 1; when exactly one side is
//! empty every word metric is 0 (nothing read, or only hallucination).
//!
//! Words: English splits on Unicode whitespace. Chinese has no spaces; Fox segments it with jieba,
//! which we do not ship, so for `zh` each CJK (non-ASCII-alphanumeric) character is one word and
//! runs of ASCII letters/digits are one word. Chinese word metrics are therefore character-level
//! and not comparable with jieba-based numbers.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::normalize::Lang;
use crate::schema::SampleRow;

/// All scores of one (ground truth, prediction) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub char_precision: f64,
    pub edit_distance: usize,
    pub word_precision: f64,
    pub word_recall: f64,
    pub word_f1: f64,
    pub fox_precision_gt_words: f64,
    pub fox_precision_out_words: f64,
    pub exact_match: bool,
    pub n_chars_gt: usize,
    pub n_chars_out: usize,
    pub n_words_gt: usize,
    pub n_words_out: usize,
}

/// The metrics a report draws, with their column names. Every one is "higher is better", in [0, 1].
pub const METRICS: [&str; 7] = [
    "char_precision",
    "word_precision",
    "word_recall",
    "word_f1",
    "fox_precision_gt_words",
    "fox_precision_out_words",
    "exact_match",
];

impl Scores {
    /// The value of a metric of [`METRICS`] by column name (`exact_match` as 0/1).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "char_precision" => self.char_precision,
            "word_precision" => self.word_precision,
            "word_recall" => self.word_recall,
            "word_f1" => self.word_f1,
            "fox_precision_gt_words" => self.fox_precision_gt_words,
            "fox_precision_out_words" => self.fox_precision_out_words,
            "exact_match" => f64::from(u8::from(self.exact_match)),
            _ => return None,
        })
    }
}

/// The one place where scores become columns of `samples.parquet` (the sweep's runner and `score`
/// both write their rows through it).
impl SampleRow {
    /// Sets the metric columns and the character and word counts from a page's scores.
    pub fn set_scores(&mut self, sc: &Scores) {
        self.n_chars_gt = sc.n_chars_gt as u32;
        self.n_chars_out = sc.n_chars_out as u32;
        self.n_words_gt = sc.n_words_gt as u32;
        self.n_words_out = sc.n_words_out as u32;
        self.char_precision = sc.char_precision;
        self.edit_distance = sc.edit_distance as u32;
        self.word_precision = sc.word_precision;
        self.word_recall = sc.word_recall;
        self.word_f1 = sc.word_f1;
        self.fox_precision_gt_words = sc.fox_precision_gt_words;
        self.fox_precision_out_words = sc.fox_precision_out_words;
        self.exact_match = sc.exact_match;
    }

    /// Sets the truncation baseline's columns from its scores (`exact_match` as 0/1); NaN when the
    /// row has no baseline (a scored prediction without a mode).
    pub fn set_truncation(&mut self, t: Option<&Scores>) {
        let t = |f: fn(&Scores) -> f64| t.map_or(f64::NAN, f);
        self.truncation_char_precision = t(|s| s.char_precision);
        self.truncation_word_precision = t(|s| s.word_precision);
        self.truncation_word_recall = t(|s| s.word_recall);
        self.truncation_word_f1 = t(|s| s.word_f1);
        self.truncation_fox_precision_gt_words = t(|s| s.fox_precision_gt_words);
        self.truncation_fox_precision_out_words = t(|s| s.fox_precision_out_words);
        self.truncation_exact_match = t(|s| f64::from(u8::from(s.exact_match)));
    }
}

/// Scores normalised `gt` against normalised `out`.
pub fn score(gt: &str, out: &str, lang: Lang) -> Scores {
    let gt_chars: Vec<char> = gt.chars().collect();
    let out_chars: Vec<char> = out.chars().collect();
    let edit_distance = levenshtein(&gt_chars, &out_chars);
    let gt_words = words(gt, lang);
    let out_words = words(out, lang);
    let (word_precision, word_recall, word_f1) = multiset_prf(&gt_words, &out_words);
    let (fox_precision_gt_words, fox_precision_out_words) = fox_set_precisions(&gt_words, &out_words);
    Scores {
        char_precision: char_precision_from(edit_distance, gt_chars.len(), out_chars.len()),
        edit_distance,
        word_precision,
        word_recall,
        word_f1,
        fox_precision_gt_words,
        fox_precision_out_words,
        exact_match: gt == out,
        n_chars_gt: gt_chars.len(),
        n_chars_out: out_chars.len(),
        n_words_gt: gt_words.len(),
        n_words_out: out_words.len(),
    }
}

/// `1 − NED` of two strings (see the module table).
pub fn char_precision(gt: &str, out: &str) -> f64 {
    let a: Vec<char> = gt.chars().collect();
    let b: Vec<char> = out.chars().collect();
    char_precision_from(levenshtein(&a, &b), a.len(), b.len())
}

fn char_precision_from(distance: usize, len_a: usize, len_b: usize) -> f64 {
    let longest = len_a.max(len_b);
    if longest == 0 {
        1.0
    } else {
        1.0 - distance as f64 / longest as f64
    }
}

/// Levenshtein distance (unit insert, delete, substitute) over `char`s. Common prefix and suffix
/// are stripped first; the rest runs Myers' bit-parallel algorithm in Hyyrö's block form (the
/// shorter string in 64-character blocks, one pass over the longer): O(⌈m/64⌉·n) time, exactly
/// the distance of the classic dynamic programme (which the tests keep as the reference).
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    let (text, pattern) = if a.len() < b.len() { (b, a) } else { (a, b) };
    if pattern.is_empty() {
        return text.len();
    }
    bit_parallel_distance(pattern, text)
}

/// Myers (1999) / Hyyrö (2003): the edit distance of `pattern` (non-empty) and `text`. Column j
/// of the DP matrix is kept as vertical deltas (+1 bits in `vp`, −1 bits in `vn`) over the
/// pattern's positions; each text character updates all of them with a few word operations per
/// 64 positions, and the bottom cell (the running distance) moves by the last row's horizontal
/// delta. Blocks pass their top-row horizontal delta to the next block as a carry bit.
fn bit_parallel_distance(pattern: &[char], text: &[char]) -> usize {
    let m = pattern.len();
    let words = m.div_ceil(64);
    // Match masks: for each distinct pattern character, the bits of the positions holding it;
    // one all-zero row for characters absent from the pattern.
    let mut ids: HashMap<char, usize> = HashMap::new();
    for &c in pattern {
        let next = ids.len();
        ids.entry(c).or_insert(next);
    }
    let absent = ids.len();
    let mut peq = vec![0u64; (absent + 1) * words];
    for (i, c) in pattern.iter().enumerate() {
        peq[ids[c] * words + i / 64] |= 1u64 << (i % 64);
    }
    let mut vp = vec![!0u64; words];
    let mut vn = vec![0u64; words];
    let last_bit = 1u64 << ((m - 1) % 64);
    let mut distance = m;
    for c in text {
        let row = ids.get(c).copied().unwrap_or(absent) * words;
        let eq = &peq[row..row + words];
        // The top row of the matrix grows by 1 per text character: horizontal delta +1.
        let (mut hp_carry, mut hn_carry) = (1u64, 0u64);
        for w in 0..words {
            let x = eq[w] | hn_carry;
            let (p, n) = (vp[w], vn[w]);
            let d0 = ((x & p).wrapping_add(p) ^ p) | x | n;
            let hp = n | !(d0 | p);
            let hn = d0 & p;
            if w == words - 1 {
                distance += usize::from(hp & last_bit != 0);
                distance -= usize::from(hn & last_bit != 0);
            }
            let hp_shifted = (hp << 1) | hp_carry;
            let hn_shifted = (hn << 1) | hn_carry;
            hp_carry = hp >> 63;
            hn_carry = hn >> 63;
            vp[w] = hn_shifted | !(d0 | hp_shifted);
            vn[w] = hp_shifted & d0;
        }
    }
    distance
}

/// The words of a normalised text (see the module docs for the Chinese rule).
pub fn words(text: &str, lang: Lang) -> Vec<&str> {
    match lang {
        Lang::En => text.split_whitespace().collect(),
        Lang::Zh => {
            let mut out = Vec::new();
            for piece in text.split_whitespace() {
                let mut run_start: Option<usize> = None;
                for (i, c) in piece.char_indices() {
                    if c.is_ascii_alphanumeric() {
                        run_start.get_or_insert(i);
                        continue;
                    }
                    if let Some(s) = run_start.take() {
                        out.push(&piece[s..i]);
                    }
                    out.push(&piece[i..i + c.len_utf8()]);
                }
                if let Some(s) = run_start {
                    out.push(&piece[s..]);
                }
            }
            out
        }
    }
}

fn empty_rule(gt: usize, out: usize) -> Option<f64> {
    match (gt, out) {
        (0, 0) => Some(1.0),
        (0, _) | (_, 0) => Some(0.0),
        _ => None,
    }
}

/// Word precision, recall and F1 over multisets (see the module table).
pub fn multiset_prf(gt: &[&str], out: &[&str]) -> (f64, f64, f64) {
    if let Some(v) = empty_rule(gt.len(), out.len()) {
        return (v, v, v);
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in gt {
        *counts.entry(w).or_default() += 1;
    }
    let mut matches = 0usize;
    for w in out {
        if let Some(c) = counts.get_mut(w) {
            if *c > 0 {
                *c -= 1;
                matches += 1;
            }
        }
    }
    let p = matches as f64 / out.len() as f64;
    let r = matches as f64 / gt.len() as f64;
    let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    (p, r, f1)
}

/// Fox's set precision, both readings: (unique GT words found in the output ÷ unique GT words,
/// unique output words found in the GT ÷ unique output words).
pub fn fox_set_precisions(gt: &[&str], out: &[&str]) -> (f64, f64) {
    let g: HashSet<&str> = gt.iter().copied().collect();
    let o: HashSet<&str> = out.iter().copied().collect();
    if let Some(v) = empty_rule(g.len(), o.len()) {
        return (v, v);
    }
    let common = g.intersection(&o).count() as f64;
    (common / g.len() as f64, common / o.len() as f64)
}

/// Why an output counts as a runaway generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runaway {
    /// A normal output.
    None,
    /// Generation stopped at `max_new_tokens` instead of EOS.
    MaxTokens,
    /// The output ends in a repetition loop.
    Repetition,
}

impl Runaway {
    /// `""`, `"max_tokens"` or `"repetition"` (the `runaway_reason` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Runaway::None => "",
            Runaway::MaxTokens => "max_tokens",
            Runaway::Repetition => "repetition",
        }
    }
}

/// A repetition loop: the text ends with one unit of `p` characters repeated `k` times back to
/// back, with `k ≥ min_repeats` and `k·p ≥ min_loop_chars` (so a 20-character phrase three times,
/// or "the " fifteen times, is a loop; "!!!" is not). Units longer than `max_unit_chars` are not
/// searched (bounds the cost at O(max_unit_chars · len)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepetitionRule {
    pub min_repeats: usize,
    pub min_loop_chars: usize,
    pub max_unit_chars: usize,
}

impl Default for RepetitionRule {
    fn default() -> Self {
        RepetitionRule { min_repeats: 3, min_loop_chars: 60, max_unit_chars: 500 }
    }
}

/// The shortest loop unit at the end of `text` under `rule`: `(unit_chars, repeats)`.
pub fn repetition_loop(text: &str, rule: &RepetitionRule) -> Option<(usize, usize)> {
    let chars: Vec<char> = text.trim_end().chars().collect();
    let n = chars.len();
    let min_repeats = rule.min_repeats.max(2);
    for p in 1..=rule.max_unit_chars.min(n / min_repeats) {
        // Length of the suffix that is periodic with period p.
        let mut run = p;
        while run < n && chars[n - 1 - run] == chars[n - 1 - run + p] {
            run += 1;
        }
        let repeats = run / p;
        if repeats >= min_repeats && repeats * p >= rule.min_loop_chars {
            return Some((p, repeats));
        }
    }
    None
}

/// The runaway flag of one output (`hit_max_tokens` wins over a loop).
pub fn runaway(text: &str, hit_max_tokens: bool, rule: &RepetitionRule) -> Runaway {
    if hit_max_tokens {
        Runaway::MaxTokens
    } else if repetition_loop(text, rule).is_some() {
        Runaway::Repetition
    } else {
        Runaway::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_takes_every_metric_and_the_baseline_from_its_scores() {
        let sc = score("the cat sat on the mat", "the cat sat on a mat", Lang::En);
        let mut row = SampleRow::default();
        row.set_scores(&sc);
        for name in METRICS {
            assert_eq!(crate::summary::sample_metric(&row, name), sc.metric(name), "{name}");
        }
        assert_eq!((row.edit_distance, row.n_chars_gt, row.n_words_out), (3, 22, 6));
        row.set_truncation(None);
        assert!(row.truncation_char_precision.is_nan() && row.truncation_exact_match.is_nan());
        let prefix = score("the cat sat on the mat", "the cat", Lang::En);
        row.set_truncation(Some(&prefix));
        for name in METRICS {
            let column = format!("truncation_{name}");
            assert_eq!(crate::summary::sample_metric(&row, &column), prefix.metric(name), "{column}");
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn levenshtein_hand_computed() {
        let cases = [
            ("kitten", "sitting", 3),
            ("", "", 0),
            ("abc", "", 3),
            ("", "abcd", 4),
            ("flaw", "lawn", 2),
            ("长江东逝水", "长江西逝", 2), // one substitution, one deletion; chars, not bytes
            ("abcdef", "abcdef", 0),
            ("intention", "execution", 5),
        ];
        for (a, b, want) in cases {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            assert_eq!(levenshtein(&a, &b), want, "{a:?} vs {b:?}");
            assert_eq!(levenshtein(&b, &a), want, "symmetric {a:?} vs {b:?}");
        }
    }

    /// The classic two-row dynamic programme: the definition `levenshtein` must equal.
    fn reference_levenshtein(a: &[char], b: &[char]) -> usize {
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        let mut cur = vec![0; b.len() + 1];
        for (i, ca) in a.iter().enumerate() {
            cur[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
            }
            std::mem::swap(&mut prev, &mut cur);
        }
        prev[b.len()]
    }

    #[test]
    fn bit_parallel_levenshtein_equals_the_dynamic_programme() {
        // Random strings over 1–5 letters (many repeats, so many alignments tie) and lengths
        // crossing the 64-position block boundaries, in both argument orders.
        let mut rng = crate::rng::SplitMix64::new(7);
        for case in 0..3000 {
            let alphabet = ['a', 'b', 'c', 'é', '长'];
            let k = 1 + rng.below(alphabet.len());
            let mut draw = |len: usize| -> Vec<char> { (0..len).map(|_| alphabet[rng.below(k)]).collect() };
            let (la, lb) = (case % 211, (case * 7) % 197);
            let a = draw(la);
            let b = draw(lb);
            let want = reference_levenshtein(&a, &b);
            assert_eq!(levenshtein(&a, &b), want, "case {case}: {a:?} vs {b:?}");
            assert_eq!(levenshtein(&b, &a), want, "case {case} swapped");
        }
    }

    #[test]
    fn char_precision_hand_computed() {
        assert!(close(char_precision("kitten", "sitting"), 1.0 - 3.0 / 7.0));
        assert!(close(char_precision("", ""), 1.0));
        assert!(close(char_precision("abc", ""), 0.0));
        // Truncation to half: distance = 4 deletions of 8 → 0.5.
        assert!(close(char_precision("abcdefgh", "abcd"), 0.5));
    }

    #[test]
    fn word_prf_counts_multisets() {
        // gt words: the×2 cat sat on mat (6); out: the×3 cat sat (5).
        // matches = min(2,3) + 1 + 1 = 4 → P = 4/5, R = 4/6, F1 = 2·0.8·0.6667/(1.4667) = 8/11.
        let s = score("the cat sat on the mat", "the the the cat sat", Lang::En);
        assert!(close(s.word_precision, 0.8));
        assert!(close(s.word_recall, 4.0 / 6.0));
        assert!(close(s.word_f1, 8.0 / 11.0));
        assert_eq!((s.n_words_gt, s.n_words_out), (6, 5));
    }

    #[test]
    fn fox_readings_differ_as_documented() {
        // unique gt = {the, cat, sat, on, mat} (5); unique out = {the, cat, dog} (3); common = 2.
        let s = score("the cat sat on the mat", "the cat dog the", Lang::En);
        assert!(close(s.fox_precision_gt_words, 2.0 / 5.0));
        assert!(close(s.fox_precision_out_words, 2.0 / 3.0));
        // Set metrics ignore order and duplicates: a shuffled, repeated read scores 1 on both.
        let s = score("a b c", "c b a a a", Lang::En);
        assert!(close(s.fox_precision_gt_words, 1.0) && close(s.fox_precision_out_words, 1.0));
        assert!(s.char_precision < 0.5);
    }

    #[test]
    fn empty_sides_follow_the_documented_rule() {
        let both = score("", "", Lang::En);
        assert!(both.exact_match && close(both.word_f1, 1.0) && close(both.fox_precision_out_words, 1.0));
        let nothing_read = score("some text", "", Lang::En);
        assert!(close(nothing_read.word_precision, 0.0) && close(nothing_read.fox_precision_gt_words, 0.0));
        assert!(close(nothing_read.char_precision, 0.0));
        let hallucinated = score("", "words", Lang::En);
        assert!(close(hallucinated.word_recall, 0.0) && !hallucinated.exact_match);
    }

    #[test]
    fn chinese_words_are_characters_and_ascii_runs() {
        assert_eq!(words("长江abc12东,水", Lang::Zh), vec!["长", "江", "abc12", "东", ",", "水"]);
        assert_eq!(words("ab 长 ", Lang::Zh), vec!["ab", "长"]);
        let s = score("长江东逝水", "长江水", Lang::Zh);
        assert!(close(s.word_precision, 1.0) && close(s.word_recall, 3.0 / 5.0));
    }

    #[test]
    fn repetition_loops_are_detected_at_the_end_only() {
        let rule = RepetitionRule::default();
        let phrase = "the whale swam away. "; // 21 chars
        let looped = format!("Call me Ishmael. {}", phrase.repeat(3));
        assert_eq!(repetition_loop(&looped, &rule), Some((21, 3)));
        let words_loop = format!("Some years ago {}", "the ".repeat(15));
        assert_eq!(repetition_loop(&words_loop, &rule), Some((4, 15)));
        assert_eq!(repetition_loop("Wait!!! Really?!!!", &rule), None);
        assert_eq!(repetition_loop(&format!("{}and then it ended.", phrase.repeat(3)), &rule), None);
        assert_eq!(repetition_loop(&phrase.repeat(2), &rule), None, "two repeats are not a loop");
        assert_eq!(runaway("fine", true, &rule), Runaway::MaxTokens);
        assert_eq!(runaway(&looped, false, &rule), Runaway::Repetition);
        assert_eq!(runaway("fine", false, &rule), Runaway::None);
    }

    #[test]
    fn metric_lookup_covers_every_metric() {
        let s = score("a b", "a b", Lang::En);
        for m in METRICS {
            assert_eq!(s.metric(m), Some(1.0), "{m}");
        }
        assert_eq!(s.metric("nope"), None);
    }
}
