//! Corpora: JSON Lines files in the datasets folder (`id, source, lang, n_tokens, text` per line)
//! and the generated `probes` corpus ([`crate::probes`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::normalize::Lang;

/// Errors of corpus loading.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus {name}: reading {path}: {source} (corpora live in the datasets folder, see datasets/manifest.toml; pass --datasets DIR)")]
    Io { name: String, path: String, source: std::io::Error },
    #[error("corpus {name}: {path} line {line}: {message}")]
    Parse { name: String, path: String, line: usize, message: String },
    #[error("corpus {name}: {have} passages with {min_tokens}..={max_tokens} tokens, but {need} pages per cell were asked for (lower --pages or widen the token range)")]
    TooFewPages { name: String, have: usize, need: usize, min_tokens: usize, max_tokens: usize },
    #[error("corpus {name}: mixed languages ({first} and {other}) in one file")]
    MixedLang { name: String, first: String, other: String },
    #[error("corpus {name}: {message}")]
    Invalid { name: String, message: String },
}

/// One passage of a corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub id: String,
    #[serde(default)]
    pub source: String,
    pub lang: Lang,
    /// Ground-truth tokens of `text` (DeepSeek-OCR tokenizer, no BOS) as listed in the file.
    pub n_tokens: usize,
    pub text: String,
}

/// A named list of passages of one language.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    pub name: String,
    pub lang: Lang,
    pub passages: Vec<Passage>,
}

impl Corpus {
    /// Reads `<datasets_dir>/<name>.jsonl`.
    pub fn load(name: &str, datasets_dir: &Path) -> Result<Corpus, CorpusError> {
        let path = datasets_dir.join(format!("{name}.jsonl"));
        let display = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| CorpusError::Io {
            name: name.into(),
            path: display.clone(),
            source: e,
        })?;
        Self::parse(name, &display, &text)
    }

    /// Parses JSON Lines text (blank lines ignored).
    pub fn parse(name: &str, path: &str, text: &str) -> Result<Corpus, CorpusError> {
        let mut passages: Vec<Passage> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let p: Passage = serde_json::from_str(line).map_err(|e| CorpusError::Parse {
                name: name.into(),
                path: path.into(),
                line: i + 1,
                message: e.to_string(),
            })?;
            if let Some(first) = passages.first() {
                if first.lang != p.lang {
                    return Err(CorpusError::MixedLang {
                        name: name.into(),
                        first: first.lang.as_str().into(),
                        other: p.lang.as_str().into(),
                    });
                }
            }
            passages.push(p);
        }
        let lang = passages
            .first()
            .map(|p| p.lang)
            .ok_or_else(|| CorpusError::Invalid { name: name.into(), message: format!("{path} has no passages") })?;
        Ok(Corpus { name: name.into(), lang, passages })
    }

    /// Indices of the passages whose listed token count is in `min..=max`.
    pub fn eligible(&self, min_tokens: usize, max_tokens: usize) -> Vec<usize> {
        (0..self.passages.len()).filter(|&i| (min_tokens..=max_tokens).contains(&self.passages[i].n_tokens)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_lines_and_filters_by_tokens() {
        let text = r#"{"id": "a", "source": "s", "lang": "en", "n_tokens": 500, "text": "x"}

{"id": "b", "lang": "en", "n_tokens": 900, "text": "y"}
"#;
        let c = Corpus::parse("en", "mem", text).unwrap();
        assert_eq!((c.passages.len(), c.lang), (2, Lang::En));
        assert_eq!(c.eligible(600, 1300), vec![1]);
        let mixed = r#"{"id": "a", "lang": "en", "n_tokens": 1, "text": "x"}
{"id": "b", "lang": "zh", "n_tokens": 1, "text": "y"}"#;
        assert!(matches!(Corpus::parse("m", "mem", mixed), Err(CorpusError::MixedLang { .. })));
        let err = Corpus::parse("en", "mem", "{\"id\": 1}").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(Corpus::parse("en", "mem", "").is_err());
    }
}
