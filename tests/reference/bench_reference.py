"""Speed of the PyTorch reference of DeepSeek-OCR (docs/PERFORMANCE.md): the "what a user would run instead" line.

Runs the HF remote code of deepseek-ai/DeepSeek-OCR, imported at run time from --reference-dir (a folder
holding `dsocr/` or the five .py files, plus config.json and the tokenizer files), on one device, batch 1,
with RANDOM weights (the model's own torch initialisation after torch.manual_seed(--seed); speed does not
depend on the values), eager attention unless --attn says otherwise, bf16 the way `infer` runs it
(weights built in bf16 as from_pretrained(torch_dtype=bfloat16) does, generate under
torch.autocast(bfloat16) and no_grad). PyTorch's TF32 switches are left at their defaults and recorded.

Per mode (--modes; tiny, small, base, large, gundam):
  inputs     the reference's own preprocessing: `model.infer(tokenizer, "<image>\\nFree OCR. ", page.png,
             base_size, image_size, crop_mode, eval_mode=True)` is called with `model.generate` replaced by a
             capture, so input_ids, images, images_seq_mask and images_spatial_crop are exactly what infer
             builds (plain template, BOS, image slots, bf16 views, Gundam tiles); the page is a rendered
             text page of the canvas `compress-bench bench` renders for the mode (square at the mode's size;
             Gundam 1280x1920, i.e. 2x3 tiles), or --page-size WxH, or --page PNG.
  warm-up    --warmup generate calls (min(16, N) forced tokens each).
  prefill    generate(max_new_tokens=1), synchronised, median of --prefill-repeats (3): encoder + prefill
             + one token.
  forced     generate(max_new_tokens=N, min_new_tokens=N) (N = --new-tokens), greedy, so EOS is
             suppressed; no_repeat_ngram_size only with --no-repeat-ngram. decode_tok_s = (N-1) / (wall -
             prefill); tok_s = N / wall; pages_per_s = 1 / wall.
  encode     the reference's vision path alone for one page: DeepseekOCRModel.forward with the decoder
             (DeepseekV2Model.forward) replaced by a function returning its inputs_embeds, i.e. embedding
             lookup + SAM + CLIP + projector + token layout + masked_scatter; median of --encoder-repeats (5).
  peak       torch.cuda.reset_peak_memory_stats() before the mode, max_memory_allocated() / 1e9 after the
             steps above (weights included): peak_gpu_gb; also max_memory_reserved() (the caching
             allocator's pool) and the driver's view, total - free from cudaMemGetInfo at that point (pool +
             CUDA context; the view `compress-bench bench` reports): gpu_used_driver_gb.
  encoder    sam_model -> vision_model -> cat -> projector called directly on a batch of 1 and of
             --encoder-batch pages' views stacked (Gundam: the pages' tiles and global views, two batches);
             seconds per page (median of 3 after a warm-up). An out-of-memory batch is halved until it fits
             (the row says the batch it ran). --encoder-batch 0 skips this.

Output: --out FILE (JSON, written after every mode), progress on stderr. Keys are the ones of
`compress-bench bench --json` so tests/reference/perf_table.py builds one table from both.

Usage (GPU): python bench_reference.py --reference-dir ref --out ref.json [--modes tiny,small,base]
CPU smoke test (meaningless speeds): python bench_reference.py --reference-dir ref --out /tmp/r.json \
    --device cpu --dtype f32 --tiny-config --modes tiny --new-tokens 4 --encoder-batch 2
"""
import argparse
import contextlib
import copy
import io
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402


def log(*a):
    print("[bench_reference]", *a, file=sys.stderr, flush=True)


