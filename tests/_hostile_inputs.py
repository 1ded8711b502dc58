"""Builders of hostile inputs, made in code from their specification (never stored copies).

Used by tests/test_hostile_classes.py and by the structure-aware fuzz targets in fuzz/.
Every builder returns bytes (or text) and documents which field it makes hostile.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

# TIFF field types: 1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL.
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}


def tiff(entries: dict[int, tuple[int, list[int] | bytes]], payload: bytes = b"", *, little: bool = True) -> bytes:
    """A one-IFD TIFF: header, IFD0 with ``entries`` (tag -> (type, values)), then ``payload``.

    Values that do not fit the 4-byte field go after the IFD. The tags 273/324 (strip or
    tile offsets) with the value ``[-1]`` are replaced by the offset of ``payload``.
    """
    e = "<" if little else ">"
    n = len(entries)
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * n + 4
    blobs: list[bytes] = []
    fields = []
    for tag in sorted(entries):
        typ, values = entries[tag]
        if isinstance(values, bytes):
            raw, count = values, len(values)
        else:
            fmt = {1: "B", 3: "H", 4: "I"}[typ]
            raw, count = struct.pack(e + fmt * len(values), *values), len(values)
        fields.append((tag, typ, count, raw))
        if len(raw) > 4:
            blobs.append(raw + b"\0" * (len(raw) & 1))
    payload_at = extra_at + sum(len(b) for b in blobs)
    out = bytearray(b"II*\0" if little else b"MM\0*")
    out += struct.pack(e + "I", ifd_at) + struct.pack(e + "H", n)
    pos = extra_at
    for tag, typ, count, raw in fields:
        if tag in (273, 324) and raw == struct.pack(e + "I", 0xFFFFFFFF):
            raw = struct.pack(e + "I", payload_at)
        if len(raw) > 4:
            out += struct.pack(e + "HHII", tag, typ, count, pos)
            pos += len(raw) + (len(raw) & 1)
        else:
            out += struct.pack(e + "HHI", tag, typ, count) + raw.ljust(4, b"\0")
    out += struct.pack(e + "I", 0)
    for b in blobs:
        out += b
    return bytes(out) + payload


def bayer_dng(width: int, height: int, data: bytes, *, compression: int = 1, tiled: bool = False,
              bits: int = 16, byte_count: int | None = None) -> bytes:
    """A minimal Bayer (RGGB) DNG whose IFD0 declares ``width`` x ``height`` and holds ``data``.

    ``compression`` 1 is uncompressed, 7 lossless JPEG; ``tiled`` stores the data as one
    tile of the whole image size (TileWidth/TileLength, the layout of a lossless-JPEG DNG),
    otherwise as one strip. ``byte_count`` overrides the declared strip/tile byte count.
    """
    count = len(data) if byte_count is None else byte_count
    entries: dict[int, tuple[int, list[int] | bytes]] = {
        254: (4, [0]),                      # NewSubFileType: main image
        256: (4, [width]), 257: (4, [height]),
        258: (3, [bits]), 259: (3, [compression]),
        262: (3, [32803]),                  # PhotometricInterpretation: CFA
        271: (2, b"rawproof\0"), 272: (2, b"hostile\0"),
        277: (3, [1]), 284: (3, [1]),
        33421: (3, [2, 2]), 33422: (1, [0, 1, 1, 2]),  # CFARepeatPatternDim, CFAPattern RGGB
        50706: (1, [1, 4, 0, 0]),           # DNGVersion
        50708: (2, b"rawproof hostile\0"),  # UniqueCameraModel
        50717: (4, [(1 << bits) - 1]),      # WhiteLevel
    }
    if tiled:
        entries.update({322: (4, [width]), 323: (4, [height]), 324: (4, [0xFFFFFFFF]), 325: (4, [count])})
    else:
        entries.update({273: (4, [0xFFFFFFFF]), 278: (4, [height]), 279: (4, [count])})
    return tiff(entries, data)


def lossless_jpeg(samples: np.ndarray, precision: int = 12) -> bytes:
    """Encode a uint16 H x W array of ``precision``-bit samples as a lossless JPEG (ITU-T T.81
    process 14, SOF3), one component, predictor 1 (left; first column from above, the first
    sample from ``2**(precision - 1)``). With at most 15 bits, no difference needs category
    16, so no modular wrap-around is involved.

    The Huffman table gives category k (difference of k bits) the code of k ones and a
    zero (k + 1 bits; the canonical code of one symbol per length 1..16), for k in 0..15.
    """
    if not 2 <= precision <= 15 or samples.size and int(samples.max()) >> precision:
        raise ValueError(f"samples must fit {precision} bits, precision in 2..15")
    h, w = samples.shape
    s = samples.astype(np.int64)
    pred = np.empty_like(s)
    pred[:, 1:] = s[:, :-1]
    pred[1:, 0] = s[:-1, 0]
    pred[0, 0] = 1 << (precision - 1)
    diff = s - pred
    bits: list[str] = []
    for d in diff.reshape(-1).tolist():
        cat = abs(d).bit_length()
        v = d if d >= 0 else d + (1 << cat) - 1
        bits.append("1" * cat + "0" + (format(v, f"0{cat}b") if cat else ""))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    raw = int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""
    entropy = raw.replace(b"\xff", b"\xff\x00")
    # DHT: class 0, id 0, one code at each length 1..16 for categories 0..15.
    counts = bytes([1] * 16)
    symbols = bytes(range(16))
    dht = b"\xff\xc4" + struct.pack(">H", 2 + 1 + 16 + len(symbols)) + b"\x00" + counts + symbols
    sof = b"\xff\xc3" + struct.pack(">HBHHB", 11, precision, h, w, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x01\x00\x00"
    return b"\xff\xd8" + dht + sof + sos + entropy + b"\xff\xd9"


def progressive_jpeg_with_scans(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG (SOF2) declaring ``width`` x ``height`` with ``scans`` empty scans.

    A real 8 x 8 progressive JPEG from Pillow supplies the tables and its first (DC) scan;
    its frame header is patched to the declared size, and ``scans - 1`` DC refinement scans
    with no entropy-coded data follow, each costing libjpeg a pass over the whole
    coefficient buffer.
    """
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "JPEG", progressive=True, quality=90)
    src = buf.getvalue()
    sof = src.index(b"\xff\xc2")
    out = bytearray(src[: src.index(b"\xff\xda")])
    out[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    first_sos = src.index(b"\xff\xda")
    ln = int.from_bytes(src[first_sos + 2 : first_sos + 4], "big")
    nxt = src.index(b"\xff", first_sos + 2 + ln)
    while src[nxt + 1] == 0:  # skip stuffed bytes of the DC scan's data
        nxt = src.index(b"\xff", nxt + 2)
    out += src[first_sos:nxt]
    refine = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x00\x10"  # Ss=0 Se=0 Ah=1 Al=0
    out += refine * (scans - 1)
    return bytes(out) + b"\xff\xd9"


def insert_before_marker(jpeg: bytes, marker: int, junk: bytes, occurrence: int = 0) -> bytes:
    """``jpeg`` with ``junk`` inserted just before the ``occurrence``-th ``FF marker`` of its headers."""
    i = -1
    for _ in range(occurrence + 1):
        i = jpeg.index(bytes([0xFF, marker]), i + 1)
    return jpeg[:i] + junk + jpeg[i:]


def deep_json(depth: int, inner: str = "1") -> str:
    """A JSON array nested ``depth`` deep: ``[[[...1...]]]`` (``depth`` brackets each side)."""
    return "[" * depth + inner + "]" * depth


def with_unknown_curve(cert_pem: bytes) -> bytes:
    """``cert_pem`` (a P-256 certificate) with its curve OID 1.2.840.10045.3.1.7 changed to
    1.2.840.10045.3.1.99, an arc no standard assigns: it parses, its key does not load."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    p256 = bytes.fromhex("06082a8648ce3d030107")
    if p256 not in der:
        raise ValueError("not a P-256 certificate")
    der = der.replace(p256, bytes.fromhex("06082a8648ce3d030163"), 1)
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"
