//! Text normalisation applied to the ground truth *and* the prediction before scoring.
//!
//! Steps, in order, each switchable in the experiment spec (`[normalization]`):
//! 1. `nfkc`: Unicode NFKC (full-width forms → ASCII, ligatures split, compatibility characters
//!    folded). On by default: the renderer's font and the reader's output may use different but
//!    compatible code points for the same glyph.
//! 2. `collapse_whitespace`: every run of Unicode whitespace becomes one ASCII space, and leading
//!    and trailing whitespace is removed. On by default: line breaks of the page layout are not
//!    content (the paper's Free-OCR prompt has no layout either).
//! 3. `drop_whitespace_zh`: for Chinese corpora, remove all whitespace (Chinese has no word
//!    spaces; a reader's spacing between CJK characters is noise). On by default.
//! 4. `lowercase`: off by default (case errors count).

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Language of a corpus: decides word splitting and the Chinese whitespace rule. The one `Lang` of
/// the toolkit, defined in occ-core.
pub use occ_core::Lang;

/// Normalisation switches (see the module docs for the order and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Normalization {
    pub nfkc: bool,
    pub collapse_whitespace: bool,
    pub drop_whitespace_zh: bool,
    pub lowercase: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization { nfkc: true, collapse_whitespace: true, drop_whitespace_zh: true, lowercase: false }
    }
}

impl Normalization {
    /// No normalisation at all (raw strings are compared).
    pub const NONE: Normalization =
        Normalization { nfkc: false, collapse_whitespace: false, drop_whitespace_zh: false, lowercase: false };

    /// Applies the enabled steps to `text` of language `lang`.
    pub fn apply(&self, text: &str, lang: Lang) -> String {
        let mut s: String = if self.nfkc { text.nfkc().collect() } else { text.to_string() };
        if self.lowercase {
            s = s.to_lowercase();
        }
        if lang == Lang::Zh && self.drop_whitespace_zh {
            s.retain(|c| !c.is_whitespace());
        } else if self.collapse_whitespace {
            s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_from_their_names() {
        for lang in [Lang::En, Lang::Zh] {
            assert_eq!(lang.as_str().parse::<Lang>(), Ok(lang));
        }
        assert_eq!("fr".parse::<Lang>(), Err("unknown language \"fr\": expected en or zh".to_string()));
    }

    #[test]
    fn default_normalisation_cases() {
        let n = Normalization::default();
        let cases = [
            ("  Hello,\n\n  world\t! ", Lang::En, "Hello, world !"),
            ("ＡＢＣ１２３", Lang::En, "ABC123"),
            ("ﬁne", Lang::En, "fine"),
            ("滚滚 长江\n东逝水", Lang::Zh, "滚滚长江东逝水"),
            ("浪花，淘尽", Lang::Zh, "浪花,淘尽"), // NFKC folds the full-width comma
            ("", Lang::En, ""),
        ];
        for (input, lang, want) in cases {
            assert_eq!(n.apply(input, lang), want, "input {input:?}");
        }
    }

    #[test]
    fn switches_are_independent() {
        let raw = "ＡＢ  c\nD";
        assert_eq!(Normalization::NONE.apply(raw, Lang::En), raw);
        let lower = Normalization { lowercase: true, ..Normalization::default() };
        assert_eq!(lower.apply(raw, Lang::En), "ab c d");
        let keep_zh = Normalization { drop_whitespace_zh: false, ..Normalization::default() };
        assert_eq!(keep_zh.apply("长 江\n水", Lang::Zh), "长 江 水");
    }
}
