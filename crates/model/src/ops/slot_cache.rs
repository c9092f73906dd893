//! The slot cache `(2, slots, kv_heads, capacity, head_dim)` (keys, then values): [`kv_insert`]
//! copies a prefilled prompt's keys/values into columns `0..len` of one slot, [`decode_attention`]
//! attends with one query per slot and head over the slot's first `pos + 1` columns.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[cfg(feature = "cuda")]
use super::cuda;
use super::elem::{contiguous, contiguous_mut, float_pair, u32s, Elem};

pub(super) fn cache_dims(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match l.dims() {
        &[2, slots, heads, cap, d] => Ok((slots, heads, cap, d)),
        dims => candle_core::bail!("{what}: expected a (2, slots, kv_heads, capacity, head_dim) cache, got {dims:?}"),
    }
}

struct KvInsert {
    slot: usize,
}

fn insert_dims(dst: &Layout, src: &Layout, slot: usize) -> Result<(usize, usize, usize, usize, usize)> {
    let (slots, heads, cap, d) = cache_dims(dst, "kv_insert")?;
    match src.dims() {
        &[2, h, len, sd] if h == heads && sd == d && len <= cap && slot < slots => Ok((slots, heads, cap, len, d)),
        dims => candle_core::bail!(
            "kv_insert: prompt keys/values {dims:?} do not fit slot {slot} of the cache {:?}",
            dst.dims()
        ),
    }
}

impl candle_core::InplaceOp2 for KvInsert {
    fn name(&self) -> &'static str {
        "occ-kv-insert"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, src: &CpuStorage, src_l: &Layout) -> Result<()> {
        let (slots, heads, cap, len, d) = insert_dims(dst_l, src_l, self.slot)?;
        float_pair!(dst, src, "kv_insert", |c, k: T| {
            let c = contiguous_mut(c, dst_l, "kv cache")?;
            let k = contiguous(k, src_l, "kv_insert source")?;
            for which in 0..2 {
                for h in 0..heads {
                    let from = (which * heads + h) * len * d;
                    let at = ((which * slots + self.slot) * heads + h) * cap * d;
                    c[at..at + len * d].copy_from_slice(&k[from..from + len * d]);
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
        src: &candle_core::CudaStorage,
        src_l: &Layout,
    ) -> Result<()> {
        let dims = insert_dims(dst_l, src_l, self.slot)?;
        cuda::kv_insert(dst, dst_l, src, src_l, self.slot, dims)
    }
}

/// Copies the keys and values of a prefilled prompt into columns `0..len` of `slot`.
///
/// # Shapes
/// `cache`: `(2, slots, kv_heads, capacity, head_dim)` (written in place); `kv`: `(2, kv_heads,
/// len, head_dim)`.
pub fn kv_insert(cache: &Tensor, kv: &Tensor, slot: usize) -> Result<()> {
    cache.inplace_op2(&kv.contiguous()?, &KvInsert { slot })
}

// ---------------------------------------------------------------------------------------------
// decode_attention

struct DecodeAttention {
    scale: f32,
}

fn attention_cpu<T: Elem>(
    q: &[T],
    cache: &[T],
    pos: &[u32],
    (slots, heads, kv_heads, cap, d): (usize, usize, usize, usize, usize),
    scale: f32,
) -> Vec<T> {
    let mut out = vec![T::from_f32(0.0); slots * heads * d];
    let group = heads / kv_heads.max(1);
    let mut scores = vec![0f32; cap];
    for s in 0..slots {
        let len = (pos[s] as usize + 1).min(cap);
        for h in 0..heads {
            let kvh = h / group.max(1);
            let qv = &q[(s * heads + h) * d..(s * heads + h + 1) * d];
            let keys = &cache[((s * kv_heads) + kvh) * cap * d..];
            let vals = &cache[((slots + s) * kv_heads + kvh) * cap * d..];
            let mut max = f32::NEG_INFINITY;
            for (j, score) in scores.iter_mut().enumerate().take(len) {
                let k = &keys[j * d..(j + 1) * d];
                let dot: f32 = qv.iter().zip(k).map(|(a, b)| a.to_f32() * b.to_f32()).sum();
                *score = dot * scale;
                max = max.max(*score);
            }
            let mut total = 0f32;
            for score in scores.iter_mut().take(len) {
                *score = (*score - max).exp();
                total += *score;
            }
            let o = &mut out[(s * heads + h) * d..(s * heads + h + 1) * d];
            for (c, oc) in o.iter_mut().enumerate() {
                let acc: f32 = (0..len).map(|j| scores[j] * vals[j * d + c].to_f32()).sum();
                *oc = T::from_f32(acc / total);
            }
        }
    }
    out
}

fn attention_dims(q: &Layout, cache: &Layout, pos: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
    let (slots, kv_heads, cap, d) = cache_dims(cache, "decode_attention")?;
    let heads = match q.dims() {
        &[s, h, qd] if s == slots && qd == d && h % kv_heads == 0 => h,
        dims => candle_core::bail!("decode_attention: query {dims:?} does not match the cache {:?}", cache.dims()),
    };
    if pos.dims() != [slots] {
        candle_core::bail!("decode_attention: positions {:?} for {slots} slots", pos.dims())
    }
    Ok((slots, heads, kv_heads, cap, d))
}

impl candle_core::CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "occ-decode-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        cache: &CpuStorage,
        cl: &Layout,
        pos: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = attention_dims(ql, cl, pl)?;
        let pos = u32s(pos, pl, "decode_attention positions")?;
        let out = float_pair!(q, cache, "decode_attention", |qv, cv: T| {
            let qv = contiguous(qv, ql, "decode_attention query")?;
            let cv = contiguous(cv, cl, "decode_attention cache")?;
            WithDType::to_cpu_storage_owned(attention_cpu(qv, cv, pos, dims, self.scale))
        });
        Ok((out, ql.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        ql: &Layout,
        cache: &candle_core::CudaStorage,
        cl: &Layout,
        pos: &candle_core::CudaStorage,
        pl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = attention_dims(ql, cl, pl)?;
        Ok((cuda::decode_attention(q, ql, cache, cl, pos, pl, dims, self.scale)?, ql.shape().clone()))
    }
}

/// Softmax attention of one query per slot and head over the slot's columns `0..=pos[slot]`:
/// scores, softmax and the value product in float32, rounded once at the end.
///
/// # Shapes
/// `q`: `(slots, heads, head_dim)`; `cache`: `(2, slots, kv_heads, capacity, head_dim)`; `pos`:
/// `(slots,)` u32 → `(slots, heads, head_dim)`.
pub fn decode_attention(q: &Tensor, cache: &Tensor, pos: &Tensor, scale: f32) -> Result<Tensor> {
    q.contiguous()?.apply_op3_no_bwd(cache, pos, &DecodeAttention { scale })
}
