"""The built wheel is abi3 and installs and imports in a clean venv with no Rust toolchain on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile


def test_wheel_is_abi3(wheel):
    assert wheel.name.endswith(".whl") and "-cp39-abi3-" in wheel.name, wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".abi3.so") for n in names), names
    assert "compress_bench/__init__.pyi" in names or "compress_bench/compress_bench.pyi" in names, names
    assert "compress_bench/py.typed" in names, names
    # An extension module must not link libpython (manylinux; it loads into any CPython >= 3.9).
    so = next(n for n in names if n.endswith(".abi3.so"))
    assert b"libpython" not in zipfile.ZipFile(wheel).read(so), "the extension links libpython"


def test_wheel_installs_and_imports_without_cargo(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # No network, no build: the wheel alone.
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-index", "--disable-pip-version-check",
                    str(wheel)], check=True)
    path = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None, path
    code = (
        "import compress_bench as cb, shutil; assert shutil.which('cargo') is None; "
        "p = cb.render('Installed without Rust.', mode='tiny', font_px=20); "
        "m = cb.OpticalMemory(); m.push('a', 'user', 'hello'); "
        "print(cb.__file__, p.text, m.context().tokens)"
    )
    out = subprocess.run([str(py), "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Installed without Rust." in out.stdout and str(venv) in out.stdout, out.stdout
