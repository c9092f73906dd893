"""compress_bench: optical context compression over the Rust crates of compress-bench (docs/PYTHON.md).

Render text to page images at exact text-token : vision-token ratios (`render`, `paginate`), keep an
agent's conversation in optical memory (`OpticalMemory`), and read pages back with OCR engines
(`Tesseract`, `DeepSeekOcr`, `MiniReader`, `OpenAIEngine`). Every call runs the Rust library; long calls
release the GIL; errors raise subclasses of `CompressBenchError` carrying the full Rust error chain.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union, final

from typing_extensions import disjoint_base

__version__: str
__all__ = [
    "__version__",
    "BudgetChoice",
    "CompressBenchError",
    "Context",
    "DeepSeekOcr",
    "Engine",
    "EngineError",
    "FakePerfect",
    "MiniReader",
    "OcrResult",
    "OpenAIEngine",
    "OpticalMemory",
    "OpticalMemoryError",
    "Page",
    "Recall",
    "RenderError",
    "Schedule",
    "ScheduleError",
    "Segment",
    "Tesseract",
    "TokenCost",
    "count_tokens",
    "paginate",
    "render",
    "vision_tokens",
]

_Mode = str
"""`tiny`, `small`, `base`, `large`, `gundam` or `custom:<base>x<image>[:crop]`."""
_Role = Literal["system", "user", "assistant", "tool"]
_ImageLike = Union["Page", bytes, bytearray, str, os.PathLike, Any]
"""A `Page`, PNG/JPEG bytes, a file path, a numpy uint8 array `(h, w, 3)` / `(h, w)`, or a PIL image."""

class CompressBenchError(Exception):
    """Base class of every error raised by compress_bench; the message is the full Rust error chain."""

class RenderError(CompressBenchError):
    """A page could not be rendered (occ-render)."""

class ScheduleError(CompressBenchError):
    """A decay schedule could not be parsed or is invalid (occ-memory)."""

class OpticalMemoryError(CompressBenchError):
    """An optical-memory operation failed: unknown or duplicate round, budget too small, …"""

class EngineError(CompressBenchError):
    """An OCR engine is unavailable or failed to read a page."""

@final
class Page:
    """A rendered page: pixels, exact ground truth and token accounting.

    From `render`/`paginate` every field is set; pages of an optical memory's context have `mode`,
    `text`, `vision_tokens` and `font_px`, and `None` for the fields of ratio fitting.
    """

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def mode(self) -> _Mode: ...
    @property
    def text(self) -> str:
        """The exact ground truth: the normalised text drawn on the page."""
    @property
    def font_px(self) -> float: ...
    @property
    def text_tokens(self) -> Optional[int]:
        """Text tokens of the ground truth (DeepSeek-OCR tokenizer, no BOS)."""
    @property
    def input_tokens(self) -> Optional[int]:
        """Text tokens of the whole normalised input (`render` only)."""
    @property
    def dropped_tokens(self) -> Optional[int]:
        """Input tokens left off the page (`render` only)."""
    @property
    def target_ratio(self) -> Optional[float]: ...
    @property
    def target_tokens(self) -> Optional[int]:
        """`round(target_ratio × nominal vision tokens)`."""
    @property
    def vision_tokens(self) -> Dict[str, int]:
        """`{"nominal", "valid", "valid_floor", "slots"}` of the page in its mode."""
    @property
    def ratios(self) -> Optional[Dict[str, float]]:
        """Achieved ratio on each basis: `{"nominal", "valid", "slots"}`."""
    @property
    def ratio(self) -> Optional[float]:
        """Achieved ratio, text tokens / nominal vision tokens."""
    @property
    def on_target(self) -> Optional[bool]:
        """Within the tolerance (1 %, or half a token) of `target_ratio`."""
    @property
    def ratio_message(self) -> Optional[str]: ...
    @property
    def overflow(self) -> str:
        """Text that did not fit (`font_px=` pages)."""
    @property
    def offset(self) -> int:
        """Byte offset of the page's text in the normalised input (`paginate`)."""
    @property
    def complete(self) -> bool:
        """Whether the page holds all the rest of the input."""
    @property
    def lines(self) -> int: ...
    @property
    def missing_glyphs(self) -> int: ...
    @property
    def spec(self) -> Optional[Dict[str, Any]]:
        """The render spec (page size, fonts with hashes, margins, …)."""
    @property
    def png(self) -> bytes:
        """PNG bytes, byte-identical to `compress-bench render --out` for the same spec."""
    @property
    def pixels(self) -> bytes:
        """Raw RGB bytes, row-major, `height × width × 3`."""
    def array(self) -> Any:
        """A writable numpy array `(height, width, 3)`, dtype uint8 (needs numpy)."""
    def pil(self) -> Any:
        """A `PIL.Image.Image` in mode RGB (needs Pillow)."""
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the PNG."""
    def meta(self) -> Dict[str, Any]:
        """The metadata of `compress-bench render`'s JSON that a page knows."""
    def _repr_png_(self) -> bytes: ...

