//! DeepSeek-OCR configuration: the `config.json` mirror ([`HfConfig`]) and the typed vision configs.
//!
//! Sizes and fields: docs/MODEL.md §4, §5, §7.1. Two layers: [`HfConfig`] deserialises `config.json`
//! with its own field names; [`SamConfig`], [`ClipConfig`], [`ProjectorConfig`] and
//! [`VisionConfig`] are what the modules are built from, validated by `TryFrom<&HfConfig>`.
//!
//! The reference (HF remote code) builds SAM-base, CLIP-L and the linear projector with
//! hard-coded sizes and does not read `vision_config`; a config whose values differ from what the
//! reference would build is therefore rejected, naming the field, rather than silently followed.
//!
//! The language half is deserialised into [`HfDecoderKeys`] twice, from the top-level keys
//! ([`HfConfig::decoder`], what the reference reads) and from `language_config`
//! ([`HfConfig::language_config`], what vLLM reads); `DecoderConfig::try_from(&HfConfig)` applies the
//! precedence, the defaults and the checks.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Errors of config parsing and validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json is not valid: {0}")]
    Parse(String),
    #[error("config field {field} = {value} is unsupported: {expected}")]
    Unsupported { field: String, value: String, expected: String },
}

fn unsupported(field: &str, value: impl std::fmt::Debug, expected: impl Into<String>) -> ConfigError {
    ConfigError::Unsupported { field: field.to_string(), value: format!("{value:?}"), expected: expected.into() }
}

/// `config.json` of deepseek-ai/DeepSeek-OCR, field names as in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HfConfig {
    #[serde(rename = "_name_or_path", default)]
    pub name_or_path: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub auto_map: Option<Value>,
    /// Unused by the reference code (it tiles with `dynamic_preprocess`).
    #[serde(default)]
    pub candidate_resolutions: Vec<Vec<u32>>,
    /// Unused by the reference code for ordering (local tiles always come first, docs/MODEL.md §6).
    #[serde(default)]
    pub global_view_pos: Option<String>,
    pub model_type: String,
    pub projector_config: HfProjectorConfig,
    #[serde(default)]
    pub tile_tag: Option<String>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    #[serde(default)]
    pub transformers_version: Option<String>,
    pub vision_config: HfVisionConfig,
    /// The decoder hyper-parameters as vLLM reads them (`None` when the file has no
    /// `language_config`).
    #[serde(default)]
    pub language_config: Option<HfDecoderKeys>,
    /// Every other top-level key, untyped, for display (`hidden_size`, `num_hidden_layers`,
    /// `vocab_size`, …). Must stay declared before [`Self::decoder`]: serde hands a flattened map
    /// every remaining key, and a flattened struct takes the keys it knows.
    #[serde(flatten)]
    pub text: BTreeMap<String, Value>,
    /// The decoder hyper-parameters as HF reads them: the top-level keys.
    #[serde(flatten)]
    pub decoder: HfDecoderKeys,
}

/// The decoder keys of `config.json` with `DeepseekV2Config`'s names, each `None` when absent or
/// `null`. They appear at the top level (read by the reference) and again in `language_config`
/// (read by vLLM); `DecoderConfig::try_from(&HfConfig)` takes the top-level value first, then
/// `language_config`'s, then `DeepseekV2Config`'s default where one applies (docs/MODEL.md §7.1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HfDecoderKeys {
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub moe_intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    /// Checked against `hidden_size / num_attention_heads` when present.
    pub head_dim: Option<usize>,
    pub n_routed_experts: Option<usize>,
    pub num_experts_per_tok: Option<usize>,
    pub n_shared_experts: Option<usize>,
    pub first_k_dense_replace: Option<usize>,
    pub moe_layer_freq: Option<usize>,
    pub routed_scaling_factor: Option<f64>,
    pub topk_method: Option<String>,
    pub n_group: Option<usize>,
    pub topk_group: Option<usize>,
    pub norm_topk_prob: Option<bool>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub max_position_embeddings: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Multi-head latent attention (`DeepseekV2Config` default true; not ported).
    pub use_mla: Option<bool>,
    pub scoring_func: Option<String>,
    pub hidden_act: Option<String>,
    pub attention_bias: Option<bool>,
    pub pretraining_tp: Option<u64>,
    pub tie_word_embeddings: Option<bool>,
    pub lm_head: Option<bool>,
    pub rm_head: Option<bool>,
    pub ep_size: Option<u64>,
    /// Any non-null value is rejected (RoPE scaling is not ported).
    pub rope_scaling: Option<Value>,
}

