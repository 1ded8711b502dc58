"""Synthetic RAW frames from ordinary sRGB photos (Brooks et al., "Unprocessing Images for
Learned Raw Denoising", CVPR 2019), inverting :func:`rawproof_train.isp.develop_reference`.

Forward (isp)::  stack -> demosaic -> clip -> CCM -> clip -> [tone] -> sRGB curve
Inverse (here):: sRGB -> inverse sRGB curve -> [inverse tone] -> inverse CCM -> clip
                 -> divide by WB gains -> [shot/read noise] -> RGGB mosaic (uint16)

Differences from Brooks et al., each to keep forward and inverse consistent:

* No tone curve by default: the reference ISP applies none (``tone=False`` in both);
  pass ``tone=True`` to both for the smoothstep pair.
* No random brightness gain: the forward ISP has no digital gain to undo it.
* WB gains are drawn as in the paper (R in [1.9, 2.4], B in [1.5, 1.9], G = 1); the
  inverse CCM is a random convex mix of the paper's four XYZ -> camera matrices,
  combined with sRGB -> XYZ and row-normalised, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rawproof.errors import RawFormatError
from rawproof.raw import CFA, XYZ_FROM_SRGB, RawFrame
from rawproof_train.isp import apply_ccm, inverse_tone_curve, srgb_decode

__all__ = [
    "XYZ_TO_CAMS",
    "UnprocessParams",
    "NoiseParams",
    "random_params",
    "random_noise",
    "unprocess_linear",
    "unprocess",
]

XYZ_TO_CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ],
    dtype=np.float64,
)
"""XYZ -> camera matrices of four cameras, from Brooks et al. 2019 (google-research/unprocessing)."""


@dataclass(frozen=True)
class UnprocessParams:
    """Camera model of one synthetic frame.

    Attributes:
        ccm: Camera RGB -> linear sRGB, float32 3x3 (rows sum to 1); its inverse is applied.
        wb: (R, G, B) white-balance gains, G = 1; their reciprocals are applied.
        black: Black level of the synthetic mosaic, DN.
        white: White level of the synthetic mosaic, DN.
        cfa: CFA of the synthetic mosaic.
        tone: Invert the smoothstep tone curve (use the same flag when developing).
    """

    ccm: np.ndarray
    wb: tuple[float, float, float]
    black: float = 512.0
    white: float = 16383.0
    cfa: CFA = CFA.RGGB
    tone: bool = False


@dataclass(frozen=True)
class NoiseParams:
    """Heteroscedastic Gaussian noise on the linear raw signal x in [0,1]: variance ``shot * x + read``."""

    shot: float
    read: float


def random_params(rng: np.random.Generator, *, cfa: CFA | str = CFA.RGGB) -> UnprocessParams:
    """Draw a CCM and WB gains as Brooks et al. do (see module docstring)."""
    w = rng.uniform(1e-8, 1.0, size=4)
    xyz2cam = np.tensordot(w / w.sum(), XYZ_TO_CAMS, axes=1)
    rgb2cam = xyz2cam @ XYZ_FROM_SRGB
    rgb2cam /= rgb2cam.sum(axis=1, keepdims=True)
    ccm = np.linalg.inv(rgb2cam).astype(np.float32)
    wb = (float(rng.uniform(1.9, 2.4)), 1.0, float(rng.uniform(1.5, 1.9)))
    return UnprocessParams(ccm=ccm, wb=wb, cfa=CFA.parse(cfa))


def random_noise(rng: np.random.Generator) -> NoiseParams:
    """Shot/read noise levels as Brooks et al.: log-uniform shot in [1e-4, 0.012], read from a log-linear fit."""
    log_shot = rng.uniform(np.log(1e-4), np.log(0.012))
    log_read = 2.18 * log_shot + 1.20 + rng.normal(0.0, 0.26)
    return NoiseParams(shot=float(np.exp(log_shot)), read=float(np.exp(log_read)))


def _as_float_rgb(srgb: np.ndarray) -> np.ndarray:
    x = np.asarray(srgb)
    if x.ndim != 3 or x.shape[2] != 3:
        raise RawFormatError(f"photo must be H x W x 3, got {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return np.clip(x.astype(np.float32), 0.0, 1.0)


def unprocess_linear(srgb: np.ndarray, params: UnprocessParams) -> np.ndarray:
    """Photo -> white-balanced linear camera RGB (the inverse of :func:`rawproof_train.isp.finish`).

    Args:
        srgb: H x W x 3, uint8 or float in [0,1], sRGB-encoded.
        params: The synthetic camera.

    Returns:
        float32, H x W x 3, white-balanced linear camera RGB, clipped to [0,1]
        (the demosaic-free inverse; ``finish(out, params.ccm, tone=params.tone)`` gives
        the photo back up to clipping of out-of-gamut colours).
    """
    lin = srgb_decode(_as_float_rgb(srgb))
    if params.tone:
        lin = inverse_tone_curve(lin)
    return np.clip(apply_ccm(lin, np.linalg.inv(np.asarray(params.ccm, np.float64))), 0.0, 1.0)


def unprocess(
    srgb: np.ndarray,
    params: UnprocessParams,
    *,
    noise: NoiseParams | None = None,
    rng: np.random.Generator | None = None,
    camera: str = "synthetic (unprocessed sRGB)",
) -> RawFrame:
    """Photo -> synthetic :class:`~rawproof.RawFrame` whose ``to_stack()`` is the NIP input.

    Odd sizes are cropped by one row/column at the bottom/right.

    Args:
        srgb: H x W x 3, uint8 or float in [0,1], sRGB-encoded.
        params: The synthetic camera (:func:`random_params`).
        noise: Shot/read noise on the linear raw signal, or ``None`` for none.
        rng: Generator for the noise (required with ``noise``; seed it for reproducibility).
        camera: The frame's ``camera`` text.

    Returns:
        A frame with a uint16 mosaic in ``params.cfa``, ``params.black``/``white``,
        ``wb`` = ``params.wb`` (``wb_source="given"``) and ``ccm`` = ``params.ccm``.
    """
    x = _as_float_rgb(srgb)
    h, w = x.shape[0] & ~1, x.shape[1] & ~1
    if h < 2 or w < 2:
        raise RawFormatError(f"photo too small: {x.shape[1]}x{x.shape[0]}")
    cam = unprocess_linear(x[:h, :w], params)
    gains = np.array([params.wb[0], params.wb[1], params.wb[1], params.wb[2]], np.float32)
    stack = np.stack([cam[0::2, 0::2, 0], cam[0::2, 1::2, 1], cam[1::2, 0::2, 1], cam[1::2, 1::2, 2]])
    raw = stack / gains[:, None, None]
    if noise is not None:
        if rng is None:
            raise RawFormatError("noise needs a seeded rng")
        raw = raw + rng.normal(size=raw.shape).astype(np.float32) * np.sqrt(noise.shot * raw + noise.read).astype(np.float32)
    raw = np.clip(raw, 0.0, 1.0).astype(np.float32)
    from rawproof import _native

    black = np.full(4, params.black, np.float32)
    try:
        rggb_mosaic = _native.rggb_to_mosaic(np.ascontiguousarray(raw), "RGGB", black, float(params.white), None, 0)
    except (ValueError, TypeError) as e:
        raise RawFormatError(str(e)) from e
    mosaic = _rggb_to_cfa(rggb_mosaic, CFA.parse(params.cfa))
    return RawFrame(
        mosaic=mosaic, cfa=params.cfa, black=(params.black,) * 4, white=params.white,
        wb=params.wb, ccm=params.ccm, camera=camera, wb_source="given",
    )


def _rggb_to_cfa(m: np.ndarray, cfa: CFA) -> np.ndarray:
    """Permute the 2x2 sites of an RGGB mosaic into ``cfa``.

    Each colour plane moves by at most one pixel, and ``to_stack()`` of the result
    equals that of the RGGB mosaic, which is what training consumes.
    """
    out = np.empty_like(m)
    src = {"R": (0, 0), "Gr": (0, 1), "Gb": (1, 0), "B": (1, 1)}
    dst = {
        CFA.RGGB: {"R": (0, 0), "Gr": (0, 1), "Gb": (1, 0), "B": (1, 1)},
        CFA.BGGR: {"R": (1, 1), "Gr": (1, 0), "Gb": (0, 1), "B": (0, 0)},
        CFA.GRBG: {"R": (0, 1), "Gr": (0, 0), "Gb": (1, 1), "B": (1, 0)},
        CFA.GBRG: {"R": (1, 0), "Gr": (1, 1), "Gb": (0, 0), "B": (0, 1)},
    }[cfa]
    for k, (sy, sx) in src.items():
        dy, dx = dst[k]
        out[dy::2, dx::2] = m[sy::2, sx::2]
    return out
