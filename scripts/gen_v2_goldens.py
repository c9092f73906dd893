"""CPU goldens of DeepSeek-OCR-2 (preprocessing, token counts, reduced-size encoder stages) from transformers.

Runs transformers' own `deepseek_ocr2` implementation (the installed package, or the source tree given by
--transformers-dir) on CPU in float32 and writes small goldens that the Rust tests of occ-model compare
against (crates/model/tests/ocr2.rs; docs/PARITY.md, "DeepSeek-OCR-2"):

  OUT/inputs/*.png        extra committed pages (made here, deterministically, if absent); the portrait and
                          landscape pages of tests/golden/encoder/inputs are used as they are
  OUT/preprocess.json     per page and backend (`pil`: DeepseekOcr2ImageProcessorPil; `torchvision`:
                          DeepseekOcr2ImageProcessor, when torchvision is importable): the number of local
                          tiles, and sha256 of the global view and of every tile, as uint8 CHW (the processor
                          run with do_rescale/do_normalize off) and as normalised float32 CHW
  OUT/tokens.json         for image sizes covering every tile grid of 0-6 tiles: the processor's
                          `get_number_of_image_patches`, the grid of `get_optimal_tiled_canvas` and the number
                          of `<image>` tokens the processor's `_expand_image_tokens` writes
  OUT/encoder.safetensors per-stage values of a reduced-size vision tower (SAM + Qwen2 encoder with queries +
                          projector + view separator) on the portrait page: global view and 6 tiles
  OUT/greedy.json         the same tower + a reduced DeepSeek-V2 MoE decoder (occ_model's DecoderConfig::tiny):
                          prompt ids ([BOS] + slots x <image> + "\nFree OCR.", the vendored tokenizer) and
                          transformers' `generate` greedy tokens (no EOS stop, no blocker) with each step's
                          top-1 - top-2 logit gap
  OUT/meta.json           versions, reduced config, recipe, seed, command, timings

Weights: every vision-tower parameter is overwritten with the synthetic recipe of
tests/reference/synth_weights.py (version 1, seed 0) under its name in the ORIGINAL checkpoint
(deepseek-ai/DeepSeek-OCR-2 naming, e.g. `model.qwen2_model.model.model.layers.0.self_attn.q_proj.weight`);
the map from transformers' parameter names to the original ones is written out below (`original_name`), from
the renaming rules documented in docs/MODEL.md §14.7. The Rust side builds the same weights by the same
original names (occ_model::synth), so no weight file is exchanged.

Per stage S (flattened row-major, batch included): `S.head` (first 512 values), `S.sample` (every k-th
value, k = max(1, ceil(n / 2048))), `S.stats` (float64: mean, std, abs-max, sum, rms), `S.shape` (int64);
`S.full` for the final rows. Same format as tests/reference/gen_encoder_goldens.py.

Usage:
  python scripts/gen_v2_goldens.py --out tests/golden/encoder_v2 [--transformers-dir DIR]
"""
import argparse
import hashlib
import json
import math
import os
import platform
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import synth_weights  # noqa: E402

SEED = 0
HEAD = 512
SAMPLES = 2048

# The reduced vision tower (keep in sync with occ_model::config_v2::Ocr2VisionConfig::reduced).
REDUCED_SAM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1],
                   output_channels=16, downsample_channels=[24, 48], image_size=1024, patch_size=16,
                   window_size=14, mlp_dim=128, layer_norm_eps=1e-6)
REDUCED_ENCODER = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=96, rms_norm_eps=1e-6, vocab_size=1, max_position_embeddings=8192,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
# The decoder of the greedy golden: occ_model's DecoderConfig::tiny() (v1's DeepSeek-V2 MoE decoder, reduced).
REDUCED_TEXT = dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, vocab_size=129280, n_routed_experts=8,
                    num_experts_per_tok=2, n_shared_experts=1, mlp_layer_types=["dense", "sparse"],
                    routed_scaling_factor=1.0, topk_method="greedy", rms_norm_eps=1e-6,
                    max_position_embeddings=8192, bos_token_id=0, eos_token_id=1,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
GREEDY_STEPS = 32
PROMPT_AFTER_IMAGE = "\nFree OCR."  # Prompt::FreeOcr after the plain template's strip

