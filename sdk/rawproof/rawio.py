"""Small readers for RAW containers that LibRaw does not cover, and for the data manifest.

Each reader returns the samples; :func:`frame_from_array` hands them to
:meth:`rawproof.RawFrame.from_buffer`, so every container goes through the same
checks and the same native unpacker. Camera files (DNG, CR2, CRW, ...) go to
:meth:`rawproof.RawFrame.from_file` instead.

Containers (the ``container`` field of a manifest entry) are listed and validated by
:mod:`rawproof.sensor`: packed dumps (``raw10``/``raw12``/``raw14`` MIPI, ``u16le``, ``u8``),
``pgm16be`` (binary PGM; maxval > 255 means 16-bit big-endian samples), ``png16`` (16-bit
greyscale PNG, Pillow) and camera files (``dng``, ``crw``, ``kdc``, ... -> :meth:`RawFrame.from_file`).
"""

from __future__ import annotations

import io
import os
import re
import struct
from datetime import datetime, timezone
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rawproof.errors import RawFormatError
from rawproof.raw import MAX_PIXELS, CFA, RawFrame
from rawproof.sensor import CONTAINERS
from rawproof.untrusted import NotRegularFileError, read_regular

__all__ = [
    "CONTAINERS",
    "read_pgm",
    "read_png16",
    "frame_from_array",
    "read_manifest_entry",
    "read_camera_name",
    "read_capture_time",
]

_PGM_HEADER = re.compile(rb"\AP5(?:\s+|#[^\n]*\n)*?(\d+)(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)\s")


def _read_file(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes (at most ``max_bytes``); RawFormatError for a FIFO, device or bigger file."""
    try:
        return read_regular(path, max_bytes)
    except NotRegularFileError as e:
        raise RawFormatError(str(e)) from e


def _check_dims(width: int, height: int, path: Path) -> None:
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise RawFormatError(f"declared size {width}x{height} is empty or exceeds {MAX_PIXELS} pixels", path=path)


def read_pgm(path: str | os.PathLike[str]) -> np.ndarray:
    """Samples of a binary PGM (P5) file.

    Returns:
        uint16 array, H x W, the file's code values (maxval > 255: 16-bit big-endian
        samples; else 8-bit); a new array.

    Raises:
        RawFormatError: not a P5 PGM, oversized dims (checked before reading the
            pixels), or a truncated/overlong pixel block.
    """
    p = Path(path)
    raw = _read_file(p, 512 + 2 * MAX_PIXELS)
    m = _PGM_HEADER.match(raw[:512])
    if m is None:
        raise RawFormatError("not a binary PGM (P5) file", path=p)
    width, height, maxval = (int(g) for g in m.groups())
    _check_dims(width, height, p)
    if not 0 < maxval < 65536:
        raise RawFormatError(f"PGM maxval {maxval} out of range", path=p)
    itemsize = 2 if maxval > 255 else 1
    data = raw[m.end():]
    if len(data) != width * height * itemsize:
        raise RawFormatError(
            f"PGM pixel block is {len(data)} bytes, expected {width * height * itemsize} for {width}x{height}", path=p
        )
    return np.frombuffer(data, dtype=">u2" if itemsize == 2 else np.uint8).reshape(height, width).astype(np.uint16)


def read_png16(path: str | os.PathLike[str]) -> np.ndarray:
    """Samples of a greyscale PNG (16-bit, or 8-bit) read with Pillow.

    Returns:
        uint16 array, H x W, the file's code values; a new array.

    Raises:
        RawFormatError: not a PNG, not single-channel, oversized (checked from the
            header before decoding), or truncated.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(io.BytesIO(_read_file(p, 2 * MAX_PIXELS))) as im:
            if im.format != "PNG":
                raise RawFormatError(f"not a PNG file ({im.format})", path=p)
            _check_dims(im.width, im.height, p)
            if im.mode not in ("I;16", "I;16B", "I", "L"):
                raise RawFormatError(f"PNG mode {im.mode} is not single-channel greyscale", path=p)
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise RawFormatError(f"cannot decode PNG: {e}", path=p) from e
    if arr.min() < 0 or arr.max() > 65535:
        raise RawFormatError("PNG samples outside 0..65535", path=p)
    return arr.astype(np.uint16)


