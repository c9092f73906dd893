"""Goldens of the DeepSeek-OCR decoder, generation and pipeline from the PyTorch reference.

Runs the HF remote code of deepseek-ai/DeepSeek-OCR (from --reference-dir: a folder holding the `dsocr`
package or the five .py files, plus config.json and the tokenizer files) on CPU in float32 with a
REDUCED decoder (3 layers: 1 dense + 2 MoE, 16 routed experts top-6, moe width 256, dense width 1024;
hidden 1280, vocabulary 129280, 10 heads and the routing rule unchanged) and the FULL DeepEncoder, every
parameter from the synthetic-weights recipe (synth_weights.py, seed 0). The Rust preset is
`DecoderConfig::reduced()`.

Cases
  decoder-only (`tiny_free_ocr`, `small_markdown`, `custom`): prompt ids built the reference's way
    (plain template, split on `<image>`, `add_special_tokens=False`, BOS prepended), the image slots
    filled with synthetic rows `synth_values("golden.decoder.<case>.vision_rows.embed_tokens",
    (slots, 1280), seed 0)` (uniform in [-0.5, 0.5)), then the reference decoder
    (`DeepseekV2Model.forward(inputs_embeds=…)` + `lm_head`, exactly what `DeepseekOCRModel.forward`
    calls after its masked_scatter).
  pipeline (`page_portrait`, `page_landscape`, Tiny mode, Free OCR): the encoder goldens' committed
    pages (tests/golden/encoder/inputs), preprocessed as `infer` does (resize to 512, pad, normalise;
    float32, without `infer`'s bf16 cast) and run through `DeepseekOCRForCausalLM.forward(images=…)`.

Per case (safetensors keys `<case>.*`):
  ids (int64)                     prompt ids; image_mask (int64 0/1)
  logits.positions (int64)        prefill positions recorded: 0, 1, L/2, L-2, L-1
  logits.sample (f32 [5, n])      logits[p, ::STRIDE] at those positions
  logits.stats (f64 [5, 4])       max, argmax, mean, std of the full row
  greedy (int64 [64])             greedy tokens, no repetition blocker, KV-cached decode
  greedy.gaps (f32 [64])          top-1 minus top-2 logit at each greedy step (near-tie diagnosis)
  rows.stats (pipeline only)      mean, std, abs-max of the vision rows the encoder produced
  ngram_deepseek (pipeline only)  greedy with the DeepSeek blocker (spec 8.2, implemented here from the
                                  spec) at n=3, window=16, whitelist {128821, 128822}
  ngram_hf (pipeline only)        greedy with transformers' NoRepeatNGramLogitsProcessor(3) over
                                  prompt + generated ids (the HF `infer` blocker, spec 8.3)

Repetition blockers: the decoder-only cases never repeat a bigram in 64 steps, the pipeline cases do
(see meta.json summary), so the blocker runs are recorded on the pipeline cases. `ngram_hf.json` also
holds repetitive sequences and, for several n, the ids transformers' own NoRepeatNGramLogitsProcessor(n)
bans next.

Usage: python gen_decoder_goldens.py --reference-dir DIR --out tests/golden/decoder \
           [--pages tests/golden/encoder/inputs]
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
STEPS = 64
STRIDE = 1021
IMAGE_ID = 128815
DS_NGRAM = dict(n=3, window=16, whitelist=(128821, 128822))
HF_NGRAM = 3
REDUCED = dict(num_hidden_layers=3, n_routed_experts=16, moe_intermediate_size=256, intermediate_size=1024)
DECODER_CASES = [
    # name, prompt text (as occ_core::Prompt::text), slots
    ("tiny_free_ocr", "<image>\nFree OCR. ", 73),
    ("small_markdown", "<image>\n<|grounding|>Convert the document to markdown. ", 111),
    ("custom", "Read this page: <image>\nthen answer.", 21),
]
PIPELINE_CASES = [("page_portrait", "page_portrait.png"), ("page_landscape", "page_landscape.png")]


def import_reference(ref_dir):
    ref_dir = os.path.abspath(ref_dir)
    if os.path.isdir(os.path.join(ref_dir, "dsocr")):
        sys.path.insert(0, ref_dir)
        pkg = "dsocr"
    else:
        mod = types.ModuleType("dsocr_ref")
        mod.__path__ = [ref_dir]
        sys.modules["dsocr_ref"] = mod
        pkg = "dsocr_ref"
    return importlib.import_module(pkg + ".modeling_deepseekocr"), importlib.import_module(pkg + ".modeling_deepseekv2")


def build_model(ocr, ref_dir):
    import torch

    cfg = ocr.DeepseekOCRConfig.from_pretrained(ref_dir)
    for k, v in REDUCED.items():
        setattr(cfg, k, v)
    cfg._attn_implementation = "eager"
    # Skip the random initialisation (every tensor is overwritten next).
    for cls in (torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Conv2d, torch.nn.Embedding):
        cls.reset_parameters = lambda self: None
    model = ocr.DeepseekOCRForCausalLM(cfg).eval()
    n = synth_weights.fill_module(model, SEED)
    with torch.no_grad():  # fill_module overwrote the integer buffer position_ids (arange(257))
        ids = model.model.vision_model.embeddings.position_ids
        ids.copy_(torch.arange(ids.shape[-1], dtype=ids.dtype).expand_as(ids))
    return model, cfg, n


def prompt_ids(tokenizer, text, slots):
    """The reference's `infer` prompt building for one image (plain template)."""
    text = text.strip()  # format_messages: content.strip(), then the whole prompt .strip()
    splits = text.split("<image>")
    assert len(splits) == 2, text
    ids, mask = [0], [False]
    before = tokenizer.encode(splits[0], add_special_tokens=False)
    ids += before + [IMAGE_ID] * slots
    mask += [False] * len(before) + [True] * slots
    after = tokenizer.encode(splits[1], add_special_tokens=False)
    ids += after
    mask += [False] * len(after)
    return ids, mask


