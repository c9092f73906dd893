"""Synthetic weights of compress-bench, recipes 1 and 2 (numpy mirror of crates/model/src/synth.rs).

Both sides must produce bit-identical float32 values for every tensor name and shape; the recipes are
documented in synth.rs. `python3 synth_weights.py --self-test` prints the pinned values that the
Rust unit tests `synth::tests::recipe_golden_values` (recipe 1) and `recipe_v2_golden_values` assert.

Recipe 1 (the default, `RECIPE_VERSION`): every tensor from its own SplitMix64 stream, scaled by kind.
Recipe 2 (`recipe=2`): recipe 1 except three kinds of decoder tensors, so that bf16 parity of the
decoder is measurable (logits not near-ties, hidden state dominated by exactly-represented parts):
  - `model.embed_tokens.weight`: `1.0 * x` (recipe 1: `0.5 * x`);
  - 2-D `model.layers.*` tensors ending in `self_attn.o_proj.weight` or `down_proj.weight` (the
    residual-branch outputs: dense MLP, routed and shared experts): factor `sqrt(3 / fan_in) * 0.2`
    (1/sqrt(2 * 12 layers), GPT-2's residual scaling);
  - `lm_head.weight` `[V, H]`: `sqrt(3 / H) * (x_lm[v, c] + 0.3 * x_emb[sigma(v), c])`, x_emb the
    uniform of `model.embed_tokens.weight` (same seed), sigma(v) = (7919 v + 1) mod V (v + 1 mod V
    when 7919 divides V): a "successor head" that makes the logit of the token following the current
    one (sigma^-1 of it) decisive.
All arithmetic in float64 in the order written, then one rounding to float32.
"""
import argparse
import math
import sys

import numpy as np

RECIPE_VERSION = 1  # the default recipe; recipe 2 is chosen per call (`recipe=2`)
RECIPES = (1, 2)
# Recipe 2 constants (synth.rs: V2_*).
V2_EMBED_FACTOR = 1.0
V2_RESIDUAL_FACTOR = 0.2
V2_SUCCESSOR_GAMMA = 0.3
V2_SUCCESSOR_MULTIPLIER = 7919
EMBED_NAME = "model.embed_tokens.weight"
LM_HEAD_NAME = "lm_head.weight"
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
TABLES = ("embed_tokens", "pos_embed", "position_embedding")


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def splitmix64_at(key: int, idx: np.ndarray) -> np.ndarray:
    """The idx-th outputs (uint64 array) of the SplitMix64 stream seeded with key."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (idx.astype(np.uint64) + np.uint64(1)) * GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        return z ^ (z >> np.uint64(31))


def scale_for(name: str, shape) -> tuple:
    if len(shape) <= 1:
        if name.endswith(".weight"):
            return 1.0, 0.1
        if name.endswith(".bias"):
            return 0.0, 0.1
        return 0.0, 1.0
    if any(t in name for t in TABLES):
        return 0.0, 0.5
    fan_in = int(np.prod(shape[1:]))
    return 0.0, float(np.sqrt(3.0 / max(fan_in, 1)))


def uniforms(name: str, seed: int, start: int, stop: int) -> np.ndarray:
    """x = 2u - 1 in [-1, 1) (float64) of elements start..stop of tensor `name`'s stream."""
    key = fnv1a64(name.encode("utf-8")) ^ seed
    idx = np.arange(start, stop, dtype=np.uint64)
    u = (splitmix64_at(key, idx) >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))
    return 2.0 * u - 1.0


def successor_perm(vocab: int, multiplier: int = V2_SUCCESSOR_MULTIPLIER) -> np.ndarray:
    """sigma(v) for v in 0..vocab (int64): (multiplier * v + 1) mod V, or (v + 1) mod V when
    gcd(multiplier, V) != 1."""
    v = np.arange(vocab, dtype=np.int64)
    mult = multiplier if math.gcd(multiplier, vocab) == 1 else 1
    return (mult * v + 1) % vocab


def is_residual_output(name: str, shape) -> bool:
    """Recipe 2's residual-branch output projections of the decoder."""
    return (len(shape) == 2 and name.startswith("model.layers.")
            and (name.endswith("self_attn.o_proj.weight") or name.endswith("down_proj.weight")))


def v2_rule(name: str, shape, embed_factor=V2_EMBED_FACTOR, residual_factor=V2_RESIDUAL_FACTOR,
            gamma=V2_SUCCESSOR_GAMMA):
    """Recipe 2's deviation from recipe 1 for `name`: ("affine", offset, factor), ("successor", gamma)
    or None (recipe 1's rule). The keyword arguments exist for tuning experiments only."""
    if name == EMBED_NAME and len(shape) == 2:
        return ("affine", 0.0, embed_factor)
    if is_residual_output(name, shape):
        return ("affine", 0.0, scale_for(name, shape)[1] * residual_factor)
    if name == LM_HEAD_NAME and len(shape) == 2:
        return ("successor", gamma)
    return None


