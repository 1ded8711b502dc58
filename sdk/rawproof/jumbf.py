"""Structural pre-flight of an image's C2PA manifest store (JUMBF boxes) before c2pa reads it.

Why this exists: c2pa (checked with c2pa-python 0.38) sizes its read buffer from a box's
declared length before checking it against the bytes that are there. A 6 kB JPEG whose
manifest has one content box length changed to a value below its real size makes it misread
the next payload bytes as a box header declaring ~2.8 GB, and the process grows by ~2 GB
(found by ``fuzz/fuzz_verify.py``). :func:`check_manifest_boxes` walks the box tree first
and refuses any box that claims more bytes than its parent holds; the same fuzzer then found
that c2pa's CBOR decoder does the same with a string length inside a ``cbor`` box (a 4-byte
change in an assertion made a text string declare 1.7 GB), so every ``cbor`` payload (and the
protected header of a COSE_Sign1 signature, which c2pa decodes as CBOR too) is first decoded
with ``cbor2``, which reads what is there and stops at the end of the data. Such a file then
costs nothing and is reported as an invalid manifest.

Box layout (ISO/IEC 19566-5, after ISO BMFF): ``LBox`` (u32 BE, whole box size in bytes;
0 = to the end of the parent, 1 = a u64 ``XLBox`` follows the type), ``TBox`` (4 bytes),
payload. ``jumb`` superboxes hold boxes; every other type is a leaf.

Where the store lives:

* JPEG: APP11 segments ``FF EB``, each ``Lp(2) "JP" En(2) Z(4)`` then box bytes; the
  segments of one box instance ``En`` are joined in order of ``Z``, each continuation
  repeating the box header (``LBox TBox`` and ``XLBox`` if used), which is dropped. The
  segments are found the way c2pa's JPEG reader walks them, stray bytes between segments
  included, and also the way libjpeg does (:mod:`rawproof.containers`); a pre-flight that
  stopped at the first stray byte let c2pa reach a mutated store behind it (~1.9 GB for a
  7.6 kB file).
* PNG: the payload of the ``caBX`` chunk.
* WebP: the payload of the RIFF ``C2PA`` chunk.
"""

from __future__ import annotations

import cbor2

from rawproof.containers import jpeg_segments

__all__ = ["JumbfError", "manifest_stores", "check_boxes", "check_manifest_boxes"]

_MAX_DEPTH = 32
"""Deepest superbox nesting accepted; C2PA stores nest 4-5 deep."""


class JumbfError(ValueError):
    """The manifest store's box structure is inconsistent (message says where)."""


def _jpeg_stores(data: bytes) -> list[bytes]:
    # Both readers' walks (rawproof.containers): c2pa's own, which reads past stray bytes and
    # stops at the first SOS, and libjpeg's, which also reads the segments between scans. A
    # store either of them would hand to a parser is checked.
    stores = []
    for dialect in ("c2pa", "libjpeg"):
        parts: dict[int, list[tuple[int, bytes]]] = {}
        for seg in jpeg_segments(data, dialect):
            payload = data[seg.start : seg.end]
            if seg.marker == 0xEB and len(payload) >= 8 and payload[:2] == b"JP":
                en, z = int.from_bytes(payload[2:4], "big"), int.from_bytes(payload[4:8], "big")
                parts.setdefault(en, []).append((z, payload[8:]))
        for pieces in parts.values():
            pieces.sort(key=lambda p: p[0])
            first = pieces[0][1]
            header = 16 if first[:4] == b"\x00\x00\x00\x01" else 8
            store = first + b"".join(p[header:] for _, p in pieces[1:])
            if store not in stores:
                stores.append(store)
    return stores


def _png_stores(data: bytes) -> list[bytes]:
    stores, i = [], 8
    while i + 8 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        ctype = data[i + 4 : i + 8]
        if ctype == b"caBX":
            stores.append(data[i + 8 : i + 8 + length])
        if ctype == b"IEND":
            break
        i += 12 + length
    return stores


def _webp_stores(data: bytes) -> list[bytes]:
    stores, i = [], 12
    while i + 8 <= len(data):
        ctype, length = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if ctype == b"C2PA":
            stores.append(data[i + 8 : i + 8 + length])
        i += 8 + length + (length & 1)
    return stores


_EXTRACTORS = {"image/jpeg": _jpeg_stores, "image/png": _png_stores, "image/webp": _webp_stores}


def manifest_stores(data: bytes, mime: str) -> list[bytes]:
    """The JUMBF byte strings an image carries where c2pa looks for a manifest store.

    Args:
        data: The encoded image.
        mime: ``"image/jpeg"``, ``"image/png"`` or ``"image/webp"``.

    Returns:
        One ``bytes`` per store found (JPEG: per APP11 box instance), possibly none.
    """
    try:
        return _EXTRACTORS[mime](data)
    except KeyError:
        raise ValueError(f"no JUMBF extractor for {mime!r}") from None


def check_boxes(buf: bytes, *, offset: int = 0, depth: int = 0) -> None:
    """Check that every box in ``buf`` (and in every ``jumb`` superbox, recursively) fits its parent.

    Args:
        buf: Concatenated boxes.
        offset: Position of ``buf`` in the store, for messages.

    Raises:
        JumbfError: a truncated header, a length below its header size, a length past the
            end of the parent, or nesting deeper than 32.
    """
    if depth > _MAX_DEPTH:
        raise JumbfError(f"superboxes nested deeper than {_MAX_DEPTH} at byte {offset}")
    pos = 0
    while pos < len(buf):
        left = len(buf) - pos
        if left < 8:
            raise JumbfError(f"{left} stray byte(s) at byte {offset + pos}, too few for a box header")
        size, tbox = int.from_bytes(buf[pos : pos + 4], "big"), buf[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if left < 16:
                raise JumbfError(f"box {tbox!r} at byte {offset + pos} declares an XLBox but is cut short")
            size, header = int.from_bytes(buf[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = left
        if size < header:
            raise JumbfError(f"box {tbox!r} at byte {offset + pos} declares {size} bytes, less than its {header}-byte header")
        if size > left:
            raise JumbfError(f"box {tbox!r} at byte {offset + pos} declares {size} bytes, only {left} remain")
        if tbox == b"jumb":
            check_boxes(buf[pos + header : pos + size], offset=offset + pos + header, depth=depth + 1)
        elif tbox == b"cbor":
            _check_cbor(buf[pos + header : pos + size], offset + pos + header)
        pos += size


_COSE_SIGN1 = 18
"""CBOR tag of a COSE_Sign1 structure ``[protected: bstr(CBOR map), unprotected, payload, signature]``."""


def _check_cbor(payload: bytes, offset: int) -> None:
    try:
        item = cbor2.loads(payload)
        if isinstance(item, cbor2.CBORTag) and item.tag == _COSE_SIGN1:
            item = item.value
        if isinstance(item, (list, tuple)) and len(item) == 4 and isinstance(item[0], bytes) and item[0]:
            cbor2.loads(item[0])
    except (cbor2.CBORError, RecursionError) as e:
        raise JumbfError(f"CBOR payload at byte {offset} does not decode: {e}") from None


def check_manifest_boxes(data: bytes, mime: str) -> None:
    """Run :func:`check_boxes` over every manifest store of an encoded image.

    Raises:
        JumbfError: the first inconsistency found, prefixed with the store's number.
    """
    for k, store in enumerate(manifest_stores(data, mime)):
        try:
            check_boxes(store)
        except JumbfError as e:
            raise JumbfError(f"manifest store {k}: {e}") from None
