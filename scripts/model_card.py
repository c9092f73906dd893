#!/usr/bin/env python3
"""Writes a shipped reader's model card (Markdown, stdout) from the run's own records.

Called by scripts/ship-reader.sh, which documents the inputs. Everything in the card is read from
files: the reader's config (mini.json) and weights header, the training state and journals, the
training data's provenance (datasets/train/splits.toml) and the held-out sweeps' summary.csv.
Standard library only.
"""
import argparse
import csv
import json
import os
import struct
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parameters(weights):
    with open(weights, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    count, dtypes = 0, set()
    for name, t in header.items():
        if name == "__metadata__" or name.startswith("train."):
            continue
        c = 1
        for d in t["shape"]:
            c *= d
        count += c
        dtypes.add(t["dtype"])
    return count, sorted(dtypes)


def journal_cost(folder):
    """Steps, pages and seconds of one run's journal; logged steps stand for the steps since the last."""
    rows = [json.loads(l) for l in open(os.path.join(folder, "train_log.jsonl")) if l.strip()]
    pages = seconds = 0.0
    prev = rows[0]["step"] - 1 if rows else 0
    for r in rows:
        gap = r["step"] - prev
        pages += r["pages"] * gap
        seconds += r["seconds"] * gap
        prev = r["step"]
    sp = os.path.join(folder, "state.json")
    if not os.path.exists(sp):
        sp = os.path.join(folder, "training-state.json")
    state = json.load(open(sp))
    device = "unknown device"
    dev = os.path.join(folder, "device.txt")
    if os.path.exists(dev):
        device = open(dev).read().strip() or device
    first = rows[0]["step"] - 1 if rows else 0
    return {
        "name": state["config"]["name"],
        "from": first,
        "to": state["step"],
        "pages": pages,
        "seconds": seconds,
        "device": device,
    }


def summary(run):
    out = {}
    with open(os.path.join(run, "summary.csv")) as f:
        for row in csv.DictReader(f):
            if row["metric"] != "char_precision":
                continue
            out[float(row["target_ratio"])] = row
    return out


def num(x):
    v = float(x)
    return "—" if v != v else f"{v:.3f}"


def ci(row):
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    return "—" if lo != lo or hi != hi else f"{lo:.3f}–{hi:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reader", required=True)
    ap.add_argument("--mini-run", required=True)
    ap.add_argument("--tesseract-run", required=True)
    ap.add_argument("--history", default="")
    ap.add_argument("--name", required=True)
    a = ap.parse_args()

    cfg = json.load(open(os.path.join(a.reader, "mini.json")))
    state = json.load(open(os.path.join(a.reader, "training-state.json")))
    tcfg = state["config"]
    n_params, dtypes = parameters(os.path.join(a.reader, "model.safetensors"))
    grid = cfg["canvas"] // 64
    stages = [journal_cost(h) for h in a.history.split() if h]
    stages.append(journal_cost(a.reader))
    mini, tess = summary(a.mini_run), summary(a.tesseract_run)
    splits = tomllib.load(open(os.path.join(ROOT, "datasets", "train", "splits.toml"), "rb"))
    evals = [json.loads(l) for l in open(os.path.join(a.reader, "eval_log.jsonl")) if l.strip()]
    last_step = max((e["step"] for e in evals), default=None)

    p = print
    p(f"# {a.name}: a reader trained by `compress-bench train`")
    p()
    p(f"A DeepEncoder-style optical compressor trained from scratch by this toolkit: a {cfg['canvas']}-px page")
    p(f"is read from **{grid * grid} vision tokens** ({grid} x {grid} cells of 64 x 64 px; mode `custom:{cfg['canvas']}x{cfg['canvas']}`),")
    p(f"{n_params:,} parameters stored in {', '.join(dtypes)}. `--engine mini` reads with it when no `--weights` is")
    p("given. This card is written by `scripts/ship-reader.sh` from the run's records; docs/TRAINING.md tells")
    p("how the reader was reached, including what did not work.")
    p()
    p("## Held-out character precision (test split: datasets/en.jsonl)")
    p()
    p("Character precision = 1 - normalised edit distance; mean and bootstrap 95 % CI over the pages of each")
    p("ratio; the same rendered pages read by Tesseract (which reads pixels and has no vision-token budget).")
    p()
    p("| ratio | pages | reader | 95 % CI | Tesseract | 95 % CI |")
    p("| --- | --- | --- | --- | --- | --- |")
    for r in sorted(mini):
        m, t = mini[r], tess.get(r)
        tcol = f"{num(t['mean'])} | {ci(t)}" if t else "— | —"
        p(f"| {r:g}× | {m['n']} | {num(m['mean'])} | {ci(m)} | {tcol} |")
    p()
    p("## Training")
    p()
    p("| stage | steps | pages | training time | device |")
    p("| --- | --- | --- | --- | --- |")
    for s in stages:
        p(f"| {s['name']} | {s['from']}–{s['to']} | {s['pages']:,.0f} | {s['seconds'] / 60:.1f} min | {s['device']} |")
    p()
    p(f"Config of the last stage (`{tcfg['name']}`), as the checkpoint recorded it:")
    p()
    p("```json")
    p(json.dumps({"model": cfg, "data": tcfg["data"], "optim": tcfg["optim"]}, indent=1))
    p("```")
    p()
    if last_step is not None:
        p(f"Validation at step {last_step} (validation split, greedy):")
        p()
        p("| ratio | character precision | prose image gain (nats/token) | probe image gain |")
        p("| --- | --- | --- | --- |")
        for e in evals:
            if e["step"] != last_step:
                continue
            gain = e["loss_other_image"] - e["loss"]
            probe = e.get("probe_loss_other_image", 0.0) - e.get("probe_loss", 0.0)
            p(f"| {e['ratio']:g}× | {e['char_precision']:.3f} | {gain:.3f} | {probe:.3f} |")
        p()
    p("Curves: `loss.svg`, `precision.svg`; journals: `train_log.jsonl`, `eval_log.jsonl`.")
    p()
    p("## Data and licences")
    p()
    p("Pages are rendered on the fly from the passages below (train split; validation and test splits are")
    p("recorded in datasets/train/splits.toml) plus generated probes (shuffled words, random strings).")
    p()
    for name, src in splits.get("sources", {}).items():
        p(f"- **{name}**: {src.get('what', '')} — {src.get('registry', '')} `{src.get('package', '')}` "
          f"{src.get('version', '')}; licence: {src.get('license', 'see datasets/train/splits.toml')}")
    p()
    p("The weights are the toolkit's own (trained here from random initialisation), under the repository's licence.")


if __name__ == "__main__":
    main()
