"""``rawproof bench``: native kernels, develop(), C2PA signing and verify(), measured side by side.

One run on a synthetic frame (12 MP by default) measures, per kernel, the best of
``--repeat`` runs of: ``np.copyto`` of the kernel's output bytes into a preallocated
array (the memory-bandwidth floor), the best vectorised numpy implementation, and
``rawproof._native`` with one thread and with all threads; and whether two Python
threads calling a kernel at once overlap (the GIL is released).

The report is a list of sections. Each section is a function ``(BenchConfig) ->
list[BenchRow]``, named in :data:`SECTIONS`: ``kernels``, ``python_threads``, ``develop``
(per-stage times for each shipped NIP), ``develop_vs_rawpy`` (the sample RAW through develop()
beside rawpy's postprocess(), per megapixel), ``provenance`` (signing, validation),
``verify`` (signature + FAN over the image) and ``web`` (the verify page: upload to verdict
next to verify()'s own time, and hostile uploads). ``--section`` picks some.

The numpy implementations here are independent of the C++ code and serve as the
speed baseline; each row also reports the largest difference between numpy and
native outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["KERNELS", "SECTIONS", "BenchConfig", "BenchRow", "kernel_rows", "overlap_rows", "develop_rows", "signing_rows", "verify_rows", "web_rows", "register", "run_bench"]

_log = logging.getLogger(__name__)

KERNELS = ("raw10", "raw12", "raw14", "mosaic_to_rggb", "dct8x8")
"""Kernel names accepted by ``--only``."""

# Canonical (R, Gr, Gb, B) positions in an RGGB mosaic: (row, column) within the 2x2 block.
_RGGB_POS = ((0, 0), (0, 1), (1, 0), (1, 1))
_BLACK = (64.0, 64.0, 64.0, 64.0)
_WHITE = 1023.0
_WB = (2.0, 1.0, 1.0, 1.5)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes:
        width: Frame width, pixels, a positive multiple of 8.
        height: Frame height, pixels, a positive multiple of 8.
        repeat: Runs per measurement; the fastest is reported.
        only: Kernel names to measure (subset of :data:`KERNELS`).
        seed: Seed of the synthetic data.
    """

    width: int = 4000
    height: int = 3000
    repeat: int = 5
    only: tuple[str, ...] = KERNELS
    seed: int = 0


@dataclass(frozen=True)
class BenchRow:
    """One line of the report.

    Attributes:
        section: Section name, e.g. ``"kernels"``.
        name: What was measured, e.g. ``"raw10"``.
        metrics: Named figures; keys ending in ``_ms`` are milliseconds (best run),
            others are ratios or errors (unitless).
    """

    section: str
    name: str
    metrics: dict[str, float] = field(default_factory=dict)


def _best_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


# ---- numpy baselines (independent of native/src) ---------------------------------------------


