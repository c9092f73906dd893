//! Launchers of the decode step's kernels: SwiGLU, RMSNorm, RoPE and the slot-cache writes, the
//! small-batch MoE, decode attention, and the step's bookkeeping (bans, argmax, positions, host
//! writes).

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Layout, Result};
use half::{bf16, f16};

use super::{grid_for, span, suffix, u32_slice, MODULE, PTX};

pub(in crate::ops) fn swiglu(s: &CudaStorage, l: &Layout, rows: usize, n: usize) -> Result<CudaStorage> {
    let dev = s.device.clone();
    let name = format!("occ_swiglu_{}", suffix(&s.slice, "swiglu")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (a, b) = span(l, "swiglu input")?;
    let (rows32, n32) = (rows as u32, n as u32);
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let CudaStorageSlice::$variant(x) = &s.slice else { candle_core::bail!("swiglu: dtype") };
            let x = x.slice(a..b);
            let out = unsafe { dev.alloc::<$t>(rows * n)? };
            let mut builder = func.builder();
            builder.arg(&x).arg(&out).arg(&rows32).arg(&n32);
            unsafe { builder.launch(grid_for(rows * n)) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = each_float!(&s.slice, "swiglu");
    Ok(CudaStorage { slice, device: dev })
}

pub(in crate::ops) fn rms_norm(
    x: &CudaStorage,
    xl: &Layout,
    w: &CudaStorage,
    wl: &Layout,
    rows: usize,
    n: usize,
    eps: f32,
) -> Result<CudaStorage> {
    let dev = x.device.clone();
    let name = format!("occ_rms_norm_{}", suffix(&x.slice, "rms_norm")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (xa, xb) = span(xl, "rms_norm input")?;
    let (wa, wb) = span(wl, "rms_norm weight")?;
    let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (rows32, n32) = (rows as u32, n as u32);
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let (CudaStorageSlice::$variant(xs), CudaStorageSlice::$variant(ws)) = (&x.slice, &w.slice) else {
                candle_core::bail!("rms_norm: input and weight must share a dtype")
            };
            let out = unsafe { dev.alloc::<$t>(rows * n)? };
            let xs = xs.slice(xa..xb);
            let ws = ws.slice(wa..wb);
            let mut builder = func.builder();
            builder.arg(&xs).arg(&ws).arg(&out).arg(&rows32).arg(&n32).arg(&eps);
            unsafe { builder.launch(cfg) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = each_float!(&x.slice, "rms_norm");
    Ok(CudaStorage { slice, device: dev })
}

/// Part 0 (queries → a new tensor) when `cache` is `None`, part 1 (keys/values → the cache)
/// otherwise.
pub(in crate::ops) fn qkv_rope_write(
    qkv: &CudaStorage,
    ql: &Layout,
    pos: &CudaStorage,
    pl: &Layout,
    inv_freq: &[f32],
    cache: Option<(&mut CudaStorage, &Layout)>,
    (slots, heads, kv_heads, cap, d): (usize, usize, usize, usize, usize),
) -> Result<Option<CudaStorage>> {
    let dev = qkv.device.clone();
    let name = format!("occ_qkv_rope_write_{}", suffix(&qkv.slice, "qkv_rope_write")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (qa, qb) = span(ql, "fused projection")?;
    let (pa, pb) = span(pl, "rope positions")?;
    let pos = u32_slice(pos, "rope positions")?.slice(pa..pb);
    // ≤ 4 KB: cached by candle while a CUDA graph is captured
    let inv = dev.clone_htod(inv_freq)?;
    let part: u32 = if cache.is_some() { 1 } else { 0 };
    let heads_in_part = if part == 0 { heads } else { 2 * kv_heads };
    let cfg = grid_for(slots * heads_in_part * d / 2);
    let dims = [slots as u32, heads as u32, kv_heads as u32, cap as u32, d as u32, part];
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let CudaStorageSlice::$variant(x) = &qkv.slice else { candle_core::bail!("qkv_rope_write: dtype") };
            let x = x.slice(qa..qb);
            match cache {
                None => {
                    let out = unsafe { dev.alloc::<$t>(slots * heads * d)? };
                    let none = unsafe { dev.alloc::<$t>(1)? };
                    let mut builder = func.builder();
                    builder.arg(&x).arg(&pos).arg(&inv).arg(&out).arg(&none);
                    for v in &dims {
                        builder.arg(v);
                    }
                    unsafe { builder.launch(cfg) }.w()?;
                    Some(CudaStorage { slice: CudaStorageSlice::$variant(out), device: dev.clone() })
                }
                Some((c, cl)) => {
                    let (ca, cb) = span(cl, "kv cache")?;
                    let CudaStorageSlice::$variant(c) = &mut c.slice else {
                        candle_core::bail!("qkv_rope_write: cache and projection must share a dtype")
                    };
                    let mut c = c.slice_mut(ca..cb);
                    let none = unsafe { dev.alloc::<$t>(1)? };
                    let mut builder = func.builder();
                    builder.arg(&x).arg(&pos).arg(&inv).arg(&none).arg(&mut c);
                    for v in &dims {
                        builder.arg(v);
                    }
                    unsafe { builder.launch(cfg) }.w()?;
                    None
                }
            }
        }};
    }
    Ok(each_float!(&qkv.slice, "qkv_rope_write"))
}

pub(in crate::ops) fn moe_route(
    x: &CudaStorage,
    xl: &Layout,
    g: &CudaStorage,
    gl: &Layout,
    (tokens, hidden, experts): (usize, usize, usize),
    (top_k, norm_topk_prob, scale): (usize, bool, f32),
) -> Result<CudaStorage> {
    let dev = x.device.clone();
    let name = format!("occ_moe_route_{}", suffix(&x.slice, "moe_route")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (xa, xb) = span(xl, "moe_route input")?;
    let (ga, gb) = span(gl, "moe_route router")?;
    let CudaStorageSlice::F32(gate) = &g.slice else { candle_core::bail!("moe_route: the router weight must be f32") };
    let gate = gate.slice(ga..gb);
    let out = unsafe { dev.alloc::<f32>(tokens * top_k * 2)? };
    let cfg = LaunchConfig {
        grid_dim: (tokens as u32, 1, 1),
        block_dim: (1024, 1, 1),
        shared_mem_bytes: (experts * std::mem::size_of::<f32>()) as u32,
    };
    let dims = [tokens as u32, hidden as u32, experts as u32, top_k as u32, u32::from(norm_topk_prob)];
    macro_rules! go {
        ($variant:ident, $_t:ty) => {{
            let CudaStorageSlice::$variant(xs) = &x.slice else { candle_core::bail!("moe_route: dtype") };
            let xs = xs.slice(xa..xb);
            let mut builder = func.builder();
            builder.arg(&xs).arg(&gate).arg(&out);
            for v in &dims {
                builder.arg(v);
            }
            builder.arg(&scale);
            unsafe { builder.launch(cfg) }.w()?;
        }};
    }
    each_float!(&x.slice, "moe_route");
    Ok(CudaStorage { slice: CudaStorageSlice::F32(out), device: dev })
}

/// `occ_moe_gate_up`: `dims` are the kernel's four u32 sizes, `outputs` the number of output
/// elements (one warp each).
#[allow(clippy::too_many_arguments)]
pub(in crate::ops) fn moe_gate_up(
    x: &CudaStorage,
    xl: &Layout,
    w: &CudaStorage,
    wl: &Layout,
    r: &CudaStorage,
    rl: &Layout,
    dims: [usize; 4],
    outputs: usize,
) -> Result<CudaStorage> {
    let dev = x.device.clone();
    let kernel = "occ_moe_gate_up";
    let name = format!("{kernel}_{}", suffix(&x.slice, kernel)?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (xa, xb) = span(xl, "moe input")?;
    let (wa, wb) = span(wl, "moe experts")?;
    let (ra, rb) = span(rl, "moe route")?;
    let CudaStorageSlice::F32(route) = &r.slice else { candle_core::bail!("{kernel}: the route must be f32") };
    let route = route.slice(ra..rb);
    let dims = dims.map(|d| d as u32);
    let cfg = grid_for(outputs * 32);
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let (CudaStorageSlice::$variant(xs), CudaStorageSlice::$variant(ws)) = (&x.slice, &w.slice) else {
                candle_core::bail!("{kernel}: input and experts must share a dtype")
            };
            let out = unsafe { dev.alloc::<$t>(outputs)? };
            let xs = xs.slice(xa..xb);
            let ws = ws.slice(wa..wb);
            let mut builder = func.builder();
            builder.arg(&xs).arg(&ws).arg(&route).arg(&out);
            for v in &dims {
                builder.arg(v);
            }
            unsafe { builder.launch(cfg) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = each_float!(&x.slice, kernel);
    Ok(CudaStorage { slice, device: dev })
}

pub(in crate::ops) fn kv_insert(
    dst: &mut CudaStorage,
    dst_l: &Layout,
    src: &CudaStorage,
    src_l: &Layout,
    slot: usize,
    (slots, heads, cap, len, d): (usize, usize, usize, usize, usize),
) -> Result<()> {
    let dev = dst.device.clone();
    let name = format!("occ_kv_insert_{}", suffix(&dst.slice, "kv_insert")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (ca, cb) = span(dst_l, "kv cache")?;
    let (sa, sb) = span(src_l, "kv_insert source")?;
    let dims = [slot as u32, slots as u32, heads as u32, cap as u32, len as u32, d as u32];
    let cfg = grid_for(2 * heads * len * d);
    macro_rules! go {
        ($variant:ident, $_t:ty) => {{
            let (CudaStorageSlice::$variant(c), CudaStorageSlice::$variant(k)) = (&mut dst.slice, &src.slice) else {
                candle_core::bail!("kv_insert: cache and prompt keys must share a dtype")
            };
            let mut c = c.slice_mut(ca..cb);
            let k = k.slice(sa..sb);
            let mut builder = func.builder();
            builder.arg(&mut c).arg(&k);
            for v in &dims {
                builder.arg(v);
            }
            unsafe { builder.launch(cfg) }.w()?;
        }};
    }
    each_float!(&dst.slice, "kv_insert");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(in crate::ops) fn decode_attention(
    q: &CudaStorage,
    ql: &Layout,
    cache: &CudaStorage,
    cl: &Layout,
    pos: &CudaStorage,
    pl: &Layout,
    (slots, heads, kv_heads, cap, d): (usize, usize, usize, usize, usize),
    scale: f32,
) -> Result<CudaStorage> {
    if d > 256 {
        candle_core::bail!("decode_attention: head_dim {d} > 256 is not supported by the CUDA kernel")
    }
    const CHUNK: usize = 32; // ATT_CHUNK in kernels.cu
    let nsplit = cap.div_ceil(CHUNK).max(1);
    let dev = q.device.clone();
    let sfx = suffix(&q.slice, "decode_attention")?;
    let split = dev.get_or_load_custom_func(&format!("occ_decode_attention_split_{sfx}"), MODULE, PTX)?;
    let combine = dev.get_or_load_custom_func(&format!("occ_decode_attention_combine_{sfx}"), MODULE, PTX)?;
    let (qa, qb) = span(ql, "decode_attention query")?;
    let (ca, cb) = span(cl, "decode_attention cache")?;
    let (pa, pb) = span(pl, "decode_attention positions")?;
    let pos = u32_slice(pos, "decode_attention positions")?.slice(pa..pb);
    let rows = slots * heads;
    let scratch = unsafe { dev.alloc::<f32>(rows * nsplit * (d + 2))? };
    let dims = [slots as u32, heads as u32, kv_heads as u32, cap as u32, d as u32];
    let (rows32, d32, nsplit32) = (rows as u32, d as u32, nsplit as u32);
    let split_cfg =
        LaunchConfig { grid_dim: (rows as u32, nsplit as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    let combine_cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let (CudaStorageSlice::$variant(qs), CudaStorageSlice::$variant(cs)) = (&q.slice, &cache.slice) else {
                candle_core::bail!("decode_attention: query and cache must share a dtype")
            };
            let qs = qs.slice(qa..qb);
            let cs = cs.slice(ca..cb);
            let mut builder = split.builder();
            builder.arg(&qs).arg(&cs).arg(&scratch).arg(&pos);
            for v in &dims {
                builder.arg(v);
            }
            builder.arg(&scale).arg(&nsplit32);
            unsafe { builder.launch(split_cfg) }.w()?;
            let out = unsafe { dev.alloc::<$t>(rows * d)? };
            let mut builder = combine.builder();
            builder.arg(&scratch).arg(&out).arg(&rows32).arg(&d32).arg(&nsplit32);
            unsafe { builder.launch(combine_cfg) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = each_float!(&q.slice, "decode_attention");
    Ok(CudaStorage { slice, device: dev })
}

/// `occ_moe_down` (one rounded output per pair and channel) then `occ_moe_combine` (sum over the k
/// pairs of each token).
#[allow(clippy::too_many_arguments)]
pub(in crate::ops) fn moe_down(
    a: &CudaStorage,
    al: &Layout,
    w: &CudaStorage,
    wl: &Layout,
    r: &CudaStorage,
    rl: &Layout,
    (tokens, k, n, hidden): (usize, usize, usize, usize),
) -> Result<CudaStorage> {
    let dev = a.device.clone();
    let sfx = suffix(&a.slice, "moe_down")?;
    let down = dev.get_or_load_custom_func(&format!("occ_moe_down_{sfx}"), MODULE, PTX)?;
    let combine = dev.get_or_load_custom_func(&format!("occ_moe_combine_{sfx}"), MODULE, PTX)?;
    let (aa, ab) = span(al, "moe_down activations")?;
    let (wa, wb) = span(wl, "moe_down experts")?;
    let (ra, rb) = span(rl, "moe route")?;
    let CudaStorageSlice::F32(route) = &r.slice else { candle_core::bail!("moe_down: the route must be f32") };
    let route = route.slice(ra..rb);
    let pairs = tokens * k;
    let (pairs32, n32, hidden32, tokens32, k32) = (pairs as u32, n as u32, hidden as u32, tokens as u32, k as u32);
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let (CudaStorageSlice::$variant(xs), CudaStorageSlice::$variant(ws)) = (&a.slice, &w.slice) else {
                candle_core::bail!("moe_down: activations and experts must share a dtype")
            };
            let xs = xs.slice(aa..ab);
            let ws = ws.slice(wa..wb);
            let pair_out = unsafe { dev.alloc::<$t>(pairs * hidden)? };
            let mut builder = down.builder();
            builder.arg(&xs).arg(&ws).arg(&route).arg(&pair_out).arg(&pairs32).arg(&n32).arg(&hidden32);
            unsafe { builder.launch(grid_for(pairs * hidden * 32)) }.w()?;
            let out = unsafe { dev.alloc::<$t>(tokens * hidden)? };
            let mut builder = combine.builder();
            builder.arg(&pair_out).arg(&out).arg(&tokens32).arg(&k32).arg(&hidden32);
            unsafe { builder.launch(grid_for(tokens * hidden)) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = each_float!(&a.slice, "moe_down");
    Ok(CudaStorage { slice, device: dev })
}

pub(in crate::ops) fn apply_ban(
    dst: &mut CudaStorage,
    dst_l: &Layout,
    ban: &CudaStorage,
    ban_l: &Layout,
) -> Result<()> {
    let (rows, vocab) = dst_l.shape().dims2()?;
    let (_, max_ban) = ban_l.shape().dims2()?;
    let dev = dst.device.clone();
    let func = dev.get_or_load_custom_func("occ_apply_ban", MODULE, PTX)?;
    let (la, lb) = span(dst_l, "apply_ban logits")?;
    let (ba, bb) = span(ban_l, "apply_ban ids")?;
    let ban = u32_slice(ban, "apply_ban ids")?.slice(ba..bb);
    let CudaStorageSlice::F32(logits) = &mut dst.slice else { candle_core::bail!("apply_ban: logits must be f32") };
    let mut logits = logits.slice_mut(la..lb);
    let dims = [rows as u32, vocab as u32, max_ban as u32];
    let mut builder = func.builder();
    builder.arg(&mut logits).arg(&ban).arg(&dims[0]).arg(&dims[1]).arg(&dims[2]);
    unsafe { builder.launch(grid_for(rows * max_ban)) }.w()?;
    Ok(())
}

pub(in crate::ops) fn argmax(x: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
    let (rows, n) = l.shape().dims2()?;
    let dev = x.device.clone();
    let func = dev.get_or_load_custom_func("occ_argmax_f32", MODULE, PTX)?;
    let (a, b) = span(l, "argmax input")?;
    let CudaStorageSlice::F32(xs) = &x.slice else { candle_core::bail!("argmax: expected f32") };
    let xs = xs.slice(a..b);
    let out = unsafe { dev.alloc::<u32>(rows)? };
    let dims = [rows as u32, n as u32];
    let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
    let mut builder = func.builder();
    builder.arg(&xs).arg(&out).arg(&dims[0]).arg(&dims[1]);
    unsafe { builder.launch(cfg) }.w()?;
    Ok(CudaStorage { slice: CudaStorageSlice::U32(out), device: dev })
}

pub(in crate::ops) fn advance(s: &mut CudaStorage, l: &Layout) -> Result<()> {
    let dev = s.device.clone();
    let func = dev.get_or_load_custom_func("occ_advance", MODULE, PTX)?;
    let (a, b) = span(l, "advance positions")?;
    let CudaStorageSlice::U32(v) = &mut s.slice else { candle_core::bail!("advance: positions must be u32") };
    let n = (b - a) as u32;
    let mut v = v.slice_mut(a..b);
    let mut builder = func.builder();
    builder.arg(&mut v).arg(&n);
    unsafe { builder.launch(grid_for(n as usize)) }.w()?;
    Ok(())
}

pub(in crate::ops) fn write_u32(s: &mut CudaStorage, l: &Layout, values: &[u32]) -> Result<()> {
    let dev = s.device.clone();
    let (a, b) = span(l, "write_u32 buffer")?;
    if b - a != values.len() {
        candle_core::bail!("write_u32: {} values for a buffer of {}", values.len(), b - a)
    }
    let CudaStorageSlice::U32(v) = &mut s.slice else { candle_core::bail!("write_u32: the buffer must be u32") };
    let mut v = v.slice_mut(a..b);
    dev.memcpy_htod(values, &mut v)
}
