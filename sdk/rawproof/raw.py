"""Sensor frames: the :class:`RawFrame` dataclass and its constructors.

The data path starts here::

    RawFrame.from_file(path) / RawFrame.from_buffer(buf, ...)   # camera file or sensor dump
        -> RawFrame.to_stack()                                   # RGGB stack, the NIP input

Other containers (PGM, 16-bit PNG, entries of the data manifest) are read by
:mod:`rawproof.rawio`, which hands the samples to :meth:`RawFrame.from_buffer`.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rawproof.errors import RawFormatError

__all__ = [
    "stack_to_srgb_primaries",
    "CFA",
    "PixelFormat",
    "RawFrame",
    "BitDepth",
    "bit_depth",
    "plausible_wb",
    "grey_world_wb",
    "XYZ_FROM_SRGB",
    "MAX_PIXELS",
    "MAX_RAW_FILE_BYTES",
]

_log = logging.getLogger(__name__)

MAX_PIXELS = 1 << 28
"""Largest mosaic (width x height, 268 MP) a constructor accepts; checked before allocating."""

MAX_RAW_FILE_BYTES = 1 << 30
"""Largest camera RAW file :meth:`RawFrame.from_file` reads (bytes, 1 GiB)."""

_PAD = np.random.default_rng(0x5EED).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
"""64 KiB of fixed pseudo-random bytes appended for :meth:`RawFrame.from_file`'s truncation test."""

XYZ_FROM_SRGB = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)
"""Linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1 (the matrix dcraw/LibRaw call ``xyz_rgb``)."""


