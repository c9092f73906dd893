"""Reference DeepEncoder outputs on CUDA, f32 and bf16, every mode, synthetic weights (recipe v1, seed 0).

For each page in tests/golden/encoder/inputs (page_portrait.png, page_landscape.png), each mode (tiny,
small, base, large, gundam) and each dtype (float32, bfloat16), runs the reference preprocessing and
DeepseekOCRModel's vision path + token layout (decoder replaced by a capture), and writes

  OUT/<page>.<mode>.<dtype>.safetensors   rows (slots, 1280) as float32
  OUT/summary.json                        shapes, grids, encoder seconds per (page, mode, dtype), versions

The Rust side (`OCC_GPU_PARITY_DIR=OUT cargo test --release -p occ-model --features cuda --test it
gpu_ -- --ignored --nocapture`) encodes the same pages on CUDA and compares: f32 within 1e-4 relative
(max-abs / RMS), bf16 cosine similarity >= 0.999 per row. See docs/PARITY.md.

Usage: python gpu_encoder_parity.py --reference-dir DIR --out OUT [--inputs tests/golden/encoder/inputs]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_encoder_goldens as g  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--inputs", default=os.path.join(HERE, "..", "golden", "encoder", "inputs"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (after one warm-up)")
    args = p.parse_args()

    import torch

    # Strict f32: cuDNN convolutions default to TF32 on Ampere+ (allow_tf32 = True), which alone puts the
    # reference ~2e-3 relative away from exact f32 (seen on the H100, 2026-11-22). candle is strict f32.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    from safetensors.numpy import save_file

    os.makedirs(args.out, exist_ok=True)
    enc, ocr = g.import_reference(args.reference_dir)
    dev = torch.device(args.device)
    sam, clip, projector, newline, separator, _ = g.build_encoder(enc)
    transform = ocr.BasicImageTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), normalize=True)
    import PIL
    summary = {"torch": torch.__version__, "pil": PIL.__version__, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
               "reference_commit": g.REFERENCE_COMMIT, "recipe_version": g.synth_weights.RECIPE_VERSION,
               "seed": g.SEED, "cases": []}
    for dtype_name, dtype in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        parts = [m.to(device=dev, dtype=dtype) for m in (sam, clip, projector)]
        nl, sep = newline.to(device=dev, dtype=dtype), separator.to(device=dev, dtype=dtype)
        for page in ["page_portrait.png", "page_landscape.png"]:
            image = ocr.load_image(os.path.join(args.inputs, page)).convert("RGB")
            for mode, (base, size, crop) in g.MODES.items():
                gv, tiles, ratio = g.reference_views(ocr, image, base, size, crop)
                ori = transform(gv).unsqueeze(0).to(device=dev, dtype=dtype)
                if tiles:
                    crops = torch.stack([transform(t) for t in tiles]).to(device=dev, dtype=dtype)
                else:
                    crops = torch.zeros((1, 3, base, base), device=dev, dtype=dtype)

                def run():
                    return g.layout_rows(ocr, (*parts, nl, sep), crops, ori, list(ratio), dtype=dtype)

                rows = run()  # warm-up
                times = []
                for _ in range(args.repeats):
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    rows = run()
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                name = f"{os.path.splitext(page)[0]}.{mode}.{dtype_name}.safetensors"
                save_file({"rows": rows.float().cpu().numpy().astype(np.float32)}, os.path.join(args.out, name))
                case = {"page": page, "mode": mode, "dtype": dtype_name, "rows": list(rows.shape),
                        "grid": list(ratio), "tiles": len(tiles), "seconds_min": min(times),
                        "seconds_median": float(np.median(times))}
                summary["cases"].append(case)
                print(json.dumps(case), file=sys.stderr)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
