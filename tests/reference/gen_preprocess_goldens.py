"""Preprocessing goldens for one Pillow version (the pass order of BICUBIC resizes is version specific).

Pillow <= 12 always runs the horizontal resampling pass first; Pillow 13 runs the vertical pass first
when it removes more than twice as many rows as the horizontal pass removes columns. Each pass rounds
to uint8, so the two orders give different pixels for such resizes. The Rust side offers both
(`occ_model::preprocess::ResizeOrder`); this script records the hashes it is tested against for
whichever Pillow is importable:

  OUT/preprocess_pillow<MAJOR>.json   {"pillow": PIL.__version__, "cases": [...], "resize": {...}}

`cases` has the layout of `preprocess.json` (every page x mode, the reference's own `load_image`,
`dynamic_preprocess`, `ImageOps.pad`, `resize` and `BasicImageTransform`, exactly as `infer` calls
them) and `resize` the layout of `resize.json`: its 12 resizes, then 11 around Pillow 13's pass-order
boundary. The views come from the functions of `gen_encoder_goldens.py`, so under Pillow 13 `cases`
and the first 12 resizes reproduce `preprocess.json` and `resize.json` hash for hash. The input images must already exist in OUT/inputs
(`gen_encoder_goldens.py` makes them).

Usage (the Pillow 12 goldens; `PYTHONPATH` puts Pillow 12.0.0 ahead of the environment's Pillow):

  python -m pip install --no-deps --target /tmp/pil12 pillow-12.0.0-*.whl
  PYTHONPATH=/tmp/pil12 python tests/reference/gen_preprocess_goldens.py \
      --reference-dir DIR --out tests/golden/encoder
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_encoder_goldens as gen  # noqa: E402

# Page images and the modes each is preprocessed in (as gen_encoder_goldens.preprocess_goldens).
PAGES = ["page_portrait.png", "page_landscape.png", "exif_orientation6.png"]
EXIF_MODES = ["tiny", "base"]
NOISE_SIZES = [(1, 1), (5, 9), (37, 100), (100, 37), (13, 23), (37, 7), (512, 512), (640, 1920), (3, 2), (74, 46)]
PAGE_SIZES = [(300, 1000), (1201, 431)]
# Around Pillow 13's pass-order boundary, rows removed vs 2 x columns removed: equal (horizontal first),
# one more row (vertical first), upscaled width (vertical first), and both passes on the page.
BOUNDARY_NOISE_SIZES = [(28, 5), (29, 5), (32, 13), (33, 14), (60, 10), (36, 20)]
BOUNDARY_PAGE_SIZES = [(598, 844), (599, 845), (300, 200), (512, 512), (640, 640)]


def preprocess_cases(ocr, inputs):
    cases = []
    for name in PAGES:
        image = ocr.load_image(os.path.join(inputs, name)).convert("RGB")
        modes = gen.MODES if name != "exif_orientation6.png" else EXIF_MODES
        for mode in modes:
            base, size, crop = gen.MODES[mode]
            g, tiles, ratio = gen.reference_views(ocr, image, base, size, crop)
            cases.append({
                "image": name, "mode": mode, "original_size": list(image.size), "grid": list(ratio),
                "global": gen.view_record(ocr, g), "tiles": [gen.view_record(ocr, t) for t in tiles],
            })
    return cases


def resize_cases(inputs):
    from PIL import Image

    def record(img, w, h, **extra):
        r = img.resize((w, h), Image.Resampling.BICUBIC)
        return {**extra, "width": w, "height": h, "u8_sha256": gen.sha(np.asarray(r, dtype=np.uint8).tobytes())}

    noise = Image.open(os.path.join(inputs, "noise_37x23.png")).convert("RGB")
    page = Image.open(os.path.join(inputs, "page_portrait.png")).convert("RGB")
    cases = [record(noise, w, h) for w, h in NOISE_SIZES]
    cases += [record(page, w, h, image="page_portrait.png") for w, h in PAGE_SIZES]
    cases += [record(noise, w, h) for w, h in BOUNDARY_NOISE_SIZES]
    cases += [record(page, w, h, image="page_portrait.png") for w, h in BOUNDARY_PAGE_SIZES]
    return {"source": "noise_37x23.png", "cases": cases}


def dumps_one_case_per_line(doc):
    """JSON with one line per case (small, and a regenerated file diffs case by case)."""

    def dumps(v):
        return json.dumps(v, separators=(",", ":"))

    def case_list(cases):
        return "[\n" + ",\n".join("  " + dumps(c) for c in cases) + "\n ]"

    fields = []
    for key, value in doc.items():
        if key == "cases":
            text = case_list(value)
        elif key == "resize":
            text = "{" + dumps("source") + ":" + dumps(value["source"]) + ',"cases":' + case_list(value["cases"]) + "}"
        else:
            text = dumps(value)
        fields.append(f" {dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", required=True, help="folder holding the dsocr package or the .py files")
    p.add_argument("--out", required=True, help="golden folder holding inputs/ (tests/golden/encoder)")
    args = p.parse_args()

    import PIL

    inputs = os.path.join(args.out, "inputs")
    missing = [n for n in PAGES + ["noise_37x23.png"] if not os.path.exists(os.path.join(inputs, n))]
    if missing:
        sys.exit(f"missing inputs in {inputs}: {missing} (run gen_encoder_goldens.py first)")
    _, ocr = gen.import_reference(args.reference_dir)
    major = int(PIL.__version__.split(".")[0])
    out = {
        "pillow": PIL.__version__,
        "pass_order": "horizontal pass first" if major <= 12 else "vertical first when h_in - h_out > 2 (w_in - w_out)",
        "command": f"PYTHONPATH=<pillow {PIL.__version__}> python tests/reference/gen_preprocess_goldens.py "
                   "--reference-dir DIR --out tests/golden/encoder",
        "cases": preprocess_cases(ocr, inputs),
        "resize": resize_cases(inputs),
    }
    path = os.path.join(args.out, f"preprocess_pillow{major}.json")
    with open(path, "w") as f:
        f.write(dumps_one_case_per_line(out))
    print(f"Pillow {PIL.__version__} ({PIL.__file__}): {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
