"""Goldens of the DeepEncoder (preprocessing + SAM + CLIP + projector + token layout) from the reference.

Runs the HF remote code of deepseek-ai/DeepSeek-OCR (loaded from --reference-dir, a folder holding the
`dsocr` package or the five .py files) on CPU in float32, with every parameter overwritten by the
synthetic-weights recipe (synth_weights.py, seed 0), and writes small goldens:

  OUT/inputs/*.png          committed input images (made here, deterministically, if absent)
  OUT/preprocess.json       sha256 of every preprocessed view (uint8 HWC and normalised f32 CHW)
  OUT/resize.json           sha256 of Pillow BICUBIC resizes of a small noise image to many sizes
  OUT/tiny.safetensors      per-stage slices + statistics, Tiny mode (512 global view), full rows
  OUT/tile640.safetensors   per-stage slices + statistics, one Gundam tile (640)
  OUT/meta.json             reference commit, versions, recipe, seed, command

Per stage S of n elements (flattened row-major, batch included): `S.head` (first 512 values),
`S.sample` (every k-th value, k = max(1, ceil(n / 2048))), `S.stats` (float64: mean, std, abs-max,
sum, rms), `S.shape` (int64). `S.full` for the small final outputs.

Usage: python gen_encoder_goldens.py --reference-dir DIR --out tests/golden/encoder
"""
import argparse
import hashlib
import importlib
import json
import math
import os
import platform
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import synth_weights  # noqa: E402

REFERENCE_COMMIT = "4bcfce2"
SEED = 0
HEAD = 512
SAMPLES = 2048


def import_reference(ref_dir):
    """Imports the reference package from ref_dir/dsocr (or from ref_dir itself holding the .py files)."""
    ref_dir = os.path.abspath(ref_dir)
    if os.path.isdir(os.path.join(ref_dir, "dsocr")):
        sys.path.insert(0, ref_dir)
        pkg = "dsocr"
    else:
        parent, name = os.path.split(ref_dir)
        if not os.path.exists(os.path.join(ref_dir, "__init__.py")):
            # A bare folder of .py files: make it a package under a synthetic name.
            mod = types.ModuleType("dsocr_ref")
            mod.__path__ = [ref_dir]
            sys.modules["dsocr_ref"] = mod
            pkg = "dsocr_ref"
        else:
            sys.path.insert(0, parent)
            pkg = name
    enc = importlib.import_module(pkg + ".deepencoder")
    ocr = importlib.import_module(pkg + ".modeling_deepseekocr")
    return enc, ocr


# ---------------------------------------------------------------------------------------------
# Inputs


