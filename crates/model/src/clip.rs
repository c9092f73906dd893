//! CLIP-L as DeepSeek-OCR uses it (`model.vision_model.*`, docs/MODEL.md §5).
//!
//! The SAM features replace the patch embeddings (the checkpoint's `patch_embedding` conv is never
//! run, so it is not loaded); a class token is prepended; the 16×16 position table is resized by
//! antialiased bicubic when the grid differs; `pre_layrnorm`; pre-norm blocks with `quick_gelu`; no
//! post-norm.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::ClipConfig;
use crate::nn::attention::sdpa;
use crate::nn::interpolate::resize_grid_bicubic_aa;
use crate::nn::linear::{dense, Dense};
use crate::nn::norm::{layer_norm, LayerNorm};
use crate::nn::{no_probe, Derived, Probe};
use crate::ops::{vit_attention, Act, VitGrid};

/// `transformer.layers.N.self_attn`.
#[derive(Debug, Clone)]
pub struct Attention {
    qkv_proj: Dense,
    out_proj: Dense,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(cfg: &ClipConfig, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Attention {
            qkv_proj: dense(cfg.width, 3 * cfg.width, vb.pp("qkv_proj"))?,
            out_proj: dense(cfg.width, cfg.width, vb.pp("out_proj"))?,
            heads: cfg.heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x + out_proj(attention(normed))`, the residual added in the projection's epilogue; fused
    /// ([`crate::ops::vit_attention`]) where a kernel exists, materialised scores elsewhere.
    ///
    /// # Shapes
    /// `normed`, `x`: (b, t, dim) → (b, t, dim).
    pub fn forward(&self, normed: &Tensor, x: &Tensor) -> Result<Tensor> {
        let (b, t, dim) = normed.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let core = if crate::ops::vit_attention_supported(normed, self.head_dim, (1, t), false) {
            let grid = VitGrid { heads: self.heads, grid: (1, t), window: None, scale: scale as f32 };
            vit_attention(&self.qkv_proj.forward(normed)?, self.qkv_proj.bias(), None, grid)?
        } else {
            let qkv = self
                .qkv_proj
                .forward(normed)?
                .reshape((b, t, 3, self.heads, self.head_dim))?
                .permute((2, 0, 3, 1, 4))?; // (3, b, nh, t, hd)
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            sdpa(&q, &k, &v, None, scale)?.transpose(1, 2)?.reshape((b, t, dim))?
        };
        self.out_proj.forward_with(&core, Act::None, Some(x))
    }
}

/// `transformer.layers.N`.
#[derive(Debug, Clone)]
pub struct Layer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
}

impl Layer {
    pub fn new(cfg: &ClipConfig, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Layer {
            layer_norm1: layer_norm(cfg.width, cfg.eps, vb.pp("layer_norm1"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            layer_norm2: layer_norm(cfg.width, cfg.eps, vb.pp("layer_norm2"))?,
            fc1: dense(cfg.width, cfg.ffn_dim, vb.pp("mlp").pp("fc1"))?,
            fc2: dense(cfg.ffn_dim, cfg.width, vb.pp("mlp").pp("fc2"))?,
        })
    }

    /// # Shapes
    /// `x`: (b, t, dim) → (b, t, dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.self_attn.forward(&self.layer_norm1.forward(x)?, x)?;
        let m = self.fc1.forward_with(&self.layer_norm2.forward(&h)?, Act::QuickGelu, None)?;
        self.fc2.forward_with(&m, Act::None, Some(&h))
    }
}

/// CLIP-L vision tower over SAM features (`model.vision_model`).
#[derive(Debug, Clone)]
pub struct Clip {
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<Layer>,
    cfg: ClipConfig,
    /// Position tables per token count.
    pos: Derived<usize>,
}

impl Clip {
    /// `vb` points at `model.vision_model`.
    pub fn new(cfg: &ClipConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let g = cfg.pos_grid();
        let layers = (0..cfg.layers)
            .map(|i| Layer::new(cfg, vb.pp("transformer").pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Clip {
            class_embedding: emb.get(cfg.width, "class_embedding")?,
            position_embedding: emb.pp("position_embedding").get((g * g + 1, cfg.width), "weight")?,
            pre_layrnorm: layer_norm(cfg.width, cfg.pre_eps, vb.pp("pre_layrnorm"))?,
            layers,
            cfg: cfg.clone(),
            pos: Derived::default(),
        })
    }

    /// Position embeddings for `tokens` tokens (class token included), as `get_abs_pos`: the grid
    /// side is `⌊√tokens⌋`; the class row is kept, the grid rows resized when the side differs.
    ///
    /// # Shapes
    /// → (1, tokens, dim).
    pub fn pos_embed(&self, tokens: usize) -> Result<Tensor> {
        self.pos.get_or(tokens, || self.resized_pos_embed(tokens))
    }

    fn resized_pos_embed(&self, tokens: usize) -> Result<Tensor> {
        resize_position_table(&self.position_embedding, tokens)?.unsqueeze(0)
    }

    /// # Shapes
    /// `features`: (b, dim, h, w) SAM output → (b, 1 + h·w, dim).
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        self.forward_probed(features, &mut no_probe)
    }

    /// [`Clip::forward`], reporting `clip.embeddings`, `clip.pre_layrnorm` and `clip.layers.N`.
    pub fn forward_probed(&self, features: &Tensor, probe: Probe<'_>) -> Result<Tensor> {
        let (b, dim, h, w) = features.dims4()?;
        if dim != self.cfg.width {
            candle_core::bail!("clip input: expected {} channels (SAM output), got {dim}", self.cfg.width);
        }
        let patches = features.flatten_from(2)?.transpose(1, 2)?; // (b, h·w, dim)
        let cls = self.class_embedding.reshape((1, 1, dim))?.broadcast_as((b, 1, dim))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?; // (b, 1 + h·w, dim)
        let x = x.broadcast_add(&self.pos_embed(1 + h * w)?)?;
        probe("clip.embeddings", &x)?;
        let mut x = self.pre_layrnorm.forward(&x)?;
        probe("clip.pre_layrnorm", &x)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            probe(&format!("clip.layers.{i}"), &x)?;
        }
        Ok(x)
    }
}

/// A class row and a square grid of position embeddings, `(1 + s², dim)`, for `tokens` tokens: the
/// class row kept, the grid resized (bicubic with antialiasing) to side `⌊√tokens⌋` when it differs
/// (`get_abs_pos`). The global encoder's table at inference, and `train --init` on another page side.
///
/// # Shapes
/// `table`: (1 + s², dim) → (tokens, dim).
pub fn resize_position_table(table: &Tensor, tokens: usize) -> Result<Tensor> {
    let (rows, dim) = table.dims2()?;
    let src = ((rows - 1) as f64).sqrt() as usize;
    let tgt = (tokens as f64).sqrt() as usize;
    if src * src + 1 != rows {
        candle_core::bail!("clip position embeddings: {rows} rows are not a class row and a square grid");
    }
    if tgt == src {
        return Ok(table.clone());
    }
    if tgt * tgt + 1 != tokens {
        candle_core::bail!("clip position embeddings: {tokens} tokens are not a square grid plus a class token");
    }
    let cls = table.narrow(0, 0, 1)?;
    let grid = table.narrow(0, 1, src * src)?.reshape((src, src, dim))?;
    let grid = resize_grid_bicubic_aa(&grid, tgt, tgt)?.reshape((tgt * tgt, dim))?;
    Tensor::cat(&[&cls, &grid], 0)
}
