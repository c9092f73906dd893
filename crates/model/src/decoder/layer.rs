//! One decoder block (`model.layers.N`): pre-norm attention and pre-norm feed-forward, both residual.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::Attention;
use super::cache::KvCache;
use super::config::DecoderConfig;
use super::mlp::Mlp;
use super::moe::Moe;
use super::norm::RmsNorm;

/// The feed-forward half of a block, chosen once from the config.
#[derive(Debug, Clone)]
pub enum Ffn {
    /// Dense SwiGLU (`first_k_dense_replace` first layers; width `intermediate_size`).
    Dense(Mlp),
    /// Routed experts + shared experts.
    Moe(Moe),
}

impl Module for Ffn {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Ffn::Dense(m) => m.forward(xs),
            Ffn::Moe(m) => m.forward(xs),
        }
    }
}

/// `h = x + Attn(RMSNorm_in(x))`, `y = h + Ffn(RMSNorm_post(h))`.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Ffn,
}

impl DecoderLayer {
    pub fn new(cfg: &DecoderConfig, idx: usize, vb: VarBuilder<'_>) -> Result<DecoderLayer> {
        let mlp = if cfg.is_moe_layer(idx) {
            Ffn::Moe(Moe::new(cfg, vb.pp("mlp"))?)
        } else {
            Ffn::Dense(Mlp::new(cfg.hidden_size, cfg.intermediate_size, vb.pp("mlp"))?)
        };
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, idx, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp,
        })
    }

    /// # Shapes
    /// `xs`: `(batch, q_len, hidden)` → `(batch, q_len, hidden)`; see [`Attention::forward`].
    pub fn forward(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("decoder_layer").entered();
        let h = (xs + self.self_attn.forward(&self.input_layernorm.forward(xs)?, cos, sin, mask, cache)?)?;
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h)?)?
    }

    /// One decode step of every slot (see [`Attention::forward_slots`]).
    pub fn forward_slots(&self, xs: &Tensor, pos: &Tensor, inv_freq: &[f32], cache: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("decoder_layer_slots").entered();
        let a = self.self_attn.forward_slots(&self.input_layernorm.forward(xs)?, pos, inv_freq, cache)?;
        let h = (xs + a)?;
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h)?)?
    }
}
