//! DeepSeek-OCR-2 configuration: typed presets of the vision tower (docs/MODEL.md §14).
//!
//! The vision tower is SAM-base ([`SamConfig`], v1's, with the downsampling neck widened to
//! 512 → 896 channels), a Qwen2-0.5B-shaped encoder ([`Qwen2EncoderConfig`]) that reads the SAM
//! features followed by learnable queries, and a linear projector 896 → 1280. The decoder is v1's
//! DeepSeek3B-MoE ([`crate::decoder::DecoderConfig`]).
//!
//! Sources: transformers' `configuration_deepseek_ocr2.py` and the values its conversion script
//! (`convert_deepseek_ocr2_weights_to_hf.py`) writes for the original release: the encoder's width
//! comes from `vision_config.width["qwen2-0-5b"].dim` (896), the rest is fixed there (24 layers, 14
//! heads, 2 key/value heads, MLP 4864, RMSNorm ε 1e-6, RoPE θ 1e6); SAM's `downsample_channels` are
//! fixed at `[512, 896]`.

use crate::config::SamConfig;

/// Rows of the learnable query table used for a view of `≤ 144` SAM tokens (a 768² view: 12×12).
pub const QUERIES_768: usize = 144;
/// Rows of the query table used for larger views (a 1024² view: 16×16).
pub const QUERIES_1024: usize = 256;

/// The Qwen2-style encoder (`model.qwen2_model.model.model.*` in the original checkpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2EncoderConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
}

impl Qwen2EncoderConfig {
    /// Qwen2-0.5B's shape, as the conversion script writes it.
    pub fn deepseek_ocr2() -> Qwen2EncoderConfig {
        Qwen2EncoderConfig {
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            intermediate: 4864,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
        }
    }

    /// The reduced encoder of the CPU goldens (`REDUCED_ENCODER` in scripts/gen_v2_goldens.py).
    pub fn reduced() -> Qwen2EncoderConfig {
        Qwen2EncoderConfig {
            hidden: 48,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 96,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// The whole DeepSeek-OCR-2 vision tower with its projector and separator.
#[derive(Debug, Clone, PartialEq)]
pub struct Ocr2VisionConfig {
    pub sam: SamConfig,
    pub encoder: Qwen2EncoderConfig,
    /// Decoder width: the projector's output and the view separator's size.
    pub n_embed: usize,
}

/// A config that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("DeepSeek-OCR-2 vision config: {0}")]
pub struct Ocr2ConfigError(pub String);

impl Ocr2VisionConfig {
    /// The released model's vision tower.
    pub fn deepseek_ocr2() -> Ocr2VisionConfig {
        Ocr2VisionConfig {
            sam: SamConfig { downsample_channels: [512, 896], ..SamConfig::deepseek_ocr() },
            encoder: Qwen2EncoderConfig::deepseek_ocr2(),
            n_embed: 1280,
        }
    }

    /// The reduced tower of the CPU goldens (`REDUCED_SAM` / `REDUCED_ENCODER` /
    /// `REDUCED_TEXT.hidden_size` of scripts/gen_v2_goldens.py): SAM width 32, 2 blocks (block 1
    /// global), neck 16, downsampling 24 → 48; encoder width 48, 2 layers, 4 heads, 2 key/value
    /// heads; projector 48 → 64. The stored position grid stays 64×64 (image size 1024), so 768²
    /// tiles resize it as in the full model.
    pub fn reduced() -> Ocr2VisionConfig {
        Ocr2VisionConfig {
            sam: SamConfig {
                image_size: 1024,
                patch_size: 16,
                in_chans: 3,
                width: 32,
                depth: 2,
                heads: 2,
                mlp_dim: 128,
                window_size: 14,
                global_attn_indexes: vec![1],
                out_chans: 16,
                downsample_channels: [24, 48],
                eps: 1e-6,
                ink_input: false,
            },
            encoder: Qwen2EncoderConfig::reduced(),
            n_embed: 64,
        }
    }

    /// Checks what the modules rely on: SAM's last downsampling width is the encoder's width (its
    /// features are the encoder's input embeddings), heads divide the widths.
    pub fn validate(&self) -> Result<(), Ocr2ConfigError> {
        let e = &self.encoder;
        if self.sam.out_channels() != e.hidden {
            return Err(Ocr2ConfigError(format!(
                "sam.downsample_channels[1] = {} must equal encoder.hidden = {}",
                self.sam.out_channels(),
                e.hidden
            )));
        }
        if e.heads == 0 || e.hidden % e.heads != 0 || e.kv_heads == 0 || e.heads % e.kv_heads != 0 {
            return Err(Ocr2ConfigError(format!(
                "encoder heads {} / key-value heads {} do not divide hidden {}",
                e.heads, e.kv_heads, e.hidden
            )));
        }
        if e.head_dim() % 2 != 0 {
            return Err(Ocr2ConfigError(format!("encoder head_dim {} must be even (RoPE)", e.head_dim())));
        }
        if self.sam.ink_input {
            return Err(Ocr2ConfigError("sam.ink_input is a trained-reader option, not DeepSeek-OCR-2's".into()));
        }
        Ok(())
    }

    /// Query rows for a view whose SAM output has `patches` tokens (transformers' rule: the 768 table
    /// when `patches ≤ 144`, else the 1024 table).
    pub fn queries_for(patches: usize) -> usize {
        if patches <= QUERIES_768 {
            QUERIES_768
        } else {
            QUERIES_1024
        }
    }
}
