"""Walk the marker segments of a JPEG the way the readers that consume it do.

Two readers parse the same JPEG bytes in :func:`rawproof.verify`, and they disagree on
what a malformed file contains, so each is modelled by its own dialect:

``"c2pa"``
    The JPEG reader c2pa finds its manifest with (c2pa-python 0.38; the ``img-parts``
    crate's ``Jpeg::from_bytes``): after SOI, any byte that is not ``FF`` is skipped; fill
    ``FF`` bytes are skipped; EOI ends the file; a marker has a 2-byte length only if it is
    APPn, SOFn/DHT/JPG/DAC (``C0``-``CF``), RSTn, SOS, DQT, DRI or COM, and every other
    marker (SOI, DNL, DHP, EXP, ``F0``-``FD``, TEM, ...) is taken as a bare marker, so its
    payload bytes then count as stray bytes; the walk stops at the first SOS (the rest is
    entropy data) or at a length that runs past the end. This is why stray bytes between
    segments must not end a pre-flight walk: c2pa walks past them to the APP11 segments
    that follow. The marker sets were measured against c2pa itself (a marker with a length
    spanning the first APP11 hides the manifest from c2pa exactly for the markers listed
    with a length; ``tests/test_hostile_classes.py`` keeps checking it).
``"libjpeg"``
    The decoder (libjpeg via Pillow): the same resynchronisation on stray and fill bytes,
    bare markers SOI, EOI, RSTn and TEM, every other marker with a length; after SOS the
    entropy-coded data runs to the next marker that is not a stuffed ``FF 00`` or RSTn, and
    the walk goes on through every scan of a progressive file until EOI.

:func:`jpeg_segments` yields the segments either reader sees; :func:`jpeg_structure`
counts what bounds decoding cost (segments and scans).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Segment", "JpegStructure", "jpeg_segments", "jpeg_structure"]

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)

# The next marker inside entropy-coded data: FF (FF fill)* then a byte that is neither a
# stuffed zero nor a restart marker.
_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")


def _c2pa_has_length(marker: int) -> bool:
    return 0xC0 <= marker <= 0xCF or 0xD0 <= marker <= 0xD7 or 0xE0 <= marker <= 0xEF or marker in (0xDA, 0xDB, 0xDD, 0xFE)


def _libjpeg_has_length(marker: int) -> bool:
    return not (marker in (_SOI, _EOI, 0x01) or 0xD0 <= marker <= 0xD7)


@dataclass(frozen=True)
class Segment:
    """One marker segment.

    Attributes:
        marker: The second marker byte (``0xEB`` for APP11).
        start: Offset of the payload (after the 2-byte length; for a bare marker, after the marker).
        end: Offset one past the payload; ``end == start`` for a bare marker.
        skipped: Stray (non-``FF``) bytes the reader skipped just before this marker.
    """

    marker: int
    start: int
    end: int
    skipped: int = 0


def jpeg_segments(data: bytes, dialect: str) -> Iterator[Segment]:
    """The marker segments of a JPEG as the ``dialect`` reader walks them (module docstring).

    Args:
        data: The encoded JPEG (starting with SOI; otherwise nothing is yielded).
        dialect: ``"c2pa"`` or ``"libjpeg"``.

    Yields:
        :class:`Segment` in file order; a segment whose length runs past the end of the
        data is yielded clipped to the end and ends the walk (both readers fail there).
    """
    if dialect not in ("c2pa", "libjpeg"):
        raise ValueError(f"dialect must be 'c2pa' or 'libjpeg', got {dialect!r}")
    has_length = _c2pa_has_length if dialect == "c2pa" else _libjpeg_has_length
    n = len(data)
    if n < 2 or data[0] != 0xFF or data[1] != _SOI:
        return
    i = 2
    while True:
        j = data.find(b"\xff", i)  # stray bytes before a marker are skipped by both readers
        if j < 0:
            return
        skipped, i = j - i, j
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return
        marker = data[i]
        i += 1
        if marker == _EOI:
            return
        if not has_length(marker):
            yield Segment(marker, i, i, skipped)
            continue
        if i + 2 > n:
            return
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            return
        if i + length > n:  # cut short: both readers fail here; what is there is still yielded
            yield Segment(marker, i + 2, n, skipped)
            return
        yield Segment(marker, i + 2, i + length, skipped)
        i += length
        if marker == _SOS:
            if dialect == "c2pa":
                return
            m = _NEXT_MARKER.search(data, i)
            if m is None:
                return
            i = m.end() - 2  # at the last FF before the marker byte: entropy data is not "stray"


@dataclass(frozen=True)
class JpegStructure:
    """Counts that bound the cost of decoding a JPEG (libjpeg dialect).

    Attributes:
        segments: Marker segments before EOI, excluding RSTn inside entropy data.
        scans: SOS segments (1 for a baseline file; one per scan of a progressive file).
        width, height: From the first frame header (SOFn), pixels; 0 when there is none.
    """

    segments: int
    scans: int
    width: int = 0
    height: int = 0


def jpeg_structure(data: bytes, *, max_segments: int | None = None) -> JpegStructure:
    """Count segments and scans as libjpeg will meet them.

    Args:
        data: The encoded JPEG.
        max_segments: Stop counting once this many segments are seen (the result then
            reports ``max_segments + 1``), so a file of millions of empty markers costs
            no more than the bound.
    """
    segments = scans = width = height = 0
    for seg in jpeg_segments(data, "libjpeg"):
        segments += 1
        scans += seg.marker == _SOS
        if seg.marker in _SOF and not width and seg.end - seg.start >= 5:
            height, width = struct.unpack(">HH", data[seg.start + 1 : seg.start + 5])
        if max_segments is not None and segments > max_segments:
            break
    return JpegStructure(segments=segments, scans=scans, width=width, height=height)
