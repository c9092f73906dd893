#!/usr/bin/env python3
"""Pillow baseline for the renderer benchmark (docs/PERFORMANCE.md, "## Renderer").

A plain word-wrapping Pillow renderer: the same ground-truth text, page size, margins, line height
and font size as a page written by `compress-bench render` (its metadata JSON), DejaVu Sans, black on
white. It measures pages/s on whatever CPUs it may use (run it under `taskset -c 0` for one core).

    python3 benches/render_pillow.py --make-text datasets/en.jsonl /tmp/bench-en.txt
    compress-bench render --text-file /tmp/bench-en.txt --mode tiny --ratio 10 --out /tmp/tiny.png
    taskset -c 0 python3 benches/render_pillow.py /tmp/tiny.json --seconds 5 [--save /tmp/tiny-pil.png]

`--make-text` writes the text the criterion bench (crates/render/benches/render.rs) renders: the
passages of the English corpus from Moby-Dick's chapter 1 on, joined by blank lines, ~60 kB.

Requires Pillow (`pip install pillow`).
"""

import argparse
import json
import time

from PIL import Image, ImageDraw, ImageFont

DEFAULT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def wrap(text, font, width):
    """Greedy word wrap: paragraphs at newlines, breaks at spaces, words measured once."""
    space = font.getlength(" ")
    widths = {}
    lines = []
    for para in text.split("\n"):
        line, line_w = [], 0.0
        for word in para.split(" "):
            w = widths.get(word)
            if w is None:
                w = widths[word] = font.getlength(word)
            add = w if not line else space + w
            if line and line_w + add > width:
                lines.append(" ".join(line))
                line, line_w = [word], w
            else:
                line.append(word)
                line_w += add
        lines.append(" ".join(line))
    return lines


def render(meta, font):
    spec = meta["spec"]
    m = spec["margins"]
    width, height = spec["width"], spec["height"]
    pitch = spec["line_height"] * meta["font_px"]
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    content_w = width - m["left"] - m["right"]
    y = m["top"]
    for line in wrap(meta["ground_truth"], font, content_w):
        if y + pitch > height - m["bottom"]:
            break
        draw.text((m["left"], y), line, font=font, fill=(0, 0, 0))
        y += pitch
    return img


def make_text(corpus, out_path):
    with open(corpus, encoding="utf-8") as f:
        passages = [json.loads(line)["text"] for line in f if line.strip()]
    start = next(i for i, p in enumerate(passages) if p.startswith("CHAPTER 1"))
    out = ""
    for p in passages[start:]:
        if out:
            out += "\n\n"
        out += p
        if len(out.encode("utf-8")) > 60_000:
            break
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("meta", nargs="*", help="page metadata JSON written by `compress-bench render`")
    ap.add_argument("--make-text", nargs=2, metavar=("CORPUS_JSONL", "OUT_TXT"), help="write the bench text and exit")
    ap.add_argument("--font", default=DEFAULT_FONT, help="DejaVu Sans .ttf")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per page kind")
    ap.add_argument("--save", help="write the Pillow page of the first JSON here")
    args = ap.parse_args()
    if args.make_text:
        make_text(*args.make_text)
        return
    for i, path in enumerate(args.meta):
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        # The basic layout engine (no raqm shaping): the fastest Pillow path for plain text.
        font = ImageFont.truetype(args.font, meta["font_px"], layout_engine=ImageFont.Layout.BASIC)
        img = render(meta, font)
        if args.save and i == 0:
            img.save(args.save)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            render(meta, font)
            n += 1
        dt = time.perf_counter() - t0
        print(json.dumps({
            "meta": path,
            "page": f"{meta['spec']['width']}x{meta['spec']['height']}",
            "font_px": meta["font_px"],
            "chars": len(meta["ground_truth"]),
            "pages": n,
            "seconds": round(dt, 3),
            "pages_per_s": round(n / dt, 2),
            "ms_per_page": round(1000 * dt / n, 3),
        }))


if __name__ == "__main__":
    main()
