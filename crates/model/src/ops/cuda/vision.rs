//! Launchers of the vision encoder's kernels: attention from a q|k|v projection (`vit_attention`)
//! and a linear layer's epilogue (`bias_act`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, Layout, Result};
use half::{bf16, f16};

use super::{grid_for, span, suffix, MODULE, PTX};

/// The geometry of one `vit_attention` launch, from the op's grid: token grid `(rows, columns)`, the
/// sides of one attention unit (a window, or the whole grid), the units `(down, across)` of an image,
/// heads, the score scale, and the dynamic shared memory per block (checked against the kernel's
/// limit by the caller).
#[derive(Debug, Clone, Copy)]
pub(in crate::ops) struct VitLaunch {
    pub grid: (usize, usize),
    pub unit: (usize, usize),
    pub units: (usize, usize),
    pub heads: usize,
    pub scale: f32,
    pub smem: usize,
}

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
pub(in crate::ops) fn vit_attention(
    qkv: &CudaStorage,
    ql: &Layout,
    bias: &CudaStorage,
    bl: &Layout,
    rel: Option<(&CudaStorage, &Layout)>,
    g: &VitLaunch,
    images: usize,
    d: usize,
) -> Result<CudaStorage> {
    let ((uh, uw), (ny, nx)) = (g.unit, g.units);
    if d != 64 {
        candle_core::bail!("vit_attention: the CUDA kernel needs head_dim 64, got {d}")
    }
    let smem = g.smem;
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

pub(in crate::ops) fn bias_act(
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
