"""Reference (non-neural) ISP: the targets the NIP is trained to reproduce.

``develop_reference`` is deterministic numpy/colour-demosaicing code::

    RGGB stack (black-subtracted, white-normalised, white-balanced, [0,1])
      -> Bayer image (RGGB, 2h x 2w) -> demosaic (Menon 2007 by default)
      -> clip [0,1] -> camera RGB -> linear sRGB (CCM) -> clip [0,1]
      -> [optional smoothstep tone curve] -> sRGB transfer curve (IEC 61966-2-1)

Training-pair convention: the NIP input is ``frame.to_stack(colour=True)`` (white-balanced,
as Korus & Memon do, and in linear sRGB primaries so one NIP serves every sensor) and the
target is ``develop_reference(frame)``, the full-resolution sRGB image of the same frame. There is no tone curve by default (``tone_curve=False``),
so that :mod:`rawproof_train.unprocess` inverts exactly what is applied here.

Demosaicing: Menon et al. 2007 (DDFAPD, ``colour_demosaicing.demosaicing_CFA_Bayer_Menon2007``)
with its refining step, ~0.2 s per 0.4 MP on one core; Malvar 2004 and bilinear are
available for speed. The dataset builder uses Menon.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

from rawproof.errors import RawFormatError
from rawproof.raw import grey_world_wb  # re-exported: the SDK owns it (wb="auto")

if TYPE_CHECKING:
    from rawproof.raw import RawFrame

__all__ = [
    "Demosaic",
    "develop_reference",
    "stack_to_bayer",
    "bayer_to_stack",
    "demosaic",
    "apply_ccm",
    "srgb_encode",
    "srgb_decode",
    "tone_curve",
    "inverse_tone_curve",
    "grey_world_wb",
    "frame_stack",
    "finish",
]


class Demosaic(str, enum.Enum):
    """Demosaicing algorithm of the reference pipeline (all from colour-demosaicing)."""

    MENON2007 = "menon2007"
    """Menon, Andriani & Calvagno 2007, directional filtering + a posteriori decision, with refining. Default."""
    MALVAR2004 = "malvar2004"
    """Malvar, He & Cutler 2004, gradient-corrected linear 5x5 filters; ~5x faster than Menon."""
    BILINEAR = "bilinear"
    """Bilinear interpolation; fastest, visible zipper/colour fringes."""


def _check_stack(stack: np.ndarray) -> np.ndarray:
    s = np.asarray(stack)
    if s.ndim != 3 or s.shape[0] != 4 or s.shape[1] < 1 or s.shape[2] < 1:
        raise RawFormatError(f"stack must be 4 x h x w, got shape {s.shape}")
    return s


def stack_to_bayer(stack: np.ndarray) -> np.ndarray:
    """Interleave an RGGB stack into an RGGB Bayer image.

    Args:
        stack: float, 4 x h x w, channels (R, Gr, Gb, B).

    Returns:
        Same dtype, 2h x 2w, R at (0,0), Gr at (0,1), Gb at (1,0), B at (1,1); a new array.
    """
    s = _check_stack(stack)
    out = np.empty((2 * s.shape[1], 2 * s.shape[2]), dtype=s.dtype)
    out[0::2, 0::2], out[0::2, 1::2], out[1::2, 0::2], out[1::2, 1::2] = s
    return out


def bayer_to_stack(bayer: np.ndarray) -> np.ndarray:
    """Inverse of :func:`stack_to_bayer`: RGGB Bayer 2h x 2w -> 4 x h x w (a new array)."""
    b = np.asarray(bayer)
    if b.ndim != 2 or b.shape[0] % 2 or b.shape[1] % 2:
        raise RawFormatError(f"Bayer image must be 2-D with even sides, got {b.shape}")
    return np.stack([b[0::2, 0::2], b[0::2, 1::2], b[1::2, 0::2], b[1::2, 1::2]])


def demosaic(bayer: np.ndarray, method: Demosaic | str = Demosaic.MENON2007) -> np.ndarray:
    """Demosaic an RGGB Bayer image.

    Args:
        bayer: float, H x W, RGGB, linear.
        method: A :class:`Demosaic` member or value.

    Returns:
        float32, H x W x 3, linear camera RGB, not clipped (interpolators overshoot).
    """
    import colour_demosaicing as cd

    fn = {
        Demosaic.MENON2007: cd.demosaicing_CFA_Bayer_Menon2007,
        Demosaic.MALVAR2004: cd.demosaicing_CFA_Bayer_Malvar2004,
        Demosaic.BILINEAR: cd.demosaicing_CFA_Bayer_bilinear,
    }[Demosaic(method)]
    return np.asarray(fn(np.asarray(bayer, dtype=np.float64), "RGGB"), dtype=np.float32)


def apply_ccm(rgb: np.ndarray, ccm: np.ndarray | None) -> np.ndarray:
    """``out[..., i] = sum_j ccm[i, j] * rgb[..., j]``; ``None`` is the identity.

    Args:
        rgb: float, ... x 3, linear.
        ccm: 3 x 3 (camera RGB -> linear sRGB, rows sum to ~1) or ``None``.

    Returns:
        float32, same shape, linear, not clipped.
    """
    x = np.asarray(rgb, dtype=np.float32)
    if ccm is None:
        return x.copy()
    m = np.asarray(ccm, dtype=np.float32)
    if m.shape != (3, 3):
        raise RawFormatError(f"ccm must be 3x3, got {m.shape}")
    return x @ m.T


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0,1] -> sRGB-encoded [0,1] (IEC 61966-2-1: 12.92 x below 0.0031308, else 1.055 x^(1/2.4) - 0.055).

    Input is clipped to [0,1] first. Returns float32.
    """
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_encode`: sRGB [0,1] -> linear [0,1], float32."""
    x = np.clip(np.asarray(encoded, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def tone_curve(x: np.ndarray) -> np.ndarray:
    """Smoothstep tone curve ``3x^2 - 2x^3`` on [0,1] (Brooks et al. 2019). float32."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return (3.0 * x * x - 2.0 * x * x * x).astype(np.float32)


def inverse_tone_curve(y: np.ndarray) -> np.ndarray:
    """Inverse smoothstep ``0.5 - sin(asin(1 - 2y) / 3)`` on [0,1] (Brooks et al. 2019). float32."""
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
    return (0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)).astype(np.float32)


def frame_stack(frame: RawFrame) -> tuple[np.ndarray, str]:
    """White-balanced RGGB stack of a frame: its own WB, or grey-world when it has none.

    Returns:
        (float32 4 x H/2 x W/2 in [0,1], the WB source: ``frame.wb_source`` or ``"grey-world"``).
    """
    if frame.wb is not None:
        return frame.to_stack(white_balance=True), frame.wb_source or "given"
    raw = frame.to_stack(white_balance=False)
    gains = np.asarray(grey_world_wb(raw), dtype=np.float32)[:, None, None]
    return np.clip(raw * gains, 0.0, 1.0).astype(np.float32), "grey-world"


def develop_reference(
    src: RawFrame | np.ndarray,
    *,
    ccm: np.ndarray | None = None,
    method: Demosaic | str = Demosaic.MENON2007,
    tone: bool = False,
) -> np.ndarray:
    """Develop a frame or an RGGB stack to sRGB with the reference pipeline.

    Args:
        src: A :class:`~rawproof.RawFrame` (its WB is applied, grey-world if it has
            none, and its CCM is used unless ``ccm`` is given), or an RGGB stack,
            float, 4 x h x w, black-subtracted, white-normalised, white-balanced, [0,1]
            (the NIP input).
        ccm: Camera RGB -> linear sRGB 3x3. For a stack, ``None`` means identity
            (camera RGB treated as linear sRGB); for a frame, ``None`` means the frame's
            (identity if it has none).
        method: Demosaicing algorithm (:class:`Demosaic`).
        tone: Apply the smoothstep tone curve before the sRGB curve.

    Returns:
        float32, 2h x 2w x 3 (H x W x 3 of the mosaic), sRGB-encoded, [0,1]; deterministic.
    """
    from rawproof.raw import RawFrame

    if isinstance(src, RawFrame):
        stack, _ = frame_stack(src)
        if ccm is None:
            ccm = src.ccm
    else:
        stack = _check_stack(src)
    return finish(demosaic(stack_to_bayer(np.asarray(stack, dtype=np.float32)), method), ccm, tone=tone)


def finish(camera_rgb: np.ndarray, ccm: np.ndarray | None, *, tone: bool = False) -> np.ndarray:
    """The colour half of :func:`develop_reference`, after demosaicing.

    Args:
        camera_rgb: float, H x W x 3, white-balanced linear camera RGB.
        ccm: Camera RGB -> linear sRGB 3x3, ``None`` for identity.
        tone: Apply the smoothstep tone curve.

    Returns:
        float32, H x W x 3, sRGB-encoded, [0,1].
    """
    lin = np.clip(apply_ccm(np.clip(camera_rgb, 0.0, 1.0), ccm), 0.0, 1.0)
    if tone:
        lin = tone_curve(lin)
    return srgb_encode(lin)
