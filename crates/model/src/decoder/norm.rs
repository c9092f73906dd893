//! RMSNorm with float32 statistics (`DeepseekV2RMSNorm`, docs/MODEL.md §7.2).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `weight · cast(x · rsqrt(mean(x²) + eps))`, the statistics and the scaling in float32, the result
/// cast back to the input dtype *before* the weight is applied (as the reference does; candle's fused
/// `rms_norm` applies the weight in float32, which differs in bf16). One fused op
/// ([`ops::rms_norm`](crate::ops::rms_norm)) on every device.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder<'_>) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: vb.get(size, "weight")?, eps })
    }
}

impl Module for RmsNorm {
    /// # Shapes
    /// `(…, hidden)` → `(…, hidden)`, same dtype.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        crate::ops::rms_norm(xs, &self.weight, self.eps as f32)
    }
}