/// `config.json` → `projector_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfProjectorConfig {
    pub input_dim: usize,
    #[serde(default)]
    pub model_type: Option<String>,
    pub n_embed: usize,
    pub projector_type: String,
}

/// `config.json` → `vision_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfVisionConfig {
    pub image_size: usize,
    /// Not read by the reference code (3.7362 in the checkpoint; SAM and CLIP use ratio 4).
    #[serde(default)]
    pub mlp_ratio: Option<f64>,
    pub model_name: String,
    #[serde(default)]
    pub model_type: Option<String>,
    pub width: HfVisionWidth,
}

/// `config.json` → `vision_config.width`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfVisionWidth {
    #[serde(rename = "clip-l-14-224")]
    pub clip: HfClipWidth,
    #[serde(rename = "sam_vit_b")]
    pub sam: HfSamWidth,
}

/// `config.json` → `vision_config.width.clip-l-14-224`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfClipWidth {
    pub heads: usize,
    pub image_size: usize,
    pub layers: usize,
    pub patch_size: usize,
    pub width: usize,
}

/// `config.json` → `vision_config.width.sam_vit_b`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfSamWidth {
    pub downsample_channels: Vec<usize>,
    pub global_attn_indexes: Vec<usize>,
    pub heads: usize,
    pub layers: usize,
    pub width: usize,
}

/// The checkpoint's `config.json` (deepseek-ai/DeepSeek-OCR), as committed in
/// `crates/core/assets/deepseek-ocr/`.
pub const DEEPSEEK_OCR_CONFIG_JSON: &str = include_str!("../../core/assets/deepseek-ocr/config.json");

impl HfConfig {
    /// The embedded real `config.json` ([`DEEPSEEK_OCR_CONFIG_JSON`]).
    pub fn deepseek_ocr() -> Result<HfConfig, ConfigError> {
        HfConfig::from_json(DEEPSEEK_OCR_CONFIG_JSON)
    }

    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> Result<HfConfig, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }
}

/// SAM-base image encoder and 16× compressor (`model.sam_model.*`, docs/MODEL.md §4).
#[derive(Debug, Clone, PartialEq)]
pub struct SamConfig {
    /// Image side the stored `pos_embed` was trained for (its grid is `image_size / patch_size`).
    pub image_size: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    /// Window side of the windowed blocks.
    pub window_size: usize,
    /// Blocks with global attention (all others are windowed).
    pub global_attn_indexes: Vec<usize>,
    /// Channels of the neck.
    pub out_chans: usize,
    /// Output channels of `net_2` and `net_3`.
    pub downsample_channels: [usize; 2],
    pub eps: f64,
    /// Read ink instead of light: the normalised pixels x (white paper 1, black ink −1, as the
    /// preprocessing gives them) enter the patch embedding as (1 − x) / 2 (paper 0, ink 1).
    /// DeepSeek-OCR's weights read light (false). For a reader trained from scratch, paper at 0
    /// keeps the blank page out of the patch embedding's gradient: with paper at 1, Adam moves
    /// every weight of a kernel together and the response to blank paper grows until it
    /// drowns the text (docs/TRAINING.md, "encoder collapse").
    pub ink_input: bool,
}

