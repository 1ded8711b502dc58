"""The post-processing operations the FAN learns to tell apart, as differentiable torch ops.

Parameters follow Korus & Memon (CVPR 2019):

* ``native``: identity.
* ``sharpen``: unsharp kernel ``(1/6) [[-1, -4, -1], [-4, 26, -4], [-1, -4, -1]]`` on the HSV value
  channel only. Since ``hsv_to_rgb(h, s, v)`` is linear in ``v`` and ``v = max(r, g, b)``, the RGB
  result is ``rgb * v' / v``: hue and saturation are kept exactly (until the clip to [0, 1]);
  black pixels (``v == 0``, hue and saturation undefined) become grey ``v'``, as an HSV round trip
  with ``s = 0`` gives.
* ``gaussian``: 5x5 Gaussian blur, sigma 0.83, reflect padding.
* ``jpeg``: dJPEG quality 80 (4:4:4, the given rounding approximation).
* ``resample``: bilinear 1:2 downscale then 2:1 upscale (``F.interpolate``, half-pixel centres,
  no antialiasing; at exactly 2x the downscale is a 2x2 box average, the upscale the 1/4-3/4
  triangle filter).

Every op maps sRGB N x 3 x H x W in [0, 1] to the same shape, clipped to [0, 1]. Each is a pure
function plus a thin ``nn.Module``; :data:`MANIPULATIONS` lists the modules in class-label order,
so adding a class is one registry line.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rawproof_train._checks import check_shape
from rawproof_train.jpeg import Rounding, Subsampling, djpeg

__all__ = [
    "SHARPEN_KERNEL",
    "native",
    "sharpen",
    "gaussian",
    "gaussian_kernel",
    "jpeg",
    "resample",
    "Native",
    "Sharpen",
    "Gaussian",
    "JPEG",
    "Resample",
    "MANIPULATIONS",
    "create_manipulation",
]

SHARPEN_KERNEL = ((-1 / 6, -4 / 6, -1 / 6), (-4 / 6, 26 / 6, -4 / 6), (-1 / 6, -4 / 6, -1 / 6))
"""Korus & Memon's sharpening kernel (sums to 1)."""


def _check_rgb(x: torch.Tensor) -> None:
    check_shape(x, ["N", "3", "H", "W"], "x")


def native(x: torch.Tensor) -> torch.Tensor:
    """Identity (the unmanipulated class).

    Shape:
        - x: (N, 3, H, W)
        - output: (N, 3, H, W), the same tensor
    """
    _check_rgb(x)
    return x


def sharpen(x: torch.Tensor) -> torch.Tensor:
    """Sharpen the HSV value channel with :data:`SHARPEN_KERNEL` (reflect padding), keeping hue and saturation.

    Args:
        x: sRGB in [0, 1].

    Returns:
        ``clip(rgb * v' / v, 0, 1)`` where ``v = max_c rgb`` and ``v'`` is the filtered ``v``.

    Shape:
        - x: (N, 3, H, W), H, W >= 2
        - output: (N, 3, H, W)

    Example:
        >>> x = torch.full((1, 3, 4, 4), 0.5)
        >>> torch.allclose(sharpen(x), x)
        True
    """
    _check_rgb(x)
    v = x.amax(dim=1, keepdim=True)
    k = torch.tensor(SHARPEN_KERNEL, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    v_new = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="reflect"), k)
    lit = v > 1e-6
    safe_v = torch.where(lit, v, torch.ones_like(v))
    out = torch.where(lit, x * (v_new / safe_v), v_new.expand_as(x))
    return out.clamp(0.0, 1.0)


def gaussian_kernel(size: int = 5, sigma: float = 0.83, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel, (size, size), sampled at integer offsets."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian(x: torch.Tensor, size: int = 5, sigma: float = 0.83) -> torch.Tensor:
    """Gaussian blur per channel (reflect padding), clipped to [0, 1].

    Shape:
        - x: (N, 3, H, W), H, W > size // 2
        - output: (N, 3, H, W)
    """
    _check_rgb(x)
    if size % 2 != 1 or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"size must be odd and sigma > 0, got size={size}, sigma={sigma}")
    k = gaussian_kernel(size, sigma, x.dtype, x.device).expand(3, 1, size, size)
    p = size // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), k, groups=3).clamp(0.0, 1.0)


def jpeg(x: torch.Tensor, quality: int = 80, rounding: Rounding | str = Rounding.SIN) -> torch.Tensor:
    """dJPEG at ``quality`` with 4:4:4 chroma (see :func:`rawproof_train.jpeg.djpeg`).

    Shape:
        - x: (N, 3, H, W)
        - output: (N, 3, H, W)
    """
    _check_rgb(x)
    return djpeg(x, quality, rounding, Subsampling.S444)


def resample(x: torch.Tensor) -> torch.Tensor:
    """Bilinear downscale by 2 then bilinear upscale back to the input size, clipped to [0, 1].

    Shape:
        - x: (N, 3, H, W), H, W >= 2
        - output: (N, 3, H, W)
    """
    _check_rgb(x)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(h // 2, w // 2), mode="bilinear", align_corners=False, antialias=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0.0, 1.0)


class Native(nn.Module):
    """Module form of :func:`native`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return native(x)


class Sharpen(nn.Module):
    """Module form of :func:`sharpen`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sharpen(x)


class Gaussian(nn.Module):
    """Module form of :func:`gaussian` (5x5, sigma 0.83 by default)."""

    def __init__(self, size: int = 5, sigma: float = 0.83) -> None:
        super().__init__()
        self.size = size
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian(x, self.size, self.sigma)


class JPEG(nn.Module):
    """Module form of :func:`jpeg` (quality 80 by default)."""

    def __init__(self, quality: int = 80, rounding: Rounding | str = Rounding.SIN) -> None:
        super().__init__()
        self.quality = quality
        self.rounding = Rounding(rounding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return jpeg(x, self.quality, self.rounding)


class Resample(nn.Module):
    """Module form of :func:`resample`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resample(x)


MANIPULATIONS: dict[str, Callable[[], nn.Module]] = {
    "native": Native,
    "sharpen": Sharpen,
    "gaussian": Gaussian,
    "jpeg": JPEG,
    "resample": Resample,
}
"""Manipulation classes in label order (label ``i`` is ``list(MANIPULATIONS)[i]``), name -> module factory."""


def create_manipulation(name: str, **kw: object) -> nn.Module:
    """Build the module for manipulation ``name`` (a :data:`MANIPULATIONS` key).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in MANIPULATIONS:
        raise ValueError(f"unknown manipulation {name!r}; known: {list(MANIPULATIONS)}")
    return MANIPULATIONS[name](**kw)
