//! The decoder stack: `model.embed_tokens`, `model.layers.*`, `model.norm`, `lm_head`.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, linear_no_bias, Embedding, Linear, VarBuilder};

use super::attention::Rotary;
use super::cache::KvCache;
use super::config::DecoderConfig;
use super::layer::DecoderLayer;
use super::norm::RmsNorm;
use super::slots::SlotCache;

/// DeepSeek3B-MoE (DeepSeek-V2 layout, MHA) with its language-model head.
#[derive(Debug, Clone)]
pub struct DecoderModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    rotary: Rotary,
    cfg: DecoderConfig,
    dtype: DType,
    device: Device,
}

impl DecoderModel {
    /// Builds the decoder from a root [`VarBuilder`] (checkpoint names `model.*` and `lm_head`).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder<'_>) -> Result<DecoderModel> {
        cfg.validate().map_err(|e| candle_core::Error::Msg(format!("decoder config: {e}")))?;
        let m = vb.pp("model");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, i, m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderModel {
            embed_tokens: embedding(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?,
            layers,
            norm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?,
            lm_head: linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"))?,
            rotary: Rotary::new(cfg),
            cfg: cfg.clone(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh cache for rows with the given left padding.
    pub fn new_cache(&self, left_pad: Vec<usize>) -> KvCache {
        KvCache::new(self.layers.len(), left_pad)
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// `ids`: `(batch, seq)` u32 → `(batch, seq, hidden)`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let max = ids.flatten_all()?.max(0)?.to_dtype(DType::U32)?.to_scalar::<u32>()?;
        if max as usize >= self.cfg.vocab_size {
            candle_core::bail!("token id {max} is outside the vocabulary of {} embeddings", self.cfg.vocab_size)
        }
        self.embed_tokens.forward(ids)
    }

    /// Runs the blocks over `embeds` appended after the `seqlen_offset` columns already in `cache`
    /// and returns the final-normed hidden states.
    ///
    /// # Shapes
    /// `embeds`: `(batch, q_len, hidden)` in the model dtype → `(batch, q_len, hidden)`.
    pub fn forward_hidden(&self, embeds: &Tensor, seqlen_offset: usize, cache: &mut KvCache) -> Result<Tensor> {
        let (b, q_len, hidden) = embeds.dims3()?;
        if hidden != self.cfg.hidden_size {
            candle_core::bail!("decoder input: expected hidden size {}, got {hidden}", self.cfg.hidden_size)
        }
        if seqlen_offset != cache.len() || b != cache.batch() {
            candle_core::bail!(
                "decoder input: seqlen_offset {seqlen_offset} and batch {b} do not match the cache ({} columns, {} rows)",
                cache.len(),
                cache.batch()
            )
        }
        let positions = cache.positions(q_len);
        let (cos, sin) = self.rotary.cos_sin(&positions, b, self.dtype, &self.device)?;
        let mask = cache.mask(q_len, &self.device)?;
        let mut xs = embeds.to_dtype(self.dtype)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &cos, &sin, mask.as_ref(), cache)?;
        }
        cache.advance(q_len);
        self.norm.forward(&xs)
    }

    /// An empty [`SlotCache`] for this model.
    pub fn new_slot_cache(&self, slots: usize, capacity: usize) -> Result<SlotCache> {
        SlotCache::new(
            self.layers.len(),
            slots,
            self.cfg.num_key_value_heads,
            capacity,
            self.cfg.head_dim(),
            self.dtype,
            &self.device,
        )
    }

    /// One decode step of every slot: embeds `ids`, runs the layers at positions `pos` (each slot
    /// writes its column `pos` and attends to `0..=pos`) and returns the float32 logits. Nothing is
    /// read back to the host, so the step can be captured in a CUDA graph.
    ///
    /// # Shapes
    /// `ids`, `pos`: `(slots,)` u32 → `(slots, vocab)` float32.
    pub fn forward_slots(&self, ids: &Tensor, pos: &Tensor, cache: &SlotCache) -> Result<Tensor> {
        let slots = ids.dim(0)?;
        if pos.dims() != [slots] || cache.slots() != slots {
            candle_core::bail!(
                "decode step: {slots} ids, positions {:?}, a cache of {} slots",
                pos.dims(),
                cache.slots()
            )
        }
        let inv_freq = self.rotary.inv_freq_host();
        let mut xs = self.embed_tokens.forward(&ids.unsqueeze(1)?)?; // (S, 1, hidden)
        for (i, layer) in self.layers.iter().enumerate() {
            xs = layer.forward_slots(&xs, pos, inv_freq, cache.layer(i)?)?;
        }
        self.logits(&self.norm.forward(&xs)?.squeeze(1)?)
    }

    /// Float32 logits of hidden states (`lm_head`, then the reference's `.float()`).
    ///
    /// # Shapes
    /// `(…, hidden)` → `(…, vocab)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }

    /// Logits of every new position: [`Self::forward_hidden`] then [`Self::logits`].
    ///
    /// # Shapes
    /// `embeds`: `(batch, q_len, hidden)` → `(batch, q_len, vocab)` float32.
    pub fn forward_embeds(&self, embeds: &Tensor, seqlen_offset: usize, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.forward_hidden(embeds, seqlen_offset, cache)?;
        self.logits(&hidden)
    }
}