def render(
    text: str,
    mode: _Mode = "tiny",
    ratio: Optional[float] = None,
    font_px: Optional[float] = None,
    *,
    lang: Literal["en", "zh"] = "en",
    width: Optional[int] = None,
    height: Optional[int] = None,
    margin: Optional[int] = None,
    line_height: float = 1.2,
    align: Literal["left", "center", "right", "justify"] = "left",
    newline: Literal["keep", "marker", "space"] = "keep",
    newline_marker: str = "¶",
    tab_width: int = 4,
    dpi: int = 96,
    min_font_px: float = 3.0,
    strict: bool = False,
) -> Page:
    """Renders text on one page, as `compress-bench render` does (same flags, same PNG).

    `ratio=R` (default 10): the page holds `round(R × nominal vision tokens)` text tokens at the
    largest font that fits. `font_px=PX`: set at that size; what does not fit is `overflow`.
    `strict=True` raises `RenderError` when a fitted page misses its ratio.
    """

def paginate(
    text: str,
    mode: _Mode = "tiny",
    ratio: float = 10.0,
    *,
    max_pages: Optional[int] = None,
    lang: Literal["en", "zh"] = "en",
    width: Optional[int] = None,
    height: Optional[int] = None,
    margin: Optional[int] = None,
    line_height: float = 1.2,
    align: Literal["left", "center", "right", "justify"] = "left",
    newline: Literal["keep", "marker", "space"] = "keep",
    newline_marker: str = "¶",
    tab_width: int = 4,
    dpi: int = 96,
    min_font_px: float = 3.0,
) -> List[Page]:
    """Splits a long text into consecutive pages fitted to `ratio`; their `text` concatenate to the input."""

def count_tokens(text: str) -> int:
    """Text tokens (DeepSeek-OCR tokenizer, no BOS): the count every ratio uses."""

def vision_tokens(mode: _Mode, width: Optional[int] = None, height: Optional[int] = None) -> Dict[str, int]:
    """Vision tokens of a page in `mode` (default: the mode's canvas)."""

@final
class OcrResult:
    """What an engine read from one page."""

    id: str
    text: str
    token_ids: Optional[List[int]]
    n_prompt_tokens: Optional[int]
    n_generated_tokens: Optional[int]
    hit_max_tokens: bool
    timings: Tuple[float, float, float, float]
    """Seconds: preprocess, vision, prefill, decode."""

