//! Scaled dot-product attention with an optional additive bias (PyTorch `scaled_dot_product_attention`
//! with a float `attn_mask`), non-causal. Scores and softmax in f32 whatever the input dtype.

use candle_core::{DType, Result, Tensor};

/// Score elements computed at once (64 Mi f32 = 256 MiB): bounds memory in the large global blocks.
const SCORE_BUDGET: usize = 64 << 20;

/// `softmax(q·kᵀ·scale + bias)·v`.
///
/// # Shapes
/// `q`, `k`, `v`: (b, heads, n, d); `bias`: (b, heads, n, n) or `None` → (b, heads, n, d).
pub fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    let (b, heads, n, d) = q.dims4()?;
    let dtype = q.dtype();
    let q = q.reshape((b * heads, n, d))?;
    let k = k.reshape((b * heads, k.dim(2)?, d))?;
    let v = v.reshape((b * heads, v.dim(2)?, d))?;
    let bias = match bias {
        Some(t) => Some(t.reshape((b * heads, n, t.dim(3)?))?),
        None => None,
    };
    let total = b * heads;
    let chunk = (SCORE_BUDGET / (n * k.dim(1)?).max(1)).max(1);
    let mut outs = Vec::with_capacity(total.div_ceil(chunk));
    let mut start = 0;
    while start < total {
        let len = chunk.min(total - start);
        let qc = q.narrow(0, start, len)?.to_dtype(DType::F32)?;
        let kc = k.narrow(0, start, len)?.to_dtype(DType::F32)?;
        let vc = v.narrow(0, start, len)?;
        let mut scores = (qc.matmul(&kc.t()?)? * scale)?;
        if let Some(bias) = &bias {
            scores = (scores + bias.narrow(0, start, len)?.to_dtype(DType::F32)?)?;
        }
        let probs = crate::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        outs.push(probs.matmul(&vc.contiguous()?)?);
        start += len;
    }
    Tensor::cat(&outs, 0)?.reshape((b, heads, n, d))
}