def make_page(width, height, seed):
    """A deterministic page-like RGB image: white paper, dark 'text' strokes, grey boxes, a colour
    gradient and 1-px lines (exercises antialiasing)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 250, dtype=np.uint8)
    margin = width // 12
    y = height // 14
    line_h = max(6, height // 60)
    while y + line_h < height - height // 8:
        x = margin
        while x < width - margin:
            word = int(rng.integers(line_h, 5 * line_h))
            x_end = min(x + word, width - margin)
            # Strokes: alternating dark columns inside the word box, like glyphs.
            cols = np.arange(x, x_end)
            mask = (cols * 7 + y) % 5 < 3
            img[y:y + line_h, cols[mask]] = rng.integers(0, 60)
            x = x_end + int(rng.integers(line_h // 2, line_h + 1))
        y += int(line_h * 1.8)
    # Colour gradient box.
    gy0, gx0 = height - height // 9, margin
    gh, gw = height // 14, width // 3
    ramp = np.linspace(0, 255, gw, dtype=np.float64)
    img[gy0:gy0 + gh, gx0:gx0 + gw, 0] = ramp.astype(np.uint8)
    img[gy0:gy0 + gh, gx0:gx0 + gw, 1] = (255 - ramp).astype(np.uint8)
    img[gy0:gy0 + gh, gx0:gx0 + gw, 2] = 128
    # Grey box and 1-px lines.
    img[gy0:gy0 + gh, width - margin - gw // 2:width - margin] = 170
    img[height // 20, margin:width - margin] = 0
    img[:, width - margin // 2] = 90
    return img


def ensure_inputs(out):
    from PIL import Image

    inputs = os.path.join(out, "inputs")
    os.makedirs(inputs, exist_ok=True)
    specs = {"page_portrait.png": (600, 848, 1), "page_landscape.png": (800, 600, 2)}
    for name, (w, h, seed) in specs.items():
        path = os.path.join(inputs, name)
        if not os.path.exists(path):
            Image.fromarray(make_page(w, h, seed)).save(path, optimize=True)
    noise = os.path.join(inputs, "noise_37x23.png")
    if not os.path.exists(noise):
        rng = np.random.default_rng(3)
        Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)).save(noise)
    exif = os.path.join(inputs, "exif_orientation6.png")
    if not os.path.exists(exif):
        arr = make_page(96, 64, 4)
        arr[:8, :16] = (255, 0, 0)  # a red mark top-left, to see the rotation
        im = Image.fromarray(arr)
        ex = Image.Exif()
        ex[0x0112] = 6
        im.save(exif, exif=ex.tobytes())
    return inputs


# ---------------------------------------------------------------------------------------------
# Preprocessing, exactly as the reference's `infer` does it


def reference_views(ocr, image, base_size, image_size, crop_mode):
    """(global view, [tiles], (across, down)) as PIL images, following DeepseekOCRForCausalLM.infer."""
    from PIL import ImageOps

    color = tuple(int(x * 255) for x in (0.5, 0.5, 0.5))
    if crop_mode:
        if image.size[0] <= 640 and image.size[1] <= 640:
            crops, ratio = [], (1, 1)
        else:
            crops, ratio = ocr.dynamic_preprocess(image)
        global_view = ImageOps.pad(image, (base_size, base_size), color=color)
        if not (ratio[0] > 1 or ratio[1] > 1):
            crops = []
        return global_view, crops, tuple(ratio)
    if image_size <= 640:
        image = image.resize((image_size, image_size))
    global_view = ImageOps.pad(image, (image_size, image_size), color=color)
    return global_view, [], (1, 1)


MODES = {
    "tiny": (512, 512, False),
    "small": (640, 640, False),
    "base": (1024, 1024, False),
    "large": (1280, 1280, False),
    "gundam": (1024, 640, True),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def view_record(ocr, view):
    transform = ocr.BasicImageTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), normalize=True)
    u8 = np.asarray(view.convert("RGB"), dtype=np.uint8)
    t = transform(view).numpy().astype(np.float32)
    return {"width": view.size[0], "height": view.size[1], "u8_sha256": sha(u8.tobytes()),
            "f32_sha256": sha(t.tobytes())}


def preprocess_goldens(ocr, inputs, out):
    from PIL import Image

    cases = []
    for name in ["page_portrait.png", "page_landscape.png", "exif_orientation6.png"]:
        image = ocr.load_image(os.path.join(inputs, name)).convert("RGB")
        modes = MODES.items() if name != "exif_orientation6.png" else [("tiny", MODES["tiny"]), ("base", MODES["base"])]
        for mode, (base, size, crop) in modes:
            g, tiles, ratio = reference_views(ocr, image, base, size, crop)
            cases.append({
                "image": name, "mode": mode, "original_size": list(image.size), "grid": list(ratio),
                "global": view_record(ocr, g), "tiles": [view_record(ocr, t) for t in tiles],
            })
    with open(os.path.join(out, "preprocess.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)

    noise = Image.open(os.path.join(inputs, "noise_37x23.png")).convert("RGB")
    sizes = [(1, 1), (5, 9), (37, 100), (100, 37), (13, 23), (37, 7), (512, 512), (640, 1920), (3, 2), (74, 46)]
    resized = []
    for w, h in sizes:
        r = noise.resize((w, h), Image.Resampling.BICUBIC)
        resized.append({"width": w, "height": h, "u8_sha256": sha(np.asarray(r, dtype=np.uint8).tobytes())})
    # The page inputs too, to sizes that are not square (two-pass with both directions).
    page = Image.open(os.path.join(inputs, "page_portrait.png")).convert("RGB")
    for w, h in [(300, 1000), (1201, 431)]:
        r = page.resize((w, h), Image.Resampling.BICUBIC)
        resized.append({"image": "page_portrait.png", "width": w, "height": h,
                        "u8_sha256": sha(np.asarray(r, dtype=np.uint8).tobytes())})
    with open(os.path.join(out, "resize.json"), "w") as f:
        json.dump({"source": "noise_37x23.png", "cases": resized}, f, indent=1)
    return cases


# ---------------------------------------------------------------------------------------------
# Encoder stages


class Recorder:
    def __init__(self):
        self.tensors = {}

    def put(self, name, t, full=False):
        import torch

        a = t.detach().to(torch.float32).contiguous().numpy()
        flat = a.reshape(-1).astype(np.float64)
        n = flat.size
        k = max(1, math.ceil(n / SAMPLES))
        self.tensors[name + ".head"] = a.reshape(-1)[:HEAD].copy()
        self.tensors[name + ".sample"] = a.reshape(-1)[::k].copy()
        rms = math.sqrt(float(np.mean(flat * flat)))
        self.tensors[name + ".stats"] = np.array(
            [flat.mean(), flat.std(), np.abs(flat).max(), flat.sum(), rms], dtype=np.float64)
        self.tensors[name + ".shape"] = np.array(a.shape, dtype=np.int64)
        if full:
            self.tensors[name + ".full"] = a.copy()

    def hook(self, name):
        def fn(_module, _inputs, output):
            self.put(name, output)
        return fn


def build_encoder(enc):
    import torch
    from easydict import EasyDict

    sam = enc.build_sam_vit_b().eval()
    clip = enc.build_clip_l().eval()
    projector = enc.MlpProjector(EasyDict(projector_type="linear", input_dim=2048, n_embed=1280)).eval()
    n = synth_weights.fill_module(sam, SEED, prefix="model.sam_model.")
    n += synth_weights.fill_module(clip, SEED, prefix="model.vision_model.")
    n += synth_weights.fill_module(projector, SEED, prefix="model.projector.")
    # fill_module also overwrites the integer buffer `position_ids` (arange(257)); restore it.
    with torch.no_grad():
        ids = clip.embeddings.position_ids
        ids.copy_(torch.arange(ids.shape[-1], dtype=ids.dtype).expand_as(ids))
    newline = torch.from_numpy(synth_weights.synth_values("model.image_newline", (1280,), SEED))
    separator = torch.from_numpy(synth_weights.synth_values("model.view_seperator", (1280,), SEED))
    return sam, clip, projector, newline, separator, n


def run_stages(enc, sam, clip, projector, x, rec):
    """Runs one batch of views through every stage, recording each; returns projected features."""
    import torch

    handles = [sam.patch_embed.register_forward_hook(rec.hook("sam.patch_embed"))]
    for i, blk in enumerate(sam.blocks):
        handles.append(blk.register_forward_hook(rec.hook(f"sam.blocks.{i}")))
    handles.append(sam.neck.register_forward_hook(rec.hook("sam.neck")))
    handles.append(sam.net_2.register_forward_hook(rec.hook("sam.net_2")))
    handles.append(sam.net_3.register_forward_hook(rec.hook("sam.net_3")))
    handles.append(clip.embeddings.register_forward_hook(rec.hook("clip.embeddings")))
    handles.append(clip.pre_layrnorm.register_forward_hook(rec.hook("clip.pre_layrnorm")))
    for i, layer in enumerate(clip.transformer.layers):
        handles.append(layer.register_forward_hook(rec.hook(f"clip.layers.{i}")))
    try:
        with torch.no_grad():
            grid = x.shape[-1] // 16
            rec.put("sam.pos_embed", enc.get_abs_pos_sam(sam.pos_embed, grid))
            g = sam.blocks[sam_global_index(sam)].attn
            rec.put("sam.rel_pos_h_global", enc.get_rel_pos(grid, grid, g.rel_pos_h))
            rec.put("sam.rel_pos_w_window", enc.get_rel_pos(14, 14, sam.blocks[0].attn.rel_pos_w))
            f_sam = sam(x)
            clip_grid = f_sam.shape[-1]
            table = clip.embeddings.position_embedding(clip.embeddings.position_ids)
            rec.put("clip.pos_embed", enc.get_abs_pos(table, clip_grid * clip_grid + 1))
            f_clip = clip(x, f_sam)
            feats = torch.cat((f_clip[:, 1:], f_sam.flatten(2).permute(0, 2, 1)), dim=-1)
            rec.put("concat", feats)
            proj = projector(feats)
    finally:
        for h in handles:
            h.remove()
    return proj


def sam_global_index(sam):
    for i, blk in enumerate(sam.blocks):
        if blk.window_size == 0:
            return i
    raise RuntimeError("no global block")


def layout_rows(ocr_module, enc_parts, images_crop, images_ori, crop_shape, dtype=None):
    """The reference's own token layout: DeepseekOCRModel.forward up to the masked_scatter, with the
    decoder replaced by a function returning its inputs_embeds."""
    import torch

    model_cls = ocr_module.DeepseekOCRModel
    sam, clip, projector, newline, separator = enc_parts
    # A DeepseekOCRModel shell holding only the vision parts (no decoder is built).
    model = object.__new__(model_cls)
    torch.nn.Module.__init__(model)
    model.sam_model, model.vision_model, model.projector = sam, clip, projector
    model.image_newline = torch.nn.Parameter(newline.clone())
    model.view_seperator = torch.nn.Parameter(separator.clone())
    model.embed_tokens = torch.nn.Embedding(1, 1280).to(device=images_ori.device, dtype=dtype or torch.float32)
    torch.nn.init.zeros_(model.embed_tokens.weight)
    nq = lambda s: math.ceil((s // 16) / 4)  # noqa: E731
    qb = nq(images_ori.shape[-1])
    n = qb * (qb + 1) + 1
    if crop_shape[0] > 1 or crop_shape[1] > 1:
        q = nq(images_crop.shape[-1])
        n += (q * crop_shape[0] + 1) * (q * crop_shape[1])
    input_ids = torch.zeros((1, n + 2), dtype=torch.long, device=images_ori.device)
    mask = torch.zeros((1, n + 2), dtype=torch.bool, device=images_ori.device)
    mask[0, 1:n + 1] = True
    captured = {}
    base_cls = model_cls.__mro__[1]
    saved_forward, saved_cuda = base_cls.forward, torch.Tensor.cuda

    def fake_decoder_forward(self, **kw):
        captured["embeds"] = kw["inputs_embeds"]
        return None

    base_cls.forward = fake_decoder_forward
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        with torch.no_grad():
            model.forward(input_ids=input_ids, images=[(images_crop, images_ori)],
                          images_seq_mask=mask, images_spatial_crop=torch.tensor([crop_shape]))
    finally:
        base_cls.forward, torch.Tensor.cuda = saved_forward, saved_cuda
    return captured["embeds"][0, 1:n + 1]


def save(path, tensors):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", required=True, help="folder holding the dsocr package or the .py files")
    p.add_argument("--out", required=True, help="output folder (tests/golden/encoder)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--skip-encoder", action="store_true", help="only the preprocessing goldens")
    args = p.parse_args()

    import torch
    from PIL import Image
    import PIL

    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    enc, ocr = import_reference(args.reference_dir)
    inputs = ensure_inputs(args.out)
    t0 = time.time()
    preprocess_goldens(ocr, inputs, args.out)
    print(f"preprocess goldens: {time.time() - t0:.1f}s", file=sys.stderr)

    meta = {
        "reference_commit": REFERENCE_COMMIT,
        "torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
        "python": platform.python_version(),
        "recipe_version": synth_weights.RECIPE_VERSION, "seed": SEED,
        "dtype": "float32", "device": "cpu",
        "head": HEAD, "samples": SAMPLES,
        "command": "python tests/reference/gen_encoder_goldens.py --reference-dir DIR --out tests/golden/encoder",
    }
    if not args.skip_encoder:
        t0 = time.time()
        sam, clip, projector, newline, separator, count = build_encoder(enc)
        meta["tensors_filled"] = count
        print(f"weights: {count} tensors, {time.time() - t0:.1f}s", file=sys.stderr)
        transform = ocr.BasicImageTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), normalize=True)
        parts = (sam, clip, projector, newline, separator)

        # Tiny: the portrait page, stretched to 512.
        t0 = time.time()
        page = ocr.load_image(os.path.join(inputs, "page_portrait.png")).convert("RGB")
        g, _, _ = reference_views(ocr, page, 512, 512, False)
        x = transform(g).unsqueeze(0)
        rec = Recorder()
        proj = run_stages(enc, sam, clip, projector, x, rec)
        rec.put("projector", proj)
        rows = layout_rows(ocr, parts, torch.zeros((1, 3, 512, 512)), x, [1, 1])
        rec.put("rows", rows, full=True)
        save(os.path.join(args.out, "tiny.safetensors"), rec.tensors)
        meta["tiny"] = {"image": "page_portrait.png", "mode": "tiny", "view": "global", "seconds": time.time() - t0}
        print(f"tiny: {time.time() - t0:.1f}s", file=sys.stderr)

        # One Gundam tile: tile 0 of the landscape page (3 x 2 grid).
        t0 = time.time()
        page = ocr.load_image(os.path.join(inputs, "page_landscape.png")).convert("RGB")
        _, tiles, ratio = reference_views(ocr, page, 1024, 640, True)
        x = transform(tiles[0]).unsqueeze(0)
        rec = Recorder()
        proj = run_stages(enc, sam, clip, projector, x, rec)
        rec.put("projector", proj, full=True)
        save(os.path.join(args.out, "tile640.safetensors"), rec.tensors)
        meta["tile640"] = {"image": "page_landscape.png", "mode": "gundam", "view": "tile 0",
                           "grid": list(ratio), "seconds": time.time() - t0}
        print(f"tile640: {time.time() - t0:.1f}s", file=sys.stderr)
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
