"""render / paginate: the ground truth, the ratio and the PNG against `compress-bench render`."""

from __future__ import annotations

import json
import subprocess

import pytest

import compress_bench as cb

MOBY = (
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, "
    "and nothing particular to interest me on shore, I thought I would sail about a little and see the "
    "watery part of the world. It is a way I have of driving off the spleen and regulating the circulation.\n"
    "Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul; "
    "whenever I find myself involuntarily pausing before coffin warehouses, and bringing up the rear of every "
    "funeral I meet; and especially whenever my hypos get such an upper hand of me, that it requires a strong "
    "moral principle to prevent me from deliberately stepping into the street, and methodically knocking "
    "people's hats off—then, I account it high time to get to sea as soon as I can.\n"
) * 4

# (Python keyword arguments, the same as command-line flags)
ZH = "我们的记忆会随着时间逐渐模糊，而最近发生的事情则保持清晰。光学压缩把较早的上下文渲染成图像。" * 6

CASES = [
    ({"mode": "tiny", "ratio": 10.0}, ["--mode", "tiny", "--ratio", "10"]),
    ({"mode": "small", "ratio": 4.5, "align": "justify", "margin": 20},
     ["--mode", "small", "--ratio", "4.5", "--align", "justify", "--margin", "20"]),
    ({"mode": "tiny", "font_px": 11.0, "width": 600, "newline": "marker"},
     ["--mode", "tiny", "--font-size", "11", "--width", "600", "--newline", "marker"]),
]


def cli_render(cli_bin, tmp_path, text, flags, name):
    src = tmp_path / f"{name}.txt"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / f"{name}.png"
    subprocess.run([str(cli_bin), "render", "--quiet", "--text-file", str(src), "--out", str(out), *flags],
                   check=True, capture_output=True)
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    return out.read_bytes(), meta


ZH_CASE = ({"mode": "tiny", "ratio": 5.0, "lang": "zh", "text": ZH}, ["--mode", "tiny", "--ratio", "5", "--lang", "zh"])


@pytest.mark.parametrize("kwargs,flags", CASES + [ZH_CASE], ids=["tiny-10x", "small-justify", "font-px", "zh"])
def test_render_matches_the_cli_byte_for_byte(cli_bin, tmp_path, kwargs, flags):
    kwargs = dict(kwargs)
    text = kwargs.pop("text", MOBY)
    png, meta = cli_render(cli_bin, tmp_path, text, flags, "page")
    page = cb.render(text, **kwargs)
    assert page.png == png, "the PNG differs from compress-bench render's"
    assert page.text == meta["ground_truth"]
    assert page.text_tokens == meta["text_tokens"]
    assert page.input_tokens == meta["input_tokens"]
    assert page.dropped_tokens == meta["dropped_tokens"]
    assert page.font_px == meta["font_px"]
    assert page.ratios == pytest.approx(meta["ratio"])
    assert page.vision_tokens["nominal"] == meta["vision_tokens"]["nominal"]
    assert page.target_tokens == meta.get("target_tokens")
    # f32 fields: the CLI writes them through an f64 JSON value (1.2000000476837158), the page as f32 (1.2).
    spec, want = page.spec, meta["spec"]
    for key in ("line_height", "font_px"):
        assert spec.pop(key) == pytest.approx(want.pop(key), rel=1e-6)
    assert spec == want
    assert (page.width, page.height) == (meta["spec"]["width"], meta["spec"]["height"])


def test_render_round_trip_ratio_and_ground_truth():
    page = cb.render(MOBY, mode="tiny", ratio=10)
    # The ground truth is a prefix of the normalised input, counted with the one tokenizer.
    assert MOBY.startswith(page.text[:200])
    assert page.text_tokens == cb.count_tokens(page.text)
    assert page.target_tokens == round(10 * page.vision_tokens["nominal"])
    assert page.on_target, page.ratio_message
    assert page.ratio == pytest.approx(page.text_tokens / page.vision_tokens["nominal"])
    assert abs(page.ratio - 10) / 10 <= 0.01
    assert page.vision_tokens == cb.vision_tokens("tiny")


def test_pixels_numpy_and_pil_views_agree():
    np = pytest.importorskip("numpy", reason="numpy is installed by .ci/run")
    page = cb.render("Hello, optical world.", mode="tiny", font_px=24)
    arr = page.array()
    assert arr.shape == (page.height, page.width, 3) and arr.dtype == np.uint8
    assert arr.tobytes() == page.pixels
    arr[0, 0, 0] = 7  # writable, a copy
    assert page.pixels[0] == 255
    PIL = pytest.importorskip("PIL.Image", reason="Pillow is installed by .ci/run")
    img = page.pil()
    assert img.size == (page.width, page.height) and img.tobytes() == page.pixels
    import io
    assert PIL.open(io.BytesIO(page.png)).convert("RGB").tobytes() == page.pixels


def test_paginate_splits_a_long_text_into_pages_that_concatenate():
    long = MOBY * 3
    pages = cb.paginate(long, mode="tiny", ratio=8)
    assert len(pages) > 1
    assert "".join(p.text for p in pages) == long
    assert [p.offset for p in pages] == [sum(len(q.text.encode()) for q in pages[:i]) for i in range(len(pages))]
    assert all(p.text_tokens == p.target_tokens for p in pages[:-1])
    assert pages[-1].complete
    assert cb.paginate(long, mode="tiny", ratio=8, max_pages=2)[1].png == pages[1].png


def test_font_px_overflow_and_strict():
    page = cb.render(MOBY * 10, mode="tiny", font_px=30)
    assert page.overflow and not page.complete
    assert page.text + page.overflow != ""
    with pytest.raises(cb.RenderError, match="strict"):
        cb.render("two words", mode="tiny", ratio=10, strict=True)


def test_errors_are_python_exceptions_with_the_rust_message():
    with pytest.raises(ValueError, match="unknown mode|mode \"huge\""):
        cb.render("x", mode="huge")
    with pytest.raises(cb.RenderError, match="empty"):
        cb.render("", mode="tiny", ratio=10)
    with pytest.raises(cb.RenderError, match="ratio"):
        cb.render("text", mode="tiny", ratio=-1)
    with pytest.raises(ValueError, match="either ratio= or font_px="):
        cb.render("text", ratio=10, font_px=12)
    assert issubclass(cb.RenderError, cb.CompressBenchError)


def test_save_writes_the_png(tmp_path):
    page = cb.render("Saved page.", mode="tiny", font_px=20)
    page.save(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes() == page.png
