//! Small DeepEncoder-style readers that this toolkit trains itself (`compress-bench train`): the same
//! modules as DeepSeek-OCR (SAM-style patch encoder with windowed and global attention → 16× conv
//! compressor → CLIP-style global encoder → linear projector → DeepSeek-V2 MoE decoder), every size
//! from a [`MiniConfig`], on a square canvas of their own, with an output vocabulary that is a subset
//! of the DeepSeek-OCR tokenizer's ids ([`OutputVocab`]).
//!
//! Token accounting is DeepSeek-OCR's: a page of the reader's canvas is read in
//! `Mode::Custom { base_size: canvas, image_size: canvas, crop: false }`, so it costs
//! `(canvas / 64)²` vision tokens, and text tokens are counted with the real tokenizer. The subset
//! vocabulary changes only how the reader spells its output, never what a ratio means.
//!
//! A model folder holds `mini.json` ([`MiniConfig`]), `vocab.json` ([`OutputVocab`]'s real ids) and
//! `model.safetensors` (checkpoint names as DeepSeek-OCR's: `model.sam_model.*`, `model.layers.*`,
//! `lm_head.weight`, …). [`crate::pipeline::DeepseekOcr::from_mini_dir`] loads one as an engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use occ_core::tokenizer::{BOS_ID, EOS_ID, IMAGE_ID};
use occ_core::{Mode, TextTokenizer};
use serde::{Deserialize, Serialize};

use crate::config::{ClipConfig, ProjectorConfig, SamConfig, VisionConfig};
use crate::decoder::DecoderConfig;

/// File names inside a model folder.
pub const CONFIG_FILE: &str = "mini.json";
pub const VOCAB_FILE: &str = "vocab.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Pixels per vision token side: 16-px patches, then the 4× (two stride-2 convs) compressor.
pub const PIXELS_PER_TOKEN: usize = 64;

/// Errors of mini-model configs, vocabularies and folders; each names the file or field.
#[derive(Debug, thiserror::Error)]
pub enum MiniError {
    #[error("{field} = {value} is invalid: {expected}")]
    Field { field: String, value: String, expected: String },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("output vocabulary: {0}")]
    Vocab(String),
}

fn field(name: &str, value: impl std::fmt::Debug, expected: impl Into<String>) -> MiniError {
    MiniError::Field { field: name.into(), value: format!("{value:?}"), expected: expected.into() }
}

/// The patch encoder and compressor (SAM's structure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniSam {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    /// Window side (in patches) of the windowed blocks.
    pub window_size: usize,
    /// Blocks with global attention.
    pub global_attn_indexes: Vec<usize>,
    /// Channels of the neck.
    pub out_chans: usize,
    /// Output channels of the two stride-2 convs; the second is the global encoder's width.
    pub downsample_channels: [usize; 2],
    /// The patch encoder reads ink (paper 0) instead of DeepSeek-OCR's light (paper 1); see
    /// [`crate::config::SamConfig::ink_input`]. Absent in readers written before it: false, and
    /// not written when false, so those readers' configs (and architecture fingerprints) stay
    /// byte for byte what they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ink_input: bool,
}

/// The global encoder over the compressed tokens (CLIP's structure; its width is SAM's output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniClip {
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
}

/// The decoder (DeepSeek-V2 layout: dense layers first, then MoE layers with shared experts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniDecoder {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    /// Width of the dense layers' SwiGLU MLP.
    pub intermediate_size: usize,
    /// Width of each routed expert (and of each shared expert).
    pub moe_intermediate_size: usize,
    /// Routed experts per MoE layer (0: every layer dense).
    pub experts: usize,
    pub experts_per_token: usize,
    pub shared_experts: usize,
    /// Layers before the first MoE layer.
    pub first_dense_layers: usize,
    /// Longest sequence (prompt + output) the reader is built for.
    pub max_positions: usize,
}

/// A trained reader's architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniConfig {
    /// Side of the square page in pixels (a multiple of 64); the reader's mode is
    /// `custom:{canvas}x{canvas}`.
    pub canvas: usize,
    /// Output vocabulary size (special ids, the 256 byte tokens, then the commonest training ids).
    pub vocab_size: usize,
    pub sam: MiniSam,
    pub clip: MiniClip,
    pub decoder: MiniDecoder,
}

impl MiniConfig {
    /// The mode pages are read in.
    pub fn mode(&self) -> Result<Mode, MiniError> {
        let c = u32::try_from(self.canvas).map_err(|_| field("canvas", self.canvas, "a page side in pixels"))?;
        Mode::custom(c, c, false).map_err(|e| field("canvas", self.canvas, e.to_string()))
    }

    /// Compressed tokens per page side.
    pub fn grid(&self) -> usize {
        self.canvas / PIXELS_PER_TOKEN
    }

