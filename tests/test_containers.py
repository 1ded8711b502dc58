"""rawproof.containers: JPEG segment walks in the c2pa and libjpeg dialects.

References: segment lists built here byte by byte, and libjpeg's documented progression
scripts (jcparam.c ``jpeg_simple_progression``: 10 scans for 3-component YCbCr, 6 for
greyscale) as written by Pillow.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from rawproof.containers import jpeg_segments, jpeg_structure


def seg(marker: int, payload: bytes = b"") -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def test_walk_matches_a_built_layout() -> None:
    body = [seg(0xE0, b"JFIF\0"), seg(0xEB, b"JP\0\1" + bytes(8)), seg(0xFE, b"hi"), seg(0xDA, b"\1\1\0\0\x3f\0")]
    data = b"\xff\xd8" + b"".join(body) + b"\x12\x34\xff\x00\x56" + b"\xff\xd9"
    for dialect in ("c2pa", "libjpeg"):
        got = [(s.marker, data[s.start : s.end]) for s in jpeg_segments(data, dialect)]
        assert got == [(0xE0, b"JFIF\0"), (0xEB, b"JP\0\1" + bytes(8)), (0xFE, b"hi"), (0xDA, b"\1\1\0\0\x3f\0")]


def test_stray_and_fill_bytes_are_skipped_and_counted() -> None:
    data = b"\xff\xd8" + b"\x00\x11" + seg(0xE1, b"a") + b"\xff\xff\xff" + seg(0xEB, b"JP") + b"\xff\xd9"
    for dialect in ("c2pa", "libjpeg"):
        segs = list(jpeg_segments(data, dialect))
        assert [(s.marker, s.skipped) for s in segs] == [(0xE1, 2), (0xEB, 0)]


@pytest.mark.parametrize(("marker", "c2pa_bare"), [(0xDD, False), (0xDC, True), (0xF0, True), (0xC4, False), (0x01, True)])
def test_dialects_disagree_on_which_markers_have_a_length(marker: int, c2pa_bare: bool) -> None:
    app11 = seg(0xEB, b"JP")
    spanning = bytes([0xFF, marker]) + struct.pack(">H", 2 + len(app11))
    data = b"\xff\xd8" + spanning + app11 + b"\xff\xd9"
    c2pa_sees = any(s.marker == 0xEB for s in jpeg_segments(data, "c2pa"))
    libjpeg_sees = any(s.marker == 0xEB for s in jpeg_segments(data, "libjpeg"))
    assert c2pa_sees is c2pa_bare
    assert libjpeg_sees is (marker == 0x01)  # libjpeg gives every marker but SOI/EOI/RSTn/TEM a length


def test_cut_segment_is_yielded_clipped_and_ends_the_walk() -> None:
    data = b"\xff\xd8" + seg(0xE1, b"abcdef")[:-3]
    (s,) = list(jpeg_segments(data, "libjpeg"))
    assert (s.marker, data[s.start : s.end]) == (0xE1, b"abc")


@pytest.mark.parametrize(("mode", "scans"), [("RGB", 10), ("L", 6)])
def test_scan_count_of_libjpeg_progressive_files(mode: str, scans: int) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, "JPEG", progressive=True)
    st = jpeg_structure(buf.getvalue())
    assert (st.scans, st.width, st.height) == (scans, 64, 48)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, "JPEG")
    assert jpeg_structure(buf.getvalue()).scans == 1


def test_segment_count_stops_at_the_bound() -> None:
    data = b"\xff\xd8" + seg(0xFE) * 10_000 + b"\xff\xd9"
    assert jpeg_structure(data).segments == 10_000
    assert jpeg_structure(data, max_segments=100).segments == 101


def test_not_a_jpeg_and_unknown_dialect() -> None:
    assert list(jpeg_segments(b"\x89PNG\r\n", "c2pa")) == []
    with pytest.raises(ValueError, match="dialect"):
        list(jpeg_segments(b"\xff\xd8", "pillow"))