class PixelFormat(str, enum.Enum):
    """Byte layout of a headerless sensor buffer (the ``fmt`` of :meth:`RawFrame.from_buffer`)."""

    RAW10 = "raw10"
    """MIPI CSI-2 RAW10: 4 pixels in 5 bytes (4 high bytes, then the 4 x 2 low bits)."""
    RAW12 = "raw12"
    """MIPI CSI-2 RAW12: 2 pixels in 3 bytes (2 high bytes, then the 2 x 4 low bits)."""
    RAW14 = "raw14"
    """MIPI CSI-2 RAW14: 4 pixels in 7 bytes (4 high bytes, then the 4 x 6 low bits)."""
    U16LE = "u16le"
    """One little-endian uint16 per pixel."""
    U8 = "u8"
    """One uint8 per pixel."""

    @property
    def bits_per_pixel(self) -> int:
        """Bits one pixel occupies in the buffer."""
        return {"raw10": 10, "raw12": 12, "raw14": 14, "u16le": 16, "u8": 8}[self.value]

    def row_bytes(self, width: int) -> int:
        """Bytes of one tightly packed row of ``width`` pixels."""
        return -(-width * self.bits_per_pixel // 8)


@dataclass(frozen=True)
class BitDepth:
    """What the sample values of a mosaic actually use (see :func:`bit_depth`).

    Attributes:
        container_bits: Bits needed for the largest sample, ``ceil(log2(max + 1))``.
        zero_lsbs: Number of low bits that are zero in every sample (0 for an empty
            or all-zero mosaic).
        effective_bits: ``container_bits - zero_lsbs``, the precision of the data.
    """

    container_bits: int
    zero_lsbs: int
    effective_bits: int


def bit_depth(mosaic: np.ndarray) -> BitDepth:
    """Detect data stored shifted up, e.g. 8-bit samples x 4 in a 10-bit dump.

    Args:
        mosaic: uint16 (or uint8) array of any shape, DN.

    Returns:
        The :class:`BitDepth`; pass ``shift=zero_lsbs`` to :meth:`RawFrame.from_buffer`
        to store the data at its true precision.
    """
    m = np.asarray(mosaic)
    top = int(m.max()) if m.size else 0
    container = top.bit_length()
    acc = int(np.bitwise_or.reduce(m, axis=None)) if m.size else 0
    zero = (acc & -acc).bit_length() - 1 if acc else 0
    return BitDepth(container_bits=container, zero_lsbs=zero, effective_bits=container - zero)


def plausible_wb(gains: Any) -> tuple[float, float, float, float] | None:
    """Normalise camera WB multipliers and accept them only if they are physically plausible.

    Rule: gains are (R, G, B[, G2]) multipliers as LibRaw reports them (any scale;
    a missing or zero G2 means G). They are divided by G. Bayer sensors behind an IR
    cut filter are most sensitive in green under any daylight-to-tungsten illuminant,
    so a neutral needs R and B gains >= 1; gains below 1 (or above 8, or non-finite,
    or non-positive) mean the metadata is broken or absent, and ``None`` is returned.

    Returns:
        (R, Gr, Gb, B) gains with green = 1, or ``None`` when implausible.
    """
    g = np.asarray(gains, dtype=np.float64).reshape(-1)
    if g.size not in (3, 4) or not np.all(np.isfinite(g)) or g[1] <= 0:
        return None
    g2 = g[3] if g.size == 4 and g[3] > 0 else g[1]
    r, gr, gb, b = g[0] / g[1], 1.0, g2 / g[1], g[2] / g[1]
    if not (1.0 <= r <= 8.0 and 1.0 <= b <= 8.0 and 0.5 <= gb <= 2.0):
        return None
    return (float(r), gr, float(gb), float(b))


def grey_world_wb(stack: np.ndarray, *, saturation: float = 0.98) -> tuple[float, float, float, float]:
    """Grey-world WB gains for a stack that has none in its metadata (``wb="auto"``).

    Means are taken over the 2x2 sites where no channel reaches ``saturation`` (so
    clipped highlights do not bias the estimate), and the gains make the R and B means
    equal to the mean green.

    Args:
        stack: float, 4 x h x w, (R, Gr, Gb, B), not white-balanced, [0,1].

    Returns:
        (R, Gr, Gb, B) gains with green = 1.

    Raises:
        RawFormatError: not a 4 x h x w stack, fewer than 16 unsaturated sites, or a
            channel with zero mean (a dark frame).
    """
    s = np.asarray(stack, dtype=np.float64)
    if s.ndim != 3 or s.shape[0] != 4:
        raise RawFormatError(f"stack must be 4 x h x w, got {s.shape}")
    ok = np.all(s < saturation, axis=0)
    if ok.sum() < 16:
        raise RawFormatError("grey-world WB: fewer than 16 unsaturated sites")
    r, gr, gb, b = (float(c[ok].mean()) for c in s)
    g = 0.5 * (gr + gb)
    if min(r, g, b) <= 1e-6:
        raise RawFormatError("grey-world WB: a channel has zero mean (dark frame?)")
    return (g / r, 1.0, 1.0, g / b)


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
        wb_source: Where ``wb`` came from: ``"camera"`` (as-shot metadata),
            ``"daylight"`` (LibRaw's daylight multipliers, used when the as-shot ones
            fail :func:`plausible_wb`), ``"given"`` (passed by the caller),
            ``"grey-world"`` (``wb="auto"``, :func:`grey_world_wb`), or ``""``
            (``wb`` is ``None`` or unknown). Informational only.
        capture_time: When the sensor was exposed, ISO 8601, from the RAW file's own
            metadata (:func:`rawproof.rawio.read_capture_time`; with a UTC offset only when
            the file records one), or ``None`` when unknown.
        pixel_aspect: Pixel width / height on the sensor (LibRaw's ``pixel_aspect``); 1 for
            square pixels. :func:`rawproof.develop` refuses other values unless asked to
            stretch the output to square pixels as LibRaw does.
    """

    mosaic: np.ndarray
    cfa: CFA
    black: tuple[float, float, float, float]
    white: float
    wb: tuple[float, float, float, float] | None = None
    ccm: np.ndarray | None = field(default=None, repr=False)
    camera: str = ""
    device_id: str = ""
    wb_source: str = ""
    capture_time: str | None = None
    pixel_aspect: float = 1.0

    def __post_init__(self) -> None:
        m = self.mosaic
        if not isinstance(m, np.ndarray) or m.dtype != np.uint16 or m.ndim != 2:
            raise RawFormatError(
                f"mosaic must be a uint16 H x W array, got "
                f"{getattr(m, 'dtype', type(m).__name__)} with shape {getattr(m, 'shape', None)}"
            )
        h, w = m.shape
        if h * w > MAX_PIXELS:
            raise RawFormatError(f"mosaic of {w}x{h} exceeds the {MAX_PIXELS}-pixel limit")
        if h < 2 or w < 2 or h % 2 or w % 2:
            raise RawFormatError(f"mosaic size must be even and at least 2x2, got {h}x{w}")
        object.__setattr__(self, "cfa", CFA.parse(self.cfa))
        black = tuple(float(b) for b in _four_levels(self.black))
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
        if not (isinstance(self.pixel_aspect, (int, float)) and np.isfinite(self.pixel_aspect) and 0.1 <= self.pixel_aspect <= 10):
            raise RawFormatError(f"pixel_aspect must be a finite number in [0.1, 10], got {self.pixel_aspect!r}")
        object.__setattr__(self, "pixel_aspect", float(self.pixel_aspect))
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

    def to_stack(self, *, white_balance: bool = True, colour: bool = False, threads: int = 0) -> np.ndarray:
        """Half-resolution RGGB stack.

        Black level subtracted per channel, divided by ``white - black``, multiplied
        by the WB gains when ``white_balance`` is true, and clipped to [0, 1]. With
        ``colour`` (what :func:`rawproof.develop` feeds the NIP), the frame's colour
        matrix is then applied per 2x2 quad (:func:`stack_to_srgb_primaries`), so
        the NIP sees sensor-independent linear sRGB primaries.

        Returns:
            float32 array, 4 x H/2 x W/2, channels (R, Gr, Gb, B), linear [0, 1]; a new array.
        """
        from rawproof import _native

        wb = self.wb if (white_balance and self.wb is not None) else None
        try:
            stack = _native.mosaic_to_rggb(
                self.mosaic, self.cfa.value, np.asarray(self.black, np.float64), float(self.white),
                None if wb is None else np.asarray(wb, np.float64), threads,
            )
        except (ValueError, TypeError) as e:
            raise RawFormatError(str(e)) from e
        return stack_to_srgb_primaries(stack, self.ccm) if colour else stack

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_buffer(
        cls,
        buf: bytes | bytearray | memoryview | np.ndarray,
        width: int,
        height: int,
        fmt: str | PixelFormat,
        cfa: str | CFA,
        black: float | tuple[float, float, float, float],
        white: float,
        *,
        stride: int = 0,
        wb: tuple[float, ...] | str | None = None,
        ccm: np.ndarray | None = None,
        camera: str = "",
        device_id: str = "",
        shift: int = 0,
        pixel_aspect: float = 1.0,
        threads: int = 0,
    ) -> RawFrame:
        """Frame from a headerless sensor dump, unpacked by the native kernel.

        Args:
            buf: The raw bytes (any buffer; an ndarray is read as its bytes). Not kept:
                the mosaic is a new array.
            width, height: Mosaic size in pixels; both even, ``width * height <= MAX_PIXELS``.
            fmt: Byte layout, a :class:`PixelFormat` or its value (``"raw10"``,
                ``"raw12"``, ``"raw14"``, ``"u16le"``, ``"u8"``).
            cfa: Pattern of the top-left 2x2 block (:class:`CFA` naming rule).
            black: Black level, DN of the *buffer*: one value or (R, Gr, Gb, B).
            white: Saturation level, DN of the *buffer*.
            stride: Bytes from one row to the next; 0 means tightly packed.
            wb: (R, G, B) or (R, Gr, Gb, B) gains; ``"auto"`` for grey-world gains
                estimated from this frame (:func:`grey_world_wb`); ``None`` for no white
                balance at all: the NIP then sees raw sensor colour, typically a strong
                green cast, since green pixels are the most sensitive.
            ccm: Camera RGB -> linear sRGB, 3x3; ``None`` if unknown (treated as identity).
            camera, device_id: Free text metadata.
            shift: Right-shift applied to every sample after unpacking, for dumps that
                hold lower-precision data shifted up (e.g. 8-bit data x 4 in a 10-bit
                dump: ``shift=2``; :func:`bit_depth` detects it). ``black`` and ``white``
                stay in buffer DN and are divided by ``2**shift``, so the normalised
                stack is unchanged. Refused if it would drop non-zero bits.
            pixel_aspect: Pixel width / height (1 = square); see :attr:`pixel_aspect`.
            threads: Native worker threads, 0 = all cores.

        Raises:
            RawFormatError: unknown format or CFA, odd or oversized dims, buffer size
                not matching ``width``/``height``/``stride`` (truncated or with extra
                bytes), ``black >= white``, or a ``shift`` that would lose data.
        """
        try:
            pf = PixelFormat(str(getattr(fmt, "value", fmt)).lower())
        except ValueError:
            raise RawFormatError(
                f"unknown pixel format {fmt!r}; expected one of {[f.value for f in PixelFormat]}"
            ) from None
        cfa = CFA.parse(cfa)
        width, height, stride, shift = int(width), int(height), int(stride), int(shift)
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise RawFormatError(f"mosaic size must be even and at least 2x2, got {width}x{height}")
        if width * height > MAX_PIXELS:
            raise RawFormatError(f"declared size {width}x{height} exceeds the {MAX_PIXELS}-pixel limit")
        if not 0 <= shift <= 8:
            raise RawFormatError(f"shift must be in 0..8, got {shift}")
        data = np.frombuffer(buf.tobytes() if isinstance(buf, np.ndarray) and not buf.flags.c_contiguous else buf, dtype=np.uint8)
        row = pf.row_bytes(width)
        if stride and stride < row:
            raise RawFormatError(f"stride {stride} is smaller than one {pf.value} row of {width} px ({row} bytes)")
        pitch = stride or row
        need_min, need_max = pitch * (height - 1) + row, pitch * height
        if not need_min <= data.size <= need_max:
            what = "truncated" if data.size < need_min else "longer than declared"
            raise RawFormatError(
                f"buffer of {data.size} bytes is {what}: {width}x{height} {pf.value} with stride {pitch} "
                f"needs {need_min}" + ("" if need_min == need_max else f"..{need_max}") + " bytes"
            )
        if data.size < need_max:  # native kernels read whole strides; pad the short last row
            data = np.concatenate([data, np.zeros(need_max - data.size, np.uint8)])
        from rawproof import _native

        try:
            mosaic = _native.unpack(np.ascontiguousarray(data), width, height, pf.value, stride, threads)
        except (ValueError, TypeError) as e:
            raise RawFormatError(f"cannot unpack {width}x{height} {pf.value}: {e}") from e
        blk = _four_levels(black)
        if shift:
            low = int(np.bitwise_or.reduce(mosaic, axis=None)) & ((1 << shift) - 1)
            if low:
                raise RawFormatError(f"shift={shift} would discard non-zero low bits (mask {low:#x}); see bit_depth()")
            mosaic = mosaic >> np.uint16(shift)
            blk, white = blk / (1 << shift), float(white) / (1 << shift)
        auto = isinstance(wb, str)
        if auto and wb != "auto":
            raise RawFormatError(f'wb must be gains, "auto" or None, got {wb!r}')
        frame = cls(
            mosaic=mosaic, cfa=cfa, black=tuple(blk), white=float(white), wb=None if auto else wb, ccm=ccm,
            camera=camera, device_id=device_id, wb_source="given" if wb is not None else "", pixel_aspect=pixel_aspect,
        )
        if auto:
            gains = grey_world_wb(frame.to_stack(white_balance=False, threads=threads))
            frame = dataclasses.replace(frame, wb=gains, wb_source="grey-world")
        return frame

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> RawFrame:
        """Frame from a camera RAW file (DNG, NEF, CR2, ARW, CRW, KDC, ...) via rawpy/LibRaw.

        What is read, and how:

        * mosaic: LibRaw's ``raw_image_visible`` (the visible/active area; masked
          optical-black borders dropped), copied, then cropped by one row/column at the
          bottom/right if needed to make both sizes even (this keeps the CFA phase).
        * cfa: from ``raw_colors_visible[:2, :2]`` and ``color_desc``, i.e. the colours
          of the top-left 2x2 of the *visible* area (so an odd crop offset is handled).
        * black: ``black_level_per_channel`` indexed by the colour index at the R, Gr,
          Gb and B sites. white: ``white_level``.
        * wb: ``camera_whitebalance`` if :func:`plausible_wb` accepts it
          (``wb_source="camera"``), else ``daylight_whitebalance`` if plausible
          (``"daylight"``), else ``None``. Both normalised to green = 1.
        * ccm (camera RGB -> linear sRGB, for white-balanced camera RGB): from
          ``rgb_xyz_matrix`` (Adobe XYZ -> camera) as dcraw does: ``cam_rgb =
          cam_xyz @ XYZ_FROM_SRGB``, rows normalised to sum 1 (so WB'd white stays
          white), then inverted. If that matrix is all zero (e.g. DNGs, where LibRaw
          fills only its derived matrix), LibRaw's ``color_matrix[:, :3]``
          (``rgb_cam``, computed the same way from the DNG ColorMatrix). Else ``None``.
        * camera: ``"Make Model"`` from the TIFF IFD0 or CIFF header
          (:func:`rawproof.rawio.read_camera_name`), ``""`` if neither.

        Checks, each before the frame exists (so a broken file never develops or signs):

        * the path is a regular file of at most :data:`MAX_RAW_FILE_BYTES` (a FIFO or
          ``/dev/zero`` is refused before reading);
        * the size the header declares (``raw_width x raw_height``) is at most
          :data:`MAX_PIXELS` and fits the file at 1 bit per pixel, checked before LibRaw
          unpacks, i.e. before it allocates the raw buffer (a 4 kB DNG declaring
          30000 x 30000 lossless-JPEG tiles used to cost 3 GB);
        * the decode does not depend on bytes past the end of the file
          (:func:`_check_complete`): LibRaw's decoders read past EOF without an error in
          many formats (a truncated Kodak KDC developed with most rows filler), and rawpy
          does not expose LibRaw's data-error counter.

        Raises:
            RawFormatError: missing or non-regular file, a format LibRaw cannot decode, a
                declared size above the limit or beyond the data, a truncated file, or a
                non-Bayer sensor (X-Trans, Foveon, CMYG).
        """
        import rawpy

        from rawproof.rawio import read_camera_name, read_capture_time
        from rawproof.untrusted import NotRegularFileError, read_regular

        p = Path(path)
        try:
            data = read_regular(p, MAX_RAW_FILE_BYTES)
        except FileNotFoundError:
            raise RawFormatError("no such file", path=p) from None
        except NotRegularFileError as e:
            raise RawFormatError(str(e)) from e
        except OSError as e:
            raise RawFormatError(f"cannot read: {e}", path=p) from e
        try:
            with rawpy.imread(io.BytesIO(data)) as raw:
                sz = raw.sizes  # from the header: LibRaw has not unpacked (allocated) anything yet
                declared = int(sz.raw_width) * int(sz.raw_height)
                if declared > MAX_PIXELS:
                    raise RawFormatError(
                        f"header declares {sz.raw_width}x{sz.raw_height}, above the {MAX_PIXELS}-pixel limit", path=p)
                if declared > 8 * len(data):
                    raise RawFormatError(
                        f"header declares {sz.raw_width}x{sz.raw_height} pixels, more than the file's {len(data)} "
                        "bytes can hold at 1 bit per pixel (truncated or forged)", path=p)
                visible = raw.raw_image_visible
                if visible is None or visible.ndim != 2:
                    raise RawFormatError("not a single-plane Bayer RAW (LibRaw gives no raw mosaic)", path=p)
                h, w = visible.shape[0] & ~1, visible.shape[1] & ~1
                mosaic = np.array(visible[:h, :w], dtype=np.uint16, copy=True)
                colors = np.array(raw.raw_colors_visible[:2, :2], copy=True)
                desc = raw.color_desc.decode("ascii", "replace")
                blpc = list(raw.black_level_per_channel)
                white = float(raw.white_level)
                cam_wb = list(raw.camera_whitebalance)
                day_wb = list(raw.daylight_whitebalance)
                cam_xyz = np.array(raw.rgb_xyz_matrix, dtype=np.float64, copy=True)
                rgb_cam = np.array(raw.color_matrix, dtype=np.float64, copy=True)
                pattern = raw.raw_pattern
                period = None if pattern is None else pattern.shape
                aspect = float(raw.sizes.pixel_aspect) or 1.0
        except RawFormatError:
            raise
        except (rawpy.LibRawError, OSError, ValueError) as e:
            raise RawFormatError(f"LibRaw cannot read this file: {type(e).__name__}: {e}", path=p) from e
        _check_complete(data, mosaic, p)
        if period != (2, 2):
            raise RawFormatError(f"not a 2x2 Bayer sensor (CFA period {period})", path=p)
        letters = "".join(desc[int(c)] if int(c) < len(desc) else "?" for c in colors.reshape(-1))
        try:
            cfa = CFA(letters)
        except ValueError:
            raise RawFormatError(f"unsupported CFA {letters!r} (color_desc {desc!r})", path=p) from None
        r_row = 0 if "R" in letters[:2] else 1
        idx = {
            "R": int(colors.reshape(-1)[letters.index("R")]),
            "Gr": int(colors[r_row][letters[2 * r_row:2 * r_row + 2].index("G")]),
            "Gb": int(colors[1 - r_row][letters[2 * (1 - r_row):2 * (1 - r_row) + 2].index("G")]),
            "B": int(colors.reshape(-1)[letters.index("B")]),
        }
        black = tuple(float(blpc[idx[k]]) for k in ("R", "Gr", "Gb", "B"))
        wb, source = plausible_wb(cam_wb), "camera"
        if wb is None:
            wb, source = plausible_wb(day_wb), "daylight"
            _log.info("%s: camera WB %s implausible, using daylight WB %s", p.name, cam_wb, day_wb)
        return cls(
            mosaic=mosaic, cfa=cfa, black=black, white=white, wb=wb,
            ccm=_ccm_from_libraw(cam_xyz, rgb_cam), camera=read_camera_name(p),
            wb_source=source if wb is not None else "", capture_time=read_capture_time(p), pixel_aspect=aspect,
        )

    @classmethod
    def from_manifest_entry(cls, entry: Mapping[str, Any], root: str | os.PathLike[str]) -> RawFrame:
        """Frame for one entry of the data manifest (``manifest.json``); see :func:`rawproof.rawio.read_manifest_entry`."""
        from rawproof.rawio import read_manifest_entry

        return read_manifest_entry(entry, root)


def _check_complete(data: bytes, mosaic: np.ndarray, path: Path) -> None:
    """Refuse a RAW file whose decode reads past its end (a truncated file).

    The file is decoded a second time with :data:`_PAD` (64 KiB of pseudo-random bytes)
    appended. A complete file's decoders consume only bytes that are in it, so the mosaic
    is bit-identical; a truncated file's decoder runs into the padding and the mosaic
    changes, or LibRaw fails on the padding (corrupt data). Formats whose directory is
    found from the end of the file (Canon CRW) do not identify with the padding at all;
    for them a truncation already destroys the directory, and the first decode failed.

    Raises:
        RawFormatError: the decode depends on bytes past the end of the file.
    """
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data + _PAD)) as raw:
            sz = raw.sizes
            if int(sz.raw_width) * int(sz.raw_height) > MAX_PIXELS:
                return  # identified differently with the padding: an end-anchored format
            padded = raw.raw_image_visible
            same = padded is not None and np.array_equal(padded[: mosaic.shape[0], : mosaic.shape[1]], mosaic)
    except (rawpy.LibRawFileUnsupportedError, rawpy.LibRawTooBigError):
        return  # not identified with the padding: an end-anchored format (see above)
    except (rawpy.LibRawError, OSError, ValueError):
        same = False  # the decoder read into the padding and failed on it
    if not same:
        raise RawFormatError(
            "truncated: decoding reads past the end of the file (the pixel data is incomplete)", path=path)


def _four_levels(black: Any) -> np.ndarray:
    """Black level(s) as float64 (R, Gr, Gb, B): one value is broadcast; anything else but 4 is a RawFormatError."""
    try:
        return np.broadcast_to(np.asarray(black, dtype=np.float64), (4,))
    except (ValueError, TypeError) as e:
        raise RawFormatError(f"black must be one level or 4 levels (R, Gr, Gb, B), got {black!r}") from e


def _ccm_from_libraw(cam_xyz: np.ndarray, rgb_cam: np.ndarray) -> np.ndarray | None:
    """Camera RGB -> linear sRGB 3x3 from LibRaw's matrices (see :meth:`RawFrame.from_file`)."""
    if cam_xyz.shape[0] >= 3 and np.any(cam_xyz[:3]):
        cam_rgb = cam_xyz[:3, :3] @ XYZ_FROM_SRGB
        sums = cam_rgb.sum(axis=1, keepdims=True)
        if np.all(np.abs(sums) > 1e-6):
            m = np.linalg.inv(cam_rgb / sums)
            if np.all(np.isfinite(m)):
                return m.astype(np.float32)
    if rgb_cam.shape[0] == 3 and np.any(rgb_cam[:, :3]) and np.all(np.isfinite(rgb_cam[:, :3])):
        return rgb_cam[:, :3].astype(np.float32)
    return None


def stack_to_srgb_primaries(stack: np.ndarray, ccm: np.ndarray | None) -> np.ndarray:
    """Apply a camera RGB -> linear sRGB matrix to an RGGB stack, per 2x2 quad.

    Why: one shipped NIP should develop any sensor. Training pairs and ``develop()`` both
    feed the NIP stacks in linear sRGB primaries, so the NIP learns demosaicing and
    tone (not one camera's colour matrix). Each quad's (R, G, B) with
    ``G = (Gr + Gb) / 2`` is mixed by ``ccm``; the two greens keep their own value in
    the green row (so green detail survives). Before demosaicing this is an
    approximation of a full-resolution CCM: at edges the three samples of a quad
    come from points up to one pixel apart.

    Args:
        stack: float32, 4 x h x w, (R, Gr, Gb, B), linear camera RGB, white-balanced, [0, 1].
        ccm: float 3x3 camera RGB -> linear sRGB (rows sum to ~1); ``None`` returns ``stack`` unchanged.

    Returns:
        float32, 4 x h x w, linear sRGB primaries, clipped to [0, 1]; a new array (or ``stack`` itself when ``ccm`` is None).
    """
    if ccm is None:
        return stack
    m = np.asarray(ccm, dtype=np.float32)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise RawFormatError(f"ccm must be a finite 3x3 matrix, got shape {m.shape}")
    if stack.ndim != 3 or stack.shape[0] != 4:
        raise RawFormatError(f"stack must be 4 x h x w, got {stack.shape}")
    half = np.float32(0.5)
    # 4x4 operator on (R, Gr, Gb, B): the green rows mix R and B into each green plane separately.
    op = np.array(
        [
            [m[0, 0], m[0, 1] * half, m[0, 1] * half, m[0, 2]],
            [m[1, 0], m[1, 1], 0.0, m[1, 2]],
            [m[1, 0], 0.0, m[1, 1], m[1, 2]],
            [m[2, 0], m[2, 1] * half, m[2, 1] * half, m[2, 2]],
        ],
        dtype=np.float32,
    )
    h, w = stack.shape[1:]
    out = (op @ stack.reshape(4, h * w)).reshape(4, h, w)
    return np.clip(out, 0.0, 1.0, out=out)
