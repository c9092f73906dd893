//! Fused ops of the vision encoder: attention straight from a q|k|v projection ([`vit_attention`])
//! and a linear layer's epilogue ([`bias_act`]). CPU code is the specification, as in the parent
//! module; the CUDA kernels are in `kernels.cu` (`vit_attention`, `bias_act`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use half::{bf16, f16};

use super::{contiguous, Elem};

/// The activation of a linear layer's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// The identity.
    None,
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (SAM's `nn.GELU`).
    Gelu,
    /// `x·sigmoid(1.702·x)` (CLIP's `quick_gelu`), rounded after each of its three ops.
    QuickGelu,
}

impl Act {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn code(self) -> u32 {
        match self {
            Act::None => 0,
            Act::Gelu => 1,
            Act::QuickGelu => 2,
        }
    }
}

fn act_cpu<T: Elem>(v: f32, act: Act) -> f32 {
    match act {
        Act::None => v,
        Act::Gelu => (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v,
        Act::QuickGelu => {
            let s = T::from_f32(v * 1.702).to_f32();
            let sg = T::from_f32(((-s).exp() + 1.0).recip()).to_f32();
            v * sg
        }
    }
}

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
        Ok((super::cuda::bias_act(x, xl, b, bl, res, n, self.act.code())?, xl.shape().clone()))
    }
}

/// The elements of a third input that must share the dtype of the first two.
fn third<'a, T: Elem>(s: &'a CpuStorage, what: &str) -> Result<&'a [T]> {
    T::cpu_slice(s)
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: dtype {:?} differs from the input's", s.dtype())))
}

/// A linear layer's epilogue in one pass: `round(residual + round(act(round(x + bias))))` (the reference's
/// bias add, activation and residual add, each rounded to the dtype).
///
/// # Shapes
/// `x`: `(…, n)`, `bias`: `(n)`, `residual`: as `x` → as `x`.
pub fn bias_act(x: &Tensor, bias: &Tensor, act: Act, residual: Option<&Tensor>) -> Result<Tensor> {
    if super::tracks_grad(&[x, bias]) || residual.is_some_and(|r| r.track_op()) {
        return super::diff::bias_act(x, bias, act, residual);
    }
    let x = x.contiguous()?;
    let bias = bias.contiguous()?;
    match residual {
        Some(r) => x.apply_op3_no_bwd(&bias, &r.contiguous()?, &BiasAct { act, residual: true }),
        // no residual: the input stands in for it (never read; no allocation on the hot path)
        None => x.apply_op3_no_bwd(&bias, &x, &BiasAct { act, residual: false }),
    }
}

/// Geometry of [`vit_attention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitGrid {
    pub heads: usize,
    /// Token grid `(rows, columns)` of the input (CLIP: `(1, tokens)`).
    pub grid: (usize, usize),
    /// SAM's windowed blocks: attention within `window × window` windows of the grid zero-padded
    /// bottom/right; `None`: over the whole grid.
    pub window: Option<usize>,
    pub scale: f32,
}

impl VitGrid {
    /// Sides `(uh, uw)` of one attention unit and the units `(down, across)` of an image.
    pub fn units(&self) -> ((usize, usize), (usize, usize)) {
        let (gh, gw) = self.grid;
        match self.window {
            Some(ws) => ((ws, ws), (gh.div_ceil(ws), gw.div_ceil(ws))),
            None => ((gh, gw), (1, 1)),
        }
    }
}

/// Checked dimensions of a [`vit_attention`] call: `(images, head_dim)`.
fn vit_dims(g: &VitGrid, ql: &Layout, bl: &Layout, rl: &Layout, has_rel: bool) -> Result<(usize, usize)> {
    let (gh, gw) = g.grid;
    let (b, tokens, width) = ql.shape().dims3().map_err(|_| {
        candle_core::Error::Msg(format!(
            "vit_attention: q|k|v must be (images, tokens, 3·heads·head_dim), got {:?}",
            ql.dims()
        ))
    })?;
    if tokens != gh * gw || g.heads == 0 || width % (3 * g.heads) != 0 || matches!(g.window, Some(0)) {
        candle_core::bail!("vit_attention: q|k|v {:?} does not fit a {gh}×{gw} grid of {} heads", ql.dims(), g.heads)
    }
    let d = width / (3 * g.heads);
    if bl.dims() != [width] {
        candle_core::bail!("vit_attention: bias {:?} for a q|k|v width of {width}", bl.dims())
    }
    let ((uh, uw), _) = g.units();
    if has_rel && rl.dims() != [uh * uh + uw * uw, d] {
        candle_core::bail!("vit_attention: relative tables {:?} for a {uh}×{uw} unit of head_dim {d}", rl.dims())
    }
    Ok((b, d))
}