impl SamConfig {
    /// SAM-base as built by the reference's `build_sam_vit_b`.
    pub fn deepseek_ocr() -> SamConfig {
        SamConfig {
            image_size: 1024,
            patch_size: 16,
            in_chans: 3,
            width: 768,
            depth: 12,
            heads: 12,
            mlp_dim: 3072,
            window_size: 14,
            global_attn_indexes: vec![2, 5, 8, 11],
            out_chans: 256,
            downsample_channels: [512, 1024],
            eps: 1e-6,
            ink_input: false,
        }
    }

    /// A toy SAM for fast tests: 64-px stored grid of 4×4, window 3 (so 8×8 grids are padded),
    /// one global block.
    pub fn tiny() -> SamConfig {
        SamConfig {
            image_size: 64,
            patch_size: 16,
            in_chans: 3,
            width: 32,
            depth: 3,
            heads: 2,
            mlp_dim: 128,
            window_size: 3,
            global_attn_indexes: vec![1],
            out_chans: 16,
            downsample_channels: [32, 64],
            eps: 1e-6,
            ink_input: false,
        }
    }

    /// Side of the stored absolute position grid (64 for SAM-base).
    pub fn pos_grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Channels of the compressor output (what CLIP receives as patch embeddings).
    pub fn out_channels(&self) -> usize {
        self.downsample_channels[1]
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

/// CLIP-L fed with SAM features (`model.vision_model.*`, docs/MODEL.md §5).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    /// Image side and patch of the stored position table (`(image_size / patch_size)² + 1` rows).
    pub image_size: usize,
    pub patch_size: usize,
    pub eps: f64,
    pub pre_eps: f64,
}

impl ClipConfig {
    /// CLIP-L/14-224 as built by the reference's `build_clip_l`.
    pub fn deepseek_ocr() -> ClipConfig {
        ClipConfig {
            width: 1024,
            layers: 24,
            heads: 16,
            ffn_dim: 4096,
            image_size: 224,
            patch_size: 14,
            eps: 1e-5,
            pre_eps: 1e-5,
        }
    }

    /// A toy CLIP matching [`SamConfig::tiny`] (width = SAM output channels, 4×4 position grid).
    pub fn tiny() -> ClipConfig {
        ClipConfig {
            width: 64,
            layers: 2,
            heads: 2,
            ffn_dim: 128,
            image_size: 56,
            patch_size: 14,
            eps: 1e-5,
            pre_eps: 1e-5,
        }
    }

    /// Side of the stored position grid (16 for CLIP-L/14-224).
    pub fn pos_grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

/// The linear projector (`model.projector.layers`), and the size of the learned separators.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorConfig {
    pub input_dim: usize,
    pub n_embed: usize,
}

impl ProjectorConfig {
    pub fn deepseek_ocr() -> ProjectorConfig {
        ProjectorConfig { input_dim: 2048, n_embed: 1280 }
    }

    pub fn tiny() -> ProjectorConfig {
        ProjectorConfig { input_dim: 128, n_embed: 64 }
    }
}

/// The whole DeepEncoder.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub sam: SamConfig,
    pub clip: ClipConfig,
    pub projector: ProjectorConfig,
}

impl VisionConfig {
    pub fn deepseek_ocr() -> VisionConfig {
        VisionConfig {
            sam: SamConfig::deepseek_ocr(),
            clip: ClipConfig::deepseek_ocr(),
            projector: ProjectorConfig::deepseek_ocr(),
        }
    }

    pub fn tiny() -> VisionConfig {
        VisionConfig { sam: SamConfig::tiny(), clip: ClipConfig::tiny(), projector: ProjectorConfig::tiny() }
    }

