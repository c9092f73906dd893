//! Fused ops of the fast GPU decode path, as candle custom ops with a CPU and a CUDA
//! implementation each. The CPU code is the specification (tested against plain candle ops in CI);
//! the CUDA kernels (`kernels.cu`, compiled to PTX by `build.rs` with the `cuda` feature) compute
//! the same in float32 and round where the CPU code rounds.
//!
//! - [`rms_norm`]: RMSNorm with the reference's roundings (normalise, round, then weight), one pass.
//! - [`swiglu`]: `silu(gate) ⊙ up` of a fused gate/up projection, one pass.
//! - [`rope_q`], [`kv_rope_write`]: the decode step's fused `q|k|v` projection split, rotate-half
//!   RoPE at each slot's position, keys/values written into the slot cache.
//! - [`kv_insert`]: copies a prefilled prompt's keys/values into columns `0..len` of one slot.
//! - [`decode_attention`]: one query per slot and head against the slot's first `pos + 1` columns.
//! - [`moe_route`], [`moe_gate_up`], [`moe_down`]: a small batch's MoE without sorting: router
//!   (softmax, top-k, weights) in one pass, then one GEMV per (token, expert) pair fused with SwiGLU,
//!   then the down GEMV weighted and summed per token.
//! - [`vit_attention`] (`vision.rs`): the vision encoder's attention straight from the q|k|v
//!   projection, whole grid or SAM's windows, SAM's decomposed relative positions computed on the
//!   fly (tensor cores on CUDA, bf16/f16, head_dim 64); nothing n × n is stored.
//! - [`bias_act`] (`vision.rs`): a linear layer's bias, activation and residual add in one pass.
//! - [`argmax_rows`]: first maximum of each float32 row (the greedy choice) in one pass.
//! - [`apply_ban`]: sets banned token ids of every row to −∞ (repetition blockers on the device).
//! - [`advance`]: `pos += 1` for every slot, on the device.
//! - [`write_u32`]: host values into a persistent device buffer (inputs of a captured CUDA graph).
//!
//! Training: none of the fused ops has a backward. Called on tensors that autograd tracks,
//! [`swiglu`], [`rms_norm`] and [`bias_act`] compute the same function from differentiable candle
//! primitives (`diff.rs`), and [`vit_attention_supported`] answers false; [`softmax_last_dim`],
//! [`layer_norm`] and [`rope`] wrap candle-nn's fused ops the same way.
//!
//! # Invariants
//! - Slot caches are `(2, slots, kv_heads, capacity, head_dim)` (keys, then values), contiguous.
//! - Positions are `u32` per slot: the column the next token is written to; a slot attends to
//!   columns `0..=pos`. Writes at a position ≥ the capacity are dropped (idle slots keep
//!   advancing); the decoder never lets an active slot get there.
//! - Nothing here synchronises with the host: every op is safe inside CUDA graph capture.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
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
    /// The elements of `s` when it holds this type.
    fn cpu_slice(s: &CpuStorage) -> Option<&[Self]>;
}
impl Elem for f32 {
    fn cpu_slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl Elem for bf16 {
    fn cpu_slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::BF16(v) => Some(v),
            _ => None,
        }
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
impl Elem for f16 {
    fn cpu_slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F16(v) => Some(v),
            _ => None,
        }
    }
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
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            CpuStorage::BF16($v) => {
                #[allow(dead_code)]
                type $t = bf16;
                $body
            }
            CpuStorage::F16($v) => {
                #[allow(dead_code)]
                type $t = f16;
                $body
            }
            other => candle_core::bail!("{}: unsupported dtype {:?}", $what, other.dtype()),
        }
    };
}

