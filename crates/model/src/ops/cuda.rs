//! Launchers of `kernels.cu` (PTX built by `build.rs`, loaded once per device as module
//! `occ_kernels`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result};
use half::{bf16, f16};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/occ_kernels.ptx"));
const MODULE: &str = "occ_kernels";
const THREADS: u32 = 256;

/// `match` over the float variants of a CUDA storage slice, expanding the caller's local
/// `go!(Variant, element_type)` for each (the launchers' one dtype dispatch).
macro_rules! each_float {
    ($slice:expr, $what:expr) => {
        match $slice {
            CudaStorageSlice::F32(_) => go!(F32, f32),
            CudaStorageSlice::BF16(_) => go!(BF16, bf16),
            CudaStorageSlice::F16(_) => go!(F16, f16),
            _ => candle_core::bail!("{}: unsupported dtype (f32, bf16 or f16)", $what),
        }
    };
}

fn grid_for(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

fn span(l: &Layout, what: &str) -> Result<(usize, usize)> {
    l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg(format!("{what}: expected a contiguous CUDA tensor, got strides {:?}", l.stride()))
    })
}

fn suffix(s: &CudaStorageSlice, what: &str) -> Result<&'static str> {
    Ok(match s {
        CudaStorageSlice::F32(_) => "f32",
        CudaStorageSlice::BF16(_) => "bf16",
        CudaStorageSlice::F16(_) => "f16",
        _ => candle_core::bail!("{what}: unsupported dtype (f32, bf16 or f16)"),
    })
}

fn u32_slice<'a>(s: &'a CudaStorage, what: &str) -> Result<&'a CudaSlice<u32>> {
    match &s.slice {
        CudaStorageSlice::U32(v) => Ok(v),
        _ => candle_core::bail!("{what}: expected u32"),
    }
}

