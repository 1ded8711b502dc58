"""The sensor manifest: how a vendor describes its own sensor's dumps, validated with clear errors.

A sensor manifest is a ``manifest.json`` beside (or above) the dumps: ``{"files": [entry, ...]}``,
one entry per file, each an object of :data:`SENSOR_SCHEMA` (JSON Schema, printed in
``docs/raw_ingest.md``). :meth:`SensorSpec.from_entry` validates one entry and names the
offending field; :meth:`SensorSpec.read` opens the file through the same native unpacker as
:meth:`rawproof.RawFrame.from_buffer`. The data folder's own manifest is read the same way
(:func:`rawproof.rawio.read_manifest_entry`). ``rawproof dump`` writes a camera RAW file as a
packed dump plus its entry (how the tests and ``docs/vendor.md`` make RAW12 dumps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rawproof.errors import RawFormatError
from rawproof.raw import CFA, MAX_PIXELS, PixelFormat, RawFrame

__all__ = [
    "PACKED_CONTAINERS",
    "FILE_CONTAINERS",
    "CAMERA_CONTAINERS",
    "CONTAINERS",
    "SENSOR_SCHEMA",
    "SensorSpec",
    "find_entry",
    "pack",
    "register",
]

PACKED_CONTAINERS = tuple(f.value for f in PixelFormat)
"""Headerless dumps unpacked natively: ``raw10``/``raw12``/``raw14`` (MIPI CSI-2), ``u16le``, ``u8``."""
FILE_CONTAINERS = ("pgm16be", "png16")
"""Greyscale image files holding the mosaic: binary PGM (16-bit big-endian) and 16-bit PNG."""
CAMERA_CONTAINERS = ("camera", "dng", "crw", "cr2", "cr3", "nef", "nrw", "arw", "srf", "sr2", "kdc", "dcr", "orf",
                     "rw2", "raf", "pef", "srw", "3fr", "erf", "mrw", "mos", "iiq")
"""Camera files LibRaw reads (:meth:`RawFrame.from_file`); their own metadata wins, the entry's levels are not used."""
CONTAINERS = (*PACKED_CONTAINERS, *FILE_CONTAINERS, *CAMERA_CONTAINERS)
"""Every ``container`` value an entry may have."""

_DUMP_KEYS = ("width", "height", "cfa", "white")

