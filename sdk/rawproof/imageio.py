"""Decode an image to verify into 8-bit sRGB, refusing what cannot be analysed honestly.

:func:`rawproof.verify` calls this for you. Rules (each is tested):

- Inputs: a path, ``bytes``/``bytearray``/``memoryview``, or a binary file object. A path
  must name a regular file (a FIFO, ``/dev/zero`` or another device is refused before it is
  read) of at most :data:`MAX_FILE_BYTES`; a file object is read up to that many bytes.
- Size: the width and height from the file header are checked against ``max_pixels``
  (default :data:`MAX_PIXELS`, 100 MP) *before* any pixel is decoded, so a tiny file that
  declares a huge image (a decompression bomb) costs nothing. Pillow's own guard (an
  error above 2 x ``PIL.Image.MAX_IMAGE_PIXELS``, ~179 MP by default) stays in force
  and is reported the same way.
- Modes: ``RGB`` as is; ``L``/``LA``/``P``/``PA``/``1`` expanded to RGB (palette looked
  up); ``RGBA``/``RGBa``/``LA``/``PA``: the alpha channel is dropped, not composited, so
  the colour samples the forensic network sees are the ones in the file; 16-bit
  grayscale (``I;16*``, ``I``) reduced to 8 bits as ``round(v / 257)``; 16-bit RGB PNG is
  reduced to 8 bits by Pillow's decoder (high byte); ``CMYK`` (JPEG, incl. Adobe
  inverted) converted with Pillow's naive formula ``R = 255 - min(255, C + K)`` without
  colour management (``source_mode`` says so, and the forensic result of such a file is
  of limited meaning); ``YCbCr``/``LAB``/``HSV`` through Pillow's conversion. ``F``
  (float) and other modes raise :class:`~rawproof.errors.ImageFormatError`.
- JPEG structure: before Pillow sees a JPEG, its segments are walked the way libjpeg
  walks them (:mod:`rawproof.containers`); more than :data:`MAX_JPEG_SCANS` scans or
  :data:`MAX_JPEG_SEGMENTS` segments is refused, and so are more scans x declared pixels
  than :data:`MAX_JPEG_SCAN_PIXELS`. Decoding a progressive JPEG costs one pass over the
  whole frame per scan, so 3000 empty scans over 100 MP in a 30 kB file decoded for
  123 s; the bounds cap the scan work at 20 passes over 100 MP.
- Animated images (GIF, APNG, animated WebP): the first frame is analysed;
  ``DecodedImage.frames`` gives the frame count. A GIF declares no count and is walked
  frame by frame to count them, so one with more than :data:`MAX_FRAMES` is refused.
- JPEG files: ``DecodedImage.jpeg_quality`` is the IJG quality whose scaled Annex K
  luminance table equals the file's (``None`` for other tables, e.g. many cameras and
  editors), ``DecodedImage.jpeg_subsampling`` the chroma layout (``"444"``, ``"422"``,
  ``"420"``, ``"other"``). verify() compares them with the channel its FAN was trained behind.
- Truncated or corrupt files raise :class:`~rawproof.errors.ImageFormatError`; Pillow's
  ``LOAD_TRUNCATED_IMAGES`` is never honoured (a partly grey image would be analysed as
  if it were real).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError

from rawproof.containers import jpeg_structure
from rawproof.errors import ImageFormatError
from rawproof.untrusted import NotRegularFileError, read_regular, read_stream

__all__ = [
    "MAX_PIXELS", "MAX_FILE_BYTES", "MAX_FRAMES", "MAX_JPEG_SCANS", "MAX_JPEG_SCAN_PIXELS", "MAX_JPEG_SEGMENTS",
    "ImageSource", "DecodedImage",
    "read_image_bytes", "check_jpeg_structure", "decode_rgb", "ijg_quality",
]

MAX_PIXELS = 100_000_000
"""Default bound on width x height (pixels) of an image to decode: 100 MP."""

MAX_FILE_BYTES = 256 << 20
"""Largest encoded image read (bytes, 256 MiB): a 100 MP PNG of noise is ~300 MB at
8 bits per channel uncompressed, but real 100 MP JPEGs and PNGs stay well below this."""

MAX_JPEG_SCANS = 100
"""Most scans accepted in one JPEG. Baseline files have 1; libjpeg's progressive script
writes 10 (6 for greyscale), optimised scripts (mozjpeg) up to ~20."""

MAX_JPEG_SCAN_PIXELS = 2_000_000_000
"""Most scans x declared pixels accepted in one JPEG: each scan of a progressive file is a
pass over the whole frame (measured ~30-60 ms per scan at 100 MP on the 2-core development
machine), so this caps the scan work at 20 passes over 100 MP, 100 over 20 MP."""

MAX_FRAMES = 10_000
"""Most frames counted in a GIF (only the first is decoded; see :func:`decode_rgb`)."""

MAX_JPEG_SEGMENTS = 4096
"""Most marker segments accepted in one JPEG (ICC profiles split in up to 255 APP2
segments and a C2PA store in APP11 segments of 64 kB each stay far below)."""

ImageSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]
"""An encoded image: bytes, a path, or a binary file object."""

_ALPHA_DROP = {"RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB", "LA": "L", "La": "L", "PA": "P"}
_CONVERTIBLE = {"RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


@dataclass(frozen=True)
class DecodedImage:
    """Result of :func:`decode_rgb`.

    Attributes:
        rgb: uint8, H x W x 3, C-contiguous, sRGB as stored in the file (no colour
            management), read-only; a new array.
        format: Pillow's format name (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"GIF"``, ...).
        source_mode: Pillow mode of the file before conversion (``"RGB"``, ``"CMYK"``,
            ``"I;16"``, ``"P"``, ...).
        frames: Number of frames in the file; only the first is decoded.
        jpeg_quality: JPEG only: IJG quality 1..100 of the luminance table (:func:`ijg_quality`),
            ``None`` for non-IJG tables or other formats.
        jpeg_subsampling: JPEG only: ``"444"``, ``"422"``, ``"420"`` or ``"other"``; ``None`` otherwise.
    """

    rgb: np.ndarray
    format: str
    source_mode: str
    frames: int = 1
    jpeg_quality: int | None = None
    jpeg_subsampling: str | None = None

    @property
    def height(self) -> int:
        """Height, pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Width, pixels."""
        return int(self.rgb.shape[1])


def read_image_bytes(image: ImageSource, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The encoded bytes of ``image`` (a path is read; a file object is read to the end).

    Args:
        image: Encoded image (see :data:`ImageSource`).
        max_bytes: Largest encoding accepted from a path or file object, bytes.

    Raises:
        ImageFormatError: a path that is not a regular file (FIFO, device, socket,
            directory), or a file or stream longer than ``max_bytes``.
        TypeError: ``image`` is none of the accepted types, or a text-mode file object.
        OSError: a path that cannot be opened.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        try:
            return read_regular(Path(image), max_bytes)
        except NotRegularFileError as e:
            raise ImageFormatError(str(e)) from e
    if hasattr(image, "read"):
        try:
            return read_stream(image, max_bytes)
        except NotRegularFileError as e:
            raise ImageFormatError(str(e)) from e
    raise TypeError(f"image must be bytes, a path or a binary file object, got {type(image).__name__}")


def check_jpeg_structure(data: bytes) -> None:
    """Refuse a JPEG whose segment or scan count would make decoding costly (no-op for other formats).

    Raises:
        ImageFormatError: more than :data:`MAX_JPEG_SEGMENTS` segments,
            :data:`MAX_JPEG_SCANS` scans, or :data:`MAX_JPEG_SCAN_PIXELS` scans x pixels.
    """
    if not data.startswith(b"\xff\xd8"):
        return
    st = jpeg_structure(data, max_segments=MAX_JPEG_SEGMENTS)
    if st.segments > MAX_JPEG_SEGMENTS:
        raise ImageFormatError(f"JPEG has more than {MAX_JPEG_SEGMENTS} marker segments")
    if st.scans > MAX_JPEG_SCANS:
        raise ImageFormatError(f"JPEG has {st.scans} scans, above the bound of {MAX_JPEG_SCANS} (decode-time bomb guard)")
    if st.scans * st.width * st.height > MAX_JPEG_SCAN_PIXELS:
        raise ImageFormatError(
            f"JPEG has {st.scans} scans over {st.width}x{st.height} pixels, above the bound of "
            f"{MAX_JPEG_SCAN_PIXELS} scan-pixels (decode-time bomb guard)"
        )


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _ALPHA_DROP:
        im = im.convert(_ALPHA_DROP[mode]) if mode != "PA" else im.convert("RGBA").convert("RGB")
        mode = im.mode
    if mode in _SIXTEEN_BIT:
        v = np.asarray(im).astype(np.float64)
        if v.min(initial=0) < 0 or v.max(initial=0) > 65535:
            raise ImageFormatError(f"mode {im.mode} holds values outside 0..65535; not a 16-bit image")
        g = np.rint(v / 257.0).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode not in _CONVERTIBLE:
        raise ImageFormatError(f"unsupported image mode {mode!r}")
    rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def decode_rgb(image: ImageSource, *, max_pixels: int | None = MAX_PIXELS) -> DecodedImage:
    """Decode an encoded image (first frame) to 8-bit RGB under the rules of this module.

    Args:
        image: Encoded image (see :data:`ImageSource`).
        max_pixels: Largest width x height accepted, checked from the header before
            decoding; ``None`` disables the bound (trusted input only).

    Returns:
        :class:`DecodedImage`.

    Raises:
        ImageFormatError: not an image Pillow can identify, declared size above
            ``max_pixels``, zero-sized, too many JPEG scans or segments
            (:func:`check_jpeg_structure`), truncated/corrupt data, an unsupported mode,
            or a path that is not a regular file of at most :data:`MAX_FILE_BYTES`.
        TypeError, OSError: as :func:`read_image_bytes`.
    """
    data = read_image_bytes(image)
    check_jpeg_structure(data)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageFormatError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode partial images")
    with warnings.catch_warnings():
        # The bound below is checked first for any size under Pillow's own error bound
        # (2 x Image.MAX_IMAGE_PIXELS); Pillow's warning in between would be an error
        # under strict warning filters, and Pillow's global setting is left alone.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageFormatError(f"decompression bomb guard: {e}") from e
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise ImageFormatError(f"cannot identify the image ({len(data)} bytes): {e}") from e
        with im:
            w, h = im.size
            if w < 1 or h < 1:
                raise ImageFormatError(f"image has zero size {w}x{h}")
            if max_pixels is not None and w * h > max_pixels:
                raise ImageFormatError(
                    f"image declares {w}x{h} = {w * h} pixels, above the bound of {max_pixels} "
                    "(decompression bomb guard; pass max_pixels to raise it)"
                )
            fmt = str(im.format or "unknown")
            source_mode = im.mode
            frames = _frame_count(im)
            jpeg = _jpeg_encoding(im) if fmt in ("JPEG", "MPO") else (None, None)
            try:
                im.seek(0)
                im.load()
                rgb = _to_rgb(im)
            except ImageFormatError:
                raise
            except (OSError, ValueError, SyntaxError, EOFError) as e:
                raise ImageFormatError(f"cannot decode the {fmt} image: {e}") from e
    if rgb.shape != (h, w, 3):
        raise ImageFormatError(f"decoder returned {rgb.shape}, expected {(h, w, 3)}")
    rgb.flags.writeable = False
    return DecodedImage(rgb=rgb, format=fmt, source_mode=source_mode, frames=frames, jpeg_quality=jpeg[0], jpeg_subsampling=jpeg[1])


def _frame_count(im: Image.Image) -> int:
    """Frames in the file. APNG, WebP and MPO declare their count in a header; a GIF has none, and
    Pillow's ``n_frames`` walks every frame (200,000 one-pixel frames in 3.4 MB took 1.1 s), so
    GIF frames are counted only up to :data:`MAX_FRAMES`."""
    if im.format != "GIF":
        return int(getattr(im, "n_frames", 1) or 1)
    n = 1
    try:
        while n <= MAX_FRAMES:
            im.seek(n)
            n += 1
    except EOFError:
        return n
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageFormatError(f"cannot read frame {n} of the GIF: {e}") from e
    raise ImageFormatError(f"GIF has more than {MAX_FRAMES} frames (decode-time bomb guard)")


# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), natural (row-major) order:
# what libjpeg scales by quality. The training package's differentiable JPEG uses them too.
ANNEX_K_LUMA: np.ndarray = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=np.int64)
ANNEX_K_CHROMA: np.ndarray = np.array([
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8] * 4, dtype=np.int64)
ANNEX_K_LUMA.flags.writeable = False
ANNEX_K_CHROMA.flags.writeable = False

PILLOW_SUBSAMPLING: dict[str, int] = {"444": 0, "422": 1, "420": 2}
"""Chroma subsampling name -> Pillow's ``subsampling=`` value for JPEG."""


