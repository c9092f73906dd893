"""Synthetic weights of compress-bench, recipe version 1 (numpy mirror of crates/model/src/synth.rs).

Both sides must produce bit-identical float32 values for every tensor name and shape; the recipe is
documented in synth.rs. `python3 synth_weights.py --self-test` prints the pinned values that the
Rust unit test `synth::tests::recipe_golden_values` asserts.
"""
import argparse
import sys

import numpy as np

RECIPE_VERSION = 1
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


def synth_values(name: str, shape, seed: int = 0, chunk: int = 1 << 24) -> np.ndarray:
    """float32 array of the given shape, identical to the Rust recipe."""
    key = fnv1a64(name.encode("utf-8")) ^ seed
    offset, factor = scale_for(name, shape)
    n = int(np.prod(shape)) if len(shape) else 1
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk), dtype=np.uint64)
        u = (splitmix64_at(key, idx) >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))
        x = 2.0 * u - 1.0
        out[start:start + len(idx)] = (offset + factor * x).astype(np.float32)
    return out.reshape(shape)


def fill_module(module, seed: int = 0, prefix: str = "") -> int:
    """Overwrite every parameter and persistent buffer of a torch module with synthetic values.

    `prefix` is prepended to the module's own state-dict names to form checkpoint names (e.g. the
    reference's `DeepseekOCRForCausalLM` already uses the checkpoint names, so prefix is "").
    Integer buffers (e.g. CLIP's `embeddings.position_ids`) are left untouched.
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
            values = synth_values(full, tuple(tensor.shape), seed)
            tensor.data.copy_(torch.from_numpy(values).to(tensor.dtype))
            count += 1
    return count


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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--self-test", action="store_true")
    args = p.parse_args()
    if args.self_test:
        _self_test()
    else:
        p.print_help()
        sys.exit(2)