    /// Checks every constraint the modules rely on, naming the field.
    pub fn validate(&self) -> Result<(), MiniError> {
        if self.canvas == 0 || self.canvas % PIXELS_PER_TOKEN != 0 {
            return Err(field("canvas", self.canvas, "a positive multiple of 64"));
        }
        let s = &self.sam;
        let patches = self.canvas / 16;
        if s.window_size == 0 || s.window_size > patches {
            return Err(field("sam.window_size", s.window_size, format!("between 1 and the patch grid {patches}")));
        }
        let d = &self.decoder;
        if d.heads == 0 || d.hidden_size % d.heads != 0 || (d.hidden_size / d.heads) % 2 != 0 {
            return Err(field(
                "decoder.heads",
                d.heads,
                format!("a divisor of decoder.hidden_size {} leaving an even head size", d.hidden_size),
            ));
        }
        if d.layers == 0 {
            return Err(field("decoder.layers", d.layers, "at least 1"));
        }
        if d.experts > 0 && (d.experts_per_token == 0 || d.experts_per_token > d.experts) {
            return Err(field("decoder.experts_per_token", d.experts_per_token, format!("1..={}", d.experts)));
        }
        if d.first_dense_layers > d.layers {
            return Err(field("decoder.first_dense_layers", d.first_dense_layers, format!("at most {}", d.layers)));
        }
        let min_vocab = SPECIAL_IDS.len() + 256;
        if self.vocab_size < min_vocab {
            return Err(field("vocab_size", self.vocab_size, format!("at least {min_vocab} (specials + 256 bytes)")));
        }
        let slots = self.grid() * (self.grid() + 1) + 1;
        if d.max_positions <= slots + 16 {
            return Err(field(
                "decoder.max_positions",
                d.max_positions,
                format!("more than the {slots} image slots + 16"),
            ));
        }
        let v = self.vision();
        v.validate().map_err(|e| field("sam/clip", "", e.to_string()))?;
        self.decoder_config().validate().map_err(|e| field("decoder", "", e.to_string()))?;
        Ok(())
    }

    /// The encoder's module configs.
    pub fn vision(&self) -> VisionConfig {
        let s = &self.sam;
        let grid = self.grid();
        let clip_width = s.downsample_channels[1];
        VisionConfig {
            sam: SamConfig {
                image_size: self.canvas,
                patch_size: 16,
                width: s.width,
                depth: s.depth,
                heads: s.heads,
                mlp_dim: s.mlp_dim,
                window_size: s.window_size,
                global_attn_indexes: s.global_attn_indexes.clone(),
                out_chans: s.out_chans,
                downsample_channels: s.downsample_channels,
                ink_input: s.ink_input,
                ..SamConfig::deepseek_ocr()
            },
            clip: ClipConfig {
                width: clip_width,
                layers: self.clip.layers,
                heads: self.clip.heads,
                ffn_dim: self.clip.ffn_dim,
                // the stored position grid is the compressed grid (CLIP's `image_size / patch_size`)
                image_size: grid * 14,
                patch_size: 14,
                ..ClipConfig::deepseek_ocr()
            },
            projector: ProjectorConfig { input_dim: 2 * clip_width, n_embed: self.decoder.hidden_size },
        }
    }

    /// The decoder's config, in the output vocabulary's ids (BOS 0, EOS 1 as in the tokenizer): the
    /// sizes from the config, every rule (routing, norms, RoPE) DeepSeek-OCR's.
    pub fn decoder_config(&self) -> DecoderConfig {
        let d = &self.decoder;
        DecoderConfig {
            vocab_size: self.vocab_size,
            hidden_size: d.hidden_size,
            intermediate_size: d.intermediate_size,
            moe_intermediate_size: d.moe_intermediate_size,
            num_hidden_layers: d.layers,
            num_attention_heads: d.heads,
            num_key_value_heads: d.heads,
            n_routed_experts: (d.experts > 0).then_some(d.experts),
            num_experts_per_tok: d.experts_per_token,
            n_shared_experts: (d.shared_experts > 0).then_some(d.shared_experts),
            first_k_dense_replace: if d.experts > 0 { d.first_dense_layers } else { d.layers },
            max_position_embeddings: d.max_positions,
            bos_token_id: BOS_ID,
            eos_token_id: EOS_ID,
            ..DecoderConfig::deepseek_ocr()
        }
    }

    /// Reads `mini.json`.
    pub fn load(path: &Path) -> Result<MiniConfig, MiniError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MiniError::File { path: path.into(), problem: format!("cannot read: {e}") })?;
        let cfg: MiniConfig = serde_json::from_str(&text)
            .map_err(|e| MiniError::File { path: path.into(), problem: format!("not a reader config: {e}") })?;
        cfg.validate().map_err(|e| MiniError::File { path: path.into(), problem: e.to_string() })?;
        Ok(cfg)
    }
}

