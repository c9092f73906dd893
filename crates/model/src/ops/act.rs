//! [`Act`]: the activation of a linear layer's epilogue ([`bias_act`](super::bias_act)), its CPU
//! specification and its code in `kernels.cu`.

use super::elem::Elem;

/// The activation of a linear layer's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// The identity.
    None,
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (SAM's `nn.GELU`).
    Gelu,
    /// `x·sigmoid(1.702·x)` (CLIP's `quick_gelu`), rounded after each of its three ops.
    QuickGelu,
}

impl Act {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(super) fn code(self) -> u32 {
        match self {
            Act::None => 0,
            Act::Gelu => 1,
            Act::QuickGelu => 2,
        }
    }
}

pub(super) fn act_cpu<T: Elem>(v: f32, act: Act) -> f32 {
    match act {
        Act::None => v,
        Act::Gelu => (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v,
        Act::QuickGelu => {
            let s = T::from_f32(v * 1.702).to_f32();
            let sg = T::from_f32(((-s).exp() + 1.0).recip()).to_f32();
            v * sg
        }
    }
}
