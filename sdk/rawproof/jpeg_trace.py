"""Find the last JPEG compression in decoded pixels: its 8x8 grid offset and IJG quality.

A file's header can lie about its history: a JPEG re-saved as PNG carries no quantisation
table, yet its pixels still sit on the lattice that the last JPEG quantiser left. verify()
uses :func:`estimate_jpeg` to read the channel an image really went through when the file
is not a JPEG (``docs/verify.md``)::

    est = estimate_jpeg(rgb_uint8)       # JpegEstimate or None
    est.quality, est.offset, est.strength

Method. The luma plane (JFIF: ``Y = 0.299 R + 0.587 G + 0.114 B``, minus 128) is
transformed with the native blockwise DCT (:func:`rawproof._native.dct8x8`) at each of the
64 grid offsets. For a candidate luminance table ``T`` (the IJG tables,
:func:`rawproof.imageio.ijg_qtable`), the fit of frequency ``k`` is the mean of
``cos(2 pi c / T[k])`` over its coefficients ``c`` that the quantiser did not zero
(``|c| >= T[k] / 2``): close to 1 when the coefficients lie on multiples of ``T[k]``, close to 0
when they do not. A table's fit is the weighted mean over the 20 lowest-frequency AC terms
(weights: the count of non-zero coefficients). The grid is the offset whose best fit is
highest; the quality is the *lowest* quality whose fit comes within :data:`FIT_TOLERANCE` of
that best, refined to the best fit among its three next qualities (a table of half the steps
fits a quantised image almost as well; neighbouring qualities differ by a step or two). The
grid search uses every tenth quality on a 256 x 256 corner of the (at most 512 x 512, centred)
analysed crop; about 1 s on one core. Below :data:`MIN_STRENGTH` no JPEG
trace is reported. Works on 4:4:4 and 4:2:0 files alike (luma is never subsampled).
Measured against Pillow-made files in ``tests/test_jpeg_trace.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rawproof.imageio import ijg_qtable

__all__ = ["JpegEstimate", "estimate_jpeg", "MIN_STRENGTH", "FIT_TOLERANCE"]

MIN_STRENGTH = 0.25
"""Lowest fit (mean cosine, 0..1) reported as a JPEG trace. Measured on Kodak images: never compressed
< 0.01, Pillow q95 0.31-0.36, q90 0.65-0.72, q75 0.85-0.94 (tests/test_jpeg_trace.py)."""

FIT_TOLERANCE = 0.08
"""How far below the best table's fit the chosen (lowest) quality's fit may lie."""

_MAX_SIDE = 512  # analyse at most a centred 512 x 512 crop (4096 blocks): enough coefficients, bounded time
_GRID_SIDE = 256
_QUALITIES = range(20, 100)
# Zig-zag order of the first 21 coefficients (DC excluded below), (u, v) = (row, column).
_ZIGZAG = [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0), (4, 0), (3, 1),
           (2, 2), (1, 3), (0, 4), (0, 5), (1, 4), (2, 3), (3, 2), (4, 1), (5, 0)]
_AC = _ZIGZAG[1:]


@dataclass(frozen=True)
class JpegEstimate:
    """The last JPEG compression read from pixels.

    Attributes:
        quality: IJG quality 20..99 whose luminance table fits best (lowest of near-equal fits).
        offset: ``(dy, dx)`` in 0..7, pixels: block rows start at ``y = dy + 8 i`` of the
            analysed image (a crop of ``dy`` rows off the top of a JPEG gives ``(8 - dy) % 8``).
        strength: The fit of that table, 0..1 (1: every non-zero coefficient on its lattice).
    """

    quality: int
    offset: tuple[int, int]
    strength: float


def _luma(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - _MAX_SIDE) // 2), max(0, (w - _MAX_SIDE) // 2)
    y0, x0 = y0 - y0 % 8, x0 - x0 % 8  # a crop keeps the grid phase only if it starts on a multiple of 8
    crop = rgb[y0:y0 + _MAX_SIDE, x0:x0 + _MAX_SIDE].astype(np.float32)
    return crop @ np.array([0.299, 0.587, 0.114], np.float32) - 128.0


def _coefficients(y: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """n_blocks x 20 AC coefficients (zig-zag 1..20) of the blocks on the grid at (dy, dx)."""
    from rawproof import _native

    sub = y[dy:, dx:]
    h, w = sub.shape[0] // 8 * 8, sub.shape[1] // 8 * 8
    c = _native.dct8x8(np.ascontiguousarray(sub[:h, :w]), False, 1)
    blocks = c.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    return np.stack([blocks[:, u, v] for u, v in _AC], axis=1)


_STEPS = np.array([[ijg_qtable(q)[u, v] for u, v in _AC] for q in _QUALITIES], np.float64)  # qualities x 20
_COARSE = [i for i, q in enumerate(_QUALITIES) if q % 10 == 0 or q == 95]  # grid search: a few tables suffice


def _fits(coef: np.ndarray, rows: list[int] | slice = slice(None)) -> np.ndarray:
    """Fit (see the module docstring) of the candidate tables ``_STEPS[rows]`` to ``coef`` (blocks x 20)."""
    steps = _STEPS[rows][:, None, :]
    c = coef[None].astype(np.float64)
    live = np.abs(c) >= steps / 2
    n = live.sum(axis=(1, 2))
    cos = np.where(live, np.cos(2 * np.pi * c / steps), 0.0).sum(axis=(1, 2))
    return np.where(n > 0, cos / np.maximum(n, 1), 0.0)


def estimate_jpeg(rgb: np.ndarray) -> JpegEstimate | None:
    """The grid offset and IJG quality of the last JPEG compression of ``rgb``, or ``None``.

    Args:
        rgb: uint8, H x W x 3, decoded pixels (at least 16 x 16), as stored: a resize or an
            edit after the last JPEG wipes the trace out, and ``None`` is then the answer.

    Returns:
        :class:`JpegEstimate`, or ``None`` when no table fits at least :data:`MIN_STRENGTH`
        (no JPEG trace, or too few textured blocks to tell).

    Raises:
        ValueError: not a uint8 H x W x 3 array of at least 16 x 16 pixels.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be a uint8 H x W x 3 array, got {getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
    if min(rgb.shape[:2]) < 16:
        raise ValueError(f"need at least 16 x 16 pixels, got {rgb.shape[1]}x{rgb.shape[0]}")
    y = _luma(rgb)
    g = y[:_GRID_SIDE + 8, :_GRID_SIDE + 8]  # the grid search on a quarter of the blocks
    grid = {(dy, dx): float(_fits(_coefficients(g, dy, dx), _COARSE).max()) for dy in range(8) for dx in range(8)}
    offset = max(grid, key=grid.__getitem__)
    fits = _fits(_coefficients(y, *offset))
    top = float(fits.max())
    if top < MIN_STRENGTH:
        return None
    # The lowest quality that fits nearly as well as the best; then the best fit among its
    # next few neighbours, whose tables differ from it by a step or two at most.
    i0 = int(np.flatnonzero(fits >= top - FIT_TOLERANCE)[0])
    i = i0 + int(np.argmax(fits[i0:i0 + 4]))
    return JpegEstimate(quality=int(_QUALITIES[i]), offset=offset, strength=float(fits[i]))
