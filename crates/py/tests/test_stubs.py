"""The type stubs (compress_bench.pyi, shipped as compress_bench/__init__.pyi) match the module."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


def test_stubs_match_the_runtime_module(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is needed for stubtest: pip install mypy (.ci/run installs it)")
    allow = Path(__file__).with_name("stubtest-allowlist.txt")
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "compress_bench", "--allowlist", str(allow)],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
