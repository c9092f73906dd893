//! Self-attention of the decoder (`model.layers.N.self_attn`): plain multi-head attention, since
//! DeepSeek-OCR sets `use_mla = false` (the reference then uses transformers' `LlamaAttention`).
//!
//! RoPE is the rotate-half (NeoX) form over the **full** head dimension, θ = `rope_theta`,
//! `inv_freq[i] = θ^(−2i/d)`, at positions that count every prompt token, image slots included
//! (docs/MODEL.md §7.2). Scores are `q·kᵀ / √d` in the compute dtype, the softmax runs in float32 and its
//! result is cast back before the value product, as in the reference's eager path.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

use super::cache::KvCache;
use super::config::DecoderConfig;

/// Rotary cos/sin of a batch of positions.
#[derive(Debug, Clone)]
pub struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    pub fn new(cfg: &DecoderConfig) -> Rotary {
        let d = cfg.head_dim();
        // float32 as the reference: `1 / base ** (arange(0, d, 2).float() / d)`
        let inv_freq = (0..d / 2).map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / d as f32)).collect();
        Rotary { inv_freq }
    }

    /// `(cos, sin)`, each `(batch, q_len, head_dim / 2)` in `dtype`, for `positions` (row-major
    /// `batch × q_len`). Angles and their cos/sin are float32, then cast (reference).
    pub fn cos_sin(&self, positions: &[u32], batch: usize, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        if batch == 0 || positions.len() % batch != 0 {
            candle_core::bail!("rotary: {} positions for a batch of {batch}", positions.len())
        }
        let q_len = positions.len() / batch;
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (batch, q_len, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (batch, q_len, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// The float32 inverse frequencies.
    pub fn inv_freq_host(&self) -> &[f32] {
        &self.inv_freq
    }
}

/// Multi-head attention with optional grouped key/value heads (`num_key_value_heads`).
#[derive(Debug, Clone)]
pub struct Attention {
    /// `q_proj`, `k_proj` and `v_proj` concatenated at load: `((heads + 2 · kv_heads) · head_dim,
    /// hidden)`.
    qkv_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    layer_idx: usize,
}

impl Attention {
    pub fn new(cfg: &DecoderConfig, layer_idx: usize, vb: VarBuilder<'_>) -> Result<Attention> {
        let (h, kv, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
        let q = linear_no_bias(cfg.hidden_size, h * d, vb.pp("q_proj"))?;
        let k = linear_no_bias(cfg.hidden_size, kv * d, vb.pp("k_proj"))?;
        let v = linear_no_bias(cfg.hidden_size, kv * d, vb.pp("v_proj"))?;
        let qkv = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
        Ok(Attention {
            qkv_proj: Linear::new(qkv, None),
            o_proj: linear_no_bias(h * d, cfg.hidden_size, vb.pp("o_proj"))?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
            layer_idx,
        })
    }

    /// # Shapes
    /// - `xs`: `(batch, q_len, hidden)`; `cos`, `sin`: `(batch, q_len, head_dim / 2)`;
    /// - `mask`: additive float32 `(batch or 1, 1, q_len, cache.len() + q_len)` or `None`;
    /// - returns `(batch, q_len, hidden)`.
    pub fn forward(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, q_len, _) = xs.dims3()?;
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let qkv = self.qkv_proj.forward(xs)?;
        let split = |from: usize, heads: usize| {
            qkv.narrow(2, from * d, heads * d)?.reshape((b, q_len, heads, d))?.transpose(1, 2)?.contiguous()
        };
        let q = split(0, h)?; // (b, h, q, d)
        let k = split(h, kv)?; // (b, kv, q, d)
        let v = split(h + kv, kv)?;
        let q = crate::ops::rope(&q, cos, sin)?;
        let k = crate::ops::rope(&k, cos, sin)?;
        let (k, v) = cache.append(self.layer_idx, &k, &v)?; // (b, kv, k_len, d)
        let (k, v) = (repeat_kv(k, h / kv)?, repeat_kv(v, h / kv)?);
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (d as f64).sqrt())?; // (b, h, q, k_len)
        let mut scores = scores.to_dtype(DType::F32)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = crate::ops::softmax_last_dim(&scores)?.to_dtype(xs.dtype())?;
        let out = probs.matmul(&v.contiguous()?)?; // (b, h, q, d)
        let out = out.transpose(1, 2)?.reshape((b, q_len, h * d))?;
        self.o_proj.forward(&out)
    }
}

impl Attention {
    /// One decode step of every slot of a [`SlotCache`](super::slots::SlotCache) layer: the new
    /// key/value columns are written at each slot's position and each query attends to the slot's
    /// columns `0..=pos` (fused [`ops::decode_attention`](crate::ops::decode_attention); scores
    /// and softmax in float32).
    ///
    /// # Shapes
    /// - `xs`: `(slots, 1, hidden)`; `pos`: `(slots,)` u32; `inv_freq`: the rotary frequencies;
    /// - `cache`: `(2, slots, kv_heads, capacity, head_dim)`; returns `(slots, 1, hidden)`.
    pub fn forward_slots(&self, xs: &Tensor, pos: &Tensor, inv_freq: &[f32], cache: &Tensor) -> Result<Tensor> {
        let (slots, _, hidden) = xs.dims3()?;
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let qkv = self.qkv_proj.forward(&xs.reshape((slots, hidden))?)?; // (S, (h + 2kv)·d)
        let q = crate::ops::rope_q(&qkv, pos, h, kv, inv_freq)?; // (S, h, d)
        crate::ops::kv_rope_write(cache, &qkv, pos, h, inv_freq)?;
        let out = crate::ops::decode_attention(&q, cache, pos, 1.0 / (d as f32).sqrt())?;
        self.o_proj.forward(&out.reshape((slots, 1, h * d))?)
    }
}

/// `(b, kv, s, d)` → `(b, kv · n_rep, s, d)`, each key/value head repeated `n_rep` times in place.
fn repeat_kv(xs: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(xs);
    }
    let (b, kv, s, d) = xs.dims4()?;
    xs.unsqueeze(2)?.expand((b, kv, n_rep, s, d))?.reshape((b, kv * n_rep, s, d))
}
