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

Two resize filters: ``"box"`` (the paper's channel, above) and ``"bilinear"``, Pillow's
``Image.BILINEAR``, which antialiases (a triangle filter stretched by the factor: taps
[1, 3, 3, 1] / 8 at 2x); ``F.interpolate(..., antialias=True)`` is built to match it. Real
platforms use the latter; a FAN trained only behind the box filter mistakes it for a
manipulation. :class:`RandomChannel` draws quality, subsampling and filter anew for every
batch so the NIP and FAN learn traces that survive all of them.
"""

from __future__ import annotations

import io
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rawproof.imageio import PILLOW_SUBSAMPLING
from rawproof_train._checks import check_choice, check_shape
from rawproof_train.jpeg import Rounding, Subsampling, djpeg, quality_qtable

__all__ = ["Backend", "Resize", "downscale", "libjpeg_roundtrip", "channel", "Channel", "RandomChannel"]


class Backend(str, Enum):
    """Which JPEG implementation the channel uses."""

    TORCH = "torch"
    """Differentiable dJPEG (training)."""
    LIBJPEG = "libjpeg"
    """Pillow / libjpeg-turbo encode + decode (evaluation, not differentiable)."""
    STRAIGHT_THROUGH = "libjpeg-st"
    """Real libjpeg forward, identity gradient backward (``x + (libjpeg(x) - x).detach()``): the FAN sees
    the real codec's output while the NIP still gets a gradient, so neither learns the simulator."""
    NONE = "none"
    """No codec: the downscale alone (as for a PNG share); keeps traces from depending on JPEG."""


class Resize(str, Enum):
    """The downscale filter of the channel."""

    BOX = "box"
    """Bilinear without antialiasing: a 2x2 box average at factor 2 (the paper's channel)."""
    BILINEAR = "bilinear"
    """Antialiased bilinear, as Pillow's ``Image.BILINEAR`` (what platforms and the demo use)."""


def downscale(x: torch.Tensor, factor: int = 2, resize: Resize | str = Resize.BOX) -> torch.Tensor:
    """Downscale by an integer ``factor`` with the ``resize`` filter (see :class:`Resize`).

    Shape:
        - x: (N, C, H, W), H, W >= factor
        - output: (N, C, H // factor, W // factor)
    """
    check_shape(x, ["N", "C", "H", "W"], "x")
    check_choice(resize, [m.value for m in Resize] + list(Resize), "resize")
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    antialias = Resize(resize) is Resize.BILINEAR
    return F.interpolate(x, size=(h // factor, w // factor), mode="bilinear", align_corners=False, antialias=antialias)


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
        Image.fromarray(im, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=PILLOW_SUBSAMPLING[Subsampling(subsampling).value])
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
    resize: Resize | str = Resize.BOX,
) -> torch.Tensor:
    """Downscale by ``downscale_factor``, then JPEG at ``quality``.

    Args:
        x: sRGB in [0, 1].
        downscale_factor: integer >= 1 (1 skips the downscale).
        quality: IJG quality 1..100.
        rounding: dJPEG rounding (``backend="torch"`` only).
        backend: ``"torch"`` (differentiable), ``"libjpeg"`` (real JPEG, no grad), ``"libjpeg-st"``
            (real JPEG, straight-through gradient) or ``"none"`` (downscale only); see :class:`Backend`.
        subsampling: ``"444"`` or ``"420"``.
        resize: downscale filter, ``"box"`` or ``"bilinear"`` (:class:`Resize`).

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
    small = downscale(x, downscale_factor, resize)
    backend = Backend(backend)
    if backend is Backend.NONE:
        return small
    if backend is Backend.LIBJPEG:
        return libjpeg_roundtrip(small, quality, subsampling)
    if backend is Backend.STRAIGHT_THROUGH:
        return small + (libjpeg_roundtrip(small, quality, subsampling) - small).detach()
    return djpeg(small, quality, rounding, subsampling)


class Channel(nn.Module):
    """Module form of :func:`channel`.

    Args:
        downscale: integer downscale factor (2 in the paper).
        quality: JPEG quality (50 in the paper).
        rounding: dJPEG rounding approximation for the torch backend.
        backend: ``"torch"`` or ``"libjpeg"``.
        subsampling: ``"444"`` (default, as the paper's dJPEG) or ``"420"``.
        resize: ``"box"`` (default, the paper's) or ``"bilinear"`` (Pillow's, antialiased).

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
        resize: Resize | str = Resize.BOX,
    ) -> None:
        super().__init__()
        quality_qtable(quality)
        check_choice(backend, [m.value for m in Backend] + list(Backend), "backend")
        check_choice(rounding, [m.value for m in Rounding] + list(Rounding), "rounding")
        check_choice(subsampling, [m.value for m in Subsampling] + list(Subsampling), "subsampling")
        check_choice(resize, [m.value for m in Resize] + list(Resize), "resize")
        if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
            raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
        self.downscale = downscale
        self.quality = int(quality)
        self.rounding = Rounding(rounding)
        self.backend = Backend(backend)
        self.subsampling = Subsampling(subsampling)
        self.resize = Resize(resize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel(x, self.downscale, self.quality, self.rounding, self.backend, self.subsampling, self.resize)

    def extra_repr(self) -> str:
        return (
            f"downscale={self.downscale}, quality={self.quality}, rounding={self.rounding.value!r}, "
            f"backend={self.backend.value!r}, subsampling={self.subsampling.value!r}, resize={self.resize.value!r}"
        )


class RandomChannel(nn.Module):
    """A :class:`Channel` whose quality, subsampling, resize filter and codec back end are drawn for every call.

    Each of ``qualities``, ``subsamplings``, ``resizes`` and ``backends`` is a list of choices drawn uniformly
    and independently (repeat a value to weight it) with torch's global generator, so a seeded,
    checkpointed training run draws the same sequence when resumed. The whole batch of one call
    goes through one draw. :attr:`nominal` is the channel of the first choices, the one
    validation and the SDK's replay of a camera original use. ``backends=["libjpeg"]`` puts real
    JPEG behind every choice (no gradient: for a FAN trained on a frozen NIP); a mix such as
    ``["libjpeg-st", "torch", "none"]`` draws the codec per batch, as MBRS does, so a jointly
    trained FAN does not learn the simulator.

    Shape:
        - input: (N, 3, H, W), sRGB [0, 1]
        - output: (N, 3, H // downscale, W // downscale), sRGB [0, 1]

    Example:
        >>> ch = RandomChannel(qualities=[50, 30, 90], subsamplings=["444", "420"], rounding="hard")
        >>> ch(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        downscale: int = 2,
        qualities: list[int] | tuple[int, ...] = (50,),
        rounding: Rounding | str = Rounding.SIN,
        subsamplings: list[str] | tuple[str, ...] = ("444",),
        resizes: list[str] | tuple[str, ...] = ("box",),
        backends: list[str] | tuple[str, ...] = ("torch",),
    ) -> None:
        super().__init__()
        if not qualities or not subsamplings or not resizes or not backends:
            raise ValueError("qualities, subsamplings, resizes and backends each need at least one choice")
        self.choices = [
            Channel(downscale, q, rounding, b, s, r) for b in backends for q in qualities for s in subsamplings for r in resizes
        ]
        self.sizes = (len(backends), len(qualities), len(subsamplings), len(resizes))

    @property
    def nominal(self) -> Channel:
        return self.choices[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pick = int(torch.randint(len(self.choices), (1,)))
        return self.choices[pick](x)

    def extra_repr(self) -> str:
        qs = sorted({c.quality for c in self.choices})
        subs = sorted({c.subsampling.value for c in self.choices})
        rs = sorted({c.resize.value for c in self.choices})
        bs = sorted({c.backend.value for c in self.choices})
        return (
            f"downscale={self.nominal.downscale}, qualities={qs}, subsamplings={subs}, resizes={rs}, "
            f"rounding={self.nominal.rounding.value!r}, backends={bs}"
        )
