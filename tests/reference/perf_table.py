"""Markdown comparison table of `compress-bench bench --json` against bench_reference.py (docs/PERFORMANCE.md).

Both JSON files carry {"engine", "device", "dtype", "runs": [...], "encoder": [...]} with run keys
mode, batch, pages, new_tokens, prompt_tokens, encode_s_per_page, prefill_s, decode_tok_s, tok_s,
pages_per_s, wall_s, peak_gpu_gb and encoder keys mode, batch, s_per_page; unknown keys are ignored,
missing values print as "—". Speed-ups are ours / reference for rates and reference / ours for times, so
> 1 always means ours is faster.

Prints the table on stdout; with --update FILE replaces the text between the lines `<!-- bench:begin -->`
and `<!-- bench:end -->` of FILE (appending a section "## GPU benchmark vs the PyTorch reference" with those markers when they are
absent).

Usage: python perf_table.py --ours ours.json [--reference ref.json] [--command "..."]... [--update docs/PERFORMANCE.md]
"""
import argparse
import datetime
import json
import math
import os
import re
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SECTION = "## GPU benchmark vs the PyTorch reference"
MODE_ORDER = ["tiny", "small", "base", "large", "gundam"]
DASH = "—"


def load(path):
    """The report object of a JSON file: a plain object, or `compress-bench --json` JSON Lines (envelopes
    {"type", "data"}: the last `bench` message, with `warning` / `error` messages gathered under
    "warnings" / "errors")."""
    if not path:
        return None
    if not os.path.exists(path):
        print(f"perf_table: {path} not found; its columns stay empty", file=sys.stderr)
        return None
    with open(path) as f:
        text = f.read()
    try:
        doc = json.loads(text)
        messages = [doc] if isinstance(doc, dict) and "type" in doc and "data" in doc else None
    except json.JSONDecodeError:
        doc, messages = None, []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                messages.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if messages is not None:
        doc, warnings, errors = None, [], []
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            kind, data = msg.get("type"), msg.get("data")
            if kind == "bench" and isinstance(data, dict):
                doc = dict(data)
            elif kind == "warning":
                warnings.append(data)
            elif kind == "error":
                errors.append(data if isinstance(data, dict) else {"error": data})
        if doc is None and errors:
            doc = {"engine": "compress-bench", "runs": [], "encoder": []}
        if doc is not None:
            doc.setdefault("warnings", []).extend(warnings)
            doc["errors"] = list(doc.get("errors") or []) + errors
    if not isinstance(doc, dict):
        print(f"perf_table: {path} holds no report; its columns stay empty", file=sys.stderr)
        return None
    return doc


