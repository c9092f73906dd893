//! Fused ops of the fast decode path (issue 6), as candle custom ops with a CPU and a CUDA
//! implementation each. The CPU code is the specification (tested against plain candle ops in CI);
//! the CUDA kernels (`kernels.cu`, compiled to PTX by `build.rs` with the `cuda` feature) compute
//! the same in float32 and round where the CPU code rounds.
//!
//! - [`swiglu`]: `silu(gate) ⊙ up` of a fused gate/up projection, one pass.
//! - [`kv_write`]: writes each slot's new key/value column at that slot's own position.
//! - [`kv_insert`]: copies a prefilled prompt's keys/values into columns `0..len` of one slot.
//! - [`decode_attention`]: one query per slot and head against the slot's first `pos + 1` columns.
//! - [`apply_ban`]: sets banned token ids of every row to −∞ (repetition blockers on the device).
//! - [`advance`]: `pos += 1` for every slot, on the device.
//! - [`write_u32`]: host values into a persistent device buffer (inputs of a captured CUDA graph).
//!
//! # Invariants
//! - Slot caches are `(2, slots, kv_heads, capacity, head_dim)` (keys, then values), contiguous.
//! - Positions are `u32` per slot: the column the next token is written to; a slot attends to
//!   columns `0..=pos`. Writes at a position ≥ the capacity are dropped (idle slots keep
//!   advancing); the decoder never lets an active slot get there.
//! - Nothing here synchronises with the host: every op is safe inside CUDA graph capture.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor, WithDType};
use half::{bf16, f16};

// Kernel launches and device allocations are `unsafe` in cudarc. SAFETY (for the whole module):
// every launch passes buffers whose sizes are checked against the shapes here, outputs are fully
// written by their kernel before use, and all work runs on the device's single stream.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod cuda;

/// Entries of a ban row that mean "nothing" (any id ≥ the vocabulary is ignored).
pub const NO_BAN: u32 = u32::MAX;

/// Float conversions of the three compute dtypes, for the CPU implementations.
trait Elem: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}
impl Elem for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl Elem for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
impl Elem for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor, got strides {:?}", l.stride()),
    }
}

fn contiguous_mut<'a, T>(data: &'a mut [T], l: &Layout, what: &str) -> Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor, got strides {:?}", l.stride()),
    }
}

fn u32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [u32]> {
    match s {
        CpuStorage::U32(v) => contiguous(v, l, what),
        other => candle_core::bail!("{what}: expected u32, got {:?}", other.dtype()),
    }
}

