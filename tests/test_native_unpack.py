"""rawproof._native.unpack against numpy packers written here from the MIPI CSI-2 layout."""

from __future__ import annotations


import numpy as np
import pytest

from _threads import run_concurrently
from rawproof import _native

BITS = {"raw10": 10, "raw12": 12, "raw14": 14, "u16le": 16, "u8": 8}
GROUP = {"raw10": 4, "raw12": 2, "raw14": 4, "u16le": 1, "u8": 1}


def pack(img: np.ndarray, fmt: str) -> np.ndarray:
    """Pack a uint16 H x W image into rows of `fmt` bytes (H x row_bytes, uint8), no padding."""
    h, w = img.shape
    p = img.astype(np.uint32)
    if fmt == "raw10":
        g = p.reshape(h, w // 4, 4)
        lsb = (g[..., 0] & 3) | (g[..., 1] & 3) << 2 | (g[..., 2] & 3) << 4 | (g[..., 3] & 3) << 6
        out = np.concatenate([g >> 2, lsb[..., None]], axis=-1)
    elif fmt == "raw12":
        g = p.reshape(h, w // 2, 2)
        lsb = (g[..., 0] & 0xF) | (g[..., 1] & 0xF) << 4
        out = np.concatenate([g >> 4, lsb[..., None]], axis=-1)
    elif fmt == "raw14":
        g = p.reshape(h, w // 4, 4)
        f = g & 0x3F
        b4 = f[..., 0] | (f[..., 1] & 0x3) << 6
        b5 = f[..., 1] >> 2 | (f[..., 2] & 0xF) << 4
        b6 = f[..., 2] >> 4 | f[..., 3] << 2
        out = np.concatenate([g >> 6, b4[..., None], b5[..., None], b6[..., None]], axis=-1)
    elif fmt == "u16le":
        out = np.stack([p & 0xFF, p >> 8], axis=-1)
    else:
        out = p
    return (out & 0xFF).astype(np.uint8).reshape(h, -1)


def frame_bytes(rows: np.ndarray, stride: int, trim_last: bool, rng: np.random.Generator) -> np.ndarray:
    """Lay packed rows out at `stride` bytes, padding filled with garbage."""
    h, row_bytes = rows.shape
    buf = rng.integers(0, 256, (h, stride), dtype=np.uint8)
    buf[:, :row_bytes] = rows
    flat = buf.reshape(-1)
    return flat[: stride * (h - 1) + row_bytes].copy() if trim_last else flat


def random_image(rng: np.random.Generator, h: int, w: int, fmt: str) -> np.ndarray:
    return rng.integers(0, 1 << BITS[fmt], (h, w), dtype=np.uint16)


@pytest.mark.parametrize("fmt", list(BITS))
@pytest.mark.parametrize("h, w", [(1, 4), (2, 8), (3, 12), (7, 36), (33, 260)])
@pytest.mark.parametrize("pad, trim_last", [(0, False), (3, False), (5, True), (64, True)])
def test_matches_numpy_packer(fmt: str, h: int, w: int, pad: int, trim_last: bool) -> None:
    rng = np.random.default_rng(h * 1000 + w + pad)
    img = random_image(rng, h, w, fmt)
    rows = pack(img, fmt)
    stride = rows.shape[1] + pad
    buf = frame_bytes(rows, stride, trim_last, rng)
    out = _native.unpack(buf, w, h, fmt, stride=stride if pad else 0, threads=1)
    assert out.dtype == np.uint16 and out.shape == (h, w) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("fmt", list(BITS))
@pytest.mark.parametrize("value", ["max", "zero", "alternating"])
def test_extreme_values(fmt: str, value: str) -> None:
    top = (1 << BITS[fmt]) - 1
    img = np.zeros((4, 24), np.uint16)
    if value == "max":
        img[:] = top
    elif value == "alternating":
        img[:, ::2] = top
    out = _native.unpack(pack(img, fmt).reshape(-1), 24, 4, fmt)
    np.testing.assert_array_equal(out, img)


def test_raw10_layout_by_hand() -> None:
    # p0 = 0x3FF, p1 = 0x001, p2 = 0x202, p3 = 0x0C3: MSB bytes, then LSBs p0 in bits 1:0 ... p3 in 7:6.
    buf = np.array([0xFF, 0x00, 0x80, 0x30, 0b11_10_01_11], np.uint8)
    np.testing.assert_array_equal(_native.unpack(buf, 4, 1, "raw10"), [[0x3FF, 0x001, 0x202, 0x0C3]])


def test_raw12_and_raw14_layout_by_hand() -> None:
    np.testing.assert_array_equal(_native.unpack(np.array([0xAB, 0xCD, 0x21], np.uint8), 2, 1, "raw12"),
                                  [[0xAB1, 0xCD2]])
    p = [0x3FFF, 0x0001, 0x2AAA, 0x1555]
    lo = [v & 0x3F for v in p]
    b = [v >> 6 for v in p] + [lo[0] | (lo[1] & 3) << 6, lo[1] >> 2 | (lo[2] & 0xF) << 4, lo[2] >> 4 | lo[3] << 2]
    np.testing.assert_array_equal(_native.unpack(np.array(b, np.uint8), 4, 1, "raw14"), [p])


@pytest.mark.parametrize("make", [bytes, bytearray, lambda a: memoryview(a.tobytes())])
def test_accepts_byte_buffers(make) -> None:
    rng = np.random.default_rng(1)
    img = random_image(rng, 5, 16, "raw12")
    buf = pack(img, "raw12").reshape(-1)
    np.testing.assert_array_equal(_native.unpack(make(buf), 16, 5, "raw12"), img)


@pytest.mark.parametrize("threads", [0, 1, 2, 3, 7])
def test_threads_give_identical_results(threads: int) -> None:
    rng = np.random.default_rng(2)
    img = random_image(rng, 515, 1024, "raw10")
    buf = frame_bytes(pack(img, "raw10"), 1290, False, rng)
    np.testing.assert_array_equal(_native.unpack(buf, 1024, 515, "raw10", 1290, threads), img)


def test_two_python_threads_match_sequential() -> None:
    rng = np.random.default_rng(3)
    imgs = [random_image(rng, 600, 800, fmt) for fmt in ("raw10", "raw14")]
    bufs = [pack(i, f).reshape(-1) for i, f in zip(imgs, ("raw10", "raw14"))]
    results = run_concurrently(lambda i: _native.unpack(bufs[i], 800, 600, ("raw10", "raw14")[i], threads=2))
    for i in range(2):
        np.testing.assert_array_equal(results[i], imgs[i])


# ---- errors -----------------------------------------------------------------------------------


def test_wrong_buffer_length() -> None:
    buf = np.zeros(5 * 4 * 3, np.uint8)  # 3 rows of 4-group raw10 (width 16, 20 bytes per row)
    with pytest.raises(ValueError, match="wrong buffer length: expected 60 bytes.*got 59"):
        _native.unpack(buf[:-1], 16, 3, "raw10")
    with pytest.raises(ValueError, match="wrong buffer length: expected 60 bytes.*got 61"):
        _native.unpack(np.zeros(61, np.uint8), 16, 3, "raw10")
    with pytest.raises(ValueError, match=r"expected 72 \(or 68 with an unpadded last row\) bytes.*got 70"):
        _native.unpack(np.zeros(70, np.uint8), 16, 3, "raw10", stride=24)


@pytest.mark.parametrize("fmt, width", [("raw10", 6), ("raw14", 10), ("raw12", 3)])
def test_odd_width_for_packed_format(fmt: str, width: int) -> None:
    with pytest.raises(ValueError, match="odd width for packed format"):
        _native.unpack(np.zeros(100, np.uint8), width, 1, fmt)


def test_stride_shorter_than_row() -> None:
    with pytest.raises(ValueError, match="stride 19 is shorter"):
        _native.unpack(np.zeros(38, np.uint8), 16, 2, "raw10", stride=19)
    with pytest.raises(ValueError, match="stride must be >= 0"):
        _native.unpack(np.zeros(40, np.uint8), 16, 2, "raw10", stride=-1)


@pytest.mark.parametrize("width, height", [(0, 4), (4, 0), (-4, 4), (4, -1)])
def test_zero_or_negative_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="width and height must be > 0"):
        _native.unpack(np.zeros(16, np.uint8), width, height, "u8")


@pytest.mark.parametrize("width, height", [(1 << 20, 1 << 20), (1 << 40, 1), (4, 1 << 40)])
def test_huge_declared_size_refused_before_allocating(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="exceeds the limit of 2\\^31 pixels"):
        _native.unpack(np.zeros(16, np.uint8), width, height, "u8")


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown fmt 'RAW10'"):
        _native.unpack(np.zeros(5, np.uint8), 4, 1, "RAW10")


def test_bad_threads() -> None:
    with pytest.raises(ValueError, match="threads must be in"):
        _native.unpack(np.zeros(4, np.uint8), 4, 1, "u8", threads=-1)


def test_wrong_dtype_is_type_error() -> None:
    with pytest.raises(TypeError, match="unsigned bytes"):
        _native.unpack(np.zeros(8, np.uint16), 4, 1, "u16le")
    with pytest.raises(TypeError, match="unsigned bytes"):
        _native.unpack(np.zeros(8, np.int8), 8, 1, "u8")
    with pytest.raises(TypeError):
        _native.unpack([0] * 8, 8, 1, "u8")


def test_non_contiguous_is_type_error() -> None:
    with pytest.raises(TypeError, match="contiguous"):
        _native.unpack(np.zeros(16, np.uint8)[::2], 8, 1, "u8")


def test_not_1d_is_value_error() -> None:
    with pytest.raises(ValueError, match="1-D"):
        _native.unpack(np.zeros((2, 8), np.uint8), 8, 2, "u8")
