"""How visible a NIP's trace is: flat-region row/column differences, and the loss that bounds them.

A forensic trace that survives a 2x downscale and JPEG q50 must live at low-to-mid frequencies,
where the eye sees it best in flat areas (sky, walls). One definition of "flat" serves the
training loss and the acceptance metric, so the loss bounds exactly what is measured:

* :func:`flat_mask`: pixels whose reference luma varies little in a 7x7 window (std below
  :data:`FLAT_STD`, in [0, 1] units: 2 DN of 8 bits).
* :func:`row_col_differences` (metric, numpy): mean absolute row-to-row and column-to-column
  difference of an image over the flat pixels, in 8-bit DN. The acceptance compares the NIP's
  to the reference pipeline's on the same pixels (ratio <= 1.5).
* :func:`flat_gradient_penalty` (loss, torch): mean squared row/column difference of the NIP's
  *residual* against the reference (NIP - reference) over flat pixels, in squared 8-bit DN; it
  is zero when the NIP adds nothing to the reference's own row/column structure there, and
  leaves textured areas (where the trace is masked) free.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

__all__ = ["FLAT_STD", "WINDOW", "flat_mask", "flat_mask_np", "row_col_differences", "flat_gradient_penalty"]

FLAT_STD = 2.0 / 255.0
"""Local std of the reference luma (on [0, 1]) below which a pixel counts as flat."""
WINDOW = 7
"""Side of the square window of the local std, pixels."""


def flat_mask(target: torch.Tensor) -> torch.Tensor:
    """Flat pixels of reference images (torch): float 0/1, N x 1 x H x W, from N x 3 x H x W in [0, 1]."""
    luma = target.mean(1, keepdim=True)
    mean = F.avg_pool2d(luma, WINDOW, 1, WINDOW // 2, count_include_pad=False)
    sq = F.avg_pool2d(luma * luma, WINDOW, 1, WINDOW // 2, count_include_pad=False)
    return ((sq - mean * mean).clamp_min(0).sqrt() < FLAT_STD).float()


def flat_mask_np(reference: np.ndarray) -> np.ndarray:
    """Flat pixels of one reference image (numpy): bool H x W from H x W x 3 uint8 or float [0, 1]."""
    ref = np.asarray(reference)
    ref = ref / 255.0 if ref.dtype == np.uint8 else ref.astype(np.float64)
    luma = ref.mean(2)
    mean = uniform_filter(luma, WINDOW, mode="nearest")
    var = uniform_filter(luma * luma, WINDOW, mode="nearest") - mean * mean
    return np.sqrt(np.clip(var, 0, None)) < FLAT_STD


def row_col_differences(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean |I[y+1, x] - I[y, x]| and mean |I[y, x+1] - I[y, x]| over pixel pairs both inside ``mask``, 8-bit DN.

    Args:
        image: H x W x 3 uint8 (or float in [0, 255]).
        mask: H x W bool, e.g. :func:`flat_mask_np` of the reference.

    Returns:
        ``(rows, cols)``; NaN where the mask holds no pair.
    """
    im = np.asarray(image, dtype=np.float64)
    dy = np.abs(np.diff(im, axis=0)).mean(2)[mask[1:] & mask[:-1]]
    dx = np.abs(np.diff(im, axis=1)).mean(2)[mask[:, 1:] & mask[:, :-1]]
    return (float(dy.mean()) if dy.size else float("nan"), float(dx.mean()) if dx.size else float("nan"))


def flat_gradient_penalty(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared row/column difference of ``rgb - target`` over the target's flat pixels, squared 8-bit DN.

    Shape: rgb and target N x 3 x H x W in [0, 1]; returns a scalar.
    """
    r = rgb - target
    flat = flat_mask(target)
    dy = (r[..., 1:, :] - r[..., :-1, :]) ** 2 * (flat[..., 1:, :] * flat[..., :-1, :])
    dx = (r[..., :, 1:] - r[..., :, :-1]) ** 2 * (flat[..., :, 1:] * flat[..., :, :-1])
    return 255.0**2 * (dy.mean() + dx.mean())
