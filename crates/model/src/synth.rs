//! Deterministic synthetic weights that Python (numpy) and Rust reproduce bit for bit.
//!
//! Parity with the PyTorch reference is proven on these weights, since the real checkpoint cannot be
//! downloaded on our machines. The recipe is defined here and mirrored in
//! `tests/reference/synth_weights.py`; both must change together (the golden tests
//! `tests::recipe_golden_values` and `tests::recipe_v2_golden_values` pin the first values of a few
//! tensors on both sides). There are two recipes ([`Recipe`]); version 1 is the default everywhere (the
//! committed goldens and the CI checks use it), version 2 exists for the bf16 decoder parity check.
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
//!
//! # Recipe (version 2)
//! Version 1 except three kinds of decoder tensors (docs/PARITY.md, "Synthetic recipe v2", says why and
//! what it measured):
//! - `model.embed_tokens.weight`: `1.0·x` (version 1: `0.5·x`);
//! - residual-branch output projections, i.e. every 2-D tensor whose name starts with `model.layers.` and
//!   ends with `self_attn.o_proj.weight` or `down_proj.weight` (dense layer-0 MLP, routed experts
//!   `mlp.experts.N.down_proj`, `mlp.shared_experts.down_proj`): `x · (√(3 / fan_in) · 0.2)`, the factor
//!   computed first in f64. 0.2 ≈ 1/√(2·12), GPT-2/Megatron's 1/√(2L) residual scaling: the exactly
//!   represented token embedding keeps a large share of the residual stream, so the 12 layers' bf16
//!   roundings are a smaller part of the final hidden state;
//! - `lm_head.weight` `[V, H]`, a "successor head": element `(v, c)` is
//!   `√(3/H) · (x_lm[v, c] + γ · x_emb[σ(v), c])` with γ = 0.3, `x_lm` the uniform of `lm_head.weight`
//!   itself at `(v, c)`, `x_emb` the uniform of `model.embed_tokens.weight` (same seed) at `(σ(v), c)`,
//!   and `σ(v) = (7919·v + 1) mod V` (a bijection: `(v + 1) mod V` when 7919 divides V). Evaluated in f64
//!   in exactly this order (`γ·x_emb`, plus `x_lm`, times `√(3/H)`), then rounded to f32. The final hidden
//!   state still carries the current token `t`'s embedding, so the token `σ⁻¹(t)` gets a decisive logit
//!   (like a trained LM's confident next token) and logits are no longer near-ties.
//!
//! Every other tensor, tables such as `pos_embed` or tensors merely containing `embed_tokens` in their
//! name included, follows version 1.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// Version of the default recipe ([`Recipe::V1`]); recorded in golden metadata and engine identities.
pub const RECIPE_VERSION: u32 = 1;

/// Recipe 2: factor of `model.embed_tokens.weight`.
pub const V2_EMBED_FACTOR: f64 = 1.0;
/// Recipe 2: extra factor of the decoder's residual-branch output projections.
pub const V2_RESIDUAL_FACTOR: f64 = 0.2;
/// Recipe 2: weight γ of the embedding part of the successor head.
pub const V2_SUCCESSOR_GAMMA: f64 = 0.3;
/// Recipe 2: multiplier of the successor permutation σ.
pub const V2_SUCCESSOR_MULTIPLIER: u64 = 7919;

const EMBED_NAME: &str = "model.embed_tokens.weight";
const LM_HEAD_NAME: &str = "lm_head.weight";

/// The synthetic-weights recipes (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Recipe {
    /// Version 1, the default (goldens, CI).
    #[default]
    V1,
    /// Version 2: successor head, residual-scaled decoder, unit embedding (bf16 parity).
    V2,
}

impl Recipe {
    /// The version number (`synthetic:recipe-v{N}`, `recipe_version` of parity metadata).
    pub fn version(self) -> u32 {
        match self {
            Recipe::V1 => 1,
            Recipe::V2 => 2,
        }
    }

    /// The recipe of a version number.
    pub fn from_version(version: u32) -> Option<Recipe> {
        match version {
            1 => Some(Recipe::V1),
            2 => Some(Recipe::V2),
            _ => None,
        }
    }
}

/// The toolkit's one SplitMix64 ([`occ_core::rng`]): the `i`-th output of the stream seeded with a
/// key, and the 64-bit FNV-1a hash of a name.
pub use occ_core::rng::{fnv1a64, splitmix64_at};