@disjoint_base
class Engine:
    """An OCR engine (base class; build a subclass). Calls are serialised and release the GIL."""

    @property
    def info(self) -> Dict[str, Any]:
        """`{"name", "version", "weights", "synthetic_weights", "device", "dtype"}`."""
    def ocr(
        self,
        images: Union[_ImageLike, Sequence[_ImageLike]],
        mode: Optional[_Mode] = None,
        *,
        prompt: str = "free-ocr",
        max_new_tokens: int = 8192,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> List[OcrResult]:
        """Reads one image or a list; one result per image, in order (ids `page-<i>`).

        `mode=None` reads each `Page` in its own mode (other images then need `mode=`). `prompt`:
        `free-ocr`, `markdown`, `grounding` or a text holding `<image>` once.
        """

@final
class Tesseract(Engine):
    """Debian's `tesseract` reading pages of one language (`apt-get install tesseract-ocr`)."""

    def __new__(
        cls, lang: Literal["en", "zh"] = "en", psm: int = 6, threads: Optional[int] = None, program: str = "tesseract"
    ) -> Tesseract: ...

@final
class DeepSeekOcr(Engine):
    """DeepSeek-OCR in candle from an HF snapshot folder, or on seeded synthetic weights."""

    def __new__(
        cls,
        weights: Optional[Union[str, os.PathLike]] = None,
        *,
        device: Literal["cpu", "cuda"] = "cpu",
        dtype: Optional[Literal["f32", "bf16", "f16"]] = None,
        synthetic: Optional[Literal["tiny", "reduced", "full"]] = None,
        seed: int = 0,
        recipe: int = 1,
    ) -> DeepSeekOcr: ...

@final
class MiniReader(Engine):
    """A reader trained by `compress-bench train` (checkpoint or export folder)."""

    def __new__(
        cls,
        weights: Union[str, os.PathLike],
        *,
        device: Literal["cpu", "cuda"] = "cpu",
        dtype: Optional[Literal["f32", "bf16", "f16"]] = None,
    ) -> MiniReader: ...

@final
class OpenAIEngine(Engine):
    """Any OpenAI-compatible chat-completions server (compress-bench serve, vLLM, SGLang, a hosted API)."""

    def __new__(
        cls,
        base_url: str,
        model: str,
        api_key: Optional[str] = None,
        *,
        prompt_template: str = "{prompt}",
        concurrency: int = 8,
        retries: int = 4,
        timeout: float = 600.0,
        send_mode: bool = False,
    ) -> OpenAIEngine: ...

@final
class FakePerfect(Engine):
    """Answers each `Page` with its ground truth (tests of the machinery; not a reader)."""

    def __new__(cls) -> FakePerfect: ...

@final
class Schedule:
    """A decay schedule: a round's age → text, page images of a mode, a downscaled copy, or dropped.

    `Schedule(spec)` parses the grammar of `--schedule` (`paper`, `step:width=4`, `exp:first=1h,factor=4`,
    `ladder:levels=text@0/base@4/tiny@8/dropped@20`, `budget:tokens=N`, …); invalid specs raise
    `ScheduleError`.
    """

    def __new__(cls, spec: str) -> Schedule: ...
    @staticmethod
    def from_toml(text: str, path: str = "<string>") -> List[Schedule]:
        """The schedules of a TOML document of `[[schedule]]` tables."""
    @staticmethod
    def load(path: Union[str, os.PathLike]) -> List[Schedule]:
        """The schedules of a TOML file."""
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["fixed", "budget"]: ...
    @property
    def unit(self) -> Optional[Literal["rounds", "seconds"]]: ...
    @property
    def levels(self) -> List[Tuple[int, str]]:
        """`(from_age, representation)`; representation `text`, a mode, `FROM>TO` or `dropped`."""
    @property
    def tokens(self) -> Optional[int]:
        """The budget of a `budget:tokens=N` schedule."""
    def representation(self, age: int) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class TokenCost:
    text_tokens: int
    vision_slots: int
    vision_nominal: int
    tokens: int
    """Decoder positions: `text_tokens + vision_slots`."""

@final
class Segment:
    """One round in the context: its text or its page images, with its cost."""

    round_id: str
    role: _Role
    age: int
    level: int
    representation: str
    text: Optional[str]
    cost: TokenCost
    @property
    def kind(self) -> Literal["text", "pages"]: ...
    @property
    def pages(self) -> List[Page]: ...

@final
class Context:
    """The ordered context (oldest round first) with token costs."""

    schedule: str
    dropped: List[str]
    cost: TokenCost
    all_text_tokens: int
    text_rounds: int
    image_rounds: int
    dropped_rounds: int
    pages: int
    @property
    def segments(self) -> List[Segment]: ...
    @property
    def tokens(self) -> int: ...
    @property
    def saving(self) -> Optional[float]:
        """`all_text_tokens / tokens`."""
    def __len__(self) -> int: ...

@final
class BudgetChoice:
    schedule: Schedule
    index: int
    tokens: int
    considered: List[Tuple[str, int]]

@final
class Recall:
    id: str
    representation: str
    text: str
    ground_truth: str
    outputs: List[OcrResult]

@final
class OpticalMemory:
    """Optical memory for agents: recent rounds as text, older ones as ever smaller page images.

    `schedule`: a `Schedule` or a spec string (default `paper`). `page_ratio`: text tokens per nominal
    vision token of a full page. `prompt`/`max_new_tokens`: what `recall` asks the engine.
    `candidates`: the fixed schedules `budget` chooses from, most faithful first. `clock`: `None` for
    the system clock, or a start time (seconds) of a manual clock moved by `advance`.
    """

    def __new__(
        cls,
        schedule: Optional[Union[Schedule, str]] = None,
        *,
        page_ratio: float = 10.0,
        lang: Literal["en", "zh"] = "en",
        prompt: str = "free-ocr",
        max_new_tokens: int = 4096,
        candidates: Optional[Sequence[Union[Schedule, str]]] = None,
        clock: Optional[float] = None,
    ) -> OpticalMemory: ...
    def push(self, id: str, role: _Role, text: str) -> None:
        """Stores a round (ids are unique)."""
    def context(self, schedule: Optional[Union[Schedule, str]] = None) -> Context:
        """Text segments and page images, oldest first, each with its token cost."""
    def tokens(self, schedule: Optional[Union[Schedule, str]] = None) -> int: ...
    def budget(self, n: int) -> BudgetChoice:
        """Makes the most faithful candidate fitting `n` tokens the memory's schedule."""
    def recall(self, id: str, engine: Engine) -> Recall:
        """Reads round `id` back as it is held now (imaged rounds through `engine`)."""
    def representation(self, id: str) -> str: ...
    def age(self, id: str, unit: Literal["rounds", "seconds"] = "rounds") -> int: ...
    @property
    def schedule(self) -> Schedule: ...
    @schedule.setter
    def schedule(self, schedule: Union[Schedule, str]) -> None: ...
    @property
    def rounds(self) -> List[Tuple[str, str, str]]:
        """`(id, role, text)`, oldest first."""
    @property
    def cache_stats(self) -> Dict[str, int]: ...
    def advance(self, seconds: float) -> None:
        """Moves a manual clock forward."""
    def __len__(self) -> int: ...