    /// Checks that the three parts fit together (SAM output = CLIP width, projector input =
    /// CLIP width + SAM output channels, heads divide widths, global block indexes in range).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (sam, clip, proj) = (&self.sam, &self.clip, &self.projector);
        if sam.heads == 0 || sam.width % sam.heads != 0 {
            return Err(unsupported("sam.heads", sam.heads, format!("a divisor of sam.width {}", sam.width)));
        }
        if clip.heads == 0 || clip.width % clip.heads != 0 {
            return Err(unsupported("clip.heads", clip.heads, format!("a divisor of clip.width {}", clip.width)));
        }
        if sam.patch_size == 0 || sam.image_size % sam.patch_size != 0 {
            return Err(unsupported("sam.image_size", sam.image_size, "a multiple of sam.patch_size"));
        }
        if clip.patch_size == 0 || clip.image_size % clip.patch_size != 0 {
            return Err(unsupported("clip.image_size", clip.image_size, "a multiple of clip.patch_size"));
        }
        if sam.window_size == 0 {
            return Err(unsupported("sam.window_size", sam.window_size, "at least 1"));
        }
        if let Some(&i) = sam.global_attn_indexes.iter().find(|&&i| i >= sam.depth) {
            return Err(unsupported("sam.global_attn_indexes", i, format!("block indexes below depth {}", sam.depth)));
        }
        if sam.out_channels() != clip.width {
            return Err(unsupported(
                "sam.downsample_channels",
                sam.downsample_channels,
                format!("last entry equal to the CLIP width {} (SAM features are CLIP's patch embeddings)", clip.width),
            ));
        }
        if proj.input_dim != clip.width + sam.out_channels() {
            return Err(unsupported(
                "projector_config.input_dim",
                proj.input_dim,
                format!("CLIP width + SAM channels = {}", clip.width + sam.out_channels()),
            ));
        }
        Ok(())
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(field: &str, value: T, want: T, why: &str) -> Result<(), ConfigError> {
    if value == want {
        Ok(())
    } else {
        Err(unsupported(field, value, format!("{want:?} ({why})")))
    }
}

const HARD_CODED: &str = "the reference builds this module with a hard-coded size and ignores the config";

impl TryFrom<&HfConfig> for VisionConfig {
    type Error = ConfigError;

