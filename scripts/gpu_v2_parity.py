"""Full-size transformers outputs for the GPU parity check of DeepSeek-OCR-2 (docs/PARITY.md, "DeepSeek-OCR-2").

Builds transformers' DeepseekOcr2ForConditionalGeneration at the released shapes (SAM-base with the 896 neck,
Qwen2-0.5B-shaped encoder, DeepSeek3B-MoE decoder: the values the conversion script writes, see
FULL_* below), fills every parameter with the synthetic recipe (tests/reference/synth_weights.py, seed 0,
`--recipe`) under its ORIGINAL checkpoint name (the map of scripts/gen_v2_goldens.py), runs it on CUDA in
float32 (TF32 off, eager attention) and writes, per page (square: no tiles; portrait: 2x3 tiles; wide:
3x1 tiles; preprocessing by DeepseekOcr2ImageProcessorPil):

  OUT/<page>.safetensors  rows (float32 [slots, 1280]: get_image_features' pooler_output), ids (int64,
                          the prompt), greedy (int64 [STEPS]: `generate`, greedy, no EOS stop, no
                          blocker), logits (float32 [STEPS, vocab]: the logits that chose each token),
                          logits_bf16_argmax (int64 [STEPS]) and bf16 cosine per position of the model
                          cast to bf16, teacher-forced on the f32 sequence (the yardstick)
  OUT/meta.json           versions, recipe, pages, PIL version, min top-1/top-2 gaps, and timings of
                          transformers in bf16: prefill ms, batch-1 decode tok/s (256 new tokens),
                          vision-tower ms per page, batched pages/s (batch 8 of the portrait page, prefill +
                          STEPS tokens)

The Rust side is the ignored test `ocr2::v2_full_size_gpu_parity` (crates/model/tests/ocr2.rs), reading OUT
from OCC_V2_PARITY_DIR. Commands: scripts/gpu-v2-parity.sh.

Usage: python scripts/gpu_v2_parity.py --out DIR [--transformers-dir DIR] [--recipe 1|2] [--steps 256]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import gen_v2_goldens as g  # noqa: E402
import synth_weights  # noqa: E402

FULL_ENCODER = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                    intermediate_size=4864, rms_norm_eps=1e-6, vocab_size=1, max_position_embeddings=32768,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
FULL_SAM = dict(downsample_channels=[512, 896])
# occ_model::decoder::DecoderConfig::deepseek_ocr() (v1's decoder, kept by DeepSeek-OCR-2).
FULL_TEXT = dict(hidden_size=1280, intermediate_size=6848, moe_intermediate_size=896, num_hidden_layers=12,
                 num_attention_heads=10, num_key_value_heads=10, vocab_size=129280, n_routed_experts=64,
                 num_experts_per_tok=6, n_shared_experts=2, mlp_layer_types=["dense"] + ["sparse"] * 11,
                 routed_scaling_factor=1.0, topk_method="greedy", rms_norm_eps=1e-6, max_position_embeddings=8192,
                 bos_token_id=0, eos_token_id=1, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
PAGES = ["page_square640.png", "page_portrait.png", "page_wide.png"]


def fill(model, recipe):
    """fill_all of gen_v2_goldens with the chosen recipe (values made per tensor, copied to the device)."""
    orig = synth_weights.synth_values
    synth_weights.synth_values = lambda name, shape, seed=0, **kw: orig(name, shape, seed, recipe=recipe)
    try:
        return g.fill_all(model)
    finally:
        synth_weights.synth_values = orig


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transformers-dir", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipe", type=int, default=1)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--vision-only", action="store_true",
                    help="full-size vision tower only (a 1-layer decoder stand-in): rows per page and vision time; "
                         "fits a CPU (e.g. --device cpu)")
    ap.add_argument("--reduced", action="store_true",
                    help="the CPU goldens' reduced shapes (a smoke test of this script, e.g. --device cpu --steps 4)")
    args = ap.parse_args()
    import PIL
    import torch
    from PIL import Image
    from safetensors.numpy import save_file

    transformers = g.import_transformers(args.transformers_dir)
    from transformers.models.deepseek_ocr2 import modeling_deepseek_ocr2 as M
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2Config
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    dev = torch.device(args.device)
    shapes = (g.REDUCED_SAM, g.REDUCED_ENCODER, g.REDUCED_TEXT) if args.reduced else (FULL_SAM, FULL_ENCODER, FULL_TEXT)
    if args.vision_only:  # the rows depend on the tower, projector and separator only
        shapes = (shapes[0], shapes[1], dict(shapes[2], num_hidden_layers=1, mlp_layer_types=["dense"],
                                              vocab_size=1024))
    cfg = DeepseekOcr2Config(vision_config={"sam_config": shapes[0], "encoder_config": shapes[1]},
                             text_config=shapes[2])
    for c in (cfg, cfg.vision_config, cfg.vision_config.encoder_config, cfg.vision_config.sam_config,
              cfg.text_config):
        c._attn_implementation = "eager"
    t0 = time.time()
    model = M.DeepseekOcr2ForConditionalGeneration(cfg).to(torch.float32).eval()
    filled = fill(model, args.recipe)
    model = model.to(dev)
    fill_s = time.time() - t0
    model.generation_config.eos_token_id = None  # no EOS stop (a None kwarg falls back to this config)
    proc = DeepseekOcr2ImageProcessorPil()
    pages = g.ensure_pages(os.path.join(ROOT, "tests", "golden", "encoder_v2"))
    meta = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "pillow": PIL.__version__, "cuda": torch.version.cuda,
                         "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"},
            "size": "reduced" if args.reduced else "full", "vision_only": args.vision_only,
            "pillow": PIL.__version__, "recipe_version": args.recipe, "seed": g.SEED, "steps": args.steps,
            "tensors_filled": len(filled), "fill_seconds": fill_s, "pages": {}}
    if args.vision_only:
        for page in PAGES:
            image = Image.open(pages[page]).convert("RGB")
            res = proc(images=[image], return_tensors="pt")
            local = res.get("pixel_values_local")
            kw = dict(pixel_values=res["pixel_values"].to(dev, torch.float32),
                      pixel_values_local=None if local is None else local.to(dev, torch.float32),
                      num_local_patches=[int(n) for n in res["num_local_patches"]])
            t = time.time()
            with torch.no_grad():
                rows = model.model.get_image_features(**kw).pooler_output[0]
            seconds = time.time() - t
            save_file({"rows": rows.float().cpu().numpy()}, os.path.join(args.out, page.replace(".png", ".safetensors")))
            meta["pages"][page] = {"size": list(image.size), "tiles": kw["num_local_patches"][0],
                                   "slots": int(rows.shape[0]), "vision_seconds_f32": seconds}
            print(page, json.dumps(meta["pages"][page]), flush=True)
        with open(os.path.join(args.out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        return
    results = {}
    for page in PAGES:  # f32 first, for every page (casting to bf16 and back would round the weights)
        image = Image.open(pages[page]).convert("RGB")
        res = proc(images=[image], return_tensors="pt")
        pv = res["pixel_values"].to(dev, torch.float32)
        local = res.get("pixel_values_local")
        local = local.to(dev, torch.float32) if local is not None else None
        n_local = [int(n) for n in res["num_local_patches"]]
        slots = 256 + 144 * n_local[0] + 1
        ids = [0] + [128815] * slots + g.tokenizer_ids(g.PROMPT_AFTER_IMAGE)
        input_ids = torch.tensor([ids], device=dev)
        kw = dict(pixel_values=pv, pixel_values_local=local, num_local_patches=n_local)
        with torch.no_grad():
            rows = model.model.get_image_features(**kw).pooler_output[0]
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kw,
                                 max_new_tokens=args.steps, do_sample=False, num_beams=1, eos_token_id=None,
                                 pad_token_id=2, output_scores=True, return_dict_in_generate=True)
        greedy = out.sequences[0, len(ids):]
        assert greedy.numel() == args.steps, "generate stopped early"
        logits = torch.stack([s[0].float() for s in out.scores], 0)
        top2 = torch.topk(logits.double(), 2, dim=-1).values
        gaps = (top2[:, 0] - top2[:, 1]).cpu().numpy()
        results[page] = dict(image=image, kw=kw, ids=ids, input_ids=input_ids, rows=rows, greedy=greedy,
                             logits=logits, gaps=gaps, n_local=n_local, slots=slots)
    model.to(torch.bfloat16)
    for page, r in results.items():  # the bf16 yardstick: teacher-forced on the f32 sequence
        full_ids = torch.cat([r["input_ids"], r["greedy"].unsqueeze(0)], 1)
        kw = r["kw"]
        with torch.no_grad():
            lb = model(input_ids=full_ids, pixel_values=kw["pixel_values"].bfloat16(),
                       pixel_values_local=None if kw["pixel_values_local"] is None
                       else kw["pixel_values_local"].bfloat16(),
                       num_local_patches=kw["num_local_patches"]).logits[0, len(r["ids"]) - 1:-1].float()
        logits, greedy, gaps = r["logits"], r["greedy"], r["gaps"]
        cos = torch.nn.functional.cosine_similarity(lb, logits, dim=-1).cpu().numpy()
        bf16_argmax = lb.argmax(-1)
        save_file({"rows": r["rows"].float().cpu().numpy(), "ids": np.array(r["ids"], dtype=np.int64),
                   "greedy": greedy.cpu().numpy().astype(np.int64), "logits": logits.cpu().numpy(),
                   "logits_bf16_argmax": bf16_argmax.cpu().numpy().astype(np.int64),
                   "bf16_cosine": cos.astype(np.float32)},
                  os.path.join(args.out, page.replace(".png", ".safetensors")))
        meta["pages"][page] = {
            "size": list(r["image"].size), "tiles": r["n_local"][0], "slots": r["slots"],
            "prompt_len": len(r["ids"]), "min_gap": float(gaps.min()), "median_gap": float(np.median(gaps)),
            "reference_bf16_vs_f32": {"argmax_agreement": float((bf16_argmax == greedy).float().mean()),
                                      "min_cosine": float(cos.min())}}
        print(page, json.dumps(meta["pages"][page]), flush=True)
    del results
    # Speed of transformers in bf16 (same call as ours: scripts/gpu-v2-parity.sh).
    image = Image.open(pages["page_portrait.png"]).convert("RGB")
    res = proc(images=[image], return_tensors="pt")
    kw = dict(pixel_values=res["pixel_values"].to(dev, torch.bfloat16),
              pixel_values_local=res["pixel_values_local"].to(dev, torch.bfloat16),
              num_local_patches=[int(n) for n in res["num_local_patches"]])
    slots = 256 + 144 * kw["num_local_patches"][0] + 1
    ids = torch.tensor([[0] + [128815] * slots + g.tokenizer_ids(g.PROMPT_AFTER_IMAGE)], device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, reps=3):
        fn()
        sync()
        ts = []
        for _ in range(reps):
            t = time.time()
            fn()
            sync()
            ts.append(time.time() - t)
        return float(np.median(ts))

    with torch.no_grad():
        vision = timed(lambda: model.model.get_image_features(**kw))
        prefill = timed(lambda: model(input_ids=ids, **kw))
        gen = timed(lambda: model.generate(input_ids=ids, **kw, max_new_tokens=args.steps, do_sample=False,
                                           eos_token_id=None, pad_token_id=2), reps=1)
        b = args.batch
        kwb = dict(pixel_values=kw["pixel_values"].repeat(b, 1, 1, 1),
                   pixel_values_local=kw["pixel_values_local"].repeat(b, 1, 1, 1),
                   num_local_patches=kw["num_local_patches"] * b)
        genb = timed(lambda: model.generate(input_ids=ids.repeat(b, 1), **kwb, max_new_tokens=args.steps,
                                            do_sample=False, eos_token_id=None, pad_token_id=2), reps=1)
    meta["transformers_bf16_speed"] = {
        "page": "page_portrait.png", "vision_tower_ms": vision * 1e3, "prefill_ms": prefill * 1e3,
        "decode_tok_per_s_batch1": (args.steps - 1) / max(gen - prefill, 1e-9),
        "generate_seconds_batch1": gen, "batch": b, "pages_per_s_batched": b / genb,
        "new_tokens": args.steps}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta["transformers_bf16_speed"], indent=1))


if __name__ == "__main__":
    main()