def num(v):
    """A finite float or None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def f_rate(v, digits=1):
    v = num(v)
    return DASH if v is None else f"{v:,.{digits}f}"


def f_time(v):
    v = num(v)
    if v is None:
        return DASH
    if v >= 1:
        return f"{v:.2f} s"
    ms = v * 1e3
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def f_gb(v):
    v = num(v)
    return DASH if v is None else f"{v:.2f}"


def ratio(a, b):
    a, b = num(a), num(b)
    if a is None or b is None or b == 0:
        return DASH
    return f"**{a / b:.2f}×**"


def devices_differ(a, b):
    """Whether two device descriptions name different devices (a bare `cuda:0` matches any GPU name)."""
    a, b = str(a or "").strip().lower(), str(b or "").strip().lower()
    if not a or not b or a == b:
        return False
    if "cpu" in (a, b):
        return True
    generic = re.compile(r"(cuda|gpu)(:\d+)?")
    return not (generic.fullmatch(a) or generic.fullmatch(b))


def message(e):
    """One line for an error / warning entry (bench_reference's {"mode", "error"}, compress-bench's {"message"})."""
    if not isinstance(e, dict):
        return str(e)
    text = e.get("error") or e.get("message") or json.dumps(e)
    return f"{e['mode']}: {text}" if e.get("mode") else str(text)


def mode_key(mode):
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), str(mode))


def rows(doc, key):
    if not doc:
        return []
    return [r for r in doc.get(key) or [] if isinstance(r, dict) and "mode" in r]


def batch_of(r):
    b = num(r.get("batch"))
    return int(b) if b is not None else 1


def by_mode_batch(rs):
    out = {}
    for r in rs:
        out.setdefault((r["mode"], batch_of(r)), r)
    return out


def describe(doc, name):
    if not doc:
        return f"{name}: no result"
    bits = [str(doc.get("device", "?")), str(doc.get("dtype", "?"))]
    for k in ("torch", "transformers", "attn", "weights", "version", "git"):
        if doc.get(k) not in (None, ""):
            bits.append(f"{k} {doc[k]}")
    return f"{name} (`{doc.get('engine', '?')}`): " + ", ".join(bits)


def build(ours, ref, commands, date):
    out = []
    r_runs, o_runs = by_mode_batch(rows(ref, "runs")), by_mode_batch(rows(ours, "runs"))
    modes = sorted({m for m, _ in o_runs} | {m for m, _ in r_runs}, key=mode_key)
    settings = (ref or {}).get("settings") or {}
    n_tokens = sorted({int(num(r.get("new_tokens"))) for r in list(o_runs.values()) + list(r_runs.values())
                       if num(r.get("new_tokens")) is not None})
    out.append(f"Run of {date}. " + "; ".join(describe(d, n) for d, n in [(ours, "ours"), (ref, "reference")]) + ".")
    if ours and ref and devices_differ(ours.get("device"), ref.get("device")):
        out.append("")
        out.append(f"**Warning: different devices** ({ours.get('device')} vs {ref.get('device')}): "
                   "not a one-run comparison.")
    if ours and ref and ours.get("dtype") != ref.get("dtype"):
        out.append("")
        out.append(f"**Warning: different dtypes** ({ours.get('dtype')} vs {ref.get('dtype')}).")
    out.append("")
    ngram = settings.get("no_repeat_ngram")
    out.append(f"Forced generation of {', '.join(map(str, n_tokens)) or '?'} tokens per page (EOS suppressed), greedy, "
               f"no_repeat_ngram_size {ngram if ngram else 'off'} on the reference side. Speed-up = ours / reference "
               "for rates, reference / ours for times (> 1: ours faster). Peak GPU memory in GB (1e9 bytes), weights "
               "included: ours as `compress-bench bench` reports it; the reference's `max_memory_allocated` "
               "(tensors) and its driver view (total − free at the end of the mode: allocator pool + CUDA "
               "context).")
    out.append("")

    out.append("### Batch 1 (one page)")
    out.append("")
    out.append("| mode | prompt tokens | decode tok/s ours | reference | speed-up | prefill ours | reference "
               "| speed-up | pages/s ours | reference | speed-up | encode/page ours | reference | speed-up "
               "| peak GB ours | reference allocated | reference driver view |")
    out.append("|" + " --- |" * 17)
    for m in modes:
        o, r = o_runs.get((m, 1), {}), r_runs.get((m, 1), {})
        if not o and not r:
            continue
        pt = o.get("prompt_tokens", r.get("prompt_tokens"))
        if None not in (o.get("prompt_tokens"), r.get("prompt_tokens")) and o["prompt_tokens"] != r["prompt_tokens"]:
            pt = f"{o['prompt_tokens']} (ref {r['prompt_tokens']})"
        out.append("| " + " | ".join([
            str(m), DASH if pt is None else str(pt),
            f_rate(o.get("decode_tok_s")), f_rate(r.get("decode_tok_s")),
            ratio(o.get("decode_tok_s"), r.get("decode_tok_s")),
            f_time(o.get("prefill_s")), f_time(r.get("prefill_s")), ratio(r.get("prefill_s"), o.get("prefill_s")),
            f_rate(o.get("pages_per_s"), 3), f_rate(r.get("pages_per_s"), 3),
            ratio(o.get("pages_per_s"), r.get("pages_per_s")),
            f_time(o.get("encode_s_per_page")), f_time(r.get("encode_s_per_page")),
            ratio(r.get("encode_s_per_page"), o.get("encode_s_per_page")),
            f_gb(o.get("peak_gpu_gb")), f_gb(r.get("peak_gpu_gb")), f_gb(r.get("gpu_used_driver_gb"))]) + " |")
    out.append("")

    batched = sorted(((k, v) for k, v in o_runs.items() if k[1] > 1), key=lambda kv: (mode_key(kv[0][0]), kv[0][1]))
    if batched:
        out.append("### Ours batched (reference: batch 1 only)")
        out.append("")
        out.append("| mode | batch | pages | pages/s | tok/s (all sequences) | decode tok/s per sequence | prefill | "
                   "encode/page | peak GB | pages/s vs reference batch 1 |")
        out.append("|" + " --- |" * 10)
        for (m, b), o in batched:
            r = r_runs.get((m, 1), {})
            out.append("| " + " | ".join([
                str(m), str(b), str(o.get("pages", DASH)), f_rate(o.get("pages_per_s"), 3), f_rate(o.get("tok_s")),
                f_rate(o.get("decode_tok_s")), f_time(o.get("prefill_s")), f_time(o.get("encode_s_per_page")),
                f_gb(o.get("peak_gpu_gb")), ratio(o.get("pages_per_s"), r.get("pages_per_s"))]) + " |")
        out.append("")

    stepped = sorted(((k, v) for k, v in o_runs.items() if num(v.get("decode_weight_gb_s")) is not None),
                     key=lambda kv: (mode_key(kv[0][0]), kv[0][1]))
    if stepped:
        out.append("### Ours: a decode step (weights read, achieved bandwidth, kernels)")
        out.append("")
        out.append("Weights per step: `decode_weight_gb_per_step` (docs/cli-json.md: one embedding row per slot, "
                   "attention and norms, dense MLP, router, shared experts, min(experts, batch · top-k) routed "
                   "experts per MoE layer, lm_head; exact at batch 1, an upper bound above). GB/s = weights per step "
                   "/ time per step. Kernels: nodes of the captured decode graph (— when not captured).")
        out.append("")
        out.append("| mode | batch | ms per step | weights GB per step | weights GB/s | kernels per step |")
        out.append("|" + " --- |" * 6)
        for (m, b), o in stepped:
            step, kernels = num(o.get("decode_step_s")), o.get("decode_kernels_per_step")
            out.append("| " + " | ".join([
                str(m), str(b), DASH if step is None else f"{step * 1e3:.3f}",
                f_rate(o.get("decode_weight_gb_per_step"), 3), f_rate(o.get("decode_weight_gb_s"), 0),
                DASH if kernels is None else str(kernels)]) + " |")
        out.append("")

    o_enc, r_enc = rows(ours, "encoder"), rows(ref, "encoder")
    if o_enc or r_enc:
        out.append("### Vision encoder alone (seconds per page)")
        out.append("")
        out.append("| mode | batch | ours | reference | speed-up |")
        out.append("| --- | --- | --- | --- | --- |")
        o_map, r_map = by_mode_batch(o_enc), by_mode_batch(r_enc)
        lines, used = [], set()
        for m, b in sorted(set(o_map), key=lambda k: (mode_key(k[0]), k[1])):
            r, note = r_map.get((m, b)), ""
            if r is None and b > 1:  # the reference ran a smaller batch (halved on out-of-memory): its largest
                cands = [k for k in r_map if k[0] == m and k[1] > 1 and k not in o_map]
                if cands:
                    k = max(cands, key=lambda k: k[1])
                    r, note = r_map[k], f" (batch {k[1]})"
            if r is not None:
                used.add((r["mode"], batch_of(r)))
            o_s, r_s = o_map[(m, b)].get("s_per_page"), None if r is None else r.get("s_per_page")
            lines.append(((mode_key(m), b), f"| {m} | {b} | {f_time(o_s)} | {f_time(r_s)}{note} | {ratio(r_s, o_s)} |"))
        for (m, b), r in r_map.items():  # reference-only rows
            if (m, b) not in used:
                lines.append(((mode_key(m), b), f"| {m} | {b} | {DASH} | {f_time(r.get('s_per_page'))} | {DASH} |"))
        out.extend(line for _, line in sorted(lines))
        out.append("")

    for key, title in [("errors", "Failures"), ("warnings", "Warnings")]:
        items = [(n, e) for d, n in [(ours, "ours"), (ref, "reference")] for e in ((d or {}).get(key) or [])]
        if items:
            out.append(f"{title}: " + "; ".join(f"{n}: {message(e)}" for n, e in items) + ".")
            out.append("")

    if commands:
        out.append("Commands (repository root, on the GPU machine):")
        out.append("")
        out.append("```sh")
        out.extend(commands)
        out.append("```")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def update(path, body):
    text = open(path).read() if os.path.exists(path) else ""
    block = f"{BEGIN}\n{body}{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"\n{SECTION}\n\n{block}\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", help="compress-bench bench --json output")
    p.add_argument("--reference", help="bench_reference.py output")
    p.add_argument("--command", action="append", default=[], help="a command line to quote (repeatable)")
    p.add_argument("--date", help="date to print (default: today, UTC)")
    p.add_argument("--update", help="markdown file whose bench:begin/bench:end block is replaced")
    args = p.parse_args()
    ours, ref = load(args.ours), load(args.reference)
    if ours is None and ref is None:
        print("perf_table: neither --ours nor --reference could be read", file=sys.stderr)
        return 1
    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    body = build(ours, ref, args.command, date)
    sys.stdout.write(body)
    if args.update:
        update(args.update, body)
        print(f"perf_table: updated {args.update}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
