//! DeepSeek-OCR-2's Qwen2-style vision encoder (`model.qwen2_model.model.model.*`, docs/MODEL.md §14.3).
//!
//! Input: `P` SAM feature rows followed by `Q` learnable query rows, `(b, P + Q, hidden)`. Layers are
//! Qwen2 decoder layers: `h = x + o_proj(attn(input_layernorm(x)))`, `y = h + mlp(post_attention_layernorm(h))`
//! with RMSNorm (statistics in f32, cast back before the weight), q/k/v projections **with** bias,
//! `o_proj` without, grouped key/value heads (query head `i` reads key/value head `i / (heads /
//! kv_heads)`), rotate-half RoPE over the full head dimension at positions `0 .. P + Q − 1`, scores
//! `q·kᵀ / √head_dim` plus the mask, softmax in f32, a SwiGLU MLP without biases, and a final `norm`.
//!
//! **Mask** ([`attention_mask`]): query position `i` may attend key position `j` iff `j ≤ i` (causal)
//! or both `i < P` and `j < P`. So the SAM rows attend to each other bidirectionally and never to a
//! query; query `k` (position `P + k`) attends to every SAM row and to queries `0..=k`.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

use crate::config_v2::Qwen2EncoderConfig;
use crate::decoder::mlp::Mlp;
use crate::decoder::norm::RmsNorm;
use crate::nn::linear::{dense, Dense};
use crate::nn::{no_probe, Derived, Probe};

/// Score elements computed at once per chunk of heads (64 Mi f32).
const SCORE_BUDGET: usize = 64 << 20;

/// The additive mask `(n, n)` in f32 for `patches` SAM rows among `n` positions: 0 where attention
/// is allowed (module docs), −∞ elsewhere.
pub fn attention_mask(patches: usize, n: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let allowed = j <= i || (i < patches && j < patches);
            if !allowed {
                m[i * n + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (n, n), device)
}

/// `rotate_half(x) = cat(−x[..., d/2..], x[..., ..d/2])`.
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

/// `self_attn` of one layer.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Dense,
    k_proj: Dense,
    v_proj: Dense,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(cfg: &Qwen2EncoderConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let (h, hd) = (cfg.hidden, cfg.head_dim());
        Ok(Attention {
            q_proj: dense(h, cfg.heads * hd, vb.pp("q_proj"))?,
            k_proj: dense(h, cfg.kv_heads * hd, vb.pp("k_proj"))?,
            v_proj: dense(h, cfg.kv_heads * hd, vb.pp("v_proj"))?,
            o_proj: linear_no_bias(cfg.heads * hd, h, vb.pp("o_proj"))?,
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: hd,
        })
    }

    /// # Shapes
    /// `x`: (b, n, hidden); `cos`, `sin`: (n, head_dim); `mask`: (n, n) f32 → (b, n, hidden).
    pub fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (nh, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let split = |t: Tensor, heads: usize| t.reshape((b, n, heads, hd))?.transpose(1, 2)?.contiguous();
        let rope = |t: &Tensor| -> Result<Tensor> { t.broadcast_mul(cos)?.add(&rotate_half(t)?.broadcast_mul(sin)?) };
        let q = rope(&split(self.q_proj.forward(x)?, nh)?)?; // (b, nh, n, hd)
        let k = rope(&split(self.k_proj.forward(x)?, kvh)?)?; // (b, kvh, n, hd)
        let v = split(self.v_proj.forward(x)?, kvh)?;
        let rep = nh / kvh;
        // repeat_kv: head i reads key/value head i / rep.
        let expand = |t: Tensor| -> Result<Tensor> {
            t.unsqueeze(2)?.broadcast_as((b, kvh, rep, n, hd))?.reshape((b, nh, n, hd))
        };
        let (k, v) = (expand(k)?, expand(v)?);
        let dtype = q.dtype();
        let scale = (hd as f64).powf(-0.5);
        let q = q.reshape((b * nh, n, hd))?;
        let k = k.reshape((b * nh, n, hd))?;
        let v = v.reshape((b * nh, n, hd))?;
        let total = b * nh;
        let chunk = (SCORE_BUDGET / (n * n).max(1)).max(1);
        let mut outs = Vec::with_capacity(total.div_ceil(chunk));
        let mut start = 0;
        while start < total {
            let len = chunk.min(total - start);
            let qc = q.narrow(0, start, len)?;
            let kc = k.narrow(0, start, len)?;
            // scores in the compute dtype, scaled, then the f32 mask and softmax (eager attention)
            let scores = (qc.matmul(&kc.t()?)? * scale)?.to_dtype(DType::F32)?.broadcast_add(mask)?;
            let probs = crate::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
            outs.push(probs.matmul(&v.narrow(0, start, len)?.contiguous()?)?);
            start += len;
        }
        let out = Tensor::cat(&outs, 0)?.reshape((b, nh, n, hd))?.transpose(1, 2)?.reshape((b, n, nh * hd))?;
        self.o_proj.forward(&out)
    }
}

