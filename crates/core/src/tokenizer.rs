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

/// Bytes per piece of [`TextTokenizer::count_long`].
pub const COUNT_PIECE_BYTES: usize = 64 << 10;

/// A loaded tokenizer with the DeepSeek-OCR conventions (no BOS when counting).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    source: String,
    /// Whether this is the embedded DeepSeek-OCR tokenizer (whose pre-tokenizer `count_long` relies on).
    embedded: bool,
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
        let mut tok = Self::from_bytes(&json, source)?;
        tok.embedded = true;
        Ok(tok)
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
        Ok(TextTokenizer { inner, source, embedded: false })
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

    /// [`Self::count`] of a long text (megabytes), about twice as fast: the text is counted in pieces of
    /// about [`COUNT_PIECE_BYTES`] and the counts are added. See [`Self::count_long_in_pieces`] for why
    /// the sum is exact.
    pub fn count_long(&self, text: &str) -> Result<usize, TokenizerError> {
        self.count_long_in_pieces(text, COUNT_PIECE_BYTES)
    }

    /// [`Self::count`] of `text` as the sum of the counts of pieces of at least `piece_bytes` bytes.
    ///
    /// A piece ends after a `\n` that is followed by a non-whitespace character. The DeepSeek-OCR
    /// pre-tokenizer always splits there: none of its patterns (digit groups, CJK runs, letter runs
    /// with at most one leading non-newline character, punctuation runs with trailing newlines,
    /// whitespace runs ending in a newline) continues past a newline into a non-whitespace character,
    /// BPE never merges across pre-tokens, and no special token contains a newline. So the sum equals
    /// the count of the whole text (tested on the corpora and on every split point). A tokenizer other
    /// than the embedded one, or a text without such a newline, is counted in one piece.
    pub fn count_long_in_pieces(&self, text: &str, piece_bytes: usize) -> Result<usize, TokenizerError> {
        if !self.embedded {
            return self.count(text);
        }
        let bytes = text.as_bytes();
        let mut total = 0;
        let mut start = 0;
        let mut i = start + piece_bytes.max(1);
        while i < bytes.len() {
            let split = (i.max(1)..bytes.len()).find(|&j| bytes[j - 1] == b'\n' && !bytes[j].is_ascii_whitespace());
            let Some(j) = split else {
                break;
            };
            // `j` follows an ASCII newline, so it is a character boundary.
            total += self.count(&text[start..j])?;
            start = j;
            i = start + piece_bytes.max(1);
        }
        Ok(total + self.count(&text[start..])?)
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