def frame_from_array(mosaic: np.ndarray, cfa: str | CFA, black: Any, white: float, **kwargs: Any) -> RawFrame:
    """Frame from an H x W array of code values, via :meth:`RawFrame.from_buffer` (``u16le``).

    ``kwargs`` are passed on (``wb``, ``ccm``, ``camera``, ``device_id``, ``shift``).
    """
    a = np.asarray(mosaic)
    if a.ndim != 2 or a.dtype.kind not in "ui" or (a.size and (a.min() < 0 or a.max() > 65535)):
        raise RawFormatError(f"mosaic must be a 2-D array of 0..65535 integers, got {a.dtype} {a.shape}")
    buf = np.ascontiguousarray(a, dtype="<u2")
    return RawFrame.from_buffer(buf, a.shape[1], a.shape[0], "u16le", cfa, black, white, **kwargs)


def read_manifest_entry(entry: Mapping[str, Any], root: str | os.PathLike[str], **kwargs: Any) -> RawFrame:
    """Open one RAW entry of a sensor or data manifest (validated by :class:`rawproof.sensor.SensorSpec`).

    Args:
        entry: One element of ``manifest.json``'s ``files`` (:data:`rawproof.sensor.SENSOR_SCHEMA`).
        root: The folder the entry's ``path`` is relative to.
        kwargs: Entry fields to override (e.g. ``wb="auto"``, ``shift=2``).

    Returns:
        The frame. Camera containers (``dng``, ``crw``, ``kdc``, ...) use the file's own
        metadata (:meth:`RawFrame.from_file`). Dumps use the entry's CFA and levels (``black:
        null`` = 0, as the data folder's sources configure), WB gains, colour matrix and pixel
        aspect when given (``None`` otherwise).

    Raises:
        RawFormatError: not a RAW entry (photos, matrices), an invalid field (named in the
            message), a path leaving ``root``, or a file not matching the entry.
    """
    from rawproof.sensor import SensorSpec

    if entry.get("kind") in ("photo", "matrix"):
        raise RawFormatError(f"manifest entry {entry.get('path')!r} is a {entry.get('kind')}, not a RAW frame")
    return SensorSpec.from_entry({**entry, **kwargs}, "manifest entry").read(root)


def read_camera_name(path: str | os.PathLike[str]) -> str:
    """``"Make Model"`` from a TIFF-based RAW (IFD0 tags 271/272) or a Canon CIFF (CRW) header.

    Returns ``""`` when the file has neither (an expected absence, not an error).
    Model strings that already start with the make are not doubled.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head[:2] in (b"II", b"MM") and head[6:14] == b"HEAPCCDR":
                make, model = _ciff_make_model(f, head[:2] == b"II")
            elif head[:4] in (b"II*\0", b"MM\0*"):
                make, model = _tiff_make_model(f, head[:2] == b"II")
            else:
                return ""
    except (OSError, struct.error, UnicodeDecodeError, ValueError):
        return ""
    make, model = make.strip(), model.strip()
    return model if model.lower().startswith(make.lower()) else f"{make} {model}".strip()


def read_capture_time(path: str | os.PathLike[str]) -> str | None:
    """When the sensor was exposed, from the RAW file's own metadata, as ISO 8601.

    * TIFF-based RAW (DNG, NEF, CR2, ARW, KDC, ...): EXIF ``DateTimeOriginal`` (tag
      0x9003 in the EXIF IFD), with ``OffsetTimeOriginal`` (0x9011) as the UTC offset
      when the file has it (``"2022-01-20T08:15:52+01:00"``), else without an offset: the
      camera's wall clock, zone unknown. Without ``DateTimeOriginal``: IFD0 ``DateTime``
      (0x0132), which a camera writes once, when it saves the capture.
    * Canon CIFF (CRW): the ``CapturedTime`` record (0x180E), seconds of the camera's
      wall clock since 1970, without an offset.

    Returns ``None`` when the file records no time (an expected absence: never replaced
    by the time of developing). LibRaw's ``timestamp`` (rawpy ``other.timestamp``) is not
    used: it reads EXIF strings with the host's time zone and CIFF times as UTC, so the
    same file would give different times on different hosts.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head[:2] in (b"II", b"MM") and head[6:14] == b"HEAPCCDR":
                return _ciff_capture_time(f, head[:2] == b"II")
            if head[:4] in (b"II*\0", b"MM\0*"):
                return _tiff_capture_time(f, head[:2] == b"II")
    except (OSError, struct.error, UnicodeDecodeError, ValueError, OverflowError):
        return None
    return None