/// How the uniform `x ∈ [−1, 1)` becomes a weight value (step 4 of the recipe).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    /// `offset + factor · x`
    Affine { offset: f64, factor: f64 },
    /// Recipe 2's `lm_head`: `factor · (x + gamma · x_emb[σ(row), col])`.
    Successor { factor: f64, gamma: f64 },
}

/// `σ(v)` of recipe 2's successor head for a vocabulary of `vocab` rows: `(7919·v + 1) mod V`, or
/// `(v + 1) mod V` when 7919 and V are not coprime. A bijection of `0..V`.
pub fn successor_sigma(v: u64, vocab: u64) -> u64 {
    let mult = if gcd(V2_SUCCESSOR_MULTIPLIER, vocab) == 1 { V2_SUCCESSOR_MULTIPLIER } else { 1 };
    ((mult as u128 * v as u128 + 1) % vocab as u128) as u64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Whether recipe 2 scales `name` as a residual-branch output projection of the decoder.
fn is_residual_output(name: &str, dims: &[usize]) -> bool {
    dims.len() == 2
        && name.starts_with("model.layers.")
        && (name.ends_with("self_attn.o_proj.weight") || name.ends_with("down_proj.weight"))
}

fn scale_for_recipe(recipe: Recipe, name: &str, dims: &[usize]) -> Scale {
    let v1 = scale_for(name, dims);
    match recipe {
        Recipe::V1 => v1,
        Recipe::V2 if dims.len() == 2 && name == EMBED_NAME => Scale::Affine { offset: 0.0, factor: V2_EMBED_FACTOR },
        Recipe::V2 if is_residual_output(name, dims) => match v1 {
            Scale::Affine { offset, factor } => Scale::Affine { offset, factor: factor * V2_RESIDUAL_FACTOR },
            other => other,
        },
        Recipe::V2 if dims.len() == 2 && name == LM_HEAD_NAME => {
            Scale::Successor { factor: (3.0 / dims[1].max(1) as f64).sqrt(), gamma: V2_SUCCESSOR_GAMMA }
        }
        Recipe::V2 => v1,
    }
}

/// The uniform `x ∈ [−1, 1)` of element `i` of the stream `key` (steps 2–3 of the recipe).
#[inline]
fn uniform(key: u64, i: u64) -> f64 {
    let u = (splitmix64_at(key, i) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    2.0 * u - 1.0
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

/// The synthetic values of tensor `name` with `dims`, as f32, for the given global `seed` (recipe 1).
pub fn synth_values(name: &str, dims: &[usize], seed: u64) -> Vec<f32> {
    synth_values_with(Recipe::V1, name, dims, seed)
}

/// The synthetic values of tensor `name` with `dims` under `recipe`, as f32.
pub fn synth_values_with(recipe: Recipe, name: &str, dims: &[usize], seed: u64) -> Vec<f32> {
    let key = fnv1a64(name.as_bytes()) ^ seed;
    let n: usize = dims.iter().product();
    match scale_for_recipe(recipe, name, dims) {
        Scale::Affine { offset, factor } => (0..n as u64).map(|i| (offset + factor * uniform(key, i)) as f32).collect(),
        Scale::Successor { factor, gamma } => {
            let (vocab, hidden) = (dims[0] as u64, dims[1] as u64);
            let emb_key = fnv1a64(EMBED_NAME.as_bytes()) ^ seed;
            let mut out = Vec::with_capacity(n);
            for v in 0..vocab {
                let row = successor_sigma(v, vocab) * hidden;
                for c in 0..hidden {
                    let (x_lm, x_emb) = (uniform(key, v * hidden + c), uniform(emb_key, row + c));
                    out.push((factor * (x_lm + gamma * x_emb)) as f32);
                }
            }
            out
        }
    }
}

/// The synthetic tensor `name` of `shape`, in `dtype` on `device` (recipe 1).
pub fn synth_tensor(name: &str, shape: &Shape, seed: u64, dtype: DType, device: &Device) -> Result<Tensor> {
    synth_tensor_with(Recipe::V1, name, shape, seed, dtype, device)
}

/// The synthetic tensor `name` of `shape` under `recipe`, in `dtype` on `device`.
pub fn synth_tensor_with(
    recipe: Recipe,
    name: &str,
    shape: &Shape,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let values = synth_values_with(recipe, name, shape.dims(), seed);
    Tensor::from_vec(values, shape.clone(), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
}

/// A deterministic f32 tensor on the CPU with values uniform in [−1, 1) (24-bit steps of the
/// SplitMix64 stream seeded with `seed`): inputs for tests and benchmarks, not part of the recipe.
pub fn uniform_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| (splitmix64_at(seed, i as u64) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("a shape of n elements for n values")
}

/// A [`VarBuilder`] backend that synthesises every tensor on request from its full name and the
/// shape the model asks for, so any configuration (full size or tiny) gets weights without a file.
#[derive(Debug, Clone, Copy)]
pub struct SynthBackend {
    pub seed: u64,
    pub recipe: Recipe,
}

impl SimpleBackend for SynthBackend {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        synth_tensor_with(self.recipe, name, &s, self.seed, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("synthetic weights need a shape: tensor {name} was requested without one")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// A [`VarBuilder`] over synthetic weights (the default recipe, version [`RECIPE_VERSION`]).
pub fn synth_var_builder(seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    synth_var_builder_with(Recipe::V1, seed, dtype, device)
}

/// A [`VarBuilder`] over synthetic weights of `recipe`.
pub fn synth_var_builder_with(recipe: Recipe, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SynthBackend { seed, recipe }), dtype, device.clone())
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

    /// Pinned recipe-2 values; `tests/reference/synth_weights.py --self-test` prints the same numbers.
    #[test]
    fn recipe_v2_golden_values() {
        let golden: [(&str, &[usize], [u32; 3]); 6] = [
            ("lm_head.weight", &[129_280, 1280], [0x3d0f188e, 0x3d683c5b, 0xbd3e2462]),
            ("model.embed_tokens.weight", &[129_280, 1280], [0xbe83cc6e, 0xbeb84d26, 0x3cd9aa59]),
            ("model.layers.3.self_attn.o_proj.weight", &[1280, 1280], [0xbb85c22c, 0xbad1b4cc, 0x3c1a4663]),
            ("model.layers.5.mlp.experts.17.down_proj.weight", &[1280, 896], [0x3bec0a8c, 0xbc1cff76, 0x3b3ceb44]),
            ("model.layers.0.mlp.down_proj.weight", &[1280, 6848], [0xba108540, 0x3b781885, 0xbb2b4b6e]),
            ("model.layers.2.mlp.shared_experts.down_proj.weight", &[1280, 1792], [0x3b314f87, 0xbbdf1a62, 0xbc04b90d]),
        ];
        for (name, dims, want) in golden {
            let first: Vec<u32> = first_values(Recipe::V2, name, dims, 3).iter().map(|v| v.to_bits()).collect();
            assert_eq!(first, want, "{name}");
        }
        // Whole small tensors: FNV-1a 64 of their little-endian f32 bytes.
        let hashed: [(&str, &[usize], u64); 3] = [
            ("lm_head.weight", &[1000, 64], 0x2bd2_1a75_8b73_e2df),
            ("lm_head.weight", &[15_838, 8], 0x68cd_e544_1823_25e7),
            ("model.layers.1.mlp.experts.0.down_proj.weight", &[64, 32], 0x33cc_015a_da61_65a8),
        ];
        for (name, dims, want) in hashed {
            let bytes: Vec<u8> =
                synth_values_with(Recipe::V2, name, dims, 0).iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(fnv1a64(&bytes), want, "{name} {dims:?}");
        }
    }

    /// The first `n` values of a tensor without synthesising all of it: an affine tensor's first row
    /// (its factor depends on the dimensions after the first only), or recipe 2's `lm_head` elements
    /// one by one (σ depends on the vocabulary size).
    fn first_values(recipe: Recipe, name: &str, dims: &[usize], n: usize) -> Vec<f32> {
        match scale_for_recipe(recipe, name, dims) {
            Scale::Affine { .. } => {
                let row: Vec<usize> = std::iter::once(1).chain(dims[1..].iter().copied()).collect();
                synth_values_with(recipe, name, &row, 0)[..n].to_vec()
            }
            Scale::Successor { factor, gamma } => {
                let (key, emb_key) = (fnv1a64(name.as_bytes()), fnv1a64(EMBED_NAME.as_bytes()));
                let (vocab, hidden) = (dims[0] as u64, dims[1] as u64);
                (0..n as u64)
                    .map(|i| {
                        let x_emb = uniform(emb_key, successor_sigma(i / hidden, vocab) * hidden + i % hidden);
                        (factor * (uniform(key, i) + gamma * x_emb)) as f32
                    })
                    .collect()
            }
        }
    }

    #[test]
    fn recipe_v2_follows_its_formula() {
        let vocab = 129_280u64;
        // σ is a bijection of the real vocabulary (7919 is prime and does not divide 129,280).
        let mut seen = vec![false; vocab as usize];
        for v in 0..vocab {
            let s = successor_sigma(v, vocab) as usize;
            assert!(!seen[s], "σ hits {s} twice");
            seen[s] = true;
        }
        assert_eq!(successor_sigma(0, vocab), 1);
        assert_eq!(successor_sigma(1, vocab), 7920);
        assert_eq!(successor_sigma(5, 2 * 7919), 6, "fallback (v + 1) mod V");
        assert_eq!(successor_sigma(2 * 7919 - 1, 2 * 7919), 0);

        // lm_head rows against recipe-1 values of lm_head and embed_tokens (same seed), on a small
        // vocabulary so that whole tensors are cheap.
        let (v_small, h) = (1000usize, 64usize);
        for seed in [0u64, 7] {
            let head = synth_values_with(Recipe::V2, "lm_head.weight", &[v_small, h], seed);
            let x_lm = synth_values("lm_head.weight", &[v_small, h], seed); // √(3/H)·x_lm in f32
            let emb_v1 = synth_values("model.embed_tokens.weight", &[v_small, h], seed); // 0.5·x_emb in f32
            let emb_v2 = synth_values_with(Recipe::V2, "model.embed_tokens.weight", &[v_small, h], seed);
            let f = (3.0 / h as f64).sqrt();
            for v in 0..v_small {
                let s = successor_sigma(v as u64, v_small as u64) as usize;
                for c in 0..h {
                    let x_emb = emb_v2[s * h + c] as f64;
                    assert_eq!(
                        x_emb,
                        2.0 * emb_v1[s * h + c] as f64,
                        "v2 embedding = 2 × v1 (exact: 0.5 is a power of two)"
                    );
                    let want = x_lm[v * h + c] as f64 + f * V2_SUCCESSOR_GAMMA * x_emb;
                    let got = head[v * h + c] as f64;
                    assert!((got - want).abs() <= 1e-6 * f, "lm_head[{v}, {c}]: {got} vs {want}");
                }
            }
        }

        // Residual-branch outputs: 0.2 × recipe 1 (to an f32 rounding); everything else unchanged.
        for name in [
            "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.4.mlp.experts.63.down_proj.weight",
            "model.layers.11.mlp.shared_experts.down_proj.weight",
        ] {
            let (a, b) = (synth_values(name, &[48, 40], 0), synth_values_with(Recipe::V2, name, &[48, 40], 0));
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (*y as f64 - 0.2 * *x as f64).abs() <= 2.0 * f64::from(f32::EPSILON) * x.abs() as f64,
                    "{name}"
                );
            }
        }
        for (name, dims) in [
            ("model.layers.0.self_attn.q_proj.weight", &[48, 40][..]),
            ("model.layers.1.mlp.experts.3.gate_proj.weight", &[48, 40]),
            ("model.layers.1.mlp.gate.weight", &[64, 40]),
            ("model.norm.weight", &[40]),
            ("model.sam_model.pos_embed", &[1, 4, 4, 8]),
            ("model.vision_model.transformer.layers.0.self_attn.out_proj.weight", &[48, 40]),
            ("model.projector.layers.weight", &[48, 40]),
            ("golden.decoder.x.vision_rows.embed_tokens", &[4, 40]),
            ("model.layers.0.mlp.down_proj.bias", &[40]),
        ] {
            assert_eq!(synth_values(name, dims, 3), synth_values_with(Recipe::V2, name, dims, 3), "{name}");
        }
        assert_eq!(Recipe::default(), Recipe::V1);
        assert_eq!(Recipe::from_version(2).map(Recipe::version), Some(2));
        assert_eq!(Recipe::from_version(3), None);
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
