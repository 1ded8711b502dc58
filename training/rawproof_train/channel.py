"""The distribution channel between the camera and the forensic analysis: downscale, then JPEG.

Korus & Memon model social-media distribution as a 2x downscale followed by JPEG quality 50.
The downscale is ``F.interpolate(..., mode="bilinear", align_corners=False, antialias=False)``:
at an exact factor of 2 with half-pixel centres this is a 2x2 box average, which is what the
reference code's default channel does (``distribution_down='pool'``, a 2x2 average pool). (Its
alternative ``'bilin'``, TF1 ``resize_images`` without half-pixel centres, would instead pick every
other pixel.) Other factors are plain bilinear without antialiasing.

Two JPEG back ends with the same interface:

* ``"torch"``: :func:`rawproof_train.jpeg.djpeg` with the chosen rounding approximation
  (differentiable; for training).
* ``"libjpeg"``: real JPEG through Pillow (libjpeg-turbo). The downscaled image is rounded to
  8 bits, encoded and decoded on the CPU and returned on the input's device and dtype. Not
  differentiable (the output does not require grad); for evaluation.

Chroma subsampling defaults to 4:4:4, as the paper's dJPEG has no chroma subsampling; pass
``subsampling="420"`` to model the Pillow default used by most web services.
"""

from __future__ import annotations

import io
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rawproof_train._checks import check_choice, check_shape
from rawproof_train.jpeg import Rounding, Subsampling, djpeg, quality_qtable

__all__ = ["Backend", "downscale", "libjpeg_roundtrip", "channel", "Channel"]


class Backend(str, Enum):
    """Which JPEG implementation the channel uses."""

    TORCH = "torch"
    """Differentiable dJPEG (training)."""
    LIBJPEG = "libjpeg"
    """Pillow / libjpeg-turbo encode + decode (evaluation, not differentiable)."""


_PILLOW_SUBSAMPLING = {Subsampling.S444: 0, Subsampling.S420: 2}


def downscale(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Bilinear downscale by an integer ``factor`` (no antialiasing; 2x2 box average for factor 2).

    Shape:
        - x: (N, C, H, W), H, W >= factor
        - output: (N, C, H // factor, W // factor)
    """
    check_shape(x, ["N", "C", "H", "W"], "x")
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h // factor, w // factor), mode="bilinear", align_corners=False, antialias=False)


def libjpeg_roundtrip(x: torch.Tensor, quality: int, subsampling: Subsampling | str = Subsampling.S444) -> torch.Tensor:
    """Encode and decode each image with Pillow's libjpeg (baseline, IJG quality tables).

    Args:
        x: sRGB in [0, 1]; rounded to uint8 before encoding.
        quality: IJG quality 1..100.
        subsampling: ``"444"`` or ``"420"``.

    Returns:
        The decoded images in [0, 1] (multiples of 1/255), on x's device and dtype, without grad.

    Shape:
        - x: (N, 3, H, W)
        - output: (N, 3, H, W)
    """
    check_shape(x, ["N", "3", "H", "W"], "x")
    quality_qtable(quality)
    check_choice(subsampling, [m.value for m in Subsampling] + list(Subsampling), "subsampling")
    images = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=_PILLOW_SUBSAMPLING[Subsampling(subsampling)])
        with Image.open(io.BytesIO(buf.getvalue())) as dec:
            decoded.append(np.asarray(dec.convert("RGB")))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0
    return out


def channel(
    x: torch.Tensor,
    downscale_factor: int = 2,
    quality: int = 50,
    rounding: Rounding | str = Rounding.SIN,
    backend: Backend | str = Backend.TORCH,
    subsampling: Subsampling | str = Subsampling.S444,
) -> torch.Tensor:
    """Downscale by ``downscale_factor``, then JPEG at ``quality``.

    Args:
        x: sRGB in [0, 1].
        downscale_factor: integer >= 1 (1 skips the downscale).
        quality: IJG quality 1..100.
        rounding: dJPEG rounding (``backend="torch"`` only).
        backend: ``"torch"`` (differentiable) or ``"libjpeg"`` (real JPEG, no grad).
        subsampling: ``"444"`` or ``"420"``.

    Shape:
        - x: (N, 3, H, W)
        - output: (N, 3, H // downscale_factor, W // downscale_factor)

    Example:
        >>> channel(torch.rand(1, 3, 64, 48)).shape
        torch.Size([1, 3, 32, 24])
    """
    check_shape(x, ["N", "3", "H", "W"], "x")
    check_choice(backend, [m.value for m in Backend] + list(Backend), "backend")
    if isinstance(downscale_factor, bool) or not isinstance(downscale_factor, int) or downscale_factor < 1:
        raise ValueError(f"downscale_factor must be an integer >= 1, got {downscale_factor!r}")
    small = downscale(x, downscale_factor)
    if Backend(backend) is Backend.LIBJPEG:
        return libjpeg_roundtrip(small, quality, subsampling)
    return djpeg(small, quality, rounding, subsampling)


class Channel(nn.Module):
    """Module form of :func:`channel`.

    Args:
        downscale: integer downscale factor (2 in the paper).
        quality: JPEG quality (50 in the paper).
        rounding: dJPEG rounding approximation for the torch backend.
        backend: ``"torch"`` or ``"libjpeg"``.
        subsampling: ``"444"`` (default, as the paper's dJPEG) or ``"420"``.

    Shape:
        - input: (N, 3, H, W), sRGB [0, 1]
        - output: (N, 3, H // downscale, W // downscale), sRGB [0, 1]
    """

    def __init__(
        self,
        downscale: int = 2,
        quality: int = 50,
        rounding: Rounding | str = Rounding.SIN,
        backend: Backend | str = Backend.TORCH,
        subsampling: Subsampling | str = Subsampling.S444,
    ) -> None:
        super().__init__()
        quality_qtable(quality)
        check_choice(backend, [m.value for m in Backend] + list(Backend), "backend")
        check_choice(rounding, [m.value for m in Rounding] + list(Rounding), "rounding")
        check_choice(subsampling, [m.value for m in Subsampling] + list(Subsampling), "subsampling")
        if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
            raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
        self.downscale = downscale
        self.quality = int(quality)
        self.rounding = Rounding(rounding)
        self.backend = Backend(backend)
        self.subsampling = Subsampling(subsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel(x, self.downscale, self.quality, self.rounding, self.backend, self.subsampling)

    def extra_repr(self) -> str:
        return (
            f"downscale={self.downscale}, quality={self.quality}, rounding={self.rounding.value!r}, "
            f"backend={self.backend.value!r}, subsampling={self.subsampling.value!r}"
        )