/// `layers.N`.
#[derive(Debug, Clone)]
pub struct Layer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Layer {
    pub fn new(cfg: &Qwen2EncoderConfig, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Layer {
            input_layernorm: RmsNorm::new(cfg.hidden, cfg.rms_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(cfg.hidden, cfg.rms_eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::new(cfg.hidden, cfg.intermediate, vb.pp("mlp"))?,
        })
    }

    /// # Shapes
    /// `x`: (b, n, hidden) → (b, n, hidden).
    pub fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = (x + self.self_attn.forward(&self.input_layernorm.forward(x)?, cos, sin, mask)?)?;
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h)?)?
    }
}

/// The encoder (`qwen2_model.model.model`): layers and the final norm.
#[derive(Debug, Clone)]
pub struct Qwen2Encoder {
    layers: Vec<Layer>,
    norm: RmsNorm,
    inv_freq: Vec<f32>,
    /// Masks per (patches, n).
    masks: Derived<(usize, usize)>,
    /// cos / sin tables per (n, dtype, which).
    rope: Derived<(usize, DType, u8)>,
}

impl Qwen2Encoder {
    /// `vb` points at `model.qwen2_model.model.model`.
    pub fn new(cfg: &Qwen2EncoderConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let layers = (0..cfg.layers).map(|i| Layer::new(cfg, vb.pp("layers").pp(i))).collect::<Result<Vec<_>>>()?;
        let d = cfg.head_dim();
        // float32 as transformers' default RoPE: 1 / θ^(2i/d), the power in f32
        let inv_freq = (0..d / 2).map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / d as f32)).collect();
        Ok(Qwen2Encoder {
            layers,
            norm: RmsNorm::new(cfg.hidden, cfg.rms_eps, vb.pp("norm"))?,
            inv_freq,
            masks: Derived::default(),
            rope: Derived::default(),
        })
    }

    /// `(cos, sin)`, each `(n, head_dim)` = `cat(f, f)` of the angles `p · inv_freq` (f32, then cast).
    fn cos_sin(&self, n: usize, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let make = |which: u8| -> Result<Tensor> {
            let half = self.inv_freq.len();
            let mut v = Vec::with_capacity(n * 2 * half);
            for p in 0..n {
                let row: Vec<f32> = self
                    .inv_freq
                    .iter()
                    .map(|&f| {
                        let a = p as f32 * f;
                        if which == 0 {
                            a.cos()
                        } else {
                            a.sin()
                        }
                    })
                    .collect();
                v.extend_from_slice(&row);
                v.extend_from_slice(&row);
            }
            Tensor::from_vec(v, (n, 2 * half), device)?.to_dtype(dtype)
        };
        Ok((self.rope.get_or((n, dtype, 0), || make(0))?, self.rope.get_or((n, dtype, 1), || make(1))?))
    }

    /// # Shapes
    /// `x`: (b, n, hidden), the first `patches` rows SAM features → (b, n, hidden) after `norm`.
    pub fn forward(&self, x: &Tensor, patches: usize) -> Result<Tensor> {
        self.forward_probed(x, patches, &mut no_probe)
    }

    /// [`Qwen2Encoder::forward`], reporting `qwen2.layers.N` and `qwen2.norm` to `probe`.
    pub fn forward_probed(&self, x: &Tensor, patches: usize, probe: Probe<'_>) -> Result<Tensor> {
        let n = x.dim(1)?;
        let (cos, sin) = self.cos_sin(n, x.dtype(), x.device())?;
        let mask = self.masks.get_or((patches, n), || attention_mask(patches, n, x.device()))?;
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, &cos, &sin, &mask)?;
            probe(&format!("qwen2.layers.{i}"), &h)?;
        }
        let out = self.norm.forward(&h)?;
        probe("qwen2.norm", &out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_bidirectional_over_patches_and_causal_over_queries() {
        let m = attention_mask(3, 6, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let allowed = |i: usize, j: usize| m[i][j] == 0.0;
        // SAM rows see every SAM row, no query.
        assert!((0..3).all(|i| (0..3).all(|j| allowed(i, j))));
        assert!((0..3).all(|i| (3..6).all(|j| !allowed(i, j))));
        // Query k sees every SAM row and queries 0..=k.
        for i in 3..6 {
            assert!((0..3).all(|j| allowed(i, j)));
            assert!((3..6).all(|j| allowed(i, j) == (j <= i)));
        }
    }
}
