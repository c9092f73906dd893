//! The real DeepSeek-OCR tokenizer (vendored, see `assets/deepseek-ocr/PROVENANCE.md`).
//!
//! Text tokens are counted **without** BOS (docs/MODEL.md §9.1): that is the numerator of every compression
//! ratio in the toolkit.

use std::io::Read;
use std::path::Path;

use tokenizers::Tokenizer;

/// The gzip-compressed `tokenizer.json`, embedded so every binary and test has the real tokenizer.
const EMBEDDED_GZ: &[u8] = include_bytes!("../assets/deepseek-ocr/tokenizer.json.gz");

/// Token id of `<｜begin▁of▁sentence｜>`.
pub const BOS_ID: u32 = 0;
/// Token id of `<｜end▁of▁sentence｜>`.
pub const EOS_ID: u32 = 1;
/// Token id of `<image>`, the vision placeholder.
pub const IMAGE_ID: u32 = 128_815;

/// Errors of tokenizer loading and use.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("reading tokenizer {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("parsing tokenizer {path}: {message}")]
    Parse { path: String, message: String },
    #[error("tokenizer {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("tokenizing text: {0}")]
    Encode(String),
    #[error("decoding token ids: {0}")]
    Decode(String),
}

/// A loaded tokenizer with the DeepSeek-OCR conventions (no BOS when counting).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    source: String,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("source", &self.source).finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// The vendored DeepSeek-OCR tokenizer.
    pub fn deepseek_ocr() -> Result<TextTokenizer, TokenizerError> {
        let source = "embedded deepseek-ocr tokenizer.json.gz".to_string();
        let mut json = Vec::with_capacity(10 << 20);
        flate2::read::GzDecoder::new(EMBEDDED_GZ)
            .read_to_end(&mut json)
            .map_err(|e| TokenizerError::Io { path: source.clone(), source: e })?;
        Self::from_bytes(&json, source)
    }

    /// A `tokenizer.json` from disk (e.g. the one in a user's HF snapshot).
    pub fn from_file(path: &Path) -> Result<TextTokenizer, TokenizerError> {
        let display = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::Io { path: display.clone(), source: e })?;
        Self::from_bytes(&bytes, display)
    }

    fn from_bytes(bytes: &[u8], source: String) -> Result<TextTokenizer, TokenizerError> {
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| TokenizerError::Parse { path: source.clone(), message: e.to_string() })?;
        Ok(TextTokenizer { inner, source })
    }

    /// Where this tokenizer came from (for manifests).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Token ids of `text` without BOS or any other special token added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids with the byte offsets (into `text`) where each token ends, for cutting text at a
    /// token boundary.
    #[allow(clippy::type_complexity)] // (ids, byte ranges) exactly as tokenizers' Encoding gives them
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>), TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// Number of text tokens, without BOS: the numerator of the compression ratio.
    pub fn count(&self, text: &str) -> Result<usize, TokenizerError> {
        Ok(self.encode(text)?.len())
    }

    /// Text of `ids`; special tokens are kept when `skip_special` is false.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.inner.decode(ids, skip_special).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Id of a token string, if it is in the vocabulary (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens (128,827 for DeepSeek-OCR).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` value, for callers that need its full API.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
