"""Tests of rawproof.rawio: PGM/PNG readers, manifest entries, camera names. References: numpy, Pillow."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rawproof.errors import RawFormatError
from rawproof.raw import CFA
from rawproof.rawio import (
    frame_from_array, read_camera_name, read_capture_time, read_manifest_entry, read_pgm, read_png16,
)


def write_pgm(path: Path, m: np.ndarray, maxval: int = 65535, comment: bool = True) -> None:
    head = b"P5\n" + (b"# made by numpy\n" if comment else b"") + f"{m.shape[1]} {m.shape[0]}\n{maxval}\n".encode()
    path.write_bytes(head + m.astype(">u2" if maxval > 255 else np.uint8).tobytes())


def test_pgm16_roundtrip(tmp_path: Path) -> None:
    m = np.random.default_rng(0).integers(0, 1024, size=(6, 8)).astype(np.uint16)
    write_pgm(tmp_path / "a.pgm", m)
    np.testing.assert_array_equal(read_pgm(tmp_path / "a.pgm"), m)
    write_pgm(tmp_path / "b.pgm", m // 4, maxval=255, comment=False)
    np.testing.assert_array_equal(read_pgm(tmp_path / "b.pgm"), m // 4)


def test_pgm_errors(tmp_path: Path) -> None:
    m = np.zeros((4, 4), np.uint16)
    write_pgm(tmp_path / "t.pgm", m)
    data = (tmp_path / "t.pgm").read_bytes()
    (tmp_path / "t.pgm").write_bytes(data[:-3])
    with pytest.raises(RawFormatError, match="expected 32"):
        read_pgm(tmp_path / "t.pgm")
    (tmp_path / "huge.pgm").write_bytes(b"P5\n1000000 1000000\n65535\n" + b"\0" * 16)
    with pytest.raises(RawFormatError, match="exceeds"):
        read_pgm(tmp_path / "huge.pgm")
    (tmp_path / "p2.pgm").write_bytes(b"P2\n2 2\n255\n0 0 0 0\n")
    with pytest.raises(RawFormatError, match="P5"):
        read_pgm(tmp_path / "p2.pgm")


def test_png16_roundtrip_and_errors(tmp_path: Path) -> None:
    m = np.random.default_rng(1).integers(0, 65536, size=(6, 10)).astype(np.uint16)
    Image.fromarray(m).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_png16(tmp_path / "a.png"), m)
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(RawFormatError, match="single-channel"):
        read_png16(tmp_path / "rgb.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:60])
    with pytest.raises(RawFormatError):
        read_png16(tmp_path / "cut.png")


def test_frame_from_array_and_range_check() -> None:
    f = frame_from_array(np.full((4, 6), 300, np.int32), "grbg", 10, 1023)
    assert f.cfa is CFA.GRBG and f.mosaic.dtype == np.uint16 and f.mosaic[0, 0] == 300
    with pytest.raises(RawFormatError):
        frame_from_array(np.full((4, 4), 70000, np.int64), "RGGB", 0, 1023)


def test_manifest_entry_dispatch_and_errors(tmp_path: Path) -> None:
    m = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 16).astype("<u2")
    (tmp_path / "d.u16le").write_bytes(m.tobytes())
    entry = {"path": "d.u16le", "container": "u16le", "kind": "raw_dump", "width": 8, "height": 6, "cfa": "BGGR", "black": None, "white": 1023}
    f = read_manifest_entry(entry, tmp_path)
    np.testing.assert_array_equal(f.mosaic, m)
    assert f.black == (0.0,) * 4 and f.wb is None
    write_pgm(tmp_path / "p.pgm", m)
    f2 = read_manifest_entry({**entry, "path": "p.pgm", "container": "pgm16be"}, tmp_path)
    np.testing.assert_array_equal(f2.mosaic, m)
    with pytest.raises(RawFormatError, match="manifest says"):
        read_manifest_entry({**entry, "path": "p.pgm", "container": "pgm16be", "width": 10}, tmp_path)
    with pytest.raises(RawFormatError, match="truncated"):
        read_manifest_entry({**entry, "height": 8}, tmp_path)
    with pytest.raises(RawFormatError, match="inside the data folder"):
        read_manifest_entry({**entry, "path": "../d.u16le"}, tmp_path)
    with pytest.raises(RawFormatError, match="not a RAW frame"):
        read_manifest_entry({**entry, "kind": "photo"}, tmp_path)
    with pytest.raises(RawFormatError, match="missing"):
        read_manifest_entry({**entry, "path": "nope.u16le"}, tmp_path)


def test_camera_name_from_tiff_header(tmp_path: Path) -> None:
    # Minimal little-endian TIFF: IFD0 with Make/Model as ASCII stored after the IFD.
    make, model = b"Acme\0", b"Acme Sensor 9000\0"
    ifd_off, n = 8, 2
    data_off = ifd_off + 2 + n * 12 + 4
    ifd = struct.pack("<H", n)
    ifd += struct.pack("<HHII", 271, 2, len(make), data_off)
    ifd += struct.pack("<HHII", 272, 2, len(model), data_off + len(make))
    (tmp_path / "x.dng").write_bytes(b"II*\0" + struct.pack("<I", ifd_off) + ifd + b"\0" * 4 + make + model)
    assert read_camera_name(tmp_path / "x.dng") == "Acme Sensor 9000"
    (tmp_path / "y.bin").write_bytes(b"hello")
    assert read_camera_name(tmp_path / "y.bin") == ""


def test_camera_name_data_files(shared_data: Path) -> None:
    assert read_camera_name(shared_data / "raw" / "canon550d_colorchart.dng") == "Canon EOS Kiss X4"
    crw = shared_data / "extra" / "raw" / "canon_powershot_s40" / "CRW_0101.CRW"
    if crw.is_file():
        assert read_camera_name(crw) == "Canon PowerShot S40"


def _tiff_with_times(path: Path, ifd0: dict[int, bytes], exif_ifd: dict[int, bytes], big_endian: bool = False) -> Path:
    """A minimal TIFF (TIFF 6.0 layout): IFD0 with ASCII tags and, if ``exif_ifd``, an EXIF IFD (0x8769) after it."""
    e = ">" if big_endian else "<"
    ifd0_off = 8
    n0 = len(ifd0) + (1 if exif_ifd else 0)
    exif_off = ifd0_off + 2 + 12 * n0 + 4
    data_off = exif_off + (2 + 12 * len(exif_ifd) + 4 if exif_ifd else 0)
    blobs = b""

    def entries(tags: dict[int, bytes]) -> bytes:
        nonlocal blobs
        out = b""
        for tag, value in sorted(tags.items()):
            out += struct.pack(e + "HHII", tag, 2, len(value), data_off + len(blobs))
            blobs += value
        return out

    head = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "I", ifd0_off)
    first = entries(ifd0)
    if exif_ifd:
        first += struct.pack(e + "HHII", 0x8769, 4, 1, exif_off)
    body = struct.pack(e + "H", n0) + first + b"\0" * 4
    if exif_ifd:
        body += struct.pack(e + "H", len(exif_ifd)) + entries(exif_ifd) + b"\0" * 4
    path.write_bytes(head + body + blobs)
    return path


def test_capture_time_from_tiff_exif(tmp_path: Path) -> None:
    z = b"\0"
    both = _tiff_with_times(tmp_path / "a.dng", {0x0132: b"2030:01:01 00:00:00" + z},
                            {0x9003: b"2022:01:20 08:15:52" + z, 0x9011: b"+01:00" + z})
    assert read_capture_time(both) == "2022-01-20T08:15:52+01:00"  # DateTimeOriginal wins, with its offset
    no_offset = _tiff_with_times(tmp_path / "b.dng", {}, {0x9003: b"2022:01:20 08:15:52" + z}, big_endian=True)
    assert read_capture_time(no_offset) == "2022-01-20T08:15:52"
    only_ifd0 = _tiff_with_times(tmp_path / "c.dng", {0x0132: b"2021:03:26 21:18:06" + z}, {})
    assert read_capture_time(only_ifd0) == "2021-03-26T21:18:06"
    blank = _tiff_with_times(tmp_path / "d.dng", {}, {0x9003: b"    :  :     :  :  " + z})
    assert read_capture_time(blank) is None
    (tmp_path / "e.bin").write_bytes(b"hello")
    assert read_capture_time(tmp_path / "e.bin") is None
    assert read_capture_time(tmp_path / "missing.dng") is None
    (tmp_path / "f.dng").write_bytes(both.read_bytes()[:20])  # truncated inside IFD0
    assert read_capture_time(tmp_path / "f.dng") is None


def test_capture_time_agrees_with_libraw(shared_data: Path) -> None:
    import datetime as dt

    import rawpy

    files = sorted((shared_data / "extra" / "raw").glob("*/*")) + sorted((shared_data / "raw").glob("*.dng"))
    if not files:
        pytest.skip("no camera RAW files in the data folder")
    for path in files:
        with rawpy.imread(str(path)) as raw:
            ts = raw.other.timestamp
        # LibRaw keeps a CIFF time as stored (camera wall-clock seconds) and reads EXIF strings in the
        # host's zone; rawpy converts back in the host's zone. Undo each to the camera's wall clock.
        if path.suffix.upper() == ".CRW":
            ts = dt.datetime.fromtimestamp(ts.timestamp(), dt.timezone.utc).replace(tzinfo=None)
        got = read_capture_time(path)
        if ts.timestamp() == 0 if path.suffix.upper() != ".CRW" else ts == dt.datetime(1970, 1, 1):
            assert got is None, path.name  # LibRaw found no time either
        else:
            assert got is not None and dt.datetime.fromisoformat(got).replace(tzinfo=None) == ts, path.name
