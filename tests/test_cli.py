"""Tests of rawproof.cli: every error exits 3 with a message (never a traceback, never a
verdict code), and a reader closing stdout early is an error, not a traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rawproof import cli

ROOT = Path(__file__).resolve().parents[1]


def test_untyped_exception_exits_3(monkeypatch, tmp_path, capsys):
    import rawproof.verify  # noqa: F401 (the package re-exports the function under the module's name)

    verify_mod = sys.modules["rawproof.verify"]

    def broken(*args, **kwargs):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(verify_mod, "verify", broken)
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    assert cli.main(["verify", str(path)]) == 3
    err = capsys.readouterr().err
    assert "rawproof verify: unexpected error (RuntimeError): something unexpected" in err and "Traceback" not in err


def test_closed_stdout_is_not_a_traceback(tmp_path):
    path = tmp_path / "x.png"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")]),
           "RAWPROOF_MODELS": str(tmp_path / "none")}
    # A pipe whose reader is already gone: the first write of the report raises BrokenPipeError.
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.run([sys.executable, "-m", "rawproof", "verify", str(path), "--json"], stdout=w,
                          stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(w)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "standard output closed" in err
