//! [`bias_act`]: a linear layer's epilogue (bias, activation, residual add) in one pass. The CUDA
//! kernel is `bias_act` in `kernels.cu`.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

use super::act::{act_cpu, Act};
#[cfg(feature = "cuda")]
use super::cuda;
use super::diff::{self, tracks_grad};
use super::elem::{contiguous, float_pair, third, Elem};

fn bias_act_cpu<T: Elem>(x: &[T], b: &[T], res: Option<&[T]>, act: Act) -> Vec<T> {
    let n = b.len();
    x.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let v = T::from_f32(xi.to_f32() + b[i % n].to_f32()).to_f32();
            let v = T::from_f32(act_cpu::<T>(v, act));
            match res {
                Some(r) => T::from_f32(v.to_f32() + r[i].to_f32()),
                None => v,
            }
        })
        .collect()
}

struct BiasAct {
    act: Act,
    residual: bool,
}

impl BiasAct {
    fn check(&self, xl: &Layout, bl: &Layout, rl: &Layout) -> Result<usize> {
        let n = *xl.dims().last().unwrap_or(&0);
        if bl.dims() != [n] || n == 0 {
            candle_core::bail!("bias_act: bias {:?} for rows of {n} ({:?})", bl.dims(), xl.dims())
        }
        if self.residual && rl.dims() != xl.dims() {
            candle_core::bail!("bias_act: residual {:?} for an input {:?}", rl.dims(), xl.dims())
        }
        Ok(n)
    }
}

impl candle_core::CustomOp3 for BiasAct {
    fn name(&self) -> &'static str {
        "occ-bias-act"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.check(xl, bl, rl)?;
        let out = float_pair!(x, b, "bias_act", |xs, bs: T| {
            let xs = contiguous(xs, xl, "bias_act input")?;
            let bs = contiguous(bs, bl, "bias_act bias")?;
            let rs = match self.residual {
                false => None,
                true => Some(contiguous(third::<T>(r, "bias_act residual")?, rl, "bias_act residual")?),
            };
            T::to_cpu_storage_owned(bias_act_cpu::<T>(xs, bs, rs, self.act))
        });
        Ok((out, xl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        b: &candle_core::CudaStorage,
        bl: &Layout,
        r: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let n = self.check(xl, bl, rl)?;
        let res = self.residual.then_some((r, rl));
        Ok((cuda::bias_act(x, xl, b, bl, res, n, self.act.code())?, xl.shape().clone()))
    }
}

/// A linear layer's epilogue in one pass: `round(residual + round(act(round(x + bias))))` (the reference's
/// bias add, activation and residual add, each rounded to the dtype).
///
/// # Shapes
/// `x`: `(…, n)`, `bias`: `(n)`, `residual`: as `x` → as `x`.
pub fn bias_act(x: &Tensor, bias: &Tensor, act: Act, residual: Option<&Tensor>) -> Result<Tensor> {
    if tracks_grad(&[x, bias]) || residual.is_some_and(|r| r.track_op()) {
        return diff::bias_act(x, bias, act, residual);
    }
    let x = x.contiguous()?;
    let bias = bias.contiguous()?;
    match residual {
        Some(r) => x.apply_op3_no_bwd(&bias, &r.contiguous()?, &BiasAct { act, residual: true }),
        // no residual: the input stands in for it (never read; no allocation on the hot path)
        None => x.apply_op3_no_bwd(&bias, &x, &BiasAct { act, residual: false }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    use crate::synth::uniform_tensor as rand;

    #[test]
    fn bias_act_matches_candle_ops() -> Result<()> {
        let x = (rand(&[2, 3, 8], 1) * 3.0)?;
        let b = rand(&[8], 2);
        let r = rand(&[2, 3, 8], 3);
        let lin = x.broadcast_add(&b)?;
        let max = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
        assert_eq!(max(&bias_act(&x, &b, Act::None, None)?, &lin)?, 0.0);
        assert_eq!(max(&bias_act(&x, &b, Act::Gelu, None)?, &lin.gelu_erf()?)?, 0.0);
        assert_eq!(max(&bias_act(&x, &b, Act::QuickGelu, Some(&r))?, &(&r + crate::nn::quick_gelu(&lin)?)?)?, 0.0);
        assert_eq!(max(&bias_act(&x, &b, Act::None, Some(&r))?, &(&r + &lin)?)?, 0.0);
        // bf16: exact for the bias and residual adds; the activation computes in f32 and rounds where the
        // reference's ops round (candle's bf16 ops round their constants and intermediates too: within 1 %)
        let (xb, bb, rb) = (x.to_dtype(DType::BF16)?, b.to_dtype(DType::BF16)?, r.to_dtype(DType::BF16)?);
        let f = |t: Tensor| t.to_dtype(DType::F32);
        let lin_b = xb.broadcast_add(&bb)?;
        assert_eq!(max(&f(bias_act(&xb, &bb, Act::None, Some(&rb))?)?, &f((&rb + &lin_b)?)?)?, 0.0);
        let want = f((&rb + crate::nn::quick_gelu(&lin_b)?)?)?;
        let got = f(bias_act(&xb, &bb, Act::QuickGelu, Some(&rb))?)?;
        assert!(max(&got, &want)? < 0.02 * want.abs()?.max_all()?.to_scalar::<f32>()?);
        assert!(bias_act(&x, &rand(&[7], 4), Act::None, None).is_err());
        assert!(bias_act(&x, &b, Act::None, Some(&rand(&[3, 8], 5))).is_err());
        Ok(())
    }
}
