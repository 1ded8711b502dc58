"""Tests of rawproof.imageio: decoding rules, odd sizes and modes, bombs, broken files.

References: numpy arithmetic on the arrays that were encoded, and Pillow's own conversions
(named where used).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from rawproof.errors import ImageFormatError
from rawproof.imageio import MAX_PIXELS, decode_rgb, ijg_quality, read_image_bytes


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_rgb_roundtrip_and_input_kinds(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(rgb), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for src in (data, bytearray(data), memoryview(data), path, str(path), io.BytesIO(data)):
        d = decode_rgb(src)
        np.testing.assert_array_equal(d.rgb, rgb)
        assert (d.format, d.source_mode, d.frames, d.width, d.height) == ("PNG", "RGB", 1, 7, 5)
        assert not d.rgb.flags.writeable


def test_read_image_bytes_rejects_text_and_other_types():
    with pytest.raises(TypeError, match="binary mode"):
        read_image_bytes(io.StringIO("x"))
    with pytest.raises(TypeError, match="bytes, a path"):
        read_image_bytes(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(1, 1), (65535, 1), (1, 65535)])
def test_extreme_sizes(size):
    w, h = size
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    d = decode_rgb(_encode(Image.fromarray(rgb), "PNG"))
    np.testing.assert_array_equal(d.rgb, rgb)


def test_cmyk_jpeg_is_converted_like_pillow():
    cmyk = np.random.default_rng(2).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    data = _encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)
    d = decode_rgb(data)
    with Image.open(io.BytesIO(data)) as ref:  # reference: Pillow's naive CMYK -> RGB
        assert ref.mode == "CMYK"
        np.testing.assert_array_equal(d.rgb, np.asarray(ref.convert("RGB")))
    assert d.source_mode == "CMYK" and d.format == "JPEG"


def test_16bit_gray_png_rounds_to_8bit():
    g = np.array([[0, 128, 257, 32767], [32896, 65279, 65534, 65535]], dtype=np.uint16)
    d = decode_rgb(_encode(Image.fromarray(g), "PNG"))
    expect = np.rint(g / 257.0).astype(np.uint8)
    assert d.source_mode.startswith("I")
    np.testing.assert_array_equal(d.rgb, np.repeat(expect[:, :, None], 3, axis=2))


def test_16bit_rgb_png_keeps_the_high_byte():
    rgb16 = np.random.default_rng(3).integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    d = decode_rgb(_png(4, 3, 16, 2, zlib.compress(raw)))
    np.testing.assert_array_equal(d.rgb, (rgb16 >> 8).astype(np.uint8))


def test_rgba_png_drops_alpha_without_compositing():
    rgba = np.random.default_rng(4).integers(0, 256, (6, 6, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0
    d = decode_rgb(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert d.source_mode == "RGBA"
    np.testing.assert_array_equal(d.rgb, rgba[..., :3])


def test_palette_png_is_looked_up():
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    idx = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(palette.tobytes())
    d = decode_rgb(_encode(im, "PNG"))
    assert d.source_mode == "P"
    np.testing.assert_array_equal(d.rgb, palette[idx])


def test_la_and_grayscale():
    la = np.random.default_rng(6).integers(0, 256, (4, 5, 2), dtype=np.uint8)
    d = decode_rgb(_encode(Image.fromarray(la, "LA"), "PNG"))
    np.testing.assert_array_equal(d.rgb, np.repeat(la[..., :1], 3, axis=2))


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_animated_images_give_the_first_frame(fmt):
    frames = [np.full((10, 12, 3), v, np.uint8) for v in (10, 200, 90)]
    ims = [Image.fromarray(f) for f in frames]
    data = _encode(ims[0], fmt, save_all=True, append_images=ims[1:], duration=50, loop=0)
    d = decode_rgb(data)
    assert d.frames == 3
    np.testing.assert_array_equal(d.rgb, frames[0])


def test_decompression_bomb_refused_before_decoding():
    # 12000 x 10000 = 120 MP: above our bound, below Pillow's error bound. The IDAT is not
    # even valid zlib, so only a header-based refusal can produce this message.
    bomb = _png(12000, 10000, 8, 2, b"not zlib at all")
    with pytest.raises(ImageFormatError, match="declares 12000x10000"):
        decode_rgb(bomb)
    # 60000 x 60000 trips Pillow's own guard inside Image.open.
    with pytest.raises(ImageFormatError, match="decompression bomb"):
        decode_rgb(_png(60000, 60000, 8, 2, b"x"))
    assert MAX_PIXELS == 100_000_000


def test_max_pixels_is_configurable():
    data = _encode(Image.new("RGB", (20, 20)), "PNG")
    with pytest.raises(ImageFormatError, match="above the bound of 399"):
        decode_rgb(data, max_pixels=399)
    assert decode_rgb(data, max_pixels=400).rgb.shape == (20, 20, 3)


def test_truncated_jpeg_raises():
    rgb = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(rgb), "JPEG", quality=90)
    with pytest.raises(ImageFormatError, match="cannot decode"):
        decode_rgb(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", b"garbage bytes, not an image", b"\xff\xd8\xff" + b"\x00" * 10])
def test_garbage_raises_image_format_error(data):
    with pytest.raises(ImageFormatError):
        decode_rgb(data)


def test_float_mode_is_unsupported():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.float32), "F").save(buf, "TIFF")
    with pytest.raises(ImageFormatError, match="unsupported image mode 'F'"):
        decode_rgb(buf.getvalue())


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("quality", [1, 10, 30, 50, 51, 75, 90, 99])
def test_jpeg_quality_and_subsampling_read_from_the_file(quality, subsampling):
    rgb = np.random.default_rng(quality).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    d = decode_rgb(buf.getvalue())
    assert d.jpeg_quality == quality
    assert d.jpeg_subsampling == {0: "444", 1: "422", 2: "420"}[subsampling]


def test_jpeg_quality_none_for_custom_tables_and_other_formats():
    rgb = np.zeros((16, 16, 3), np.uint8)
    buf = io.BytesIO()
    custom = [list(range(1, 65)), list(range(1, 65))]  # no IJG quality gives these
    Image.fromarray(rgb).save(buf, "JPEG", qtables=custom)
    d = decode_rgb(buf.getvalue())
    assert d.jpeg_quality is None and d.jpeg_subsampling is not None
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    d = decode_rgb(buf.getvalue())
    assert d.jpeg_quality is None and d.jpeg_subsampling is None
    assert ijg_quality([1] * 63) is None


def test_frame_header_listing_fewer_components_than_declared_is_a_typed_error():
    # Found by fuzz_verify: an SOF0 that declares 3 components but lists 2 made Pillow's
    # get_sampling raise IndexError while verify() read the chroma subsampling.
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG", quality=50)
    data = buf.getvalue()
    sof = data.index(b"\xff\xc0")
    length = int.from_bytes(data[sof + 2:sof + 4], "big")
    assert data[sof + 9] == 3 and length == 8 + 3 * 3
    cut = data[:sof + 2] + (length - 3).to_bytes(2, "big") + data[sof + 4:sof + 2 + length - 3] + data[sof + 2 + length:]
    with pytest.raises(ImageFormatError):
        decode_rgb(cut)