/// Applies `$body` with `$a`, `$b` bound to two CPU storages of the same float dtype and `$t` to its
/// element type; other or mismatched dtypes are an error naming the op.
macro_rules! float_pair {
    ($s1:expr, $s2:expr, $what:expr, |$a:ident, $b:ident: $t:ident| $body:expr) => {
        match ($s1, $s2) {
            (CpuStorage::F32($a), CpuStorage::F32($b)) => {
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            (CpuStorage::BF16($a), CpuStorage::BF16($b)) => {
                #[allow(dead_code)]
                type $t = bf16;
                $body
            }
            (CpuStorage::F16($a), CpuStorage::F16($b)) => {
                #[allow(dead_code)]
                type $t = f16;
                $body
            }
            (x, y) => {
                candle_core::bail!("{}: unsupported or mismatched dtypes {:?} and {:?}", $what, x.dtype(), y.dtype())
            }
        }
    };
}

mod diff;
mod vision;
pub use diff::{layer_norm, rope, softmax_last_dim, tracks_grad};
pub use vision::{bias_act, vit_attention, vit_attention_supported, Act, VitGrid};

// ---------------------------------------------------------------------------------------------
// swiglu

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

// ---------------------------------------------------------------------------------------------
// rms_norm

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

impl candle_core::CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "occ-rms-norm"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = wl.shape().dims1()?;
        if xl.dims().last() != Some(&n) {
            candle_core::bail!("rms_norm: input {:?} does not end in the weight's {n}", xl.dims())
        }
        let rows = xl.shape().elem_count() / n.max(1);
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
        let n = wl.shape().dims1()?;
        if xl.dims().last() != Some(&n) {
            candle_core::bail!("rms_norm: input {:?} does not end in the weight's {n}", xl.dims())
        }
        let rows = xl.shape().elem_count() / n.max(1);
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

// ---------------------------------------------------------------------------------------------
// rope_q, kv_rope_write

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

// ---------------------------------------------------------------------------------------------
// small-batch MoE

/// Routing parameters of [`moe_route`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteSpec {
    pub top_k: usize,
    pub norm_topk_prob: bool,
    pub scale: f32,
}

struct MoeRoute(RouteSpec);