/// Ids every output vocabulary starts with, in this order: BOS, EOS, the image placeholder. BOS and
/// EOS keep their tokenizer ids (0 and 1).
pub const SPECIAL_IDS: [u32; 3] = [BOS_ID, EOS_ID, IMAGE_ID];

/// The byte-level alphabet of GPT-2-style BPE: byte `b` is spelt as this char in token strings.
pub fn byte_char(b: u8) -> char {
    let printable = |c: u8| (b'!'..=b'~').contains(&c) || (0xA1..=0xAC).contains(&c) || (0xAE..=0xFF).contains(&c);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('\u{FFFD}')
}

/// A subset of the tokenizer's ids that the reader reads and writes. Any text can be spelt in it:
/// a token outside the subset is spelt with the byte tokens of its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputVocab {
    /// Reader id → tokenizer id.
    real: Vec<u32>,
    /// Tokenizer id → reader id.
    index: HashMap<u32, u32>,
    /// Reader id of each byte's token.
    bytes: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    /// Tokenizer ids, in reader-id order.
    real_ids: Vec<u32>,
}

impl OutputVocab {
    /// A vocabulary from tokenizer ids in reader-id order: [`SPECIAL_IDS`] first, every byte token
    /// somewhere, no duplicates.
    pub fn from_real_ids(real: Vec<u32>, tok: &TextTokenizer) -> Result<OutputVocab, MiniError> {
        if real.len() < SPECIAL_IDS.len() || real[..SPECIAL_IDS.len()] != SPECIAL_IDS {
            return Err(MiniError::Vocab(format!("must start with the special ids {SPECIAL_IDS:?}")));
        }
        let mut index = HashMap::with_capacity(real.len());
        for (i, &r) in real.iter().enumerate() {
            if r as usize >= tok.vocab_size() {
                return Err(MiniError::Vocab(format!("id {r} is outside the tokenizer ({} ids)", tok.vocab_size())));
            }
            if index.insert(r, i as u32).is_some() {
                return Err(MiniError::Vocab(format!("id {r} appears twice")));
            }
        }
        let bytes = (0..=255u8)
            .map(|b| {
                let id = tok
                    .token_to_id(&byte_char(b).to_string())
                    .ok_or_else(|| MiniError::Vocab(format!("the tokenizer has no token for byte {b:#04x}")))?;
                index.get(&id).copied().ok_or_else(|| MiniError::Vocab(format!("byte {b:#04x} (id {id}) is missing")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutputVocab { real, index, bytes })
    }

    /// The `size` most useful ids for `texts`: [`SPECIAL_IDS`], the 256 byte tokens, the prompt's
    /// ids, then the commonest ids of `texts` (ties by id; then the lowest unused ids if `texts` has
    /// too few), so the vocabulary is a pure function of its inputs.
    pub fn build<'a>(
        tok: &TextTokenizer,
        texts: impl IntoIterator<Item = &'a str>,
        extra: &[u32],
        size: usize,
    ) -> Result<OutputVocab, MiniError> {
        let mut real: Vec<u32> = SPECIAL_IDS.to_vec();
        let mut seen: std::collections::HashSet<u32> = real.iter().copied().collect();
        for b in 0..=255u8 {
            let id = tok
                .token_to_id(&byte_char(b).to_string())
                .ok_or_else(|| MiniError::Vocab(format!("the tokenizer has no token for byte {b:#04x}")))?;
            if seen.insert(id) {
                real.push(id);
            }
        }
        for &id in extra {
            if seen.insert(id) {
                real.push(id);
            }
        }
        let mut counts: HashMap<u32, u64> = HashMap::new();
        for text in texts {
            for id in tok.encode(text).map_err(|e| MiniError::Vocab(e.to_string()))? {
                *counts.entry(id).or_default() += 1;
            }
        }
        let mut ranked: Vec<(u32, u64)> = counts.into_iter().filter(|(id, _)| !seen.contains(id)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let want = size.saturating_sub(real.len());
        for (id, _) in ranked.into_iter().take(want) {
            seen.insert(id);
            real.push(id);
        }
        // texts with fewer distinct ids than asked: the lowest unused ids fill the rest, so the
        // vocabulary always has `size` ids
        let mut next = 3u32;
        let base = tok.inner().get_vocab_size(false) as u32;
        while real.len() < size && next < base {
            if seen.insert(next) {
                real.push(next);
            }
            next += 1;
        }
        if real.len() > size {
            return Err(MiniError::Vocab(format!("{} ids are needed before any text id; size is {size}", real.len())));
        }
        OutputVocab::from_real_ids(real, tok)
    }

    pub fn len(&self) -> usize {
        self.real.len()
    }

    pub fn is_empty(&self) -> bool {
        self.real.is_empty()
    }

    /// Tokenizer ids in reader-id order.
    pub fn real_ids(&self) -> &[u32] {
        &self.real
    }

    /// The reader id of tokenizer id `id`, if the subset has it.
    pub fn reader_id(&self, id: u32) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Tokenizer ids → reader ids; ids outside the subset are spelt with byte tokens.
    pub fn spell(&self, tok: &TextTokenizer, ids: &[u32]) -> Result<Vec<u32>, MiniError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(r) = self.reader_id(id) {
                out.push(r);
                continue;
            }
            let token = tok
                .inner()
                .id_to_token(id)
                .ok_or_else(|| MiniError::Vocab(format!("the tokenizer has no token {id}")))?;
            for c in token.chars() {
                let b = (0..=255u8)
                    .find(|&b| byte_char(b) == c)
                    .ok_or_else(|| MiniError::Vocab(format!("token {id} ({token:?}) is not byte-level")))?;
                out.push(self.bytes[b as usize]);
            }
        }
        Ok(out)
    }

    /// A prompt in reader ids: text spelt as [`OutputVocab::spell`] does, image slots kept.
    pub fn spell_prompt(
        &self,
        tok: &TextTokenizer,
        prompt: &crate::prompt::PromptTokens,
    ) -> Result<crate::prompt::PromptTokens, MiniError> {
        let ids = self.spell(tok, &prompt.ids)?;
        let image = self.reader_id(IMAGE_ID).ok_or_else(|| MiniError::Vocab("no image placeholder".into()))?;
        let image_mask = ids.iter().map(|&i| i == image).collect();
        Ok(crate::prompt::PromptTokens { ids, image_mask })
    }

    /// `text` in reader ids (no BOS, no EOS).
    pub fn encode(&self, tok: &TextTokenizer, text: &str) -> Result<Vec<u32>, MiniError> {
        let ids = tok.encode(text).map_err(|e| MiniError::Vocab(e.to_string()))?;
        self.spell(tok, &ids)
    }

    /// Reader ids → tokenizer ids (an id outside the vocabulary is an error).
    pub fn to_real(&self, ids: &[u32]) -> Result<Vec<u32>, MiniError> {
        ids.iter()
            .map(|&i| {
                self.real.get(i as usize).copied().ok_or_else(|| {
                    MiniError::Vocab(format!("reader id {i} is outside the vocabulary of {}", self.real.len()))
                })
            })
            .collect()
    }

    /// Writes `vocab.json`.
    pub fn save(&self, path: &Path) -> Result<(), MiniError> {
        let text = serde_json::to_string(&VocabFile { real_ids: self.real.clone() })
            .map_err(|e| MiniError::Vocab(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| MiniError::File { path: path.into(), problem: e.to_string() })
    }

    /// Reads `vocab.json`.
    pub fn load(path: &Path, tok: &TextTokenizer) -> Result<OutputVocab, MiniError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MiniError::File { path: path.into(), problem: format!("cannot read: {e}") })?;
        let file: VocabFile = serde_json::from_str(&text)
            .map_err(|e| MiniError::File { path: path.into(), problem: format!("not a vocabulary: {e}") })?;
        OutputVocab::from_real_ids(file.real_ids, tok)
            .map_err(|e| MiniError::File { path: path.into(), problem: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> TextTokenizer {
        TextTokenizer::deepseek_ocr().unwrap()
    }

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let chars: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
    }

    #[test]
    fn any_text_round_trips_through_a_small_vocabulary() {
        let t = tok();
        let v = OutputVocab::build(&t, ["the cat sat on the mat"], &[], 300).unwrap();
        assert_eq!(v.len(), 300);
        assert_eq!(&v.real_ids()[..3], &SPECIAL_IDS);
        for text in ["the cat", "Zebra-crossing №42 → 光学压缩!\n\ttab", "a\u{0}b"] {
            let ids = v.encode(&t, text).unwrap();
            assert!(ids.iter().all(|&i| (i as usize) < v.len()));
            let real = v.to_real(&ids).unwrap();
            assert_eq!(t.decode(&real, false).unwrap(), text, "{text:?}");
        }
        // common ids are kept whole
        let the = t.encode("the").unwrap();
        assert_eq!(v.encode(&t, "the").unwrap().len(), the.len());
    }

    #[test]
    fn bad_vocabularies_are_refused() {
        let t = tok();
        assert!(OutputVocab::from_real_ids(vec![5, 1, 2], &t).unwrap_err().to_string().contains("special"));
        let v = OutputVocab::build(&t, ["x"], &[], 300).unwrap();
        let mut ids = v.real_ids().to_vec();
        ids.push(ids[10]);
        assert!(OutputVocab::from_real_ids(ids, &t).unwrap_err().to_string().contains("twice"));
        assert!(v.to_real(&[300]).is_err());
    }
}
