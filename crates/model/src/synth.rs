//! Deterministic synthetic weights that Python (numpy) and Rust reproduce bit for bit.
//!
//! Parity with the PyTorch reference is proven on these weights, since the real checkpoint cannot be
//! downloaded on our machines. The recipe is defined here and mirrored in
//! `tests/reference/synth_weights.py`; both must change together (the golden test of
//! `tests::recipe_golden_values` pins the first values of a few tensors on both sides).
//!
//! # Recipe (version 1)
//! For a tensor `name` of `shape`, with a global `seed` (default 0):
//! 1. `key = fnv1a64(utf8(name)) XOR seed`.
//! 2. For element `i` (row-major, 0-based): `z = key + (i + 1) · 0x9E3779B97F4A7C15` (wrapping), then the
//!    SplitMix64 finaliser `z = (z ^ (z >> 30)) · 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) · 0x94D049BB133111EB;
//!    z ^= z >> 31` (the i-th output of a SplitMix64 stream seeded with `key`).
//! 3. `u = (z >> 11) · 2⁻⁵³ ∈ [0, 1)`, `x = 2u − 1 ∈ [−1, 1)`, all in f64.
//! 4. Value, in f64, then rounded to f32 (round to nearest even):
//!    - 1-D `*.weight` (every norm scale in the checkpoint): `1 + 0.1·x`;
//!    - 1-D `*.bias`: `0.1·x`;
//!    - other 1-D tensors (`image_newline`, `view_seperator`, `class_embedding`): `x`;
//!    - tables (`embed_tokens`, `pos_embed`, `position_embedding`): `0.5·x`;
//!    - every other tensor (linear `[out, in]`, conv OIHW, `rel_pos_*`, MoE gate): `x · √(3 / fan_in)`
//!      with `fan_in` = product of all dimensions but the first, so outputs keep unit variance and
//!      activations stay O(1) through the whole network.
//!
//! The same values, cast to bf16 or f16, are the low-precision weights.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// Version of the recipe above; recorded in golden metadata and engine identities.
pub const RECIPE_VERSION: u32 = 1;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The `i`-th SplitMix64 output of the stream seeded with `key`.
#[inline]
pub fn splitmix64_at(key: u64, i: u64) -> u64 {
    let mut z = key.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How the uniform `x ∈ [−1, 1)` becomes a weight value (step 4 of the recipe).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    /// `offset + factor · x`
    Affine { offset: f64, factor: f64 },
}

fn scale_for(name: &str, dims: &[usize]) -> Scale {
    let affine = |offset, factor| Scale::Affine { offset, factor };
    if dims.len() <= 1 {
        if name.ends_with(".weight") {
            affine(1.0, 0.1)
        } else if name.ends_with(".bias") {
            affine(0.0, 0.1)
        } else {
            affine(0.0, 1.0)
        }
    } else if ["embed_tokens", "pos_embed", "position_embedding"].iter().any(|t| name.contains(t)) {
        affine(0.0, 0.5)
    } else {
        let fan_in: usize = dims[1..].iter().product();
        affine(0.0, (3.0 / fan_in.max(1) as f64).sqrt())
    }
}

/// The synthetic values of tensor `name` with `dims`, as f32, for the given global `seed`.
pub fn synth_values(name: &str, dims: &[usize], seed: u64) -> Vec<f32> {
    let key = fnv1a64(name.as_bytes()) ^ seed;
    let Scale::Affine { offset, factor } = scale_for(name, dims);
    let n: usize = dims.iter().product();
    (0..n as u64)
        .map(|i| {
            let u = (splitmix64_at(key, i) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            let x = 2.0 * u - 1.0;
            (offset + factor * x) as f32
        })
        .collect()
}

/// The synthetic tensor `name` of `shape`, in `dtype` on `device`.
pub fn synth_tensor(name: &str, shape: &Shape, seed: u64, dtype: DType, device: &Device) -> Result<Tensor> {
    let values = synth_values(name, shape.dims(), seed);
    Tensor::from_vec(values, shape.clone(), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
}

/// A [`VarBuilder`] backend that synthesises every tensor on request from its full name and the
/// shape the model asks for, so any configuration (full size or tiny) gets weights without a file.
#[derive(Debug, Clone, Copy)]
pub struct SynthBackend {
    pub seed: u64,
}

impl SimpleBackend for SynthBackend {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        synth_tensor(name, &s, self.seed, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("synthetic weights need a shape: tensor {name} was requested without one")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// A [`VarBuilder`] over synthetic weights (recipe version [`RECIPE_VERSION`]).
pub fn synth_var_builder(seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SynthBackend { seed }), dtype, device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values; `tests/reference/synth_weights.py --self-test` prints the same numbers.
    #[test]
    fn recipe_golden_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(splitmix64_at(0, 0), 0xe220_a839_7b1d_cdaf);
        let golden: [(&str, &[usize], [u32; 3]); 5] = [
            ("model.norm.weight", &[1280], [0x3f68e490, 0x3f6d74d6, 0x3f7afc3e]),
            ("model.projector.layers.bias", &[1280], [0xbd9b2bb7, 0xbdb0590f, 0xbcb4e005]),
            ("model.layers.0.self_attn.q_proj.weight", &[1280, 1280], [0xbc0004ac, 0xbd2bbf96, 0x3d0d6b98]),
            ("model.sam_model.pos_embed", &[1, 64, 64, 768], [0x3ed1be17, 0x3ebc728c, 0x3e7b67c9]),
            ("model.image_newline", &[1280], [0x3f60a1e3, 0x3f0c666c, 0x3ea8e906]),
        ];
        for (name, dims, want) in golden {
            let n = dims.iter().product::<usize>().min(3);
            let first: Vec<u32> = synth_values(name, dims, 0)[..n].iter().map(|v| v.to_bits()).collect();
            assert_eq!(first, want, "{name}");
        }
    }

    #[test]
    fn scales_follow_the_recipe() {
        let norm = synth_values("model.norm.weight", &[1280], 0);
        assert!(norm.iter().all(|v| (0.9..=1.1).contains(v)));
        let bias = synth_values("model.projector.layers.bias", &[1280], 0);
        assert!(bias.iter().all(|v| v.abs() <= 0.1));
        let w = synth_values("model.layers.0.self_attn.q_proj.weight", &[64, 1280], 0);
        let bound = (3.0f32 / 1280.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var * 1280.0 - 1.0).abs() < 0.05, "unit fan-in variance, got {}", var * 1280.0);
        assert_ne!(synth_values("a.weight", &[4, 4], 0), synth_values("b.weight", &[4, 4], 0));
        assert_ne!(synth_values("a.weight", &[4, 4], 0), synth_values("a.weight", &[4, 4], 1));
    }
}