impl candle_core::CustomOp2 for MoeRoute {
    fn name(&self) -> &'static str {
        "occ-moe-route"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (tokens, hidden) = xl.shape().dims2()?;
        let (experts, gh) = gl.shape().dims2()?;
        let k = self.0.top_k;
        if gh != hidden || k == 0 || k > experts {
            candle_core::bail!("moe_route: tokens {:?}, router {:?}, top-k {k}", xl.dims(), gl.dims())
        }
        let CpuStorage::F32(gate) = g else { candle_core::bail!("moe_route: the router weight must be f32") };
        let gate = contiguous(gate, gl, "moe_route router")?;
        let out = with_float!(x, "moe_route", |v: T| {
            let xs = contiguous(v, xl, "moe_route input")?;
            let mut route = Vec::with_capacity(tokens * k * 2);
            for t in 0..tokens {
                let row = &xs[t * hidden..(t + 1) * hidden];
                let logits: Vec<f32> = (0..experts)
                    .map(|e| row.iter().zip(&gate[e * hidden..(e + 1) * hidden]).map(|(a, b)| a.to_f32() * b).sum())
                    .collect();
                let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
                let total: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|p| *p /= total);
                let mut picked = Vec::with_capacity(k);
                for _ in 0..k {
                    let (best, bv) =
                        probs
                            .iter()
                            .enumerate()
                            .fold((0, f32::NEG_INFINITY), |acc, (e, &p)| if p > acc.1 { (e, p) } else { acc });
                    picked.push((best, bv));
                    probs[best] = f32::NEG_INFINITY;
                }
                let sum: f32 = picked.iter().map(|p| p.1).sum();
                for (e, w) in picked {
                    let w = if self.0.norm_topk_prob && k > 1 { w / (sum + 1e-20) } else { w };
                    route.push(e as f32);
                    route.push(w * self.0.scale);
                }
            }
            CpuStorage::F32(route)
        });
        Ok((out, Shape::from((tokens * k, 2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (tokens, hidden) = xl.shape().dims2()?;
        let (experts, gh) = gl.shape().dims2()?;
        let k = self.0.top_k;
        if gh != hidden || k == 0 || k > experts {
            candle_core::bail!("moe_route: tokens {:?}, router {:?}, top-k {k}", xl.dims(), gl.dims())
        }
        Ok((cuda::moe_route(x, xl, g, gl, (tokens, hidden, experts), self.0)?, Shape::from((tokens * k, 2))))
    }
}

/// Routes every token: `(tokens · k, 2)` float32 rows `[expert, weight]`, the greedy top-k of the
/// float32 softmax of `x · gateᵀ` (ties to the lower index), weights renormalised when asked and
/// scaled.
///
/// # Shapes
/// `xs`: `(tokens, hidden)`; `gate`: `(experts, hidden)` f32.
pub fn moe_route(xs: &Tensor, gate: &Tensor, spec: RouteSpec) -> Result<Tensor> {
    xs.contiguous()?.apply_op2_no_bwd(gate, &MoeRoute(spec))
}

struct MoeGateUp {
    top_k: usize,
}

impl candle_core::CustomOp3 for MoeGateUp {
    fn name(&self) -> &'static str {
        "occ-moe-gate-up"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (tokens, hidden) = xl.shape().dims2()?;
        let (_, n2, wh) = wl.shape().dims3()?;
        let (pairs, _) = rl.shape().dims2()?;
        let (k, n) = (self.top_k, n2 / 2);
        if wh != hidden || pairs != tokens * k {
            candle_core::bail!("moe_gate_up: input {:?}, experts {:?}, route {:?}", xl.dims(), wl.dims(), rl.dims())
        }
        let CpuStorage::F32(route) = r else { candle_core::bail!("moe_gate_up: the route must be f32") };
        let route = contiguous(route, rl, "moe route")?;
        let out = float_pair!(x, w, "moe_gate_up", |xv, wv: T| {
            let xv = contiguous(xv, xl, "moe_gate_up input")?;
            let wv = contiguous(wv, wl, "moe_gate_up experts")?;
            let mut act: Vec<T> = Vec::with_capacity(pairs * n);
            for p in 0..pairs {
                let e = route[p * 2] as usize;
                let xr = &xv[(p / k) * hidden..(p / k + 1) * hidden];
                for c in 0..n {
                    let dot = |row: usize| -> f32 {
                        let wr = &wv[(e * n2 + row) * hidden..(e * n2 + row + 1) * hidden];
                        wr.iter().zip(xr).map(|(a, b)| a.to_f32() * b.to_f32()).sum()
                    };
                    act.push(swiglu_one(dot(c), dot(n + c)));
                }
            }
            WithDType::to_cpu_storage_owned(act)
        });
        Ok((out, Shape::from((pairs, n))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
        r: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (tokens, hidden) = xl.shape().dims2()?;
        let (_, n2, wh) = wl.shape().dims3()?;
        let (pairs, _) = rl.shape().dims2()?;
        if wh != hidden || pairs != tokens * self.top_k {
            candle_core::bail!("moe_gate_up: input {:?}, experts {:?}, route {:?}", xl.dims(), wl.dims(), rl.dims())
        }
        let out = cuda::moe_gate_up(x, xl, w, wl, r, rl, [pairs, self.top_k, n2 / 2, hidden], pairs * n2 / 2)?;
        Ok((out, Shape::from((pairs, n2 / 2))))
    }
}

/// `round(round(silu(round(g))) · round(u))` in the dtype `T` (the rounding of g and u is exact when
/// they already are `T` values).
fn swiglu_one<T: Elem>(g: f32, u: f32) -> T {
    let g = T::from_f32(g).to_f32();
    let s = T::from_f32(g / (1.0 + (-g).exp())).to_f32();
    T::from_f32(s * T::from_f32(u).to_f32())
}

/// Gate/up projection of every routed (token, expert) pair fused with SwiGLU.
///
/// # Shapes
/// `xs`: `(tokens, hidden)`; `gate_up`: `(experts, 2n, hidden)` (gate rows, then up rows); `route`:
/// `(tokens · k, 2)` from [`moe_route`] → `(tokens · k, n)`.
pub fn moe_gate_up(xs: &Tensor, gate_up: &Tensor, route: &Tensor, top_k: usize) -> Result<Tensor> {
    xs.contiguous()?.apply_op3_no_bwd(gate_up, route, &MoeGateUp { top_k })
}

struct MoeDown {
    top_k: usize,
}

impl candle_core::CustomOp3 for MoeDown {
    fn name(&self) -> &'static str {
        "occ-moe-down"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (pairs, n) = al.shape().dims2()?;
        let (_, hidden, wn) = wl.shape().dims3()?;
        let k = self.top_k;
        if wn != n || pairs % k != 0 || rl.dims() != [pairs, 2] {
            candle_core::bail!("moe_down: activations {:?}, experts {:?}, route {:?}", al.dims(), wl.dims(), rl.dims())
        }
        let tokens = pairs / k;
        let CpuStorage::F32(route) = r else { candle_core::bail!("moe_down: the route must be f32") };
        let route = contiguous(route, rl, "moe route")?;
        let out = float_pair!(a, w, "moe_down", |av, wv: T| {
            let av = contiguous(av, al, "moe_down activations")?;
            let wv = contiguous(wv, wl, "moe_down experts")?;
            let mut out = Vec::with_capacity(tokens * hidden);
            for t in 0..tokens {
                for c in 0..hidden {
                    let mut total = 0f32;
                    for j in 0..k {
                        let p = t * k + j;
                        let e = route[p * 2] as usize;
                        let dr = &wv[(e * hidden + c) * n..(e * hidden + c + 1) * n];
                        let acc: f32 =
                            dr.iter().zip(&av[p * n..(p + 1) * n]).map(|(x, y)| x.to_f32() * y.to_f32()).sum();
                        total += <T>::from_f32(acc * route[p * 2 + 1]).to_f32();
                    }
                    out.push(<T>::from_f32(total));
                }
            }
            WithDType::to_cpu_storage_owned(out)
        });
        Ok((out, Shape::from((tokens, hidden))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        al: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
        r: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (pairs, n) = al.shape().dims2()?;
        let (_, hidden, wn) = wl.shape().dims3()?;
        let k = self.top_k;
        if wn != n || pairs % k != 0 || rl.dims() != [pairs, 2] {
            candle_core::bail!("moe_down: activations {:?}, experts {:?}, route {:?}", al.dims(), wl.dims(), rl.dims())
        }
        let tokens = pairs / k;
        let out = cuda::moe_down(a, al, w, wl, r, rl, (tokens, k, n, hidden))?;
        Ok((out, Shape::from((tokens, hidden))))
    }
}

/// Down projection of every routed pair, each output rounded after its routing weight, summed per
/// token in float32 and rounded.
///
/// # Shapes
/// `act`: `(tokens · k, n)`; `down`: `(experts, hidden, n)`; `route`: `(tokens · k, 2)` →
/// `(tokens, hidden)`.
pub fn moe_down(act: &Tensor, down: &Tensor, route: &Tensor, top_k: usize) -> Result<Tensor> {
    act.contiguous()?.apply_op3_no_bwd(down, route, &MoeDown { top_k })
}

// ---------------------------------------------------------------------------------------------
// slot caches

fn cache_dims(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match l.dims() {
        &[2, slots, heads, cap, d] => Ok((slots, heads, cap, d)),
        dims => candle_core::bail!("{what}: expected a (2, slots, kv_heads, capacity, head_dim) cache, got {dims:?}"),
    }
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

struct ArgmaxRows;

impl candle_core::CustomOp1 for ArgmaxRows {
    fn name(&self) -> &'static str {
        "occ-argmax-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, n) = l.shape().dims2()?;
        let CpuStorage::F32(v) = s else { candle_core::bail!("argmax_rows: expected f32") };
        let v = contiguous(v, l, "argmax_rows input")?;
        let out: Vec<u32> = (0..rows)
            .map(|r| {
                let row = &v[r * n..(r + 1) * n];
                let mut best: Option<(usize, f32)> = None;
                for (i, &x) in row.iter().enumerate() {
                    if x.is_nan() {
                        continue;
                    }
                    if best.is_none_or(|(_, b)| x > b) {
                        best = Some((i, x));
                    }
                }
                best.map_or(0, |b| b.0 as u32)
            })
            .collect();
        Ok((CpuStorage::U32(out), Shape::from(rows)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (rows, _) = l.shape().dims2()?;
        Ok((cuda::argmax(s, l)?, Shape::from(rows)))
    }
}

/// Index of the first maximum of every row (NaN never wins; an all-NaN row gives 0).
///
/// # Shapes
/// `(rows, n)` float32 → `(rows,)` u32.
pub fn argmax_rows(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&ArgmaxRows)
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

/// Starts (`true`) or stops (`false`) collection by an attached CUDA profiler (`ncu
/// --profile-from-start off`, Nsight Systems' capture range); nothing on the CPU.
pub fn cuda_profiler(device: &candle_core::Device, on: bool) -> Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::profiler(on),
        _ => {
            let _ = on;
            Ok(())
        }
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
    use candle_core::{DType, Device, IndexOp, D};

    use crate::synth::uniform_tensor as rand;

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
    fn kv_insert_and_decode_attention_match_plain_ops() -> Result<()> {
        let (slots, heads, kv_heads, cap, d) = (3usize, 4usize, 2usize, 9usize, 8usize);
        let cache = Tensor::zeros((2, slots, kv_heads, cap, d), DType::F32, &Device::Cpu)?;
        let full = rand(&[2, slots, kv_heads, cap, d], 7);
        let pos_v = [2u32, 5, 0];
        // columns 0..=pos of every slot, as a prefill would leave them
        for (s, &p) in pos_v.iter().enumerate() {
            kv_insert(&cache, &full.i((.., s, .., ..p as usize + 1, ..))?, s)?;
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
        let inv: Vec<f32> = (0..d / 2).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32)).collect();
        let qkv = Tensor::ones((slots, (heads + 2 * kv_heads) * d), DType::F32, &Device::Cpu)?;
        kv_rope_write(&cache, &qkv, &past, heads, &inv)?;
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
    fn rms_norm_rounds_like_the_reference() -> Result<()> {
        for dtype in [DType::F32, DType::BF16] {
            let x = (rand(&[4, 6, 32], 3) * 2.5)?.to_dtype(dtype)?;
            let w = (rand(&[32], 4) + 1.0)?.to_dtype(dtype)?;
            let xf = x.to_dtype(DType::F32)?;
            let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + 1e-6)?.sqrt()?.recip()?;
            let want = xf.broadcast_mul(&inv)?.to_dtype(dtype)?.broadcast_mul(&w)?;
            let got = rms_norm(&x, &w, 1e-6)?;
            let diff =
                (got.to_dtype(DType::F32)? - want.to_dtype(DType::F32)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= if dtype == DType::F32 { 1e-6 } else { 0.0 }, "{dtype:?}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn fused_rope_matches_candle_rope_and_writes_the_cache() -> Result<()> {
        let (slots, h, kv, d, cap) = (3usize, 4usize, 2usize, 8usize, 6usize);
        let inv: Vec<f32> = (0..d / 2).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32)).collect();
        let qkv = rand(&[slots, (h + 2 * kv) * d], 5);
        let pos_v = [0u32, 3, 5];
        let pos = Tensor::new(&pos_v, &Device::Cpu)?;
        // reference: candle's rope on (slots, heads, 1, d) with cos/sin (slots, 1, d/2)
        let angles: Vec<f32> = pos_v.iter().flat_map(|&p| inv.iter().map(move |f| p as f32 * f)).collect();
        let ang = Tensor::from_vec(angles, (slots, 1, d / 2), &Device::Cpu)?;
        let (cos, sin) = (ang.cos()?, ang.sin()?);
        let heads = |from: usize, n: usize| qkv.narrow(1, from * d, n * d)?.reshape((slots, n, 1, d))?.contiguous();
        let want_q = candle_nn::rotary_emb::rope(&heads(0, h)?, &cos, &sin)?.squeeze(2)?;
        let want_k = candle_nn::rotary_emb::rope(&heads(h, kv)?, &cos, &sin)?.squeeze(2)?;
        let got_q = rope_q(&qkv, &pos, h, kv, &inv)?;
        let dq = (got_q - want_q)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(dq < 1e-6, "q: {dq}");
        let cache = Tensor::zeros((2, slots, kv, cap, d), DType::F32, &Device::Cpu)?;
        kv_rope_write(&cache, &qkv, &pos, h, &inv)?;
        for (s, &p) in pos_v.iter().enumerate() {
            let k = cache.i((0, s, .., p as usize, ..))?;
            let v = cache.i((1, s, .., p as usize, ..))?;
            let dk = (k - want_k.i(s)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let dv = (v - heads(h + kv, kv)?.i((s, .., 0, ..))?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(dk < 1e-6 && dv == 0.0, "slot {s}: k {dk}, v {dv}");
        }
        Ok(())
    }

    #[test]
    fn ban_advance_and_host_writes() -> Result<()> {
        let logits = Tensor::zeros((2, 5), DType::F32, &Device::Cpu)?;
        let ban = Tensor::new(&[[1u32, NO_BAN], [4, 0]], &Device::Cpu)?;
        apply_ban(&logits, &ban)?;
        let l = logits.to_vec2::<f32>()?;
        let scores = Tensor::new(&[[0.5f32, 2.0, 2.0, -1.0], [f32::NAN, -3.0, -2.0, -2.0]], &Device::Cpu)?;
        assert_eq!(argmax_rows(&scores)?.to_vec1::<u32>()?, [1, 2], "first maximum, NaN skipped");
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