class _Captured(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", required=True,
                   help="folder with dsocr/ (or the five .py files), config.json, tokenizer")
    p.add_argument("--out", required=True, help="JSON output file")
    p.add_argument("--modes", default="tiny,small,base", help="comma list of " + ",".join(refutil.MODES))
    p.add_argument("--new-tokens", type=int, default=512, help="forced generated tokens N (EOS suppressed)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up generate calls per mode")
    p.add_argument("--prefill-repeats", type=int, default=3)
    p.add_argument("--encoder-repeats", type=int, default=5)
    p.add_argument("--encoder-batch", type=int, default=32, help="pages per batched encoder call (0: skip)")
    p.add_argument("--no-repeat-ngram", type=int, default=0, help="no_repeat_ngram_size (0: off; infer uses 20)")
    p.add_argument("--page", help="page PNG (default: a rendered text page)")
    p.add_argument("--page-size", default="auto",
                   help="WxH of the rendered page (auto: compress-bench's canvas for each mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--attn", default="eager", choices=["eager", "flash_attention_2"],
                   help="config._attn_implementation (flash_attention_2 needs the flash_attn package)")
    p.add_argument("--tiny-config", action="store_true",
                   help="smoke test only: 2 decoder layers, 8 experts top-2, 2-layer SAM and CLIP")
    p.add_argument("--show-reference-prints", action="store_true",
                   help="let the reference's own prints through (stdout)")
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in refutil.MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}; known: {', '.join(refutil.MODES)}")
    args.modes = modes
    if args.new_tokens < 2:
        p.error("--new-tokens must be >= 2 (decode rate uses N-1 steps)")
    return args


def shrink_for_smoke_test(enc, ocr, cfg):
    """--tiny-config: small decoder and 2-layer SAM / CLIP so that a CPU run takes about a minute."""
    cfg.num_hidden_layers = 2
    cfg.n_routed_experts = 8
    cfg.num_experts_per_tok = 2
    clip_cfg = copy.deepcopy(enc.vit_model_cfg)
    clip_cfg.num_layers = 2
    # DeepseekOCRModel.__init__ looks these names up in modeling_deepseekocr's namespace.
    ocr.build_sam_vit_b = lambda: enc._build_sam(encoder_embed_dim=768, encoder_depth=2, encoder_num_heads=12,
                                                 encoder_global_attn_indexes=[1])
    ocr.build_clip_l = lambda: enc.VitModel(cfg=clip_cfg, freeze_embed=False, freeze_pre_norm=False)