/// Applies `$body` with `$t` bound to the element type of a float CPU storage.
macro_rules! with_float {
    ($s:expr, $what:expr, |$v:ident: $t:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => {
                type $t = f32;
                $body
            }
            CpuStorage::BF16($v) => {
                type $t = bf16;
                $body
            }
            CpuStorage::F16($v) => {
                type $t = f16;
                $body
            }
            other => candle_core::bail!("{}: unsupported dtype {:?}", $what, other.dtype()),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// swiglu

struct SwiGlu;

fn swiglu_cpu<T: Elem>(x: &[T], rows: usize, n: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        let row = &x[r * 2 * n..(r + 1) * 2 * n];
        for c in 0..n {
            let g = row[c].to_f32();
            let s = T::from_f32(g / (1.0 + (-g).exp())).to_f32();
            out.push(T::from_f32(s * row[n + c].to_f32()));
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
    xs.contiguous()?.apply_op1_no_bwd(&SwiGlu)
}

// ---------------------------------------------------------------------------------------------
// kv_write

struct KvWrite;

fn cache_dims(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match l.dims() {
        &[2, slots, heads, cap, d] => Ok((slots, heads, cap, d)),
        dims => candle_core::bail!("{what}: expected a (2, slots, kv_heads, capacity, head_dim) cache, got {dims:?}"),
    }
}

impl candle_core::InplaceOp3 for KvWrite {
    fn name(&self) -> &'static str {
        "occ-kv-write"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        kv: &CpuStorage,
        kv_l: &Layout,
        pos: &CpuStorage,
        pos_l: &Layout,
    ) -> Result<()> {
        let (slots, heads, cap, d) = cache_dims(dst_l, "kv_write")?;
        let pos = u32s(pos, pos_l, "kv_write positions")?;
        if kv_l.dims() != [2, slots, heads, d] || pos.len() != slots {
            candle_core::bail!(
                "kv_write: new columns {:?} / positions {} for a cache {:?}",
                kv_l.dims(),
                pos.len(),
                dst_l.dims()
            )
        }
        macro_rules! go {
            ($variant:ident) => {{
                let (CpuStorage::$variant(c), CpuStorage::$variant(k)) = (dst, kv) else {
                    candle_core::bail!("kv_write: cache and new columns must share a dtype")
                };
                let c = contiguous_mut(c, dst_l, "kv cache")?;
                let k = contiguous(k, kv_l, "kv_write columns")?;
                for which in 0..2 {
                    for s in 0..slots {
                        if pos[s] as usize >= cap {
                            continue;
                        }
                        for h in 0..heads {
                            let src = ((which * slots + s) * heads + h) * d;
                            let at = (((which * slots + s) * heads + h) * cap + pos[s] as usize) * d;
                            c[at..at + d].copy_from_slice(&k[src..src + d]);
                        }
                    }
                }
            }};
        }
        match dst.dtype() {
            DType::F32 => go!(F32),
            DType::BF16 => go!(BF16),
            DType::F16 => go!(F16),
            other => candle_core::bail!("kv_write: unsupported dtype {other:?}"),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        kv: &candle_core::CudaStorage,
        kv_l: &Layout,
        pos: &candle_core::CudaStorage,
        pos_l: &Layout,
    ) -> Result<()> {
        let (slots, heads, cap, d) = cache_dims(dst_l, "kv_write")?;
        if kv_l.dims() != [2, slots, heads, d] || pos_l.dims() != [slots] {
            candle_core::bail!(
                "kv_write: new columns {:?} / positions {:?} for a cache {:?}",
                kv_l.dims(),
                pos_l.dims(),
                dst_l.dims()
            )
        }
        cuda::kv_write(dst, dst_l, kv, kv_l, pos, pos_l, (slots, heads, cap, d))
    }
}

/// Writes the new key/value column of every slot at `pos[slot]`.
///
/// # Shapes
/// `cache`: `(2, slots, kv_heads, capacity, head_dim)` (written in place); `kv`: `(2, slots,
/// kv_heads, head_dim)`; `pos`: `(slots,)` u32.
pub fn kv_write(cache: &Tensor, kv: &Tensor, pos: &Tensor) -> Result<()> {
    cache.inplace_op3(&kv.contiguous()?, pos, &KvWrite)
}

// ---------------------------------------------------------------------------------------------
// kv_insert

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
        macro_rules! go {
            ($variant:ident) => {{
                let (CpuStorage::$variant(c), CpuStorage::$variant(k)) = (dst, src) else {
                    candle_core::bail!("kv_insert: cache and prompt keys must share a dtype")
                };
                let c = contiguous_mut(c, dst_l, "kv cache")?;
                let k = contiguous(k, src_l, "kv_insert source")?;
                for which in 0..2 {
                    for h in 0..heads {
                        let from = (which * heads + h) * len * d;
                        let at = ((which * slots + self.slot) * heads + h) * cap * d;
                        c[at..at + len * d].copy_from_slice(&k[from..from + len * d]);
                    }
                }
            }};
        }
        match dst.dtype() {
            DType::F32 => go!(F32),
            DType::BF16 => go!(BF16),
            DType::F16 => go!(F16),
            other => candle_core::bail!("kv_insert: unsupported dtype {other:?}"),
        }
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
        macro_rules! go {
            ($variant:ident) => {{
                let (CpuStorage::$variant(qv), CpuStorage::$variant(cv)) = (q, cache) else {
                    candle_core::bail!("decode_attention: query and cache must share a dtype")
                };
                let qv = contiguous(qv, ql, "decode_attention query")?;
                let cv = contiguous(cv, cl, "decode_attention cache")?;
                WithDType::to_cpu_storage_owned(attention_cpu(qv, cv, pos, dims, self.scale))
            }};
        }
        let out = match q.dtype() {
            DType::F32 => go!(F32),
            DType::BF16 => go!(BF16),
            DType::F16 => go!(F16),
            other => candle_core::bail!("decode_attention: unsupported dtype {other:?}"),
        };
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

// ---------------------------------------------------------------------------------------------
// apply_ban, advance, write_u32

struct ApplyBan;

impl candle_core::InplaceOp2 for ApplyBan {
    fn name(&self) -> &'static str {
        "occ-apply-ban"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, ban: &CpuStorage, ban_l: &Layout) -> Result<()> {
        let (rows, vocab) = dst_l.shape().dims2()?;
        let ban = u32s(ban, ban_l, "apply_ban ids")?;
        let CpuStorage::F32(logits) = dst else { candle_core::bail!("apply_ban: logits must be f32") };
        let logits = contiguous_mut(logits, dst_l, "apply_ban logits")?;
        let per = ban.len().checked_div(rows).unwrap_or(0);
        for (i, &id) in ban.iter().enumerate() {
            if (id as usize) < vocab && per > 0 {
                logits[(i / per) * vocab + id as usize] = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        ban: &candle_core::CudaStorage,
        ban_l: &Layout,
    ) -> Result<()> {
        cuda::apply_ban(dst, dst_l, ban, ban_l)
    }
}

/// Sets `logits[r, ban[r, i]] = −∞` for every entry below the vocabulary size ([`NO_BAN`] pads).
///
/// # Shapes
/// `logits`: `(rows, vocab)` f32, in place; `ban`: `(rows, max_ban)` u32.
pub fn apply_ban(logits: &Tensor, ban: &Tensor) -> Result<()> {
    let (rows, _) = logits.dims2()?;
    if ban.dims().first() != Some(&rows) || ban.rank() != 2 {
        candle_core::bail!("apply_ban: ban ids {:?} for {rows} rows of logits", ban.dims())
    }
    logits.inplace_op2(ban, &ApplyBan)
}

struct Advance;

impl candle_core::InplaceOp1 for Advance {
    fn name(&self) -> &'static str {
        "occ-advance"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let CpuStorage::U32(v) = s else { candle_core::bail!("advance: positions must be u32") };
        contiguous_mut(v, l, "advance positions")?.iter_mut().for_each(|p| *p += 1);
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        cuda::advance(s, l)
    }
}

/// `pos += 1` on the device (u32, contiguous).
pub fn advance(pos: &Tensor) -> Result<()> {
    pos.inplace_op1(&Advance)
}

struct WriteU32<'a>(&'a [u32]);

impl candle_core::InplaceOp1 for WriteU32<'_> {
    fn name(&self) -> &'static str {
        "occ-write-u32"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let CpuStorage::U32(v) = s else { candle_core::bail!("write_u32: the buffer must be u32") };
        let v = contiguous_mut(v, l, "write_u32 buffer")?;
        if v.len() != self.0.len() {
            candle_core::bail!("write_u32: {} values for a buffer of {}", self.0.len(), v.len())
        }
        v.copy_from_slice(self.0);
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        cuda::write_u32(s, l, self.0)
    }
}

