"""Sensor frames: the :class:`RawFrame` dataclass and its constructors.

The data path starts here::

    RawFrame.from_file(path) / RawFrame.from_buffer(buf, ...)   # camera file or sensor dump
        -> RawFrame.to_stack()                                   # RGGB stack, the NIP input
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from rawproof.errors import RawFormatError

__all__ = ["CFA", "RawFrame"]


class CFA(str, enum.Enum):
    """Bayer colour filter array pattern.

    Naming rule: the letters of the top-left 2x2 block of the mosaic in row-major
    order; ``GRBG`` means row 0 is G R and row 1 is B G.
    """

    RGGB = "RGGB"
    """Red at (0,0), blue at (1,1)."""
    BGGR = "BGGR"
    """Blue at (0,0), red at (1,1)."""
    GRBG = "GRBG"
    """Green at (0,0), red at (0,1), blue at (1,0)."""
    GBRG = "GBRG"
    """Green at (0,0), blue at (0,1), red at (1,0)."""

    @classmethod
    def parse(cls, value: str | CFA) -> CFA:
        """Accept a CFA member or its name in any case; raise :class:`RawFormatError` otherwise."""
        if isinstance(value, CFA):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            raise RawFormatError(
                f"unknown CFA pattern {value!r}; expected one of {[c.value for c in cls]}"
            ) from None


@dataclass(frozen=True)
class RawFrame:
    """One sensor frame and the metadata needed to develop it.

    Attributes:
        mosaic: Bayer mosaic, uint16, H x W, digital numbers including the black
            level. H and W are even. Owned by the frame (a copy, never a view of a
            closed file).
        cfa: Pattern of ``mosaic``'s top-left 2x2 block.
        black: Black level per channel, in canonical order (R, Gr, Gb, B), DN,
            where Gr is the green on the red rows.
        white: Saturation level, DN (same for all channels).
        wb: White-balance gains (R, Gr, Gb, B), multiplying the normalised signal;
            ``None`` means no white balance (all ones).
        ccm: Camera RGB -> linear sRGB colour matrix, float32 3x3, rows sum to ~1;
            ``None`` if unknown.
        camera: Camera make and model, e.g. ``"Canon EOS 550D"``; ``""`` if unknown.
        device_id: Identifier of the individual device (serial), ``""`` if unknown.
    """

    mosaic: np.ndarray
    cfa: CFA
    black: tuple[float, float, float, float]
    white: float
    wb: tuple[float, float, float, float] | None = None
    ccm: np.ndarray | None = field(default=None, repr=False)
    camera: str = ""
    device_id: str = ""

    def __post_init__(self) -> None:
        m = self.mosaic
        if not isinstance(m, np.ndarray) or m.dtype != np.uint16 or m.ndim != 2:
            raise RawFormatError(
                f"mosaic must be a uint16 H x W array, got "
                f"{getattr(m, 'dtype', type(m).__name__)} with shape {getattr(m, 'shape', None)}"
            )
        h, w = m.shape
        if h < 2 or w < 2 or h % 2 or w % 2:
            raise RawFormatError(f"mosaic size must be even and at least 2x2, got {h}x{w}")
        object.__setattr__(self, "cfa", CFA.parse(self.cfa))
        black = tuple(float(b) for b in np.broadcast_to(np.asarray(self.black, dtype=np.float64), (4,)))
        object.__setattr__(self, "black", black)
        if not np.isfinite(self.white) or not all(np.isfinite(black)) or max(black) >= self.white or min(black) < 0:
            raise RawFormatError(f"need 0 <= black < white, got black={black} white={self.white}")
        if self.wb is not None:
            wb = tuple(float(g) for g in np.asarray(self.wb, dtype=np.float64).reshape(-1))
            if len(wb) == 3:  # (R, G, B) -> (R, Gr, Gb, B)
                wb = (wb[0], wb[1], wb[1], wb[2])
            if len(wb) != 4 or not all(np.isfinite(wb)) or min(wb) <= 0:
                raise RawFormatError(f"wb must be 3 or 4 finite positive gains, got {self.wb!r}")
            object.__setattr__(self, "wb", wb)
        if self.ccm is not None:
            ccm = np.asarray(self.ccm, dtype=np.float32)
            if ccm.shape != (3, 3) or not np.all(np.isfinite(ccm)):
                raise RawFormatError(f"ccm must be a finite 3x3 matrix, got shape {ccm.shape}")
            object.__setattr__(self, "ccm", ccm)

    @property
    def height(self) -> int:
        """Mosaic height in pixels."""
        return int(self.mosaic.shape[0])

    @property
    def width(self) -> int:
        """Mosaic width in pixels."""
        return int(self.mosaic.shape[1])

    def to_stack(self, *, white_balance: bool = True, threads: int = 0) -> np.ndarray:
        """Half-resolution RGGB stack, the NIP input.

        Black level subtracted per channel, divided by ``white - black``, multiplied
        by the WB gains when ``white_balance`` is true, and clipped to [0, 1].

        Returns:
            float32 array, 4 x H/2 x W/2, channels (R, Gr, Gb, B), linear [0, 1]; a new array.
        """
        from rawproof import _native

        wb = self.wb if (white_balance and self.wb is not None) else None
        try:
            return _native.mosaic_to_rggb(
                self.mosaic, self.cfa.value, np.asarray(self.black, np.float32), float(self.white),
                None if wb is None else np.asarray(wb, np.float32), threads,
            )
        except (ValueError, TypeError) as e:
            raise RawFormatError(str(e)) from e
