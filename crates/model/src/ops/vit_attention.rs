//! [`vit_attention`]: the vision encoder's attention straight from the q|k|v projection, over the
//! whole grid or SAM's windows, SAM's decomposed relative positions computed on the fly (tensor cores
//! on CUDA, bf16/f16, head_dim 64); nothing n × n is stored. The CUDA kernel is `vit_attention` in
//! `kernels.cu`.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[cfg(feature = "cuda")]
use super::cuda;
use super::elem::{contiguous, float_pair, third, Elem};

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
        let (unit, units) = g.units();
        let smem = vit_smem_bytes(unit, self.has_rel);
        if smem > VIT_SMEM_MAX || unit.0 >= 1 << 16 || unit.1 >= 1 << 16 {
            candle_core::bail!("vit_attention: a {}×{} unit is too large for the CUDA kernel", unit.0, unit.1)
        }
        let launch = cuda::VitLaunch { grid: g.grid, unit, units, heads: g.heads, scale: g.scale, smem };
        let rel = self.has_rel.then_some((rel, rl));
        let out = cuda::vit_attention(qkv, ql, bias, bl, rel, &launch, b, d)?;
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
const VIT_SMEM_MAX: usize = 200 * 1024;

/// Shared memory of one block of the CUDA kernel (16-bit elements): two key and two value tiles of
/// 64 × 72, and with tables the block's `rel_h`, `rel_w` (64 rows of [`vit_rel_stride`]) and two tiles'
/// key coordinates.
fn vit_smem_bytes(unit: (usize, usize), rel: bool) -> usize {
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
