//! Ground truth against a reader's output with the differences marked, for the per-sample pages.
//!
//! Both sides are the *normalised* texts the metrics compare (the run's normalisation), diffed with
//! Myers' algorithm (the `similar` crate, no time limit, so the result is deterministic): word by
//! word for English (a word and the whitespace after it are separate tokens), character by
//! character for Chinese, which has no word spaces. Text the reader missed is marked `<del>`, text
//! it added or misread `<ins>`; a misread word shows as the two side by side.

use occ_eval::Lang;
use similar::{ChangeTag, TextDiff};

use crate::tables::escape;

/// What a run of text is in the diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// In both texts.
    Same,
    /// In the ground truth only: missed by the reader.
    Missing,
    /// In the output only: added or misread by the reader.
    Extra,
}

/// A maximal run of text with one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub op: Op,
    pub text: String,
}

/// The diff of `truth` (ground truth) and `output`, as maximal segments in reading order.
pub fn diff(truth: &str, output: &str, lang: Lang) -> Vec<Segment> {
    let d = match lang {
        Lang::En => TextDiff::from_words(truth, output),
        Lang::Zh => TextDiff::from_chars(truth, output),
    };
    let mut out: Vec<Segment> = Vec::new();
    for change in d.iter_all_changes() {
        let op = match change.tag() {
            ChangeTag::Equal => Op::Same,
            ChangeTag::Delete => Op::Missing,
            ChangeTag::Insert => Op::Extra,
        };
        match out.last_mut() {
            Some(last) if last.op == op => last.text.push_str(change.value()),
            _ => out.push(Segment { op, text: change.value().to_string() }),
        }
    }
    out
}

/// Characters in segments of each kind: (same, missing, extra).
pub fn counts(segments: &[Segment]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for s in segments {
        let n = s.text.chars().count();
        match s.op {
            Op::Same => c.0 += n,
            Op::Missing => c.1 += n,
            Op::Extra => c.2 += n,
        }
    }
    c
}

/// HTML of the segments: missing text in `<del>`, extra text in `<ins>`, the rest plain (escaped).
pub fn html(segments: &[Segment]) -> String {
    let mut s = String::new();
    for seg in segments {
        let text = escape(&seg.text);
        match seg.op {
            Op::Same => s.push_str(&text),
            Op::Missing => s.push_str(&format!("<del>{text}</del>")),
            Op::Extra => s.push_str(&format!("<ins>{text}</ins>")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(segments: &[Segment]) -> Vec<(Op, &str)> {
        segments.iter().map(|s| (s.op, s.text.as_str())).collect()
    }

    #[test]
    fn a_misread_word_and_a_missed_word_are_marked() {
        let d = diff("the quick brown fox jumps", "the quick brawn fox", Lang::En);
        assert_eq!(
            ops(&d),
            vec![
                (Op::Same, "the quick "),
                (Op::Missing, "brown"),
                (Op::Extra, "brawn"),
                (Op::Same, " fox"),
                (Op::Missing, " jumps"),
            ]
        );
        assert_eq!(counts(&d), (14, 11, 5));
        assert_eq!(html(&d), "the quick <del>brown</del><ins>brawn</ins> fox<del> jumps</del>");
    }

    #[test]
    fn chinese_is_diffed_by_character_and_html_is_escaped() {
        let d = diff("滚滚长江东逝水", "滚滚长河东逝水", Lang::Zh);
        assert_eq!(html(&d), "滚滚长<del>江</del><ins>河</ins>东逝水");
        let d = diff("a <b> & c", "a <b> & c", Lang::En);
        assert_eq!(html(&d), "a &lt;b&gt; &amp; c");
        assert!(diff("", "", Lang::En).is_empty());
        assert_eq!(ops(&diff("", "ghost", Lang::En)), vec![(Op::Extra, "ghost")]);
    }
}