/// Copies host values into an existing u32 buffer (its device address does not change, so a
/// captured CUDA graph reading it sees the new values).
pub fn write_u32(buf: &Tensor, values: &[u32]) -> Result<()> {
    buf.inplace_op1(&WriteU32(values))
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs and the device

/// A captured decode step, replayed with [`StepGraph::launch`].
pub struct StepGraph {
    #[cfg(feature = "cuda")]
    graph: cuda::Graph,
}

impl std::fmt::Debug for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepGraph")
    }
}

impl StepGraph {
    /// Replays the captured step on the device's stream (asynchronous).
    pub fn launch(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        {
            self.graph.launch()
        }
        #[cfg(not(feature = "cuda"))]
        {
            candle_core::bail!("CUDA graphs need the `cuda` feature")
        }
    }
}

/// Runs `step` once for real (warm-up: kernels loaded, candle's layout-parameter cache filled),
/// then captures a second, not executed, call of `step` in a CUDA graph. Returns `None` on the
/// CPU, or (with a warning) when capture fails; the caller then keeps running `step` eagerly.
pub fn capture_after_warmup(device: &candle_core::Device, step: &dyn Fn() -> Result<()>) -> Result<Option<StepGraph>> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => {
            let graph = cuda::capture(dev, step)?;
            Ok(graph.map(|graph| StepGraph { graph }))
        }
        _ => {
            step()?;
            Ok(None)
        }
    }
}