pub(super) fn swiglu(s: &CudaStorage, l: &Layout, rows: usize, n: usize) -> Result<CudaStorage> {
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

pub(super) fn rms_norm(
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
pub(super) fn qkv_rope_write(
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

pub(super) fn moe_route(
    x: &CudaStorage,
    xl: &Layout,
    g: &CudaStorage,
    gl: &Layout,
    (tokens, hidden, experts): (usize, usize, usize),
    spec: super::RouteSpec,
) -> Result<CudaStorage> {
    let dev = x.device.clone();
    let name = format!("occ_moe_route_{}", suffix(&x.slice, "moe_route")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (xa, xb) = span(xl, "moe_route input")?;
    let (ga, gb) = span(gl, "moe_route router")?;
    let CudaStorageSlice::F32(gate) = &g.slice else { candle_core::bail!("moe_route: the router weight must be f32") };
    let gate = gate.slice(ga..gb);
    let out = unsafe { dev.alloc::<f32>(tokens * spec.top_k * 2)? };
    let cfg = LaunchConfig {
        grid_dim: (tokens as u32, 1, 1),
        block_dim: (1024, 1, 1),
        shared_mem_bytes: (experts * std::mem::size_of::<f32>()) as u32,
    };
    let dims = [tokens as u32, hidden as u32, experts as u32, spec.top_k as u32, u32::from(spec.norm_topk_prob)];
    macro_rules! go {
        ($variant:ident, $_t:ty) => {{
            let CudaStorageSlice::$variant(xs) = &x.slice else { candle_core::bail!("moe_route: dtype") };
            let xs = xs.slice(xa..xb);
            let mut builder = func.builder();
            builder.arg(&xs).arg(&gate).arg(&out);
            for v in &dims {
                builder.arg(v);
            }
            builder.arg(&spec.scale);
            unsafe { builder.launch(cfg) }.w()?;
        }};
    }
    each_float!(&x.slice, "moe_route");
    Ok(CudaStorage { slice: CudaStorageSlice::F32(out), device: dev })
}

/// `occ_moe_gate_up`: `dims` are the kernel's four u32 sizes, `outputs` the number of output
/// elements (one warp each).
#[allow(clippy::too_many_arguments)]
pub(super) fn moe_gate_up(
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

pub(super) fn kv_insert(
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
pub(super) fn decode_attention(
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
pub(super) fn moe_down(
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

pub(super) fn apply_ban(dst: &mut CudaStorage, dst_l: &Layout, ban: &CudaStorage, ban_l: &Layout) -> Result<()> {
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

/// Shape parameters of `occ_vit_attention_*` (`VitGeometry` in kernels.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct VitGeometry {
    gh: u32,
    gw: u32,
    uh: u32,
    uw: u32,
    ux: u32,
    units: u32,
    heads: u32,
    has_rel: u32,
    scale: f32,
}

// SAFETY: a plain #[repr(C)] struct of 4-byte scalars, laid out as the kernel's `VitGeometry`.
unsafe impl DeviceRepr for VitGeometry {}

#[allow(clippy::too_many_arguments)]
pub(super) fn vit_attention(
    qkv: &CudaStorage,
    ql: &Layout,
    bias: &CudaStorage,
    bl: &Layout,
    rel: Option<(&CudaStorage, &Layout)>,
    g: &super::VitGrid,
    images: usize,
    d: usize,
) -> Result<CudaStorage> {
    let ((uh, uw), (ny, nx)) = g.units();
    if d != 64 {
        candle_core::bail!("vit_attention: the CUDA kernel needs head_dim 64, got {d}")
    }
    let smem = super::vision::vit_smem_bytes((uh, uw), rel.is_some());
    if smem > super::vision::VIT_SMEM_MAX || uh >= 1 << 16 || uw >= 1 << 16 {
        candle_core::bail!("vit_attention: a {uh}×{uw} unit is too large for the CUDA kernel")
    }
    let dev = qkv.device.clone();
    let name = match &qkv.slice {
        CudaStorageSlice::BF16(_) => "occ_vit_attention_bf16",
        CudaStorageSlice::F16(_) => "occ_vit_attention_f16",
        _ => candle_core::bail!("vit_attention: the CUDA kernel takes bf16 or f16"),
    };
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    // beyond 48 KiB of dynamic shared memory a kernel must opt in
    func.set_attribute(
        candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        smem as i32,
    )
    .w()?;
    let (qa, qb) = span(ql, "vit_attention q|k|v")?;
    let (ba, bb) = span(bl, "vit_attention bias")?;
    if qa % 8 != 0 || ba % 8 != 0 {
        candle_core::bail!("vit_attention: q|k|v and bias views must start on a 16-byte boundary")
    }
    let geo = VitGeometry {
        gh: g.grid.0 as u32,
        gw: g.grid.1 as u32,
        uh: uh as u32,
        uw: uw as u32,
        ux: nx as u32,
        units: (ny * nx) as u32,
        heads: g.heads as u32,
        has_rel: u32::from(rel.is_some()),
        scale: g.scale,
    };
    let blocks_y = images * ny * nx;
    if blocks_y > 65_535 || g.heads > 65_535 {
        candle_core::bail!("vit_attention: {images} images × {} units × {} heads exceed one launch", ny * nx, g.heads)
    }
    let cfg = LaunchConfig {
        grid_dim: ((uh * uw).div_ceil(64) as u32, blocks_y as u32, g.heads as u32),
        block_dim: (128, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let out_len = images * g.grid.0 * g.grid.1 * g.heads * d;
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let (CudaStorageSlice::$variant(x), CudaStorageSlice::$variant(b)) = (&qkv.slice, &bias.slice) else {
                candle_core::bail!("vit_attention: q|k|v and bias must share a dtype")
            };
            let x = x.slice(qa..qb);
            let b = b.slice(ba..bb);
            let out = unsafe { dev.alloc::<$t>(out_len)? };
            let null: u64 = 0;
            let mut builder = func.builder();
            builder.arg(&x).arg(&b);
            let tables;
            match rel {
                Some((r, rl)) => {
                    let CudaStorageSlice::$variant(r) = &r.slice else {
                        candle_core::bail!("vit_attention: the relative tables must share the dtype of q|k|v")
                    };
                    let (ra, rb) = span(rl, "vit_attention tables")?;
                    tables = r.slice(ra..rb);
                    builder.arg(&tables);
                }
                // no tables: a null pointer (never read)
                None => {
                    builder.arg(&null);
                }
            }
            builder.arg(&out).arg(&geo);
            unsafe { builder.launch(cfg) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = match &qkv.slice {
        CudaStorageSlice::BF16(_) => go!(BF16, bf16),
        _ => go!(F16, f16),
    };
    Ok(CudaStorage { slice, device: dev })
}

pub(super) fn bias_act(
    x: &CudaStorage,
    xl: &Layout,
    b: &CudaStorage,
    bl: &Layout,
    res: Option<(&CudaStorage, &Layout)>,
    n: usize,
    act: u32,
) -> Result<CudaStorage> {
    let dev = x.device.clone();
    let name = format!("occ_bias_act_{}", suffix(&x.slice, "bias_act")?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (xa, xb) = span(xl, "bias_act input")?;
    let (ba, bb) = span(bl, "bias_act bias")?;
    let total = xb - xa;
    // 16-byte vectors when every view starts on a 16-byte boundary (the residual is read by element)
    let per_vec = 16 / x.dtype().size_in_bytes();
    let aligned = u32::from(xa % per_vec == 0 && ba % per_vec == 0);
    let (n32, total64) = (n as u32, total as u64);
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let (CudaStorageSlice::$variant(xs), CudaStorageSlice::$variant(bs)) = (&x.slice, &b.slice) else {
                candle_core::bail!("bias_act: input and bias must share a dtype")
            };
            let xs = xs.slice(xa..xb);
            let bs = bs.slice(ba..bb);
            let out = unsafe { dev.alloc::<$t>(total)? };
            let null: u64 = 0;
            let rs;
            let mut builder = func.builder();
            builder.arg(&xs).arg(&bs);
            match res {
                Some((r, rl)) => {
                    let CudaStorageSlice::$variant(r) = &r.slice else {
                        candle_core::bail!("bias_act: the residual must share the input's dtype")
                    };
                    let (ra, rb) = span(rl, "bias_act residual")?;
                    rs = r.slice(ra..rb);
                    builder.arg(&rs);
                }
                None => {
                    builder.arg(&null);
                }
            }
            builder.arg(&out).arg(&total64).arg(&n32).arg(&act).arg(&aligned);
            unsafe { builder.launch(grid_for(total.div_ceil(8))) }.w()?;
            CudaStorageSlice::$variant(out)
        }};
    }
    let slice = each_float!(&x.slice, "bias_act");
    Ok(CudaStorage { slice, device: dev })
}

pub(super) fn argmax(x: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
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

pub(super) fn advance(s: &mut CudaStorage, l: &Layout) -> Result<()> {
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

pub(super) fn write_u32(s: &mut CudaStorage, l: &Layout, values: &[u32]) -> Result<()> {
    let dev = s.device.clone();
    let (a, b) = span(l, "write_u32 buffer")?;
    if b - a != values.len() {
        candle_core::bail!("write_u32: {} values for a buffer of {}", values.len(), b - a)
    }
    let CudaStorageSlice::U32(v) = &mut s.slice else { candle_core::bail!("write_u32: the buffer must be u32") };
    let mut v = v.slice_mut(a..b);
    dev.memcpy_htod(values, &mut v)
}

/// A CUDA graph of one captured decode step.
pub(super) struct Graph(candle_core::cuda_backend::cudarc::driver::CudaGraph);

impl Graph {
    pub(super) fn launch(&self) -> Result<()> {
        self.0.launch().w()
    }
}

pub(super) fn capture(dev: &CudaDevice, step: &dyn Fn() -> Result<()>) -> Result<Option<Graph>> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let _cache = dev.enable_cuda_graph_htod_cache();
    step()?; // the real first step doubles as the warm-up
    let stream = dev.cuda_stream();
    stream.synchronize().w()?;
    if let Err(e) = stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) {
        tracing::warn!("CUDA graph capture unavailable ({e}); decoding eagerly");
        return Ok(None);
    }
    let captured = step();
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH);
    match (captured, graph) {
        (Ok(()), Ok(Some(g))) => {
            g.upload().w()?;
            Ok(Some(Graph(g)))
        }
        (captured, graph) => {
            tracing::warn!(
                "CUDA graph capture failed (step: {:?}, graph: {:?}); decoding eagerly",
                captured.err().map(|e| e.to_string()),
                graph.err().map(|e| e.to_string())
            );
            Ok(None)
        }
    }
}

pub(super) fn single_stream_device(ordinal: usize) -> Result<candle_core::Device> {
    let device = candle_core::Device::new_cuda(ordinal)?;
    if let candle_core::Device::Cuda(dev) = &device {
        // SAFETY: this crate runs every kernel on the device's one stream, so no cross-stream
        // synchronisation is needed; no tensor exists on the device yet.
        unsafe { dev.disable_event_tracking() };
    }
    Ok(device)
}

pub(super) fn memory_used() -> Option<u64> {
    let (free, total) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
    Some((total - free) as u64)
}

pub(super) fn profiler(on: bool) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    // SAFETY: plain driver calls without arguments; they only toggle profiler data collection.
    let status = unsafe {
        if on {
            sys::cuProfilerStart()
        } else {
            sys::cuProfilerStop()
        }
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        candle_core::bail!("cuProfiler{}: {status:?}", if on { "Start" } else { "Stop" })
    }
    Ok(())
}
