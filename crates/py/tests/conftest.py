"""Fixtures of the compress_bench test suite (run by .ci/run against the built wheel; docs/PYTHON.md).

What the tests need from outside the wheel, each failing with a message saying how to get it:
- the compress-bench binary (`$OCC_BIN`, default `$CARGO_TARGET_DIR/release/compress-bench`, built by
  `cargo build --release -p compress-bench`), for the byte-identity test and the server;
- Tesseract with English data (`apt-get install tesseract-ocr tesseract-ocr-eng`);
- the built wheel (`$OCC_WHEEL`), for the clean-venv install test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "crates" / "py" / "examples"


def _target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "occ-target")


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    path = Path(os.environ.get("OCC_BIN") or _target_dir() / "release" / "compress-bench")
    if not path.is_file():
        pytest.fail(
            f"the compress-bench binary is not at {path}: build it with `cargo build --release -p compress-bench` "
            "or point $OCC_BIN at it"
        )
    return path


@pytest.fixture(scope="session")
def tesseract():
    import compress_bench as cb

    if shutil.which("tesseract") is None:
        pytest.fail("tesseract is not on PATH: apt-get install tesseract-ocr tesseract-ocr-eng")
    return cb.Tesseract(lang="en", threads=2)


@pytest.fixture(scope="session")
def wheel() -> Path:
    w = os.environ.get("OCC_WHEEL")
    if not w or not Path(w).is_file():
        pytest.fail(f"$OCC_WHEEL must name the built wheel (maturin build -m crates/py/Cargo.toml); got {w!r}")
    return Path(w)


@pytest.fixture(scope="session")
def server(cli_bin):
    """`compress-bench serve` on tiny synthetic weights, on a free port; yields its /v1 URL."""
    proc = subprocess.Popen(
        [str(cli_bin), "serve", "--synthetic-weights", "tiny", "--mode", "tiny", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = None
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        err = proc.stderr.read()
        pytest.fail(f"compress-bench serve did not start (last line {line!r}):\n{err}")
    yield url + "/v1"
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_kib() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def python_exe() -> str:
    return sys.executable
