//! [`rms_norm`]: RMSNorm with the reference's roundings (normalise, round, then weight) in one pass.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[cfg(feature = "cuda")]
use super::cuda;
use super::diff::{self, tracks_grad};
use super::elem::{contiguous, float_pair, Elem};

struct RmsNormOp {
    eps: f32,
}

fn rms_norm_cpu<T: Elem>(x: &[T], w: &[T], rows: usize, n: usize, eps: f32) -> Vec<T> {
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        let row = &x[r * n..(r + 1) * n];
        let total: f32 = row.iter().map(|v| v.to_f32() * v.to_f32()).sum();
        let inv = 1.0 / (total / n as f32 + eps).sqrt();
        for (v, wc) in row.iter().zip(w) {
            let normed = T::from_f32(v.to_f32() * inv).to_f32();
            out.push(T::from_f32(wc.to_f32() * normed));
        }
    }
    out
}

/// Checked sizes of an [`rms_norm`] call: `(rows, n)`.
fn rms_dims(xl: &Layout, wl: &Layout) -> Result<(usize, usize)> {
    let n = wl.shape().dims1()?;
    if xl.dims().last() != Some(&n) {
        candle_core::bail!("rms_norm: input {:?} does not end in the weight's {n}", xl.dims())
    }
    Ok((xl.shape().elem_count() / n.max(1), n))
}

impl candle_core::CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "occ-rms-norm"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, n) = rms_dims(xl, wl)?;
        let out = float_pair!(x, w, "rms_norm", |xv, wv: T| {
            let xv = contiguous(xv, xl, "rms_norm input")?;
            let wv = contiguous(wv, wl, "rms_norm weight")?;
            WithDType::to_cpu_storage_owned(rms_norm_cpu(xv, wv, rows, n, self.eps))
        });
        Ok((out, xl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (rows, n) = rms_dims(xl, wl)?;
        Ok((cuda::rms_norm(x, xl, w, wl, rows, n, self.eps)?, xl.shape().clone()))
    }
}

/// `weight · round(x · 1/√(mean(x²) + ε))` with float32 statistics, rounded to the input dtype
/// before the weight is applied and after (the reference's `DeepseekV2RMSNorm`).
///
/// # Shapes
/// `xs`: `(…, n)`; `weight`: `(n,)` → `(…, n)`.
pub fn rms_norm(xs: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    if tracks_grad(&[xs, weight]) {
        return diff::rms_norm(xs, weight, eps);
    }
    xs.contiguous()?.apply_op2_no_bwd(weight, &RmsNormOp { eps })
}