SENSOR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rawproof sensor manifest entry",
    "type": "object",
    "required": ["path", "container"],
    "properties": {
        "path": {"type": "string", "description": "file, relative to the manifest's folder"},
        "container": {"enum": list(CONTAINERS)},
        "width": {"type": "integer", "minimum": 2, "multipleOf": 2, "description": "mosaic width, pixels"},
        "height": {"type": "integer", "minimum": 2, "multipleOf": 2, "description": "mosaic height, pixels"},
        "stride": {"type": "integer", "minimum": 0, "description": "bytes per row, 0 = tightly packed (packed dumps)"},
        "cfa": {"enum": [c.value for c in CFA], "description": "top-left 2x2 of the mosaic, row-major"},
        "black": {"oneOf": [{"type": "null"}, {"type": "number", "minimum": 0},
                            {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 4, "maxItems": 4}],
                  "description": "black level in file DN: one value, or (R, Gr, Gb, B); null = 0"},
        "white": {"type": "number", "exclusiveMinimum": 0, "description": "saturation level in file DN"},
        "shift": {"type": "integer", "minimum": 0, "maximum": 8, "description": "right-shift of data stored shifted up"},
        "wb": {"oneOf": [{"type": "null"}, {"const": "auto"},
                         {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 3, "maxItems": 4}],
               "description": "(R, G, B) or (R, Gr, Gb, B) gains; \"auto\" = grey-world; null = none (green cast)"},
        "ccm": {"oneOf": [{"type": "null"}, {"type": "array", "minItems": 3, "maxItems": 3,
                                             "items": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}}],
                "description": "camera RGB -> linear sRGB 3x3, rows summing to ~1; null = identity"},
        "pixel_aspect": {"type": "number", "exclusiveMinimum": 0, "description": "pixel width / height; 1 = square"},
        "camera": {"type": "string"},
        "device_id": {"type": "string"},
    },
    "allOf": [{
        "if": {"properties": {"container": {"enum": [*PACKED_CONTAINERS, *FILE_CONTAINERS]}}},
        "then": {"required": list(_DUMP_KEYS)},
    }],
}
"""JSON Schema (draft 2020-12) of one entry; other keys (descriptions, sources, licences) are allowed and ignored."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class SensorSpec:
    """One validated sensor manifest entry: everything needed to read a dump.

    Attributes:
        path: The file, relative to the manifest's folder.
        container: One of :data:`CONTAINERS`.
        width, height: Mosaic size, pixels (0 for camera files: from the file).
        stride: Bytes per row of a packed dump, 0 = tightly packed.
        cfa: Top-left 2x2 pattern (``None`` for camera files).
        black: (R, Gr, Gb, B) black levels, file DN.
        white: Saturation level, file DN (0 for camera files).
        shift: Right-shift for data stored shifted up (see :meth:`RawFrame.from_buffer`).
        wb: Gains, ``"auto"`` (grey-world) or ``None`` (no white balance: a green cast).
        ccm: Camera RGB -> linear sRGB, 3x3 nested tuples, or ``None`` (identity).
        pixel_aspect: Pixel width / height (1 = square).
        camera, device_id: Free text for the capture assertion.
    """

    path: str
    container: str
    width: int = 0
    height: int = 0
    stride: int = 0
    cfa: CFA | None = None
    black: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    white: float = 0.0
    shift: int = 0
    wb: tuple[float, ...] | str | None = None
    ccm: tuple[tuple[float, ...], ...] | None = None
    pixel_aspect: float = 1.0
    camera: str = ""
    device_id: str = ""

    @property
    def is_camera_file(self) -> bool:
        """True when LibRaw reads the file with its own metadata."""
        return self.container in CAMERA_CONTAINERS

    @classmethod
    def from_entry(cls, entry: Any, where: str = "entry") -> SensorSpec:
        """Validate one manifest entry against :data:`SENSOR_SCHEMA`.

        Args:
            entry: The JSON object.
            where: How error messages name the entry (e.g. ``"manifest.json files[3]"``).

        Raises:
            RawFormatError: the first violation, naming the field, the value and what is expected.
        """
        if not isinstance(entry, Mapping):
            raise RawFormatError(f"{where}: an entry must be a JSON object, got {type(entry).__name__}")
        label = f"{where} ({entry.get('path')})" if isinstance(entry.get("path"), str) else where

        def bad(key: str, want: str) -> RawFormatError:
            return RawFormatError(f"{label}: field {key!r} {want}, got {entry.get(key)!r}")

        for key in ("path", "container"):
            if key not in entry:
                raise RawFormatError(f"{label}: missing required field {key!r} (the container is one of {list(CONTAINERS)})")
        if not isinstance(entry["path"], str) or not entry["path"]:
            raise bad("path", "must be a non-empty relative path")
        container = entry["container"]
        if container not in CONTAINERS:
            raise bad("container", f"must be one of {list(CONTAINERS)}")
        opt: dict[str, Any] = {}
        for key in ("camera", "device_id"):
            if key in entry:
                if not isinstance(entry[key], str):
                    raise bad(key, "must be a string")
                opt[key] = entry[key]
        if container in CAMERA_CONTAINERS:
            return cls(path=entry["path"], container=container, **opt)
        missing = [k for k in _DUMP_KEYS if k not in entry]
        if missing:
            raise RawFormatError(f"{label}: a {container} dump needs fields {missing}")
        for key in ("width", "height"):
            v = entry[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 2 or v % 2:
                raise bad(key, "must be an even integer >= 2")
        if entry["width"] * entry["height"] > MAX_PIXELS:
            raise RawFormatError(f"{label}: {entry['width']}x{entry['height']} exceeds the {MAX_PIXELS}-pixel limit")
        stride = entry.get("stride", 0)
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
            raise bad("stride", "must be an integer >= 0 (bytes per row; 0 = tightly packed)")
        if stride and container not in PACKED_CONTAINERS:
            raise bad("stride", f"applies to packed dumps ({list(PACKED_CONTAINERS)}) only")
        if stride and stride < PixelFormat(container).row_bytes(entry["width"]):
            raise bad("stride", f"is shorter than one {container} row of {entry['width']} px "
                                f"({PixelFormat(container).row_bytes(entry['width'])} bytes)")
        if entry["cfa"] not in [c.value for c in CFA]:
            raise bad("cfa", f"must be one of {[c.value for c in CFA]} (the top-left 2x2, row-major)")
        black_v = entry.get("black")
        if black_v is None:
            black = (0.0,) * 4
        elif _is_number(black_v) and black_v >= 0:
            black = (float(black_v),) * 4
        elif isinstance(black_v, list) and len(black_v) == 4 and all(_is_number(b) and b >= 0 for b in black_v):
            black = tuple(float(b) for b in black_v)
        else:
            raise bad("black", "must be null, one number >= 0, or 4 numbers (R, Gr, Gb, B)")
        white = entry["white"]
        if not _is_number(white) or white <= max(black):
            raise bad("white", f"must be a number above the black level ({max(black):g})")
        shift = entry.get("shift", 0)
        if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift <= 8:
            raise bad("shift", "must be an integer in 0..8")
        wb = entry.get("wb")
        if wb is not None and wb != "auto":
            if not isinstance(wb, list) or len(wb) not in (3, 4) or not all(_is_number(g) and g > 0 for g in wb):
                raise bad("wb", 'must be null, "auto" (grey-world), or 3 or 4 positive gains')
            wb = tuple(float(g) for g in wb)
        ccm = entry.get("ccm")
        if ccm is not None:
            if (not isinstance(ccm, list) or len(ccm) != 3
                    or not all(isinstance(r, list) and len(r) == 3 and all(_is_number(v) for v in r) for r in ccm)):
                raise bad("ccm", "must be null or a 3x3 list of numbers (camera RGB -> linear sRGB)")
            ccm = tuple(tuple(float(v) for v in r) for r in ccm)
        aspect = entry.get("pixel_aspect", 1.0)
        if not _is_number(aspect) or aspect <= 0:
            raise bad("pixel_aspect", "must be a number > 0 (pixel width / height)")
        return cls(path=entry["path"], container=container, width=entry["width"], height=entry["height"], stride=stride,
                   cfa=CFA(entry["cfa"]), black=black, white=float(white), shift=shift, wb=wb, ccm=ccm,
                   pixel_aspect=float(aspect), **opt)

    def read(self, root: str | os.PathLike[str], *, threads: int = 0) -> RawFrame:
        """Open the entry's file (``root / path``) as a :class:`RawFrame`.

        Raises:
            RawFormatError: a path leaving ``root``, a missing file, or one not matching the entry.
        """
        rel = Path(self.path)
        if rel.is_absolute() or ".." in rel.parts:
            raise RawFormatError(f"manifest path {self.path!r} must be relative and stay inside the data folder (the manifest's)")
        path = Path(root) / rel
        if not path.is_file():
            raise RawFormatError("file listed in the manifest is missing", path=path)
        if self.is_camera_file:
            return RawFrame.from_file(path)
        kw: dict[str, Any] = {"wb": self.wb, "ccm": None if self.ccm is None else np.asarray(self.ccm, np.float32),
                              "camera": self.camera, "device_id": self.device_id, "shift": self.shift,
                              "pixel_aspect": self.pixel_aspect}
        try:
            if self.container in PACKED_CONTAINERS:
                fmt = PixelFormat(self.container)
                need = (self.stride or fmt.row_bytes(self.width)) * self.height
                from rawproof.untrusted import NotRegularFileError, read_regular

                try:
                    data = read_regular(path, need)  # regular files only, never more than the frame needs
                except NotRegularFileError as e:
                    longer = path.stat().st_size > need
                    raise RawFormatError(f"file is longer than declared ({path.stat().st_size} bytes, the entry declares {need})"
                                         if longer else str(e)) from e
                return RawFrame.from_buffer(data, self.width, self.height, fmt, self.cfa, self.black, self.white,
                                            stride=self.stride, threads=threads, **kw)
            from rawproof.rawio import frame_from_array, read_pgm, read_png16

            arr = read_pgm(path) if self.container == "pgm16be" else read_png16(path)
            if arr.shape != (self.height, self.width):
                raise RawFormatError(f"file is {arr.shape[1]}x{arr.shape[0]}, manifest says {self.width}x{self.height}")
            return frame_from_array(arr, self.cfa, self.black, self.white, **kw)
        except RawFormatError as e:
            raise RawFormatError(str(e), path=path) from e


def find_entry(path: str | os.PathLike[str], manifest: str | os.PathLike[str] | None = None) -> tuple[Mapping[str, Any], Path] | None:
    """The manifest entry describing ``path`` and the folder its ``path`` is relative to.

    Args:
        path: The dump.
        manifest: A manifest file to look in; ``None``: the nearest sensor manifest (a
            ``manifest.json`` holding a ``files`` list; other ``manifest.json`` files are passed
            over) in the file's folder or a parent.

    Returns:
        ``(entry, root)``, or ``None`` when no manifest lists the file (an expected absence).

    Raises:
        RawFormatError: the given ``manifest`` is missing, unreadable, has no ``files`` list or
            does not list the file.
    """
    p = Path(path).resolve()
    explicit = manifest is not None
    candidates = [Path(manifest)] if explicit else [d / "manifest.json" for d in p.parents]
    for mf in candidates:
        if not mf.is_file():
            if explicit:
                raise RawFormatError("sensor manifest not found", path=mf)
            continue
        try:
            doc = json.loads(mf.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            if not explicit:
                continue  # some other tool's manifest.json: not ours to judge
            raise RawFormatError(f"unreadable manifest: {e}", path=mf) from e
        files = doc.get("files") if isinstance(doc, dict) else None
        if not isinstance(files, list):
            if not explicit:
                continue
            raise RawFormatError('a sensor manifest is {"files": [entry, ...]}', path=mf)
        root = mf.resolve().parent
        try:
            rel = p.relative_to(root).as_posix()
        except ValueError:
            rel = None
        for e in files:
            if isinstance(e, dict) and e.get("path") in (rel, p.name if manifest is not None else None):
                return e, root if e.get("path") == rel else p.parent
        if manifest is not None:
            raise RawFormatError(f"{mf.name} lists no entry with path {rel or p.name!r}", path=mf)
        return None
    return None


def pack(mosaic: np.ndarray, fmt: str | PixelFormat) -> bytes:
    """Pack a mosaic into a headerless dump, the inverse of :meth:`RawFrame.from_buffer` (tightly packed rows).

    Args:
        mosaic: uint16 H x W, DN; values must fit the format's bits; W a multiple of the
            format's pixel group (4 for RAW10/RAW14, 2 for RAW12).
        fmt: :class:`PixelFormat` or its value. MIPI CSI-2 layouts: RAW10 = 4 high bytes then one
            byte of 4 x 2 low bits (first pixel in the lowest bits); RAW12 = 2 high bytes then
            4 + 4 low bits; RAW14 = 4 high bytes then 3 bytes of 4 x 6 low bits.

    Raises:
        RawFormatError: wrong dtype/shape, values too large, or a width the format cannot pack.
    """
    pf = PixelFormat(str(getattr(fmt, "value", fmt)).lower())
    m = np.asarray(mosaic)
    if m.dtype != np.uint16 or m.ndim != 2:
        raise RawFormatError(f"mosaic must be uint16 H x W, got {m.dtype} {m.shape}")
    bits = pf.bits_per_pixel
    if m.size and int(m.max()) >= 1 << bits:
        raise RawFormatError(f"value {int(m.max())} does not fit {pf.value} ({bits} bits)")
    h, w = m.shape
    group = {"raw10": 4, "raw12": 2, "raw14": 4}.get(pf.value, 1)
    if w % group:
        raise RawFormatError(f"{pf.value} packs {group} pixels per group; width {w} is not a multiple")
    p = m.astype(np.uint32)
    if pf is PixelFormat.U8:
        return p.astype(np.uint8).tobytes()
    if pf is PixelFormat.U16LE:
        return m.astype("<u2").tobytes()
    low_bits = bits - 8
    g = p.reshape(h, w // group, group)
    low = np.zeros(g.shape[:2], np.uint32)
    for i in range(group):  # low bits of pixel i at bit offset i * low_bits of the trailing bytes
        low |= (g[..., i] & ((1 << low_bits) - 1)) << (i * low_bits)
    nlow = group * low_bits // 8
    tail = np.stack([(low >> (8 * k)) & 0xFF for k in range(nlow)], axis=-1)
    return np.concatenate([g >> low_bits, tail], axis=-1).astype(np.uint8).tobytes()


def _run_dump(args: argparse.Namespace) -> int:
    frame = RawFrame.from_file(args.file)
    fmt = PixelFormat(args.format)
    m = frame.mosaic
    if args.crop:
        try:
            w, h, x, y = (int(v) for v in args.crop.split(","))
        except ValueError:
            raise RawFormatError(f"--crop takes W,H,X,Y, got {args.crop!r}") from None
        if min(w, h, x, y) < 0 or (w | h | x | y) & 1 or x + w > frame.width or y + h > frame.height or w < 2 or h < 2:
            raise RawFormatError(f"--crop {args.crop}: even values inside the {frame.width}x{frame.height} mosaic (keeps the CFA)")
        m = np.ascontiguousarray(m[y:y + h, x:x + w])
    bits = fmt.bits_per_pixel
    top = int(m.max()) if m.size else 0
    shift = max(0, top.bit_length() - bits)
    if shift:
        raise RawFormatError(f"{args.file}: samples need {top.bit_length()} bits; {fmt.value} holds {bits}")
    out = Path(args.out)
    out.write_bytes(pack(m, fmt))
    entry = {"path": out.name, "container": fmt.value, "width": int(m.shape[1]), "height": int(m.shape[0]),
             "cfa": frame.cfa.value, "black": list(frame.black), "white": frame.white,
             "wb": None if frame.wb is None else list(frame.wb),
             "ccm": None if frame.ccm is None else np.asarray(frame.ccm, np.float64).round(6).tolist(),
             "pixel_aspect": frame.pixel_aspect, "camera": frame.camera}
    mf = out.parent / "manifest.json"
    doc = json.loads(mf.read_text(encoding="utf-8")) if mf.is_file() else {"files": []}
    doc["files"] = [e for e in doc.get("files", []) if e.get("path") != out.name] + [entry]
    SensorSpec.from_entry(entry, "rawproof dump")
    mf.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{out}: {m.shape[1]}x{m.shape[0]} {fmt.value} {frame.cfa.value}, entry added to {mf}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof dump FILE --format raw12 -o OUT``."""
    p = subparsers.add_parser("dump", help="write a camera RAW's mosaic as a packed sensor dump plus its sensor manifest entry",
                              description="Write the mosaic of a camera RAW file as a headerless dump (e.g. MIPI RAW12) and "
                                          "add its entry (size, CFA, levels, WB, colour matrix) to manifest.json beside it.")
    p.add_argument("file", help="camera RAW file LibRaw reads")
    p.add_argument("--format", required=True, choices=list(PACKED_CONTAINERS), help="dump layout")
    p.add_argument("-o", "--out", required=True, help="dump file to write")
    p.add_argument("--crop", metavar="W,H,X,Y", help="write only this region of the mosaic (even values: the CFA is kept)")
    p.set_defaults(func=_run_dump)