def synth_values(name: str, shape, seed: int = 0, recipe: int = 1, chunk: int = 1 << 24, count=None,
                 **v2) -> np.ndarray:
    """float32 array of the given shape, identical to the Rust recipe `recipe` (1 or 2).

    `count`: only the first `count` values (flat, row-major), for spot checks of large tensors.
    `v2` (embed_factor, residual_factor, gamma) overrides recipe 2's constants, for experiments only.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown synthetic recipe {recipe} (known: {RECIPES})")
    shape = tuple(int(d) for d in shape)
    rule = v2_rule(name, shape, **v2) if recipe == 2 else None
    if rule is None:
        offset, factor = scale_for(name, shape)
        rule = ("affine", offset, factor)
    total = int(np.prod(shape)) if len(shape) else 1
    n = total if count is None else min(int(count), total)
    out = np.empty(n, dtype=np.float32)
    if rule[0] == "affine":
        _, offset, factor = rule
        for start in range(0, n, chunk):
            x = uniforms(name, seed, start, min(n, start + chunk))
            out[start:start + len(x)] = (offset + factor * x).astype(np.float32)
        return out.reshape(shape) if count is None else out
    # Successor head: sqrt(3 / H) * (x_lm[v, c] + gamma * x_emb[sigma(v), c]).
    gamma = rule[1]
    vocab, hidden = shape
    factor = float(np.sqrt(3.0 / hidden))
    sigma = successor_perm(vocab)
    emb_key = fnv1a64(EMBED_NAME.encode("utf-8")) ^ seed
    rows = max(1, chunk // hidden)
    cols = np.arange(hidden, dtype=np.uint64)
    for r0 in range(0, vocab, rows):
        if r0 * hidden >= n:
            break
        r1 = min(vocab, r0 + rows)
        x_lm = uniforms(name, seed, r0 * hidden, r1 * hidden)
        idx = (sigma[r0:r1].astype(np.uint64)[:, None] * np.uint64(hidden) + cols[None, :]).reshape(-1)
        u = (splitmix64_at(emb_key, idx) >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))
        x_emb = 2.0 * u - 1.0
        vals = (factor * (x_lm + gamma * x_emb)).astype(np.float32)
        m = min(n, r1 * hidden) - r0 * hidden
        out[r0 * hidden:r0 * hidden + m] = vals[:m]
    return out.reshape(shape) if count is None else out


def fill_module(module, seed: int = 0, prefix: str = "", recipe: int = 1, **v2) -> int:
    """Overwrite every parameter and persistent buffer of a torch module with synthetic values.

    `prefix` is prepended to the module's own state-dict names to form checkpoint names (e.g. the
    reference's `DeepseekOCRForCausalLM` already uses the checkpoint names, so prefix is "").
    Integer buffers (e.g. CLIP's `embeddings.position_ids`) are left untouched. `recipe` is 1 or 2;
    `v2` (chunk, or recipe 2's constants for experiments) is passed on to `synth_values`.
    Returns the number of tensors filled.
    """
    import torch

    count = 0
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not tensor.dtype.is_floating_point:
                # Integer buffers (CLIP's `position_ids`) are indices, not weights.
                continue
            full = prefix + name
            values = synth_values(full, tuple(tensor.shape), seed, recipe, **v2)
            tensor.data.copy_(torch.from_numpy(values).to(tensor.dtype))
            count += 1
    return count


V2_PINNED = [
    ("lm_head.weight", (129280, 1280)),
    ("model.embed_tokens.weight", (129280, 1280)),
    ("model.layers.3.self_attn.o_proj.weight", (1280, 1280)),
    ("model.layers.5.mlp.experts.17.down_proj.weight", (1280, 896)),
    ("model.layers.0.mlp.down_proj.weight", (1280, 6848)),
    ("model.layers.2.mlp.shared_experts.down_proj.weight", (1280, 1792)),
]

# Small whole tensors of recipe 2 (V = 1000: sigma = 7919 v + 1; V = 15838 = 2 * 7919: sigma = v + 1).
V2_HASHED = [
    ("lm_head.weight", (1000, 64)),
    ("lm_head.weight", (15838, 8)),
    ("model.layers.1.mlp.experts.0.down_proj.weight", (64, 32)),
]


def _self_test() -> None:
    print(hex(fnv1a64(b"")), hex(fnv1a64(b"a")), hex(int(splitmix64_at(0, np.array([0]))[0])))
    for name, shape in [
        ("model.norm.weight", (1280,)),
        ("model.projector.layers.bias", (1280,)),
        ("model.layers.0.self_attn.q_proj.weight", (1280, 1280)),
        ("model.sam_model.pos_embed", (1, 64, 64, 768)),
        ("model.image_newline", (1280,)),
    ]:
        v = synth_values(name, shape).reshape(-1)[:3]
        print(name, shape, [float(f) for f in v], [hex(int(b)) for b in v.view(np.uint32)])
    print("recipe 2 (synth::tests::recipe_v2_golden_values):")
    for name, shape in V2_PINNED:
        v = synth_values(name, shape, recipe=2, count=3)
        print(name, shape, [float(f) for f in v], [hex(int(b)) for b in v.view(np.uint32)])
    for name, shape in V2_HASHED:  # whole small tensors: FNV-1a 64 of the little-endian f32 bytes
        v = synth_values(name, shape, recipe=2).astype("<f4")
        print(name, shape, "fnv1a64", hex(fnv1a64(v.tobytes())))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--self-test", action="store_true")
    args = p.parse_args()
    if args.self_test:
        _self_test()
    else:
        p.print_help()
        sys.exit(2)
