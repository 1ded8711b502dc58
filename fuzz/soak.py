"""Soak: many develop+sign+verify cycles in one process, sampling resident memory.

Each cycle develops a 192 x 192 frame (one of 4, cycling CFA patterns) with a tiny NIP,
signs it (a fresh :class:`rawproof.provenance.Signer` per cycle, so handle leaks show
too) as JPEG or PNG, and verifies it against the test root with a tiny FAN. RSS is
read from ``/proc/self/statm`` after ``gc.collect()``; growth is measured from the end
of the warm-up (first 10 % of cycles, at least 20) to the highest sample after it.

Usage::

    python fuzz/soak.py --cycles 1000 [--plot docs/hardening/soak.png] [--every 25]

``tests/test_soak.py`` runs the same loop with 200 cycles (``RAWPROOF_SOAK_CYCLES``
overrides). Models and PKI are made in a temporary folder (``tests/_onnx_models``).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SIDE = 192


@dataclass(frozen=True)
class SoakSample:
    """One RSS sample: after ``cycle`` cycles, ``rss_mb`` MiB resident, ``seconds`` since the start."""

    cycle: int
    rss_mb: float
    seconds: float


@dataclass(frozen=True)
class SoakResult:
    """Samples and the summary figures of :func:`run_soak`.

    Attributes:
        samples: RSS over the run (the first at cycle 0, after imports and model set-up).
        warmup_cycles: Cycles counted as warm-up.
        baseline_mb: RSS at the end of the warm-up.
        peak_after_mb: Highest RSS after the warm-up.
        growth: ``peak_after_mb / baseline_mb - 1``.
        cycles_per_s: Throughput after the warm-up.
    """

    samples: list[SoakSample]
    warmup_cycles: int
    baseline_mb: float
    peak_after_mb: float
    growth: float
    cycles_per_s: float


def rss_mb() -> float:
    """Current resident set size in MiB (``/proc/self/statm``; peak RSS where /proc is absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(work: Path) -> tuple[Path, Path, object]:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _onnx_models import NipWeights, make_fan, make_nip, write_model

    from rawproof.keygen import generate_test_pki

    nip = write_model(make_nip(NipWeights()), work / "tiny.onnx", {"name": "tiny", "kind": "nip", "receptive_field": 5})
    fan = write_model(make_fan(5), work / "fan.onnx", {"name": "fan", "kind": "fan",
                                                        "classes": ["native", "a", "b", "c", "d"], "patch_size": 16,
                                                        "trained_channel": {"downscale": 2}})
    return nip, fan, generate_test_pki(work / "pki", alg="es256")


def run_soak(cycles: int, every: int = 25, warmup: int | None = None) -> SoakResult:
    """Run ``cycles`` develop+sign+verify cycles, sampling RSS every ``every`` cycles.

    Raises:
        AssertionError: a cycle gave an unexpected verdict (the loop checks its own output).
    """
    from rawproof.develop import develop
    from rawproof.provenance import Signer
    from rawproof.raw import CFA, RawFrame
    from rawproof.verify import Verdict, verify

    warm = warmup if warmup is not None else max(20, cycles // 10)
    with tempfile.TemporaryDirectory(prefix="rawproof-soak-") as tmp:
        nip, fan, pki = _setup(Path(tmp))
        root = pki.root_cert.read_bytes()  # type: ignore[attr-defined]
        rng = np.random.default_rng(0)
        frames = [RawFrame(mosaic=rng.integers(0, 4096, (SIDE, SIDE), dtype=np.uint16), cfa=cfa, black=64, white=4095,
                           wb=(2.0, 1.0, 1.0, 1.5)) for cfa in CFA]
        gc.collect()
        t0 = time.perf_counter()
        samples = [SoakSample(0, rss_mb(), 0.0)]
        t_warm = t0
        for i in range(1, cycles + 1):
            with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:  # type: ignore[attr-defined]
                res = develop(frames[i % 4], model=nip, signer=signer, fmt=("jpeg", "png")[i % 2], threads=1)
            rep = verify(res.signed, device_anchors=root, fan=fan, threads=1)
            assert rep.verdict in (Verdict.AUTHENTIC, Verdict.MANIPULATED), rep.summary
            del res, rep
            if i == warm:
                t_warm = time.perf_counter()
            if i % every == 0 or i == warm or i == cycles:
                gc.collect()
                samples.append(SoakSample(i, rss_mb(), time.perf_counter() - t0))
    baseline = next(s.rss_mb for s in samples if s.cycle == warm)
    peak = max(s.rss_mb for s in samples if s.cycle >= warm)
    rate = (cycles - warm) / max(time.perf_counter() - t_warm, 1e-9)
    return SoakResult(samples, warm, baseline, peak, peak / baseline - 1, rate)


def plot(result: SoakResult, path: Path) -> Path:
    """Write the RSS curve as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.plot([s.cycle for s in result.samples], [s.rss_mb for s in result.samples], marker=".", lw=1)
    ax.axvline(result.warmup_cycles, color="grey", ls="--", lw=1, label="end of warm-up")
    ax.axhline(result.baseline_mb * 1.05, color="red", ls=":", lw=1, label="baseline + 5 %")
    ax.set_xlabel("develop + sign + verify cycles")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(f"rawproof soak: {result.samples[-1].cycle} cycles, growth after warm-up {result.growth:+.2%}")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: run the soak, print a markdown table of samples, optionally plot; exit 1 above 5 % growth."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--every", type=int, default=25, help="sample RSS every N cycles")
    p.add_argument("--plot", type=Path, help="write the RSS curve PNG here")
    p.add_argument("--max-growth", type=float, default=0.05)
    args = p.parse_args(argv)
    r = run_soak(args.cycles, args.every)
    print("| cycle | RSS (MiB) | elapsed (s) |\n|---:|---:|---:|")
    for s in r.samples:
        print(f"| {s.cycle} | {s.rss_mb:.1f} | {s.seconds:.1f} |")
    print(f"\nwarm-up {r.warmup_cycles} cycles; baseline {r.baseline_mb:.1f} MiB; peak after {r.peak_after_mb:.1f} MiB; "
          f"growth {r.growth:+.2%}; {r.cycles_per_s:.1f} cycles/s")
    if args.plot:
        print(f"plot: {plot(r, args.plot)}")
    return 0 if r.growth <= args.max_growth else 1


if __name__ == "__main__":
    raise SystemExit(main())