def _np_raw10(buf: np.ndarray, width: int, height: int) -> np.ndarray:
    g = buf.reshape(height, width // 4, 5).astype(np.uint16)
    out = np.empty((height, width // 4, 4), np.uint16)
    lsb = g[..., 4]
    for i in range(4):
        out[..., i] = (g[..., i] << 2) | ((lsb >> (2 * i)) & 3)
    return out.reshape(height, width)


def _np_raw12(buf: np.ndarray, width: int, height: int) -> np.ndarray:
    g = buf.reshape(height, width // 2, 3).astype(np.uint16)
    out = np.empty((height, width // 2, 2), np.uint16)
    out[..., 0] = (g[..., 0] << 4) | (g[..., 2] & 0x0F)
    out[..., 1] = (g[..., 1] << 4) | (g[..., 2] >> 4)
    return out.reshape(height, width)


def _np_raw14(buf: np.ndarray, width: int, height: int) -> np.ndarray:
    g = buf.reshape(height, width // 4, 7).astype(np.uint32)
    lsb = g[..., 4] | (g[..., 5] << 8) | (g[..., 6] << 16)
    out = np.empty((height, width // 4, 4), np.uint16)
    for i in range(4):
        out[..., i] = (g[..., i] << 6) | ((lsb >> (6 * i)) & 0x3F)
    return out.reshape(height, width)


def _np_mosaic_to_rggb(mosaic: np.ndarray) -> np.ndarray:
    h, w = mosaic.shape
    out = np.empty((4, h // 2, w // 2), np.float32)
    for c, (dy, dx) in enumerate(_RGGB_POS):
        o = out[c]
        np.subtract(mosaic[dy::2, dx::2], np.float32(_BLACK[c]), out=o, dtype=np.float32)
        o *= np.float32(_WB[c] / (_WHITE - _BLACK[c]))
        np.clip(o, 0.0, 1.0, out=o)
    return out


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)
    d[0] /= np.sqrt(2)
    return d.astype(np.float32)


def _np_dct8x8(image: np.ndarray, d: np.ndarray) -> np.ndarray:
    # Two large matmuls (BLAS): along rows on an (N, 8) view, then along columns per 8-row band.
    h, w = image.shape
    rows = (image.reshape(-1, 8) @ d.T).reshape(h // 8, 8, w)
    return np.matmul(d, rows).reshape(h, w)


# ---- sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    name: str
    numpy_fn: Callable[[], np.ndarray]
    native_fn: Callable[[int], np.ndarray]


def _cases(cfg: BenchConfig) -> list[_Case]:
    from rawproof import _native

    rng = np.random.default_rng(cfg.seed)
    w, h = cfg.width, cfg.height
    cases: list[_Case] = []
    for fmt, fn, nbytes in (("raw10", _np_raw10, 5 * w // 4), ("raw12", _np_raw12, 3 * w // 2),
                            ("raw14", _np_raw14, 7 * w // 4)):
        if fmt in cfg.only:
            buf = rng.integers(0, 256, h * nbytes, dtype=np.uint8)
            cases.append(_Case(fmt, lambda fn=fn, buf=buf: fn(buf, w, h),
                               lambda t, buf=buf, fmt=fmt: _native.unpack(buf, w, h, fmt, threads=t)))
    if "mosaic_to_rggb" in cfg.only:
        mosaic = rng.integers(0, int(_WHITE) + 1, (h, w), dtype=np.uint16)
        black, wb = np.asarray(_BLACK, np.float32), np.asarray(_WB, np.float32)
        cases.append(_Case("mosaic_to_rggb", lambda: _np_mosaic_to_rggb(mosaic),
                           lambda t: _native.mosaic_to_rggb(mosaic, "RGGB", black, _WHITE, wb, t)))
    if "dct8x8" in cfg.only:
        image = rng.random((h, w), dtype=np.float32)
        d = _dct_matrix()
        cases.append(_Case("dct8x8", lambda: _np_dct8x8(image, d), lambda t: _native.dct8x8(image, False, t)))
    return cases


def kernel_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``kernels``: numpy vs native (1 thread, all threads) vs memcpy, per kernel."""
    rows = []
    for case in _cases(cfg):
        _log.info("bench %s", case.name)
        ref, nat = case.numpy_fn(), case.native_fn(0)
        src = np.empty_like(nat)
        src[...] = nat
        dst = np.empty_like(nat)
        m = {
            "numpy_ms": _best_ms(case.numpy_fn, cfg.repeat),
            "native_1t_ms": _best_ms(lambda c=case: c.native_fn(1), cfg.repeat),
            "native_all_ms": _best_ms(lambda c=case: c.native_fn(0), cfg.repeat),
            "memcpy_ms": _best_ms(lambda: np.copyto(dst, src), cfg.repeat),
            "max_abs_diff": float(np.max(np.abs(ref.astype(np.float64) - nat.astype(np.float64)))),
        }
        m["numpy/native_all"] = m["numpy_ms"] / m["native_all_ms"]
        m["memcpy/native_all"] = m["memcpy_ms"] / m["native_all_ms"]
        rows.append(BenchRow("kernels", case.name, m))
    return rows


def overlap_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``python_threads``: two single-threaded native calls, sequential vs from two Python threads.

    ``overlap`` = sequential / concurrent time; about 2 on two idle cores when the GIL
    is released, 1 when the calls serialise.
    """
    rows = []
    for case in _cases(cfg):
        def sequential(c: _Case = case) -> None:
            c.native_fn(1)
            c.native_fn(1)

        def concurrent(c: _Case = case) -> None:
            workers = [threading.Thread(target=c.native_fn, args=(1,)) for _ in range(2)]
            for t in workers:
                t.start()
            for t in workers:
                t.join()

        seq, con = _best_ms(sequential, cfg.repeat), _best_ms(concurrent, cfg.repeat)
        rows.append(BenchRow("python_threads", case.name,
                             {"sequential_ms": seq, "concurrent_ms": con, "overlap": seq / con}))
    return rows


def _numeric_rows(section: str, dicts: list[dict], name_key: str) -> list[BenchRow]:
    return [BenchRow(section, str(d[name_key]), {k: float(v) for k, v in d.items()
                                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
            for d in dicts]


def develop_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``develop``: per-stage times of develop() on a synthetic frame, per shipped NIP (CPU or GPU).

    ``native_share`` = (unpack + stack) / total: the native kernels' part of the wall time.
    """
    from rawproof.develop import bench_develop

    rows = _numeric_rows("develop", bench_develop(cfg.width, cfg.height, repeats=min(cfg.repeat, 3)), "model")
    for r in rows:
        r.metrics["native_share"] = (r.metrics["unpack_ms"] + r.metrics["stack_ms"]) / r.metrics["total_ms"]
    return rows


def rawpy_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``develop_vs_rawpy``: the bundled sample RAW, file to 8-bit sRGB, through ``develop()`` (each
    shipped NIP, unsigned) and through rawpy's ``postprocess()`` (LibRaw's default AHD demosaic, sRGB,
    8 bit), what an integrator would use instead. Runs alternate (rawpy, then each NIP, ``repeat``
    times) so both see the same machine load; ``ms`` is the best run, ``ms_per_mp`` per output
    megapixel, ``x_rawpy`` the ratio of ms per megapixel to rawpy's.
    """
    import rawpy

    from rawproof.demo import sample_raw_path
    from rawproof.develop import develop
    from rawproof.models import ModelKind, list_models

    path = sample_raw_path()

    def run_rawpy() -> np.ndarray:
        with rawpy.imread(str(path)) as raw:
            return raw.postprocess()

    nips = list_models(ModelKind.NIP)
    shapes = {"rawpy.postprocess": run_rawpy().shape[:2]}
    for info in nips:  # warm-up: session creation is not part of a frame's cost
        shapes[info.name] = develop(path, model=info).rgb.shape[:2]
    best = dict.fromkeys(shapes, float("inf"))
    for _ in range(max(1, cfg.repeat)):
        best["rawpy.postprocess"] = min(best["rawpy.postprocess"], _best_ms(run_rawpy, 1))
        for info in nips:
            best[info.name] = min(best[info.name], _best_ms(lambda i=info: develop(path, model=i), 1))
    per_mp = {k: best[k] / (h * w / 1e6) for k, (h, w) in shapes.items()}
    return [BenchRow("develop_vs_rawpy", k, {"ms": best[k], "megapixels": shapes[k][0] * shapes[k][1] / 1e6, "ms_per_mp": per_mp[k],
                                            "x_rawpy": per_mp[k] / per_mp["rawpy.postprocess"]}) for k in shapes]


def signing_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``provenance``: C2PA signing of a JPEG of this size (thumbnail off/on) and validation."""
    from rawproof.provenance import bench_signing

    return _numeric_rows("provenance", bench_signing(cfg.width, cfg.height, repeats=cfg.repeat), "name")


def verify_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``verify``: signature check, decode, FAN over the image (default shipped FAN), whole verify()."""
    from rawproof.verify import bench_verify

    return _numeric_rows("verify", bench_verify(cfg.width, cfg.height, repeats=min(cfg.repeat, 2)), "name")


def web_rows(cfg: BenchConfig) -> list[BenchRow]:
    """Section ``web``: the verify page (HTTP and headless Chromium) vs verify() on the same image,
    and a ninth user's verdict under 8 concurrent hostile uploads (:func:`rawproof.web.measure.bench_web`)."""
    from rawproof.web.measure import bench_web

    return _numeric_rows("web", bench_web(cfg.width, cfg.height, repeats=min(cfg.repeat, 3)), "name")


SECTIONS: dict[str, Callable[[BenchConfig], list[BenchRow]]] = {
    "kernels": kernel_rows,
    "python_threads": overlap_rows,
    "develop": develop_rows,
    "develop_vs_rawpy": rawpy_rows,
    "provenance": signing_rows,
    "verify": verify_rows,
    "web": web_rows,
}
"""Report sections by name, in order."""


def run_bench(cfg: BenchConfig, sections: tuple[str, ...] | None = None) -> list[BenchRow]:
    """Run the named sections (default: all of :data:`SECTIONS`) and return their rows in order."""
    rows: list[BenchRow] = []
    for name in sections or tuple(SECTIONS):
        rows.extend(SECTIONS[name](cfg))
    return rows


def _format_table(rows: list[BenchRow]) -> str:
    lines: list[str] = []
    for section in dict.fromkeys(r.section for r in rows):
        sec = [r for r in rows if r.section == section]
        keys = list(dict.fromkeys(k for r in sec for k in r.metrics))
        header = ["kernel", *keys]
        table = [[r.name, *(_fmt(r.metrics.get(k)) for k in keys)] for r in sec]
        widths = [max(len(x) for x in col) for col in zip(header, *table)]
        lines.append(f"[{section}]")
        for line in (header, *table):
            lines.append("  ".join(x.rjust(wd) for x, wd in zip(line, widths)))
        lines.append("")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.2f}"


def _run(args: argparse.Namespace) -> int:
    problems = [f"--{n} must be a positive multiple of 8, got {getattr(args, n)}"
                for n in ("width", "height") if getattr(args, n) <= 0 or getattr(args, n) % 8]
    if args.repeat < 1:
        problems.append(f"--repeat must be >= 1, got {args.repeat}")
    if problems:
        print(f"rawproof bench: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    cfg = BenchConfig(width=args.width, height=args.height, repeat=args.repeat,
                      only=tuple(args.only) if args.only else KERNELS)
    rows = run_bench(cfg, tuple(args.section) if args.section else None)
    if args.json:
        print(json.dumps({
            "width": cfg.width, "height": cfg.height, "repeat": cfg.repeat, "cpu_count": os.cpu_count(),
            "rows": [{"section": r.section, "name": r.name, **r.metrics} for r in rows],
        }, indent=2))
    else:
        print(f"rawproof bench: {cfg.width}x{cfg.height}, best of {cfg.repeat}, {os.cpu_count()} CPUs\n")
        print(_format_table(rows))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser("bench", help="time native kernels, develop(), signing and verify() side by side",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print a JSON dict instead of a table")
    p.add_argument("--width", type=int, default=BenchConfig.width, help="frame width, multiple of 8")
    p.add_argument("--height", type=int, default=BenchConfig.height, help="frame height, multiple of 8")
    p.add_argument("--repeat", type=int, default=BenchConfig.repeat, help="runs per figure; the best is kept")
    p.add_argument("--only", action="append", choices=KERNELS, metavar="KERNEL",
                   help=f"measure only this kernel (repeatable): {', '.join(KERNELS)}")
    p.add_argument("--section", action="append", choices=list(SECTIONS), metavar="SECTION",
                   help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    p.set_defaults(func=_run)
