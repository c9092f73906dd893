//! [`Lang`]: the language of a text, the one definition for every crate.
//!
//! The renderer uses it to order the font chain (`occ_render::RenderSpec::for_mode`),
//! the experiment stack to split words and drop Chinese whitespace before scoring, and Tesseract to
//! choose its language pack. Written `en` / `zh` everywhere: corpora, specs, Parquet columns, command
//! lines and JSON.

use serde::{Deserialize, Serialize};

/// Language of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    /// `en` or `zh`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Lang {
    type Err = String;

    /// `en` or `zh` (the spelling of [`Lang::as_str`]).
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "en" => Ok(Lang::En),
            "zh" => Ok(Lang::Zh),
            other => Err(format!("unknown language {other:?}: expected en or zh")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_parsed_and_shown() {
        for lang in [Lang::En, Lang::Zh] {
            assert_eq!(lang.as_str().parse::<Lang>().unwrap(), lang);
            assert_eq!(lang.to_string(), lang.as_str());
        }
        assert!("EN".parse::<Lang>().is_err());
        assert_eq!(Lang::default(), Lang::En);
    }
}
