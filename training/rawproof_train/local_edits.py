"""Local manipulations for the image-level evaluation: one rectangular region edited.

Each edit takes a whole uint8 image, a region drawn by :func:`draw_box` (a share of the
frame uniform in ``area``, aspect ratio 1:2 to 2:1) and returns the edited image with the
truth box ``(x0, y0, x1, y1)`` (pixels, exclusive end):

- ``paste``: the region replaced by a same-sized region of another image (a splice);
- ``blur``: the region blurred (the FAN class ``gaussian``: 5x5, sigma 0.83);
- ``sharpen``: the region sharpened (the FAN class ``sharpen``, HSV value unsharp);
- ``copymove``: a region of the same image copied over the box (source and box disjoint).

Filters run on the region plus an 8 px margin, then only the box is written back, so the
edit has no artificial border inside the box.
"""

from __future__ import annotations

import numpy as np
import torch

from rawproof_train.manipulations import gaussian, sharpen

__all__ = ["LOCAL_EDITS", "draw_box", "local_edit"]

LOCAL_EDITS = ("paste", "blur", "sharpen", "copymove")
"""The local edits, in table order."""

_MARGIN = 8


def draw_box(h: int, w: int, rng: np.random.Generator, area: tuple[float, float] = (0.03, 0.20)) -> tuple[int, int, int, int]:
    """A box covering a share of the ``h`` x ``w`` frame uniform in ``area``, aspect 1:2..2:1, inside the frame."""
    share = float(rng.uniform(*area))
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    bw = int(min(w, round(np.sqrt(share * h * w * aspect))))
    bh = int(min(h, round(share * h * w / max(bw, 1))))
    x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    return x0, y0, x0 + bw, y0 + bh


@torch.no_grad()
def _filtered(rgb: np.ndarray, box: tuple[int, int, int, int], op: str) -> np.ndarray:
    x0, y0, x1, y1 = box
    h, w = rgb.shape[:2]
    ya, yb, xa, xb = max(0, y0 - _MARGIN), min(h, y1 + _MARGIN), max(0, x0 - _MARGIN), min(w, x1 + _MARGIN)
    t = torch.from_numpy(np.ascontiguousarray(rgb[ya:yb, xa:xb])).permute(2, 0, 1)[None].float() / 255.0
    y = gaussian(t) if op == "blur" else sharpen(t)
    out = (y[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return out[y0 - ya:y1 - ya, x0 - xa:x1 - xa]


def local_edit(rgb: np.ndarray, kind: str, rng: np.random.Generator, *, donor: np.ndarray | None = None,
               area: tuple[float, float] = (0.03, 0.20)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Edit one region of ``rgb`` (uint8 H x W x 3); returns (edited copy, truth box).

    Args:
        kind: One of :data:`LOCAL_EDITS`.
        donor: uint8 image the ``paste`` region comes from (at least the box's size; a random
            position in it).
        area: Range of the box's share of the frame.

    Raises:
        ValueError: unknown kind, or ``paste`` without a large enough donor.
    """
    if kind not in LOCAL_EDITS:
        raise ValueError(f"unknown local edit {kind!r}; known: {LOCAL_EDITS}")
    h, w = rgb.shape[:2]
    box = draw_box(h, w, rng, area)
    x0, y0, x1, y1 = box
    bh, bw = y1 - y0, x1 - x0
    out = np.array(rgb, copy=True)
    if kind == "paste":
        if donor is None or donor.shape[0] < bh or donor.shape[1] < bw:
            raise ValueError("paste needs a donor image at least as large as the box")
        dy, dx = int(rng.integers(0, donor.shape[0] - bh + 1)), int(rng.integers(0, donor.shape[1] - bw + 1))
        out[y0:y1, x0:x1] = donor[dy:dy + bh, dx:dx + bw]
    elif kind == "copymove":
        # A source position whose box does not overlap the target (fall back to the farthest corner).
        for _ in range(100):
            sy, sx = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            if sy + bh <= y0 or sy >= y1 or sx + bw <= x0 or sx >= x1:
                break
        else:
            sy, sx = (0 if y0 > h - y1 else h - bh), (0 if x0 > w - x1 else w - bw)
        out[y0:y1, x0:x1] = rgb[sy:sy + bh, sx:sx + bw]
    else:
        out[y0:y1, x0:x1] = _filtered(rgb, box, kind)
    return out, box