def ijg_qtable(quality: int, chroma: bool = False) -> np.ndarray:
    """The quantisation table libjpeg writes for ``quality`` (``jpeg_set_quality``, baseline).

    Args:
        quality: IJG quality, integer 1..100.
        chroma: ``False`` for the luminance table, ``True`` for the chrominance table.

    Returns:
        int64 8x8 array in natural (row-major) order, values in [1, 255].

    Raises:
        ValueError: quality is not an integer in 1..100.
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip(((ANNEX_K_CHROMA if chroma else ANNEX_K_LUMA) * scale + 50) // 100, 1, 255)


_IJG_LUMA_TABLES = {q: ijg_qtable(q).reshape(-1) for q in range(1, 101)}


def ijg_quality(luma_table: np.ndarray | list[int]) -> int | None:
    """The IJG (libjpeg, Pillow) quality whose luminance table is ``luma_table`` (64 values,
    natural order), or ``None`` when no quality gives exactly that table."""
    t = np.asarray(luma_table).reshape(-1)
    if t.size != 64:
        return None
    # Several qualities can give one table (e.g. 98-100 all clip to 1); report the lowest.
    return next((q for q, ref in _IJG_LUMA_TABLES.items() if np.array_equal(ref, t)), None)


_SUBSAMPLING = {v: k for k, v in PILLOW_SUBSAMPLING.items()}


def _jpeg_encoding(im: Image.Image) -> tuple[int | None, str | None]:
    tables = getattr(im, "quantization", None) or {}
    quality = ijg_quality(list(tables[0])) if 0 in tables else None
    # A frame header may declare more components than it lists; Pillow's get_sampling then
    # indexes past its component list, so such a file reads as "other" instead.
    complete = len(getattr(im, "layer", ())) == getattr(im, "layers", None)
    return quality, _SUBSAMPLING.get(JpegImagePlugin.get_sampling(im) if complete else -1, "other")
