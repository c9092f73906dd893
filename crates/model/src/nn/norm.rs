//! Layer norms of the vision encoder: [`LayerNorm`] over the last axis (SAM's blocks, CLIP) and
//! `LayerNorm2d` of SAM's neck over the channel axis of an NCHW tensor.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// `nn.LayerNorm` over the last axis: candle-nn's layer norm for inference, its differentiable
/// composition when autograd tracks the input or the weights (candle-nn's fused op has no backward).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    inner: candle_nn::LayerNorm,
    eps: f64,
}

/// Loads `weight` and `bias` of `size` entries.
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder<'_>) -> Result<LayerNorm> {
    Ok(LayerNorm { inner: candle_nn::layer_norm(size, eps, vb)?, eps })
}

impl Module for LayerNorm {
    /// # Shapes
    /// `(…, n)` → `(…, n)`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.inner.weight(), self.inner.bias());
        match b {
            Some(b) if crate::ops::tracks_grad(&[xs, w, b]) => crate::ops::layer_norm(xs, w, b, self.eps),
            _ => self.inner.forward(xs),
        }
    }
}

/// Normalises each pixel over its channels (biased variance), then a per-channel affine map.
#[derive(Debug, Clone)]
pub struct LayerNorm2d {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm2d {
    /// Loads `weight` and `bias` of `channels` entries.
    pub fn new(channels: usize, eps: f64, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(LayerNorm2d { weight: vb.get(channels, "weight")?, bias: vb.get(channels, "bias")?, eps })
    }

    /// # Shapes
    /// `x`: (b, c, h, w) → (b, c, h, w). Statistics in f32 whatever the dtype of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let mean = xf.mean_keepdim(1)?; // (b, 1, h, w)
        let centred = xf.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(dtype)?;
        let c = self.weight.dim(D::Minus1)?;
        let w = self.weight.reshape((1, c, 1, 1))?;
        let b = self.bias.reshape((1, c, 1, 1))?;
        normed.broadcast_mul(&w)?.broadcast_add(&b)
    }
}