def _ifd_entries(f: Any, e: str, offset: int) -> list[tuple[int, int, int, int]]:
    f.seek(offset)
    (n,) = struct.unpack(e + "H", f.read(2))
    return [struct.unpack(e + "HHII", f.read(12)) for _ in range(min(n, 512))]


def _ascii_value(f: Any, e: str, typ: int, count: int, value: int) -> str:
    if typ != 2 or not 0 < count < 256:
        return ""
    if count <= 4:
        raw = struct.pack(e + "I", value)[:count]
    else:
        f.seek(value)
        raw = f.read(count)
    return raw.split(b"\0")[0].decode("ascii").strip()


def _tiff_capture_time(f: Any, little: bool) -> str | None:
    e = "<" if little else ">"
    f.seek(4)
    (ifd,) = struct.unpack(e + "I", f.read(4))
    ifd0 = _ifd_entries(f, e, ifd)
    exif = next((value for tag, _, _, value in ifd0 if tag == 0x8769), None)
    values = {tag: _ascii_value(f, e, typ, count, value) for tag, typ, count, value in ifd0 if tag == 0x0132}
    if exif is not None:
        values.update({tag: _ascii_value(f, e, typ, count, value) for tag, typ, count, value in _ifd_entries(f, e, exif)})
    stamp = None
    for tag in (0x9003, 0x0132):  # DateTimeOriginal; else IFD0 DateTime, which a camera writes once, at capture
        try:
            stamp = datetime.strptime(values.get(tag, ""), "%Y:%m:%d %H:%M:%S")
            break
        except ValueError:
            continue  # absent, blank ("    :  :     :  :  ") or malformed
    if stamp is None:
        return None
    offset = values.get(0x9011, "") if tag == 0x9003 else ""
    text = stamp.isoformat()
    return text + offset if re.fullmatch(r"[+-]\d\d:\d\d", offset) else text


def _ciff_capture_time(f: Any, little: bool) -> str | None:
    e = "<" if little else ">"
    found = _ciff_record(f, e, 0x180E, 12)
    if found is None:
        return None
    (seconds,) = struct.unpack(e + "I", found[:4])
    if seconds == 0:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None).isoformat()


def _ciff_record(f: Any, e: str, wanted: int, max_len: int) -> bytes | None:
    """The first ``max_len`` bytes of the first CIFF record of type ``wanted`` (heap walk, 4 levels deep)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(2)
    (hlen,) = struct.unpack(e + "I", f.read(4))

    def walk(offset: int, length: int, depth: int) -> bytes | None:
        if depth > 4 or length < 6 or offset + length > size:
            return None
        f.seek(offset + length - 4)
        (tb,) = struct.unpack(e + "I", f.read(4))
        f.seek(offset + tb)
        (n,) = struct.unpack(e + "H", f.read(2))
        recs = [struct.unpack(e + "HII", f.read(10)) for _ in range(min(n, 1024))]
        for typ, ln, roff in recs:
            if typ == wanted:
                f.seek(offset + roff)
                return f.read(min(ln, max_len))
            if (typ >> 8) in (0x28, 0x30):
                hit = walk(offset + roff, ln, depth + 1)
                if hit is not None:
                    return hit
        return None

    return walk(hlen, size - hlen, 0)


def _tiff_make_model(f: Any, little: bool) -> tuple[str, str]:
    e = "<" if little else ">"
    f.seek(4)
    (ifd,) = struct.unpack(e + "I", f.read(4))
    f.seek(ifd)
    (n,) = struct.unpack(e + "H", f.read(2))
    entries = [struct.unpack(e + "HHII", f.read(12)) for _ in range(min(n, 512))]
    out = {271: "", 272: ""}
    for tag, typ, count, value in entries:
        if tag in out and typ == 2 and 0 < count < 256:
            if count <= 4:
                raw = struct.pack(e + "I", value)[:count]
            else:
                f.seek(value)
                raw = f.read(count)
            out[tag] = raw.split(b"\0")[0].decode("latin-1")
    return out[271], out[272]


def _ciff_make_model(f: Any, little: bool) -> tuple[str, str]:
    raw = _ciff_record(f, "<" if little else ">", 0x080A, 128)
    if raw is None:
        return "", ""
    parts = raw.split(b"\0")
    return parts[0].decode("latin-1"), (parts[1] if len(parts) > 1 else b"").decode("latin-1")