def main():
    args = parse_args()
    import torch
    import transformers

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if not cuda:
        # The reference hard-codes .cuda() (infer's tensors, masked_scatter's mask): make it a no-op on CPU.
        torch.Tensor.cuda = lambda self, *a, **k: self

    def quiet():  # the reference prints to stdout at every prefill; keep it off the log unless asked
        return contextlib.nullcontext() if args.show_reference_prints else contextlib.redirect_stdout(io.StringIO())

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t0, out

    def amp():
        return torch.autocast(dev.type, dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()

    result = {"engine": "reference", "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
              "dtype": args.dtype, **refutil.versions(), "attn": args.attn, "weights": "random (torch init)",
              "seed": args.seed, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "torch_defaults": refutil.torch_math_defaults(), "tiny_config": args.tiny_config,
              "settings": {"new_tokens": args.new_tokens, "warmup": args.warmup,
                           "prefill_repeats": args.prefill_repeats, "encoder_repeats": args.encoder_repeats,
                           "encoder_batch": args.encoder_batch, "no_repeat_ngram": args.no_repeat_ngram,
                           "prompt": refutil.PROMPT, "greedy": True},
              "runs": [], "encoder": [], "errors": []}

    def save():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.out)

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    log(f"device {result['device']}, torch {result['torch']}, transformers {result['transformers']}, "
        f"PIL {result['pil']}, dtype {args.dtype}, attn {args.attn}, defaults {result['torch_defaults']}")

    # ---- model (random weights) and tokenizer
    t0 = time.time()
    enc, ocr = refutil.import_reference(args.reference_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(refutil.tokenizer_dir(args.reference_dir))
    cfg = ocr.DeepseekOCRConfig.from_pretrained(args.reference_dir)
    cfg._attn_implementation = args.attn
    if args.tiny_config:
        shrink_for_smoke_test(enc, ocr, cfg)
    torch.manual_seed(args.seed)
    saved_default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # what from_pretrained(torch_dtype=...) does while it builds the model
    try:
        with torch.device(dev):
            model = ocr.DeepseekOCRForCausalLM(cfg)
    finally:
        torch.set_default_dtype(saved_default)
    model = model.to(device=dev, dtype=dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    result["params"] = n_params
    result["build_s"] = round(time.time() - t0, 2)
    log(f"model built: {n_params / 1e9:.3f} B parameters in {result['build_s']} s")

    # ---- the pages
    work = tempfile.mkdtemp(prefix="occ-bench-ref-")
    result["page"] = os.path.abspath(args.page) if args.page else f"rendered, {args.page_size}"

    def page_for(mode):
        """(path, (width, height)) of the page this mode reads."""
        if args.page:
            from PIL import Image
            with Image.open(args.page) as im:
                return args.page, im.size
        if args.page_size == "auto":
            w, h = refutil.default_canvas(mode)
        else:
            w, h = (int(v) for v in args.page_size.lower().split("x"))
        path = os.path.join(work, f"page_{w}x{h}.png")
        if not os.path.exists(path):
            refutil.render_page(w, h).save(path)
        return path, (w, h)

    def reference_inputs(mode):
        """What infer passes to generate for this mode (generate replaced by a capture)."""
        base, size, crop = refutil.MODES[mode]
        page_path, page_size = page_for(mode)
        cap = {}

        def capture(*a, **kw):
            cap["args"], cap["kwargs"] = a, kw
            raise _Captured

        model.generate = capture
        t = time.perf_counter()
        try:
            with quiet():
                model.infer(tokenizer, prompt=refutil.PROMPT, image_file=page_path,
                            output_path=os.path.join(work, mode), base_size=base, image_size=size,
                            crop_mode=crop, eval_mode=True)
        except _Captured:
            pass
        finally:
            del model.generate
        prep_s = time.perf_counter() - t
        if "kwargs" not in cap:
            raise RuntimeError("infer returned without calling generate")
        kw = cap["kwargs"]
        ids = cap["args"][0] if cap["args"] else kw.pop("input_ids")
        (crops, ori), = kw["images"]
        if dtype != torch.bfloat16:  # infer casts the views to bf16; an f32 run feeds f32
            crops, ori = crops.to(dtype), ori.to(dtype)
        tiles = int(crops.shape[0]) if bool(crops.abs().sum() != 0) else 0
        infer_gen = {k: v for k, v in kw.items() if not isinstance(v, (torch.Tensor, list))}
        return dict(ids=ids.to(dev), images=[(crops.to(dev), ori.to(dev))], mask=kw["images_seq_mask"].to(dev),
                    spatial=kw["images_spatial_crop"], tiles=tiles, prep_s=prep_s, infer_generate=infer_gen,
                    base=base, size=size, crop=crop, page_size=list(page_size))

    def generate(inp, n):
        kw = dict(images=inp["images"], images_seq_mask=inp["mask"], images_spatial_crop=inp["spatial"],
                  max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
        if args.no_repeat_ngram:
            kw["no_repeat_ngram_size"] = args.no_repeat_ngram
        with amp(), torch.no_grad(), quiet():
            return model.generate(inp["ids"], **kw)

    base_forward = ocr.DeepseekV2Model.forward

    def encode_forward_path(inp):
        """DeepseekOCRModel.forward with the decoder replaced: the reference's vision path for one page."""
        ocr.DeepseekV2Model.forward = lambda self, **kw: kw["inputs_embeds"]
        try:
            with amp(), torch.no_grad(), quiet():
                return model.model(input_ids=inp["ids"], images=inp["images"], images_seq_mask=inp["mask"],
                                   images_spatial_crop=inp["spatial"], use_cache=True, return_dict=True)
        finally:
            ocr.DeepseekV2Model.forward = base_forward

    m = model.model

    def features(x):
        # the module calls of DeepseekOCRModel.forward for one batch of views
        f1 = m.sam_model(x)
        f2 = m.vision_model(x, f1)
        return m.projector(torch.cat((f2[:, 1:], f1.flatten(2).permute(0, 2, 1)), dim=-1))

    def encode_modules(inp, pages):
        crops, ori = inp["images"][0]
        batch_ori = ori.expand(pages, *ori.shape[1:]).contiguous()
        batch_crops = crops.repeat(pages, 1, 1, 1) if inp["tiles"] else None

        def run():
            with amp(), torch.no_grad():
                outs = [features(batch_crops)] if batch_crops is not None else []
                outs.append(features(batch_ori))
                return outs

        return run

    def median_time(fn, repeats):
        times = [timed(fn)[0] for _ in range(repeats)]
        return statistics.median(times), times

    n = args.new_tokens
    for mode in args.modes:
        try:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            inp = reference_inputs(mode)
            prompt_len = int(inp["ids"].shape[1])
            log(f"{mode}: page {inp['page_size']}, prompt {prompt_len} tokens, tiles {inp['tiles']}, spatial crop "
                f"{inp['spatial'].tolist()}, preprocessing {inp['prep_s']:.3f} s")
            for i in range(args.warmup):
                dt, _ = timed(lambda: generate(inp, min(16, n)))
                log(f"{mode}: warm-up {i + 1}/{args.warmup} {dt:.3f} s")
            prefill, prefill_all = median_time(lambda: generate(inp, 1), args.prefill_repeats)
            log(f"{mode}: prefill (generate, 1 token) median {prefill:.4f} s of {[round(t, 4) for t in prefill_all]}")
            wall, out = timed(lambda: generate(inp, n))
            n_gen = int(out.shape[1]) - prompt_len
            if n_gen != n:
                log(f"{mode}: WARNING generated {n_gen} tokens, asked for {n}")
            decode = (n_gen - 1) / (wall - prefill) if wall > prefill else None
            log(f"{mode}: {n_gen} forced tokens in {wall:.3f} s -> decode "
                f"{decode if decode is None else round(decode, 2)} tok/s, {n_gen / wall:.2f} tok/s overall")
            encode_forward_path(inp)  # warm-up
            enc_s, enc_all = median_time(lambda: encode_forward_path(inp), args.encoder_repeats)
            log(f"{mode}: vision path (forward, 1 page) median {enc_s:.4f} s")
            peak = torch.cuda.max_memory_allocated(dev) / 1e9 if cuda else None
            reserved = torch.cuda.max_memory_reserved(dev) / 1e9 if cuda else None
            if cuda:
                free, total = torch.cuda.mem_get_info(dev)
                driver = (total - free) / 1e9
            else:
                driver = None
            r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
            result["runs"].append({
                "mode": mode, "batch": 1, "pages": 1, "new_tokens": n_gen, "prompt_tokens": prompt_len,
                "encode_s_per_page": round(enc_s, 5), "prefill_s": round(prefill, 5),
                "decode_tok_s": None if decode is None else round(decode, 3), "tok_s": round(n_gen / wall, 3),
                "pages_per_s": round(1 / wall, 5), "wall_s": round(wall, 4),
                "peak_gpu_gb": r3(peak), "peak_gpu_reserved_gb": r3(reserved), "gpu_used_driver_gb": r3(driver),
                # extra keys (perf_table ignores them)
                "page_size": inp["page_size"], "tiles": inp["tiles"], "spatial_crop": inp["spatial"].tolist()[0],
                "base_size": inp["base"], "image_size": inp["size"], "crop_mode": inp["crop"],
                "preprocess_s": round(inp["prep_s"], 4), "prefill_s_all": [round(t, 5) for t in prefill_all],
                "encode_s_all": [round(t, 5) for t in enc_all], "infer_generate_kwargs": inp["infer_generate"]})
            log(f"{mode}: peak allocated {r3(peak)} GB, reserved {r3(reserved)} GB, driver view {r3(driver)} GB")
            save()

            batches = [1] + ([args.encoder_batch] if args.encoder_batch > 1 else []) if args.encoder_batch else []
            for b in batches:
                requested, ooms = b, []
                while True:
                    try:
                        if cuda:
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats(dev)
                        run = encode_modules(inp, b)
                        timed(run)  # warm-up
                        reps = args.encoder_repeats if b == 1 else 3
                        s, all_s = median_time(run, reps)
                        break
                    except torch.cuda.OutOfMemoryError:
                        run = None
                        ooms.append(b)
                        if b == 1:
                            raise
                        log(f"{mode}: encoder batch {b} out of memory, halving")
                        b //= 2
                peak_b = torch.cuda.max_memory_allocated(dev) / 1e9 if cuda else None
                row = {"mode": mode, "batch": b, "s_per_page": round(s / b, 6), "s_per_call": round(s, 5),
                       "views_per_page": 1 + inp["tiles"], "peak_gpu_gb": None if peak_b is None else round(peak_b, 3),
                       "scope": "sam_model + vision_model + cat + projector"}
                if ooms:
                    row["requested_batch"], row["oom_at"] = requested, ooms
                result["encoder"].append(row)
                log(f"{mode}: encoder modules batch {b}: {s / b * 1e3:.2f} ms/page ({s:.4f} s per call)")
                run = None
                save()
        except Exception as e:  # noqa: BLE001 - one failing mode must not hide the others
            import traceback

            traceback.print_exc()
            result["errors"].append({"mode": mode, "error": f"{type(e).__name__}: {e}"})
            log(f"{mode}: FAILED {type(e).__name__}: {e}")
            save()
        if cuda:
            torch.cuda.empty_cache()
    save()
    log(f"wrote {args.out}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
