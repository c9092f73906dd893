//! [`swiglu`]: `silu(gate) ⊙ up` of a fused gate/up projection in one pass.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[cfg(feature = "cuda")]
use super::cuda;
use super::diff;
use super::elem::{contiguous, with_float, Elem};

struct SwiGlu;

fn swiglu_cpu<T: Elem>(x: &[T], rows: usize, n: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        let row = &x[r * 2 * n..(r + 1) * 2 * n];
        for c in 0..n {
            out.push(swiglu_one(row[c].to_f32(), row[n + c].to_f32()));
        }
    }
    out
}

fn swiglu_shape(l: &Layout) -> Result<(usize, usize, Shape)> {
    let dims = l.dims();
    let last = *dims.last().unwrap_or(&0);
    if last == 0 || last % 2 != 0 {
        candle_core::bail!("swiglu: the last dimension must be an even gate|up width, got {dims:?}")
    }
    let mut out = dims.to_vec();
    let n = last / 2;
    if let Some(o) = out.last_mut() {
        *o = n;
    }
    Ok((l.shape().elem_count() / last, n, Shape::from(out)))
}

impl candle_core::CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "occ-swiglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, n, shape) = swiglu_shape(l)?;
        let out = with_float!(s, "swiglu", |v: T| {
            let x = contiguous(v, l, "swiglu input")?;
            T::to_cpu_storage_owned(swiglu_cpu::<T>(x, rows, n))
        });
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (rows, n, shape) = swiglu_shape(l)?;
        Ok((cuda::swiglu(s, l, rows, n)?, shape))
    }
}

/// `silu(x[…, :n]) ⊙ x[…, n:]` of a fused `[gate | up]` projection, rounding after the silu and
/// after the product (the reference's two bf16 ops).
///
/// # Shapes
/// `(…, 2n)` → `(…, n)`.
pub fn swiglu(xs: &Tensor) -> Result<Tensor> {
    if xs.track_op() {
        return diff::swiglu(xs);
    }
    xs.contiguous()?.apply_op1_no_bwd(&SwiGlu)
}

/// `round(round(silu(round(g))) · round(u))` in the dtype `T` (the rounding of g and u is exact when
/// they already are `T` values).
pub(super) fn swiglu_one<T: Elem>(g: f32, u: f32) -> T {
    let g = T::from_f32(g).to_f32();
    let s = T::from_f32(g / (1.0 + (-g).exp())).to_f32();
    T::from_f32(s * T::from_f32(u).to_f32())
}
