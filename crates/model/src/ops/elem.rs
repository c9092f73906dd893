//! Element types and storage access shared by the CPU implementations of the fused ops: the three
//! float compute dtypes ([`Elem`]), contiguous views of CPU storage, and the dtype dispatch macros
//! (`with_float!`, `float_pair!`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};
use half::{bf16, f16};

/// Float conversions of the three compute dtypes, for the CPU implementations.
pub(super) trait Elem: Copy + Send + Sync + 'static {
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

pub(super) fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor, got strides {:?}", l.stride()),
    }
}

pub(super) fn contiguous_mut<'a, T>(data: &'a mut [T], l: &Layout, what: &str) -> Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor, got strides {:?}", l.stride()),
    }
}

pub(super) fn u32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [u32]> {
    match s {
        CpuStorage::U32(v) => contiguous(v, l, what),
        other => {
            candle_core::bail!("{what}: expected u32, got {:?}", candle_core::backend::BackendStorage::dtype(other))
        }
    }
}

/// The elements of a third input that must share the dtype of the first two.
pub(super) fn third<'a, T: Elem>(s: &'a CpuStorage, what: &str) -> Result<&'a [T]> {
    T::cpu_slice(s)
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: dtype {:?} differs from the input's", s.dtype())))
}

/// Applies `$body` with `$t` bound to the element type of a float CPU storage.
macro_rules! with_float {
    ($s:expr, $what:expr, |$v:ident: $t:ident| $body:expr) => {
        match $s {
            candle_core::CpuStorage::F32($v) => {
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            candle_core::CpuStorage::BF16($v) => {
                #[allow(dead_code)]
                type $t = half::bf16;
                $body
            }
            candle_core::CpuStorage::F16($v) => {
                #[allow(dead_code)]
                type $t = half::f16;
                $body
            }
            other => candle_core::bail!(
                "{}: unsupported dtype {:?}",
                $what,
                candle_core::backend::BackendStorage::dtype(other)
            ),
        }
    };
}

/// Applies `$body` with `$a`, `$b` bound to two CPU storages of the same float dtype and `$t` to its
/// element type; other or mismatched dtypes are an error naming the op.
macro_rules! float_pair {
    ($s1:expr, $s2:expr, $what:expr, |$a:ident, $b:ident: $t:ident| $body:expr) => {
        match ($s1, $s2) {
            (candle_core::CpuStorage::F32($a), candle_core::CpuStorage::F32($b)) => {
                #[allow(dead_code)]
                type $t = f32;
                $body
            }
            (candle_core::CpuStorage::BF16($a), candle_core::CpuStorage::BF16($b)) => {
                #[allow(dead_code)]
                type $t = half::bf16;
                $body
            }
            (candle_core::CpuStorage::F16($a), candle_core::CpuStorage::F16($b)) => {
                #[allow(dead_code)]
                type $t = half::f16;
                $body
            }
            (x, y) => {
                candle_core::bail!(
                    "{}: unsupported or mismatched dtypes {:?} and {:?}",
                    $what,
                    candle_core::backend::BackendStorage::dtype(x),
                    candle_core::backend::BackendStorage::dtype(y)
                )
            }
        }
    };
}

pub(super) use {float_pair, with_float};