PAGES_V1 = ["page_portrait.png", "page_landscape.png"]
# Extra pages: (file, width, height): no tiles (upscaled), 2, 3 and 4 tiles.
PAGES_V2 = [("page_square640.png", 640, 640), ("page_tall.png", 700, 1500), ("page_wide.png", 1700, 620),
            ("page_square1000.png", 1000, 1000)]
# Sizes whose grids cover every tile count 0..6 (and both sides of the 768 threshold).
TOKEN_SIZES = [(768, 768), (769, 400), (300, 769), (700, 700), (640, 640), (1600, 800), (800, 1600),
               (1000, 1000), (2304, 768), (768, 2304), (3000, 1000), (4000, 1000), (1000, 4000), (5000, 1000),
               (1000, 5000), (600, 848), (848, 600), (800, 600), (1536, 2304), (2304, 1536), (6000, 1000),
               (1250, 1000), (800, 640), (1240, 1754), (2480, 3508), (4000, 4000), (10, 5000), (7000, 10)]


def import_transformers(tdir):
    if tdir:
        src = os.path.join(tdir, "src")
        sys.path.insert(0, src if os.path.isdir(src) else tdir)
    import transformers

    return transformers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_pages(out):
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from refutil import render_page

    os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
    paths = {p: os.path.join(ROOT, "tests", "golden", "encoder", "inputs", p) for p in PAGES_V1}
    for name, w, h in PAGES_V2:
        path = os.path.join(out, "inputs", name)
        if not os.path.exists(path):
            render_page(w, h, n_words=120 + (w * h) // 4000).save(path)
        paths[name] = path
    return paths


def processors(transformers):
    from transformers.models.deepseek_ocr2 import image_processing_pil_deepseek_ocr2 as pil_mod

    out = {"pil": pil_mod.DeepseekOcr2ImageProcessorPil()}
    try:
        import torchvision  # noqa: F401
        from transformers.models.deepseek_ocr2 import image_processing_deepseek_ocr2 as tv_mod

        out["torchvision"] = tv_mod.DeepseekOcr2ImageProcessor()
    except ImportError as e:
        print(f"torchvision backend skipped: {e}")
    return out


def to_np(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def views_of(proc, image, **kw):
    """(global CHW array, [tile CHW arrays], n_tiles) of one image."""
    res = proc(images=[image], return_tensors=None, **kw)
    glob = to_np(res["pixel_values"][0])
    n = int(res["num_local_patches"][0])
    tiles = [to_np(t) for t in res["pixel_values_local"]] if n else []
    if tiles and tiles[0].ndim == 4:  # grouped (n, 3, s, s) per image
        tiles = [t for group in tiles for t in group]
    return glob, tiles, n


def preprocess_goldens(procs, pages):
    from PIL import Image

    out = {}
    for name, path in pages.items():
        image = Image.open(path).convert("RGB")
        rec = {"size": list(image.size)}
        for backend, proc in procs.items():
            g8, t8, n = views_of(proc, image, do_rescale=False, do_normalize=False)
            gf, tf, n2 = views_of(proc, image)
            assert n == n2
            rec[backend] = {
                "tiles": n,
                "global_u8_shape": list(g8.shape),
                "global_u8": sha(np.ascontiguousarray(g8.astype(np.uint8)).tobytes()),
                "global_f32": sha(np.ascontiguousarray(gf.astype(np.float32)).tobytes()),
                "tiles_u8": [sha(np.ascontiguousarray(t.astype(np.uint8)).tobytes()) for t in t8],
                "tiles_f32": [sha(np.ascontiguousarray(t.astype(np.float32)).tobytes()) for t in tf],
            }
            if backend == "pil":
                rec["pil"]["global_dtype_raw"] = str(g8.dtype)
        if "torchvision" in rec:
            a, b = views_of(procs["pil"], image, do_rescale=False, do_normalize=False)[0], \
                views_of(procs["torchvision"], image, do_rescale=False, do_normalize=False)[0]
            d = np.abs(a.astype(np.int32) - b.astype(np.int32))
            rec["pil_vs_torchvision_global_u8"] = {"differ_share": float((d > 0).mean()), "max": int(d.max())}
        out[name] = rec
    return out


def token_goldens(transformers, procs):
    """Tile counts from running the processor itself on a blank image of each size (`num_local_patches`),
    the `<image>` count its `_expand_image_tokens` writes for them, and `get_number_of_image_patches` of
    both classes (in 5.17 the PIL class inherits GotOcr2's, which ignores `tile_size`: recorded, not used)."""
    from PIL import Image
    from transformers.models.deepseek_ocr2.processing_deepseek_ocr2 import DeepseekOcr2Processor
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    proc = procs["pil"]
    # The processor's own expansion, without a tokenizer: only the attributes _expand_image_tokens reads.
    p = object.__new__(DeepseekOcr2Processor)
    p.image_processor, p.image_token, p.patch_size, p.downsample_ratio = proc, "<image>", 16, 4
    rows = []
    for (w, h) in TOKEN_SIZES:
        res = proc(images=[Image.new("RGB", (w, h), "white")], return_tensors=None)
        n = int(res["num_local_patches"][0])
        cols, rws = (get_optimal_tiled_canvas((h, w), (proc.tile_size, proc.tile_size), proc.min_patches,
                                              proc.max_patches) if max(w, h) > proc.tile_size else (1, 1))
        text = p._expand_image_tokens(["<image>"], [n])[0]
        row = {"width": w, "height": h, "tiles": n, "across": cols, "down": rws,
               "image_tokens": text.count("<image>"),
               "pil_get_number_of_image_patches": proc.get_number_of_image_patches(h, w)}
        if "torchvision" in procs:
            row["torchvision_get_number_of_image_patches"] = procs["torchvision"].get_number_of_image_patches(h, w)
        rows.append(row)
    counts = sorted({r["tiles"] for r in rows})
    return {"rows": rows, "tile_counts_covered": counts}


# ---------------------------------------------------------------------------------------------
# Names: transformers' parameter name -> the original checkpoint's name (docs/MODEL.md §14.7).
RENAMES = [
    (r"^model\.vision_tower\.sam_encoder\.layers\.(\d+)\.layer_norm([12])\.", r"model.sam_model.blocks.\1.norm\2."),
    (r"^model\.vision_tower\.sam_encoder\.layers\.(\d+)\.", r"model.sam_model.blocks.\1."),
    (r"^model\.vision_tower\.sam_encoder\.patch_embed\.projection\.", "model.sam_model.patch_embed.proj."),
    (r"^model\.vision_tower\.sam_encoder\.pos_embed$", "model.sam_model.pos_embed"),
    (r"^model\.vision_tower\.sam_encoder\.neck\.conv1\.", "model.sam_model.neck.0."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.layer_norm1\.", "model.sam_model.neck.1."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.conv2\.", "model.sam_model.neck.2."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.layer_norm2\.", "model.sam_model.neck.3."),
    (r"^model\.vision_tower\.sam_encoder\.proj\.conv1\.", "model.sam_model.net_2."),
    (r"^model\.vision_tower\.sam_encoder\.proj\.conv2\.", "model.sam_model.net_3."),
    (r"^model\.vision_tower\.vision_encoder\.layers\.", "model.qwen2_model.model.model.layers."),
    (r"^model\.vision_tower\.vision_encoder\.norm\.", "model.qwen2_model.model.model.norm."),
    (r"^model\.vision_tower\.query_768_resolution\.", "model.qwen2_model.query_768."),
    (r"^model\.vision_tower\.query_1024_resolution\.", "model.qwen2_model.query_1024."),
    (r"^model\.multi_modal_projector\.", "model.projector.layers."),
    (r"^model\.view_separator$", "model.view_seperator"),
]


DECODER_RENAMES = [
    (r"^model\.language_model\.", "model."),
    (r"^lm_head\.", "lm_head."),
]


def original_name(name):
    for pat, rep in RENAMES + DECODER_RENAMES:
        new, n = re.subn(pat, rep, name)
        if n:
            return new
    return None


def fill_all(model):
    """Every parameter of DeepseekOcr2ForConditionalGeneration from the recipe under its original name;
    the fused expert tensors are stacked from the original per-expert tensors (gate then up)."""
    import torch

    filled = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            m = re.match(r"^model\.language_model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)$", name)
            if m:
                layer, kind = m.groups()
                n_exp = p.shape[0]
                parts = []
                for e in range(n_exp):
                    base = f"model.layers.{layer}.mlp.experts.{e}"
                    if kind == "gate_up_proj":
                        i2, h = p.shape[1], p.shape[2]
                        gate = synth_weights.synth_values(f"{base}.gate_proj.weight", (i2 // 2, h), SEED)
                        up = synth_weights.synth_values(f"{base}.up_proj.weight", (i2 // 2, h), SEED)
                        parts.append(np.concatenate([gate, up], 0))
                        filled += [(f"{base}.gate_proj.weight", [i2 // 2, h]), (f"{base}.up_proj.weight", [i2 // 2, h])]
                    else:
                        parts.append(synth_weights.synth_values(f"{base}.down_proj.weight", tuple(p.shape[1:]), SEED))
                        filled.append((f"{base}.down_proj.weight", list(p.shape[1:])))
                p.copy_(torch.from_numpy(np.stack(parts, 0)))
                continue
            orig = original_name(name)
            if orig is None:
                raise KeyError(f"no original name for transformers parameter {name}")
            p.copy_(torch.from_numpy(synth_weights.synth_values(orig, tuple(p.shape), SEED)))
            filled.append((orig, list(p.shape)))
    return sorted(filled)


class Recorder:
    def __init__(self):
        self.tensors = {}

    def put(self, name, t, full=False):
        import torch

        a = t.detach().to(torch.float32).contiguous().numpy()
        flat = a.reshape(-1).astype(np.float64)
        k = max(1, math.ceil(flat.size / SAMPLES))
        self.tensors[name + ".head"] = a.reshape(-1)[:HEAD].copy()
        self.tensors[name + ".sample"] = a.reshape(-1)[::k].copy()
        rms = math.sqrt(float(np.mean(flat * flat)))
        self.tensors[name + ".stats"] = np.array([flat.mean(), flat.std(), np.abs(flat).max(), flat.sum(), rms],
                                                 dtype=np.float64)
        self.tensors[name + ".shape"] = np.array(a.shape, dtype=np.int64)
        if full:
            self.tensors[name + ".full"] = a.copy()


def encoder_goldens(transformers, proc, page_path):
    import torch
    from PIL import Image
    from transformers.models.deepseek_ocr2 import modeling_deepseek_ocr2 as M
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2Config

    full = build_model(M, DeepseekOcr2Config)
    filled = fill_all(full)
    model = full.model
    vt = model.vision_tower
    rec = Recorder()
    state = {"view": None}

    def hook(stage):
        def fn(_m, _i, out):
            out = out[0] if isinstance(out, tuple) else out
            out = getattr(out, "last_hidden_state", out)
            rec.put(f"{state['view']}.{stage}", out)
        return fn

    sam = vt.sam_encoder
    handles = [sam.patch_embed.register_forward_hook(hook("sam.patch_embed"))]
    handles += [layer.register_forward_hook(hook(f"sam.blocks.{i}")) for i, layer in enumerate(sam.layers)]
    handles += [sam.neck.register_forward_hook(hook("sam.neck")),
                sam.proj.conv1.register_forward_hook(hook("sam.net_2")),
                sam.proj.conv2.register_forward_hook(hook("sam.net_3"))]
    enc = vt.vision_encoder
    handles += [layer.register_forward_hook(hook(f"qwen2.layers.{i}")) for i, layer in enumerate(enc.layers)]
    handles += [enc.norm.register_forward_hook(hook("qwen2.norm")),
                vt.register_forward_hook(hook("queries")),
                model.multi_modal_projector.register_forward_hook(hook("projector"))]

    image = Image.open(page_path).convert("RGB")
    res = proc(images=[image], return_tensors="pt")
    pixel_values = res["pixel_values"].to(torch.float32)
    local = res.get("pixel_values_local")
    n_local = [int(n) for n in res["num_local_patches"]]
    t0 = time.time()
    with torch.no_grad():
        # The two calls of get_image_features, made one at a time so the hooks know the view.
        state["view"] = "global"
        g = model.multi_modal_projector(vt(pixel_values).last_hidden_state)
        state["view"] = "local"
        loc = model.multi_modal_projector(vt(local.to(torch.float32)).last_hidden_state)
        state["view"] = "all"
        rows = model.get_image_features(pixel_values, local, n_local).pooler_output[0]
    seconds = time.time() - t0
    for h in handles:
        h.remove()
    expect = torch.cat([loc.reshape(-1, loc.shape[-1]), g.reshape(-1, g.shape[-1]),
                        model.view_separator.unsqueeze(0)], 0)
    assert torch.equal(rows, expect), "layout of get_image_features changed"
    # Keep the per-view stages and the final rows; drop the duplicate records of the third pass.
    rec.tensors = {k: v for k, v in rec.tensors.items() if not k.startswith("all.")}
    rec.put("rows", rows, full=True)
    info = {"tiles": n_local[0], "seconds": seconds, "rows": list(rows.shape), "tensors_filled": len(filled)}
    return rec.tensors, info, full, (pixel_values, local, n_local)


def build_model(M, DeepseekOcr2Config):
    import torch

    cfg = DeepseekOcr2Config(vision_config={"sam_config": REDUCED_SAM, "encoder_config": REDUCED_ENCODER},
                             text_config=REDUCED_TEXT)
    for c in (cfg, cfg.vision_config, cfg.vision_config.encoder_config, cfg.vision_config.sam_config,
              cfg.text_config):
        c._attn_implementation = "eager"
    torch.manual_seed(0)
    return M.DeepseekOcr2ForConditionalGeneration(cfg).eval().to(torch.float32)


def tokenizer_ids(text):
    import gzip

    from tokenizers import Tokenizer

    path = os.path.join(ROOT, "crates", "core", "assets", "deepseek-ocr", "tokenizer.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        tok = Tokenizer.from_str(f.read())
    return tok.encode(text, add_special_tokens=False).ids


def greedy_golden(model, inputs):
    """transformers' own `generate` (greedy, no EOS stop, no blocker) on the portrait page."""
    import torch

    pixel_values, local, n_local = inputs
    slots = 256 + 144 * n_local[0] + 1
    ids = [0] + [128815] * slots + tokenizer_ids(PROMPT_AFTER_IMAGE)
    input_ids = torch.tensor([ids])
    model.generation_config.eos_token_id = None  # no EOS stop (a None kwarg falls back to this config)
    t0 = time.time()
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             pixel_values=pixel_values, pixel_values_local=local, num_local_patches=n_local,
                             max_new_tokens=GREEDY_STEPS, min_new_tokens=0, do_sample=False, num_beams=1,
                             eos_token_id=None, pad_token_id=2, output_scores=True, return_dict_in_generate=True,
                             no_repeat_ngram_size=None, repetition_penalty=None)
    tokens = out.sequences[0, len(ids):].tolist()
    assert len(tokens) == GREEDY_STEPS, "generate stopped early"
    gaps = []
    for s in out.scores:
        top = torch.topk(s[0].to(torch.float64), 2).values
        gaps.append(float(top[0] - top[1]))
    return {"page": "page_portrait.png", "prompt_ids": ids, "slots": slots, "tokens": tokens, "gaps": gaps,
            "min_gap": min(gaps), "steps": GREEDY_STEPS, "seconds": time.time() - t0}


def save(path, tensors):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transformers-dir", default=None,
                    help="transformers source tree (its src/ is imported); default: the installed package")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "encoder_v2"))
    ap.add_argument("--skip-encoder", action="store_true")
    args = ap.parse_args()
    import PIL
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    transformers = import_transformers(args.transformers_dir)
    os.makedirs(args.out, exist_ok=True)
    pages = ensure_pages(args.out)
    procs = processors(transformers)
    t0 = time.time()
    pre = preprocess_goldens(procs, pages)
    with open(os.path.join(args.out, "preprocess.json"), "w") as f:
        json.dump(pre, f, indent=1, sort_keys=True)
    with open(os.path.join(args.out, "tokens.json"), "w") as f:
        json.dump(token_goldens(transformers, procs), f, indent=1)
    meta = {
        "transformers": transformers.__version__, "transformers_file": transformers.__file__,
        "torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
        "python": platform.python_version(), "recipe_version": 1, "seed": SEED, "dtype": "float32",
        "device": "cpu", "head": HEAD, "samples": SAMPLES, "backends": sorted(procs),
        "reduced": {"sam": REDUCED_SAM, "encoder": REDUCED_ENCODER, "text": REDUCED_TEXT},
        "command": "python scripts/gen_v2_goldens.py --out tests/golden/encoder_v2",
        "preprocess_seconds": time.time() - t0,
    }
    if not args.skip_encoder:
        tensors, info, model, inputs = encoder_goldens(transformers, procs["pil"], pages["page_portrait.png"])
        save(os.path.join(args.out, "encoder.safetensors"), tensors)
        meta["encoder"] = {"image": "page_portrait.png", "backend": "pil", **info}
        greedy = greedy_golden(model, inputs)
        with open(os.path.join(args.out, "greedy.json"), "w") as f:
            json.dump(greedy, f, indent=1)
        meta["greedy"] = {k: greedy[k] for k in ("steps", "min_gap", "seconds")}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({k: v for k, v in meta.items() if k != "encoder"}, indent=1))


if __name__ == "__main__":
    main()
