"""Soak (CI length): develop+sign+verify cycles with resident memory growth <= 5 % after warm-up.

Runs the loop of ``fuzz/soak.py`` for 200 cycles (~15 s); set ``RAWPROOF_SOAK_CYCLES``
(e.g. 1000) for the long run, or call ``python fuzz/soak.py --cycles 1000`` for the
table and curve in docs/hardening.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _soak_module():
    spec = importlib.util.spec_from_file_location("rawproof_soak", REPO_ROOT / "fuzz" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="needs /proc for the current RSS")
def test_rss_growth_after_warmup_is_bounded() -> None:
    soak = _soak_module()
    cycles = int(os.environ.get("RAWPROOF_SOAK_CYCLES", "200"))
    result = soak.run_soak(cycles, every=10)
    assert result.samples[-1].cycle == cycles
    assert result.growth <= 0.05, [(s.cycle, round(s.rss_mb, 1)) for s in result.samples]
