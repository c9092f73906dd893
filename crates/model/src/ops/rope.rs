//! [`rope_q`], [`kv_rope_write`]: the decode step's fused `q|k|v` projection split, rotate-half RoPE
//! at each slot's position, keys and values written into the slot cache.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[cfg(feature = "cuda")]
use super::cuda;
use super::elem::{contiguous, contiguous_mut, float_pair, u32s, with_float, Elem};
use super::slot_cache::cache_dims;

/// Rotate-half RoPE of one head vector at position `p`, the reference's roundings.
fn rope_head<T: Elem>(x: &[T], p: u32, inv_freq: &[f32], out: &mut [T]) {
    let half = x.len() / 2;
    for i in 0..half {
        let angle = p as f32 * inv_freq[i];
        let c = T::from_f32(angle.cos()).to_f32();
        let s = T::from_f32(angle.sin()).to_f32();
        let (x1, x2) = (x[i].to_f32(), x[i + half].to_f32());
        let r = |v: f32| T::from_f32(v).to_f32();
        out[i] = T::from_f32(r(x1 * c) + r(-x2 * s));
        out[i + half] = T::from_f32(r(x2 * c) + r(x1 * s));
    }
}

/// Shapes of the fused projection: `(slots, (heads + 2 · kv_heads) · d)`.
fn qkv_dims(qkv: &Layout, heads: usize, kv_heads: usize, d: usize, what: &str) -> Result<usize> {
    match qkv.dims() {
        &[s, w] if w == (heads + 2 * kv_heads) * d => Ok(s),
        dims => candle_core::bail!("{what}: fused projection {dims:?} is not (slots, ({heads} + 2·{kv_heads})·{d})"),
    }
}

struct RopeQ {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inv_freq: Vec<f32>,
}

impl candle_core::CustomOp2 for RopeQ {
    fn name(&self) -> &'static str {
        "occ-rope-q"
    }

    fn cpu_fwd(&self, qkv: &CpuStorage, ql: &Layout, pos: &CpuStorage, pl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (h, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        let slots = qkv_dims(ql, h, kv, d, "rope_q")?;
        let pos = u32s(pos, pl, "rope_q positions")?;
        if pos.len() != slots || self.inv_freq.len() * 2 != d {
            candle_core::bail!(
                "rope_q: {} positions / {} frequencies for {slots} slots of head_dim {d}",
                pos.len(),
                self.inv_freq.len()
            )
        }
        let out = with_float!(qkv, "rope_q", |v: T| {
            let x = contiguous(v, ql, "rope_q input")?;
            let mut out = vec![T::from_f32(0.0); slots * h * d];
            for s in 0..slots {
                for head in 0..h {
                    let src = &x[(s * (h + 2 * kv) + head) * d..][..d];
                    rope_head(src, pos[s], &self.inv_freq, &mut out[(s * h + head) * d..][..d]);
                }
            }
            T::to_cpu_storage_owned(out)
        });
        Ok((out, Shape::from((slots, h, d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        qkv: &candle_core::CudaStorage,
        ql: &Layout,
        pos: &candle_core::CudaStorage,
        pl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (h, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        let slots = qkv_dims(ql, h, kv, d, "rope_q")?;
        let out = cuda::qkv_rope_write(qkv, ql, pos, pl, &self.inv_freq, None, (slots, h, kv, 0, d))?;
        Ok((out.ok_or_else(|| candle_core::Error::Msg("rope_q: no output".into()))?, Shape::from((slots, h, d))))
    }
}

/// Queries of a fused decode projection with RoPE at each slot's position.
///
/// # Shapes
/// `qkv`: `(slots, (heads + 2 · kv_heads) · head_dim)`; `pos`: `(slots,)` u32 → `(slots, heads,
/// head_dim)`.
pub fn rope_q(qkv: &Tensor, pos: &Tensor, heads: usize, kv_heads: usize, inv_freq: &[f32]) -> Result<Tensor> {
    let head_dim = inv_freq.len() * 2;
    qkv.contiguous()?.apply_op2_no_bwd(pos, &RopeQ { heads, kv_heads, head_dim, inv_freq: inv_freq.to_vec() })
}

struct KvRopeWrite {
    heads: usize,
    inv_freq: Vec<f32>,
}

impl candle_core::InplaceOp3 for KvRopeWrite {
    fn name(&self) -> &'static str {
        "occ-kv-rope-write"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        qkv: &CpuStorage,
        ql: &Layout,
        pos: &CpuStorage,
        pl: &Layout,
    ) -> Result<()> {
        let (slots, kv, cap, d) = cache_dims(dst_l, "kv_rope_write")?;
        let h = self.heads;
        if qkv_dims(ql, h, kv, d, "kv_rope_write")? != slots || self.inv_freq.len() * 2 != d {
            candle_core::bail!("kv_rope_write: projection {:?} does not match the cache {:?}", ql.dims(), dst_l.dims())
        }
        let pos = u32s(pos, pl, "kv_rope_write positions")?;
        float_pair!(dst, qkv, "kv_rope_write", |c, x: T| {
            let c = contiguous_mut(c, dst_l, "kv cache")?;
            let x = contiguous(x, ql, "kv_rope_write projection")?;
            for s in 0..slots {
                let p = pos[s] as usize;
                if p >= cap {
                    continue;
                }
                for which in 0..2 {
                    for head in 0..kv {
                        let src = &x[(s * (h + 2 * kv) + h + which * kv + head) * d..][..d];
                        let at = (((which * slots + s) * kv + head) * cap + p) * d;
                        if which == 0 {
                            rope_head(src, pos[s], &self.inv_freq, &mut c[at..at + d]);
                        } else {
                            c[at..at + d].copy_from_slice(src);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        qkv: &candle_core::CudaStorage,
        ql: &Layout,
        pos: &candle_core::CudaStorage,
        pl: &Layout,
    ) -> Result<()> {
        let (slots, kv, cap, d) = cache_dims(dst_l, "kv_rope_write")?;
        if qkv_dims(ql, self.heads, kv, d, "kv_rope_write")? != slots {
            candle_core::bail!("kv_rope_write: projection {:?} does not match the cache {:?}", ql.dims(), dst_l.dims())
        }
        cuda::qkv_rope_write(qkv, ql, pos, pl, &self.inv_freq, Some((dst, dst_l)), (slots, self.heads, kv, cap, d))?;
        Ok(())
    }
}

/// Keys (with RoPE) and values of a fused decode projection written into the slot cache at each
/// slot's position (positions ≥ the capacity are dropped).
///
/// # Shapes
/// `cache`: `(2, slots, kv_heads, capacity, head_dim)` (written in place); `qkv`: `(slots, (heads +
/// 2 · kv_heads) · head_dim)`; `pos`: `(slots,)` u32.
pub fn kv_rope_write(cache: &Tensor, qkv: &Tensor, pos: &Tensor, heads: usize, inv_freq: &[f32]) -> Result<()> {
    cache.inplace_op3(&qkv.contiguous()?, pos, &KvRopeWrite { heads, inv_freq: inv_freq.to_vec() })
}