fn vit_attention_cpu<T: Elem>(qkv: &[T], bias: &[T], rel: Option<&[T]>, g: &VitGrid, b: usize, d: usize) -> Vec<T> {
    let (gh, gw) = g.grid;
    let nh = g.heads;
    let width = 3 * nh * d;
    let ((uh, uw), (ny, nx)) = g.units();
    let n = uh * uw;
    let mut out = vec![T::from_f32(0.0); b * gh * gw * nh * d];
    // part p (0 q, 1 k, 2 v) of head h at token (y, x); padded tokens: the bias
    let row = |img: usize, y: usize, x: usize, p: usize, h: usize| -> Vec<f32> {
        let off = (p * nh + h) * d;
        if y < gh && x < gw {
            let at = (img * gh * gw + y * gw + x) * width + off;
            qkv[at..at + d].iter().map(|v| v.to_f32()).collect()
        } else {
            bias[off..off + d].iter().map(|v| v.to_f32()).collect()
        }
    };
    let dot = |a: &[f32], t: &[T]| a.iter().zip(t).map(|(x, y)| x * y.to_f32()).sum::<f32>();
    for img in 0..b {
        for (uy, ux) in (0..ny).flat_map(|y| (0..nx).map(move |x| (y, x))) {
            let (oy, ox) = (uy * uh, ux * uw);
            for h in 0..nh {
                let gather = |p: usize| (0..n).map(|t| row(img, oy + t / uw, ox + t % uw, p, h)).collect::<Vec<_>>();
                let (q, k, v) = (gather(0), gather(1), gather(2));
                let mut s = vec![0f32; n];
                for (t, qt) in q.iter().enumerate() {
                    let (ty, tx) = (t / uw, t % uw);
                    if oy + ty >= gh || ox + tx >= gw {
                        continue;
                    }
                    let (rel_h, rel_w): (Vec<f32>, Vec<f32>) = match rel {
                        Some(r) => {
                            let rw = &r[uh * uh * d..];
                            (
                                (0..uh).map(|j| T::from_f32(dot(qt, &r[(ty * uh + j) * d..][..d])).to_f32()).collect(),
                                (0..uw).map(|j| T::from_f32(dot(qt, &rw[(tx * uw + j) * d..][..d])).to_f32()).collect(),
                            )
                        }
                        None => (Vec::new(), Vec::new()),
                    };
                    let mut m = f32::NEG_INFINITY;
                    for (j, sj) in s.iter_mut().enumerate() {
                        let mut val = qt.iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f32>() * g.scale;
                        if rel.is_some() {
                            val += T::from_f32(rel_h[j / uw] + rel_w[j % uw]).to_f32();
                        }
                        *sj = val;
                        m = m.max(val);
                    }
                    let mut l = 0f32;
                    for sj in s.iter_mut() {
                        let e = (*sj - m).exp();
                        l += e;
                        *sj = T::from_f32(e).to_f32();
                    }
                    let dst = ((img * gh * gw + (oy + ty) * gw + ox + tx) * nh + h) * d;
                    for c in 0..d {
                        let acc: f32 = s.iter().zip(&v).map(|(p, vj)| p * vj[c]).sum();
                        out[dst + c] = T::from_f32(acc / l);
                    }
                }
            }
        }
    }
    out
}

struct VitAttention {
    grid: VitGrid,
    has_rel: bool,
}

