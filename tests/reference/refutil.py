"""Small helpers shared by the reference benchmark scripts (bench_reference.py).

The reference (HF remote code of deepseek-ai/DeepSeek-OCR) is imported at run time from `--reference-dir`,
a folder holding either a `dsocr/` package with the five .py files or the five .py files themselves, plus
config.json and the tokenizer files (`tokenizer.json` may also be present only as `tokenizer.json.gz`).
Nothing of the reference is copied here.
"""
import gzip
import importlib
import os
import shutil
import sys
import tempfile
import types

IMAGE_ID = 128815
PROMPT = "<image>\nFree OCR. "
# name: (base_size, image_size, crop_mode), the arguments `infer` takes for each documented mode.
MODES = {
    "tiny": (512, 512, False),
    "small": (640, 640, False),
    "base": (1024, 1024, False),
    "large": (1280, 1280, False),
    "gundam": (1024, 640, True),
}


def default_canvas(mode):
    """The page `compress-bench bench` renders for a mode (occ_core::Mode::default_canvas): square at the
    view size, Gundam 2 x 3 tiles of image_size."""
    base, size, crop = MODES[mode]
    return (2 * size, 3 * size) if crop else (size, size)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def import_reference(ref_dir):
    """(deepencoder module, modeling_deepseekocr module), imported from ref_dir/dsocr or ref_dir itself
    (the pattern of gpu_decoder_parity.py / gen_encoder_goldens.py)."""
    ref_dir = os.path.abspath(ref_dir)
    if os.path.isdir(os.path.join(ref_dir, "dsocr")):
        sys.path.insert(0, ref_dir)
        pkg = "dsocr"
    elif os.path.exists(os.path.join(ref_dir, "__init__.py")):
        parent, pkg = os.path.split(ref_dir)
        sys.path.insert(0, parent)
    else:
        mod = types.ModuleType("dsocr_ref")
        mod.__path__ = [ref_dir]
        sys.modules["dsocr_ref"] = mod
        pkg = "dsocr_ref"
    enc = importlib.import_module(pkg + ".deepencoder")
    ocr = importlib.import_module(pkg + ".modeling_deepseekocr")
    return enc, ocr


def tokenizer_dir(ref_dir):
    """A folder AutoTokenizer can load: ref_dir itself, or (when only tokenizer.json.gz is there) a temporary
    folder with the decompressed tokenizer.json beside copies of the other tokenizer files."""
    if os.path.exists(os.path.join(ref_dir, "tokenizer.json")):
        return ref_dir
    gz = os.path.join(ref_dir, "tokenizer.json.gz")
    if not os.path.exists(gz):
        return ref_dir  # let transformers report what is missing
    tmp = tempfile.mkdtemp(prefix="occ-tok-")
    with gzip.open(gz, "rb") as src, open(os.path.join(tmp, "tokenizer.json"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    for name in TOKENIZER_FILES[1:] + ("config.json",):
        if os.path.exists(os.path.join(ref_dir, name)):
            shutil.copy(os.path.join(ref_dir, name), tmp)
    return tmp


def render_page(width=1024, height=1024, n_words=900):
    """A white page with wrapped black text in Pillow's default font (content is irrelevant for speed with
    random weights; only the page size matters, and only for Gundam's tile grid)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    words = ("optical context compression renders long text into images so that a vision encoder carries "
             "it in fewer tokens than the text itself " * 100).split()[:n_words]
    y, line = 10, ""
    for word in words:
        if line and d.textlength(line + " " + word) > width - 20:
            d.text((10, y), line, fill="black")
            y += 12
            line = word
            if y > height - 20:
                break
        else:
            line = (line + " " + word).strip()
    if line and y <= height - 20:
        d.text((10, y), line, fill="black")
    return img


def versions():
    import platform

    import PIL
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "pil": PIL.__version__}


def torch_math_defaults():
    """PyTorch's TF32 / matmul-precision switches as they are (recorded, not changed)."""
    import torch

    out = {}
    for key, get in [("cuda_matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                     ("cudnn_allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
                     ("float32_matmul_precision", torch.get_float32_matmul_precision),
                     ("cuda_matmul_allow_bf16_reduced_precision_reduction",
                      lambda: torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)]:
        try:
            out[key] = get()
        except Exception as e:  # noqa: BLE001 - an API that moved is recorded, not fatal
            out[key] = f"unavailable: {e}"
    return out