/// CUDA device `ordinal` for this crate's single-stream use: cudarc's per-buffer event tracking is
/// switched off (it is only needed across streams and it breaks CUDA-graph capture). Call it before
/// any tensor is created on the device.
pub fn cuda_device(ordinal: usize) -> Result<candle_core::Device> {
    #[cfg(feature = "cuda")]
    {
        cuda::single_stream_device(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        candle_core::bail!("this build has no CUDA support (rebuild with `--features cuda`)")
    }
}

/// Bytes of device memory in use (driver view: total − free), or `None` on the CPU.
pub fn device_memory_used(device: &candle_core::Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::memory_used(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp, D};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (crate::synth::splitmix64_at(seed, i as u64) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn swiglu_equals_silu_times_up() -> Result<()> {
        for dtype in [DType::F32, DType::BF16] {
            let x = (rand(&[3, 5, 8], 1) * 3.0)?.to_dtype(dtype)?;
            // PyTorch's rule: silu in float32 rounded to the dtype, then the product rounded
            let g = x.narrow(D::Minus1, 0, 4)?.to_dtype(DType::F32)?;
            let u = x.narrow(D::Minus1, 4, 4)?.to_dtype(DType::F32)?;
            let s = candle_nn::ops::silu(&g)?.to_dtype(dtype)?.to_dtype(DType::F32)?;
            let want = (s * u)?.to_dtype(dtype)?;
            let got = swiglu(&x)?;
            assert_eq!(got.dims(), [3, 5, 4]);
            let diff =
                (got.to_dtype(DType::F32)? - want.to_dtype(DType::F32)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= if dtype == DType::F32 { 1e-6 } else { 0.0 }, "{dtype:?}: {diff}");
        }
        assert!(swiglu(&rand(&[2, 3], 0)).is_err(), "odd width is an error");
        Ok(())
    }

    #[test]
    fn kv_write_and_decode_attention_match_plain_ops() -> Result<()> {
        let (slots, heads, kv_heads, cap, d) = (3usize, 4usize, 2usize, 9usize, 8usize);
        let cache = Tensor::zeros((2, slots, kv_heads, cap, d), DType::F32, &Device::Cpu)?;
        let full = rand(&[2, slots, kv_heads, cap, d], 7);
        let pos_v = [2u32, 5, 0];
        // fill columns 0..=pos one at a time, as decode would
        for col in 0..cap as u32 {
            let pos: Vec<u32> = pos_v.iter().map(|&p| col.min(p)).collect();
            let cols = Tensor::stack(
                &(0..slots).map(|s| full.i((.., s, .., pos[s] as usize, ..))).collect::<Result<Vec<_>>>()?,
                1,
            )?;
            kv_write(&cache, &cols, &Tensor::new(pos.as_slice(), &Device::Cpu)?)?;
        }
        let q = rand(&[slots, heads, d], 9);
        let pos = Tensor::new(&pos_v, &Device::Cpu)?;
        let scale = 1.0 / (d as f32).sqrt();
        let got = decode_attention(&q, &cache, &pos, scale)?;
        for (s, &p) in pos_v.iter().enumerate() {
            let len = p as usize + 1;
            for h in 0..heads {
                let kvh = h / (heads / kv_heads);
                let k = full.i((0, s, kvh, ..len, ..))?;
                let v = full.i((1, s, kvh, ..len, ..))?;
                let qh = q.i((s, h..h + 1, ..))?;
                let p = candle_nn::ops::softmax_last_dim(&(qh.matmul(&k.t()?)? * scale as f64)?)?;
                let want = p.matmul(&v)?.squeeze(0)?;
                let diff = (got.i((s, h))? - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-6, "slot {s} head {h}: {diff}");
            }
        }
        // an idle slot past the capacity writes nothing
        let before = cache.flatten_all()?.to_vec1::<f32>()?;
        let past = Tensor::new(&[9u32, 10, 11], &Device::Cpu)?;
        let cols = Tensor::ones((2, slots, kv_heads, d), DType::F32, &Device::Cpu)?;
        kv_write(&cache, &cols, &past)?;
        assert_eq!(cache.flatten_all()?.to_vec1::<f32>()?, before);
        // inserting a prompt of 4 columns into slot 1 = the same columns written one by one
        let other = Tensor::zeros((2, slots, kv_heads, cap, d), DType::F32, &Device::Cpu)?;
        kv_insert(&other, &full.i((.., 1, .., ..4, ..))?, 1)?;
        let a = other.i((.., 1, .., ..4, ..))?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(a, full.i((.., 1, .., ..4, ..))?.flatten_all()?.to_vec1::<f32>()?);
        assert_eq!(other.i((.., 0))?.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0, "other slots untouched");
        assert!(kv_insert(&other, &full.i((.., 1))?.narrow(2, 0, 9)?.pad_with_zeros(2, 0, 1)?, 1).is_err());
        Ok(())
    }

    #[test]
    fn ban_advance_and_host_writes() -> Result<()> {
        let logits = Tensor::zeros((2, 5), DType::F32, &Device::Cpu)?;
        let ban = Tensor::new(&[[1u32, NO_BAN], [4, 0]], &Device::Cpu)?;
        apply_ban(&logits, &ban)?;
        let l = logits.to_vec2::<f32>()?;
        assert_eq!(l[0].iter().filter(|x| x.is_infinite()).count(), 1);
        assert!(l[0][1].is_infinite() && l[1][4].is_infinite() && l[1][0].is_infinite());
        let pos = Tensor::new(&[3u32, 7], &Device::Cpu)?;
        advance(&pos)?;
        assert_eq!(pos.to_vec1::<u32>()?, [4, 8]);
        write_u32(&pos, &[11, 12])?;
        assert_eq!(pos.to_vec1::<u32>()?, [11, 12]);
        assert!(write_u32(&pos, &[1]).is_err());
        Ok(())
    }
}