    fn try_from(hf: &HfConfig) -> Result<VisionConfig, ConfigError> {
        let want = VisionConfig::deepseek_ocr();
        let v = &hf.vision_config;
        expect_eq("model_type", hf.model_type.as_str(), "deepseek_vl_v2", "the DeepSeek-OCR checkpoint")?;
        expect_eq("vision_config.model_name", v.model_name.as_str(), "deeplip_b_l", "SAM-base + CLIP-L")?;
        if let Some(t) = &v.model_type {
            expect_eq("vision_config.model_type", t.as_str(), "vision", "the DeepSeek-OCR checkpoint")?;
        }
        expect_eq("vision_config.image_size", v.image_size, want.sam.image_size, HARD_CODED)?;
        let s = &v.width.sam;
        expect_eq("vision_config.width.sam_vit_b.width", s.width, want.sam.width, HARD_CODED)?;
        expect_eq("vision_config.width.sam_vit_b.layers", s.layers, want.sam.depth, HARD_CODED)?;
        expect_eq("vision_config.width.sam_vit_b.heads", s.heads, want.sam.heads, HARD_CODED)?;
        expect_eq(
            "vision_config.width.sam_vit_b.global_attn_indexes",
            s.global_attn_indexes.as_slice(),
            want.sam.global_attn_indexes.as_slice(),
            HARD_CODED,
        )?;
        expect_eq(
            "vision_config.width.sam_vit_b.downsample_channels",
            s.downsample_channels.as_slice(),
            want.sam.downsample_channels.as_slice(),
            HARD_CODED,
        )?;
        let c = &v.width.clip;
        expect_eq("vision_config.width.clip-l-14-224.width", c.width, want.clip.width, HARD_CODED)?;
        expect_eq("vision_config.width.clip-l-14-224.layers", c.layers, want.clip.layers, HARD_CODED)?;
        expect_eq("vision_config.width.clip-l-14-224.heads", c.heads, want.clip.heads, HARD_CODED)?;
        expect_eq("vision_config.width.clip-l-14-224.image_size", c.image_size, want.clip.image_size, HARD_CODED)?;
        expect_eq("vision_config.width.clip-l-14-224.patch_size", c.patch_size, want.clip.patch_size, HARD_CODED)?;
        let p = &hf.projector_config;
        expect_eq(
            "projector_config.projector_type",
            p.projector_type.as_str(),
            "linear",
            "only the linear projector is used",
        )?;
        expect_eq("projector_config.input_dim", p.input_dim, want.projector.input_dim, HARD_CODED)?;
        expect_eq("projector_config.n_embed", p.n_embed, want.projector.n_embed, HARD_CODED)?;
        if let Some(t) = &hf.tile_tag {
            expect_eq("tile_tag", t.as_str(), "2D", "the only tile layout the reference implements")?;
        }
        if let Some(pos) = &hf.global_view_pos {
            expect_eq("global_view_pos", pos.as_str(), "head", "the only value seen in the checkpoint")?;
        }
        want.validate()?;
        Ok(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = DEEPSEEK_OCR_CONFIG_JSON;

    #[test]
    fn real_config_parses_to_the_preset() {
        let hf = HfConfig::from_json(REAL).unwrap();
        let cfg = VisionConfig::try_from(&hf).unwrap();
        assert_eq!(cfg, VisionConfig::deepseek_ocr());
        assert_eq!(hf.text.get("hidden_size"), Some(&Value::from(1280)));
        assert_eq!(hf.decoder.hidden_size, Some(1280));
        assert_eq!(hf.language_config.as_ref().and_then(|l| l.num_hidden_layers), Some(12));
        assert_eq!(cfg.sam.pos_grid(), 64);
        assert_eq!(cfg.clip.pos_grid(), 16);
    }

    #[test]
    fn tiny_preset_is_consistent() {
        VisionConfig::tiny().validate().unwrap();
        VisionConfig::deepseek_ocr().validate().unwrap();
    }

    fn edited(path: &[&str], value: Value) -> Result<VisionConfig, ConfigError> {
        let mut json: Value = serde_json::from_str(REAL).unwrap();
        let mut node = &mut json;
        for key in &path[..path.len() - 1] {
            node = node.get_mut(*key).unwrap();
        }
        node[path[path.len() - 1]] = value;
        let hf = HfConfig::from_json(&json.to_string())?;
        VisionConfig::try_from(&hf)
    }

    #[test]
    fn unsupported_values_are_rejected_by_name() {
        let cases: [(&[&str], Value, &str); 6] = [
            (&["projector_config", "projector_type"], "mlp_gelu".into(), "projector_config.projector_type"),
            (&["vision_config", "width", "sam_vit_b", "layers"], 24.into(), "vision_config.width.sam_vit_b.layers"),
            (
                &["vision_config", "width", "sam_vit_b", "global_attn_indexes"],
                serde_json::json!([2, 5, 8]),
                "global_attn_indexes",
            ),
            (&["vision_config", "width", "clip-l-14-224", "heads"], 8.into(), "clip-l-14-224.heads"),
            (&["tile_tag"], "1D".into(), "tile_tag"),
            (&["vision_config", "model_name"], "siglip".into(), "vision_config.model_name"),
        ];
        for (path, value, name) in cases {
            let err = edited(path, value).unwrap_err().to_string();
            assert!(err.contains(name), "{path:?}: {err}");
        }
    }

    #[test]
    fn unknown_vision_fields_are_rejected_by_name() {
        let err = edited(&["vision_config", "width", "sam_vit_b", "window"], 7.into()).unwrap_err().to_string();
        assert!(err.contains("unknown field `window`"), "{err}");
    }
}
