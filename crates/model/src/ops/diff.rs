//! Differentiable forms of the fused ops, composed of candle primitives that have a backward pass.
//!
//! The fused ops of this module (and candle-nn's fused `softmax_last_dim`, `rms_norm`, `layer_norm`
//! and `rope`) are custom ops without a backward: gradients cannot flow through them. When any input
//! of a call is tracked by candle's autograd ([`tracks_grad`]: a `Var`, or a tensor computed from
//! one), the op computes the same function from primitives instead. So one model code serves
//! inference (fused, fast) and training (differentiable); `tests/it/diff.rs` checks both give the
//! same values, and finite differences check the gradients (occ-train).
//!
//! Each form rounds to the input dtype where the fused op rounds, so bf16 values agree to the
//! dtype's step and f32 values to summation order.

use candle_core::{DType, Result, Tensor, D};

use super::act::Act;

/// Whether autograd tracks any of `ts` (a variable, or a result of an op on one).
pub fn tracks_grad(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// `silu(x[…, :n]) ⊙ x[…, n:]` of a fused `[gate | up]` projection.
pub fn swiglu(xs: &Tensor) -> Result<Tensor> {
    let last = xs.dim(D::Minus1)?;
    if last == 0 || last % 2 != 0 {
        candle_core::bail!("swiglu: the last dimension must be an even gate|up width, got {:?}", xs.dims())
    }
    let n = last / 2;
    xs.narrow(D::Minus1, 0, n)?.silu()?.mul(&xs.narrow(D::Minus1, n, n)?)
}

/// `weight · round(x / √(mean(x²) + ε))`, statistics in float32.
pub fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    let dtype = xs.dtype();
    let xf = xs.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_div(&(ms + f64::from(eps))?.sqrt()?)?.to_dtype(dtype)?;
    normed.broadcast_mul(&weight.to_dtype(dtype)?)
}

/// `residual + act(x + bias)`.
pub fn bias_act(x: &Tensor, bias: &Tensor, act: Act, residual: Option<&Tensor>) -> Result<Tensor> {
    let v = x.broadcast_add(bias)?;
    let v = match act {
        Act::None => v,
        Act::Gelu => v.gelu_erf()?,
        Act::QuickGelu => v.mul(&candle_nn::ops::sigmoid(&(&v * 1.702)?)?)?,
    };
    match residual {
        Some(r) => v + r,
        None => Ok(v),
    }
}

/// Softmax over the last dimension: candle-nn's fused op, or its differentiable composition when
/// `xs` is tracked.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if xs.track_op() {
        candle_nn::ops::softmax(xs, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

/// Layer norm over the last dimension (biased variance), statistics in float32, the affine map in
/// the input dtype: candle-nn's fused op, or its differentiable composition when tracked.
pub fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if tracks_grad(&[xs, weight, bias]) {
        candle_nn::ops::layer_norm_slow(xs, weight, bias, eps as f32)
    } else {
        candle_nn::ops::layer_norm(&xs.contiguous()?, weight, bias, eps as f32)
    }
}

/// Rotate-half RoPE (`x·cos + rotate_half(x)·sin`): candle-nn's fused op, or its differentiable
/// composition when `x` is tracked.
///
/// # Shapes
/// `x`: (b, heads, seq, d); `cos`, `sin`: (b, seq, d/2) → (b, heads, seq, d).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !tracks_grad(&[x, cos, sin]) {
        return candle_nn::rotary_emb::rope(x, cos, sin);
    }
    let d = x.dim(D::Minus1)?;
    let half = d / 2;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?; // (b, 1, seq, d)
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    let rotated =
        Tensor::cat(&[&x.narrow(D::Minus1, half, d - half)?.neg()?, &x.narrow(D::Minus1, 0, half)?], D::Minus1)?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}