def record_logits(out, name, logits):
    L = logits.shape[0]
    positions = [0, 1, L // 2, L - 2, L - 1]
    out[f"{name}.logits.positions"] = np.array(positions, dtype=np.int64)
    out[f"{name}.logits.sample"] = np.stack([logits[p, ::STRIDE] for p in positions]).astype(np.float32)
    stats = []
    for p in positions:
        row = logits[p].astype(np.float64)
        stats.append([row.max(), float(np.argmax(row)), row.mean(), row.std()])
    out[f"{name}.logits.stats"] = np.array(stats, dtype=np.float64)


def deepseek_banned(generated, n, window, whitelist):
    """Spec 8.2 (the vLLM runner's NoRepeatNGramLogitsProcessor), written from the spec."""
    if len(generated) < n:
        return set()
    prefix = generated[len(generated) - (n - 1):]
    banned = set()
    for i in range(max(0, len(generated) - window), len(generated) - n + 1):
        if generated[i:i + n - 1] == prefix:
            banned.add(generated[i + n - 1])
    return banned - set(whitelist)


def hf_ngram_cases():
    """Banned next ids of transformers' NoRepeatNGramLogitsProcessor on repetitive sequences."""
    import torch
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    rng = np.random.default_rng(7)
    cases = []
    for length, alphabet in [(12, 3), (40, 4), (90, 6), (200, 5), (30, 30)]:
        ids = [int(v) for v in rng.integers(0, alphabet, length)]
        for n in (1, 2, 3, 4, 20):
            proc = NoRepeatNGramLogitsProcessor(n)
            scores = proc(torch.tensor([ids]), torch.zeros(1, alphabet))[0]
            banned = sorted(int(i) for i in torch.nonzero(torch.isinf(scores)).flatten())
            cases.append({"ids": ids, "n": n, "banned": banned})
    return cases


class Decoder:
    """Greedy decoding with the reference decoder, from prompt embeddings."""

    def __init__(self, model, v2):
        self.model, self.v2 = model, v2

    def run(self, embeds):
        import torch

        out = self.v2.DeepseekV2Model.forward(self.model.model, input_ids=None, inputs_embeds=embeds,
                                              use_cache=True, past_key_values=None, return_dict=True)
        return self.model.lm_head(out.last_hidden_state).float(), out.past_key_values

    def step(self, token, past):
        import torch

        e = self.model.model.embed_tokens(torch.tensor([[token]]))
        out = self.v2.DeepseekV2Model.forward(self.model.model, input_ids=None, inputs_embeds=e,
                                              use_cache=True, past_key_values=past, return_dict=True)
        return self.model.lm_head(out.last_hidden_state).float()[0, -1], out.past_key_values

    def greedy(self, first_logits, past, prompt, blocker=None):
        import torch
        from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

        tokens, gaps = [], []
        logits = first_logits.clone()
        hf = NoRepeatNGramLogitsProcessor(HF_NGRAM) if blocker == "hf" else None
        for _ in range(STEPS):
            scores = logits.clone()
            if blocker == "deepseek":
                for t in deepseek_banned(tokens, DS_NGRAM["n"], DS_NGRAM["window"], DS_NGRAM["whitelist"]):
                    scores[t] = -float("inf")
            elif hf is not None:
                scores = hf(torch.tensor([prompt + tokens]), scores[None])[0]
            top = torch.topk(scores, 2).values
            gaps.append(float(top[0] - top[1]))
            nxt = int(torch.argmax(scores))
            tokens.append(nxt)
            logits, past = self.step(nxt, past)
        return tokens, gaps


def run_case(dec, name, embeds, ids, mask, out, blockers=False):
    import torch

    with torch.no_grad():
        logits, past = dec.run(embeds)
        lg = logits[0].numpy()
        record_logits(out, name, lg)
        out[f"{name}.ids"] = np.array(ids, dtype=np.int64)
        out[f"{name}.image_mask"] = np.array(mask, dtype=np.int64)
        first = logits[0, -1]
        if blockers:  # each run continues from its own copy of the prefill cache
            import copy
            ds, _ = dec.greedy(first, copy.deepcopy(past), ids, "deepseek")
            hf, _ = dec.greedy(first, copy.deepcopy(past), ids, "hf")
            out[f"{name}.ngram_deepseek"] = np.array(ds, dtype=np.int64)
            out[f"{name}.ngram_hf"] = np.array(hf, dtype=np.int64)
        greedy, gaps = dec.greedy(first, past, ids)
    out[f"{name}.greedy"] = np.array(greedy, dtype=np.int64)
    out[f"{name}.greedy.gaps"] = np.array(gaps, dtype=np.float32)
    bigrams = list(zip(greedy, greedy[1:]))
    return {"prompt_len": len(ids), "min_gap": min(gaps), "distinct_tokens": len(set(greedy)),
            "repeated_bigrams": len(bigrams) - len(set(bigrams))}


def sha_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", required=True, help="reference folder (dsocr package or .py files, config.json, tokenizer)")
    p.add_argument("--out", required=True, help="output folder (tests/golden/decoder)")
    p.add_argument("--pages", default=os.path.join(HERE, "..", "golden", "encoder", "inputs"),
                   help="folder of the committed input pages")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()

    import torch
    import transformers
    from PIL import Image

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.Tensor.cuda = lambda self, *a, **k: self  # the reference hard-codes .cuda() in masked_scatter
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ngram_hf.json"), "w") as f:
        json.dump({"source": "transformers NoRepeatNGramLogitsProcessor " + transformers.__version__,
                   "cases": hf_ngram_cases()}, f)
    ocr, v2 = import_reference(args.reference_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.reference_dir)
    t0 = time.time()
    model, cfg, count = build_model(ocr, args.reference_dir)
    print(f"weights: {count} tensors, {time.time() - t0:.1f}s", file=sys.stderr)
    dec = Decoder(model, v2)
    out, summary = {}, {}

    for name, text, slots in DECODER_CASES:
        t0 = time.time()
        ids, mask = prompt_ids(tokenizer, text, slots)
        rows = synth_weights.synth_values(f"golden.decoder.{name}.vision_rows.embed_tokens", (slots, 1280), SEED)
        with torch.no_grad():
            embeds = model.model.embed_tokens(torch.tensor([ids]))
            embeds[0][torch.tensor(mask)] = torch.from_numpy(rows)
        summary[name] = run_case(dec, name, embeds, ids, mask, out)
        summary[name]["seconds"] = time.time() - t0
        print(name, summary[name], file=sys.stderr)

    transform = ocr.BasicImageTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), normalize=True)
    for name, file in PIPELINE_CASES:
        t0 = time.time()
        path = os.path.join(args.pages, file)
        image = ocr.load_image(path).convert("RGB")
        view = image.resize((512, 512))  # Tiny: direct resize, then pad (a no-op at this size)
        from PIL import ImageOps
        view = ImageOps.pad(view, (512, 512), color=(127, 127, 127))
        x = transform(view).unsqueeze(0)
        ids, mask = prompt_ids(tokenizer, "<image>\nFree OCR. ", 73)
        captured = {}
        base_forward = v2.DeepseekV2Model.forward

        def spy(self, **kw):
            captured["embeds"] = kw["inputs_embeds"].clone()
            return base_forward(self, **kw)

        v2.DeepseekV2Model.forward = spy
        try:
            with torch.no_grad():
                model.model.forward(input_ids=torch.tensor([ids]), images=[(torch.zeros(1, 3, 512, 512), x)],
                                    images_seq_mask=torch.tensor([mask]), images_spatial_crop=torch.tensor([[1, 1]]),
                                    use_cache=True, return_dict=True)
        finally:
            v2.DeepseekV2Model.forward = base_forward
        embeds = captured["embeds"]
        rows = embeds[0][torch.tensor(mask)].numpy().astype(np.float64)
        out[f"{name}.rows.stats"] = np.array([rows.mean(), rows.std(), np.abs(rows).max()], dtype=np.float64)
        summary[name] = run_case(dec, name, embeds, ids, mask, out, blockers=True)
        summary[name].update({"seconds": time.time() - t0, "image": file, "image_sha256": sha_file(path)})
        print(name, summary[name], file=sys.stderr)

    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sorted(out.items())}, os.path.join(args.out, "decoder.safetensors"))
    import PIL

    meta = {
        "reference_commit": REFERENCE_COMMIT, "torch": torch.__version__, "transformers": transformers.__version__,
        "numpy": np.__version__, "pillow": PIL.__version__, "python": platform.python_version(),
        "recipe_version": synth_weights.RECIPE_VERSION, "seed": SEED, "dtype": "float32", "device": "cpu",
        "reduced_language_config": REDUCED, "steps": STEPS, "stride": STRIDE,
        "ngram_deepseek": {"n": DS_NGRAM["n"], "window": DS_NGRAM["window"], "whitelist": list(DS_NGRAM["whitelist"])},
        "ngram_hf": HF_NGRAM, "tensors_filled": count,
        "decoder_cases": [{"name": n, "prompt": t, "slots": s} for n, t, s in DECODER_CASES],
        "pipeline_cases": [{"name": n, "image": f, "mode": "tiny", "prompt": "<image>\nFree OCR. "} for n, f in PIPELINE_CASES],
        "summary": summary,
        "command": "python tests/reference/gen_decoder_goldens.py --reference-dir DIR --out tests/golden/decoder",
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