impl candle_core::CustomOp3 for VitAttention {
    fn name(&self) -> &'static str {
        "occ-vit-attention"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        ql: &Layout,
        bias: &CpuStorage,
        bl: &Layout,
        rel: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, d) = vit_dims(&self.grid, ql, bl, rl, self.has_rel)?;
        let g = self.grid;
        let out = float_pair!(qkv, bias, "vit_attention", |x, bs: T| {
            let x = contiguous(x, ql, "vit_attention q|k|v")?;
            let bs = contiguous(bs, bl, "vit_attention bias")?;
            let r = match self.has_rel {
                false => None,
                true => Some(contiguous(third::<T>(rel, "vit_attention tables")?, rl, "vit_attention tables")?),
            };
            T::to_cpu_storage_owned(vit_attention_cpu::<T>(x, bs, r, &g, b, d))
        });
        Ok((out, Shape::from((b, g.grid.0 * g.grid.1, g.heads * d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        qkv: &candle_core::CudaStorage,
        ql: &Layout,
        bias: &candle_core::CudaStorage,
        bl: &Layout,
        rel: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (b, d) = vit_dims(&self.grid, ql, bl, rl, self.has_rel)?;
        let g = self.grid;
        let rel = self.has_rel.then_some((rel, rl));
        let out = super::cuda::vit_attention(qkv, ql, bias, bl, rel, &g, b, d)?;
        Ok((out, Shape::from((b, g.grid.0 * g.grid.1, g.heads * d))))
    }
}

/// Attention of the vision encoder straight from a q|k|v projection: `softmax(q·kᵀ·scale + bias)·v`
/// per head, over the whole grid or within windows ([`VitGrid`]), with SAM's decomposed relative
/// positions when `rel` is given. `qkv` is the projection of the grid's tokens (bias included); a
/// window's padded positions hold the projection's `bias` alone (the projection of a zero row) and are
/// not masked (SAM).
/// `rel = (rh, rw)`: the gathered tables of `get_rel_pos` for the unit, `rh` `(uh, uh, d)` and `rw`
/// `(uw, uw, d)`; the bias of query `i`, key `j` is `round(rel_h[i, y_j] + rel_w[i, x_j])` with
/// `rel_h[i, y] = round(q_i · rh[y_i, y])`, `rel_w[i, x] = round(q_i · rw[x_i, x])` (unscaled q). Scores
/// and softmax in f32, probabilities rounded to the dtype before the value product, the output rounded
/// once. Nothing n × n is stored.
///
/// # Shapes
/// `qkv`: `(images, rows·cols, 3·heads·d)` (q, k, v blocks of `heads·d`), `bias`: `(3·heads·d)` (read for
/// padded positions only) →
/// `(images, rows·cols, heads·d)`.
pub fn vit_attention(qkv: &Tensor, bias: &Tensor, rel: Option<(&Tensor, &Tensor)>, grid: VitGrid) -> Result<Tensor> {
    let qkv = qkv.contiguous()?;
    let bias = bias.contiguous()?;
    let op = VitAttention { grid, has_rel: rel.is_some() };
    match rel {
        Some((rh, rw)) => {
            let d = rh.dim(candle_core::D::Minus1)?;
            let packed = Tensor::cat(&[rh.reshape(((), d))?, rw.reshape(((), d))?], 0)?;
            qkv.apply_op3_no_bwd(&bias, &packed, &op)
        }
        // no tables: q|k|v stands in for them (never read)
        None => qkv.apply_op3_no_bwd(&bias, &qkv, &op),
    }
}

/// Whether [`vit_attention`] has a fast kernel for `x` here: CUDA, bf16 or f16, `head_dim` 64 and a unit
/// whose relative tables fit the kernel's shared memory. Elsewhere the encoder materialises the scores.
pub fn vit_attention_supported(x: &Tensor, head_dim: usize, unit: (usize, usize), rel: bool) -> bool {
    cfg!(feature = "cuda")
        && !x.track_op()
        && matches!(x.device(), candle_core::Device::Cuda(_))
        && matches!(x.dtype(), candle_core::DType::BF16 | candle_core::DType::F16)
        && head_dim == 64
        && vit_smem_bytes(unit, rel) <= VIT_SMEM_MAX
        && unit.0 < 1 << 16
        && unit.1 < 1 << 16
}

/// Shared memory the CUDA kernel of [`vit_attention`] may use per block (H100/H200 allow 227 KiB).
pub(super) const VIT_SMEM_MAX: usize = 200 * 1024;

/// Shared memory of one block of the CUDA kernel (16-bit elements): two key and two value tiles of
/// 64 × 72, and with tables the block's `rel_h`, `rel_w` (64 rows of [`vit_rel_stride`]) and two tiles'
/// key coordinates.
pub(super) fn vit_smem_bytes(unit: (usize, usize), rel: bool) -> usize {
    4 * 64 * 72 * 2 + if rel { 64 * (vit_rel_stride(unit.0) + vit_rel_stride(unit.1)) * 2 + 2 * 64 * 4 } else { 0 }
}

/// Row stride of a relative table in the kernel's shared memory (`vit_rel_stride` in kernels.cu): the
/// smallest `s ≥ side` with `s ≡ 8 (mod 64)`, so that the 8 rows a fragment reads start 4 banks apart.
fn vit_rel_stride(side: usize) -> usize {
    if side <= 8 {
        8
    } else {
        8 + 64 * (side - 8).div_ceil(64)
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
