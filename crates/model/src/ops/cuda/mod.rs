//! Launchers of `kernels.cu` (PTX built by `build.rs`, loaded once per device as module
//! `occ_kernels`), one file per role: the decode step's kernels (`decode.rs`), the vision encoder's
//! (`vision.rs`), and CUDA graphs, the device and the profiler (`device.rs`). Nothing here knows the
//! ops' types: callers pass checked sizes and plain values, so this module depends on candle only.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig};
use candle_core::cuda_backend::CudaStorageSlice;
use candle_core::{CudaStorage, Layout, Result};

pub(super) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/occ_kernels.ptx"));
pub(super) const MODULE: &str = "occ_kernels";
pub(super) const THREADS: u32 = 256;

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

pub(super) fn grid_for(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

pub(super) fn span(l: &Layout, what: &str) -> Result<(usize, usize)> {
    l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg(format!("{what}: expected a contiguous CUDA tensor, got strides {:?}", l.stride()))
    })
}

pub(super) fn suffix(s: &CudaStorageSlice, what: &str) -> Result<&'static str> {
    Ok(match s {
        CudaStorageSlice::F32(_) => "f32",
        CudaStorageSlice::BF16(_) => "bf16",
        CudaStorageSlice::F16(_) => "f16",
        _ => candle_core::bail!("{what}: unsupported dtype (f32, bf16 or f16)"),
    })
}

pub(super) fn u32_slice<'a>(s: &'a CudaStorage, what: &str) -> Result<&'a CudaSlice<u32>> {
    match &s.slice {
        CudaStorageSlice::U32(v) => Ok(v),
        _ => candle_core::bail!("{what}: expected u32"),
    }
}

mod decode;
mod device;
mod vision;

pub(super) use decode::{
    advance, apply_ban, argmax, decode_attention, kv_insert, moe_down, moe_gate_up, moe_route, qkv_rope_write,
    rms_norm, swiglu, write_u32,
};
pub(super) use device::{capture, capturing, memory_free, memory_used, profiler, single_stream_device, Graph};
pub(super) use vision::{bias_act, vit_attention, VitLaunch};
