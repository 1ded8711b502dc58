"""Type stub of ``rawproof._native``, the C++ kernels (native/src).

All functions validate every argument before allocating or touching memory: a wrong
dtype or a non-C-contiguous array raises ``TypeError`` (arrays are never silently
converted or copied), a wrong value or shape raises ``ValueError``. Each returns a new
array, runs its loops with the GIL released (other Python threads keep running), and
splits the work over row bands on ``threads`` threads (0 = all hardware threads,
at most 1024; small inputs use fewer). High-level callers use
:meth:`rawproof.RawFrame.from_buffer` and :meth:`rawproof.RawFrame.to_stack`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

_Params = Sequence[float] | npt.NDArray[np.floating]

def unpack(
    buf: Buffer,
    width: int,
    height: int,
    fmt: Literal["raw10", "raw12", "raw14", "u16le", "u8"],
    stride: int = 0,
    threads: int = 0,
) -> npt.NDArray[np.uint16]:
    """Unpack a sensor dump into a Bayer mosaic.

    Formats: ``raw10``/``raw12``/``raw14`` are MIPI CSI-2 packed. RAW10: 4 pixels in
    5 bytes, bytes 0..3 hold bits 9..2 of pixels 0..3, byte 4 the 2 LSBs (pixel 0 in
    bits 1:0 ... pixel 3 in bits 7:6). RAW12: 2 pixels in 3 bytes, bytes 0, 1 hold bits
    11..4, byte 2 the LSBs (pixel 0 low nibble). RAW14: 4 pixels in 7 bytes, bytes 0..3
    hold bits 13..6, bytes 4..6 the four 6-bit LSB fields packed little-endian.
    ``u16le``: little-endian uint16; ``u8``: uint8 widened to uint16.

    Args:
        buf: The packed bytes: a 1-D C-contiguous numpy uint8 array, or any contiguous
            unsigned-byte buffer (bytes, bytearray, memoryview). Read, not kept.
        width: Pixels per row, > 0; a multiple of 4 for raw10/raw14 and of 2 for raw12.
        height: Rows, > 0; width * height <= 2**31.
        fmt: Pixel format, one of the names above.
        stride: Bytes per row, >= the minimal row size; 0 means the minimal row size.
        threads: Worker threads, 0 = all cores.

    Returns:
        Mosaic, uint16, height x width, DN exactly as stored (not scaled), a new array.

    Raises:
        ValueError: unknown fmt, width/height <= 0 or too large, width not a multiple of
            the group size ("odd width for packed format"), stride too small, or
            ``len(buf)`` neither ``stride * height`` nor ``stride * (height - 1) +
            row_bytes`` (the last row unpadded), or buf not 1-D.
        TypeError: buf is not an unsigned-byte buffer or is not contiguous.
    """

def mosaic_to_rggb(
    mosaic: npt.NDArray[np.uint16],
    cfa: Literal["RGGB", "BGGR", "GRBG", "GBRG"],
    black: _Params,
    white: float,
    wb: _Params | None = None,
    threads: int = 0,
) -> npt.NDArray[np.float32]:
    """Bayer mosaic to the half-resolution RGGB stack (the NIP input).

    ``out[c] = clip((v - black[c]) / (white - black[c]) * wb[c], 0, 1)``, computed in
    float32 as ``(v - black[c]) * scale[c]`` with ``scale = wb / (white - black)``.

    Args:
        mosaic: uint16, H x W, C-contiguous, DN including black; H, W even and >= 2.
        cfa: Letters of the mosaic's top-left 2x2 block, row-major, uppercase.
        black: 4 black levels (R, Gr, Gb, B), DN, 0 <= black[c] < white.
        white: Saturation level, DN, finite and > 0.
        wb: 4 white-balance gains (R, Gr, Gb, B), finite and > 0; None = all ones.
        threads: Worker threads, 0 = all cores.

    Returns:
        float32, 4 x H/2 x W/2, channels always (R, Gr, Gb, B) whatever the CFA (Gr is
        the green on the red rows), linear [0, 1], a new array.

    Raises:
        ValueError: bad shape, unknown CFA, black/white/wb out of range or not 4 values.
        TypeError: mosaic not a C-contiguous uint16 array.
    """

def rggb_to_mosaic(
    stack: npt.NDArray[np.float32],
    cfa: Literal["RGGB", "BGGR", "GRBG", "GBRG"],
    black: _Params,
    white: float,
    wb: _Params | None = None,
    threads: int = 0,
) -> npt.NDArray[np.uint16]:
    """Inverse of :func:`mosaic_to_rggb`, for tests and synthetic data.

    ``v = round(clip(x / wb[c], 0, 1) * (white - black[c]) + black[c])`` with rounding
    half away from zero; ``rggb_to_mosaic(mosaic_to_rggb(m)) == m`` when nothing clips.

    Args:
        stack: float32, 4 x h x w, C-contiguous, channels (R, Gr, Gb, B), linear; no NaN.
        cfa: Pattern of the output mosaic (see :func:`mosaic_to_rggb`).
        black: 4 black levels (R, Gr, Gb, B), DN, 0 <= black[c] < white.
        white: Saturation level, DN, 0 < white <= 65535.
        wb: 4 white-balance gains (R, Gr, Gb, B), finite and > 0; None = all ones.
        threads: Worker threads, 0 = all cores.

    Returns:
        Mosaic, uint16, 2h x 2w, DN including black, a new array.

    Raises:
        ValueError: NaN in stack, bad shape, unknown CFA, black/white/wb out of range.
        TypeError: stack not a C-contiguous float32 array.
    """

def dct8x8(image: npt.NDArray[np.float32], inverse: bool = False, threads: int = 0) -> npt.NDArray[np.float32]:
    """Blockwise 8x8 orthonormal DCT-II (``inverse=True``: DCT-III), as JPEG does.

    Block (i, j) coefficient (u, v) (u vertical frequency) is stored at
    ``[8i + u, 8j + v]`` (``[..., c]`` per channel), i.e. ``D @ block @ D.T`` with the
    orthonormal DCT-II matrix ``D``; the inverse is ``D.T @ coeffs @ D``. Float32
    arithmetic; on CPUs with FMA the result may differ from the baseline build by
    about one float32 ulp.

    Args:
        image: float32, H x W or H x W x C (1 <= C <= 64), C-contiguous; H, W positive
            multiples of 8. Any units (pixel values or coefficients).
        inverse: Apply the inverse transform.
        threads: Worker threads, 0 = all cores.

    Returns:
        float32, same shape as ``image``, a new array.

    Raises:
        ValueError: H or W not a positive multiple of 8, wrong ndim, too many channels.
        TypeError: image not a C-contiguous float32 array.
    """
