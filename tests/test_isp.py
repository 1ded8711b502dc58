"""Tests of rawproof_train.isp. References: colour-science (sRGB), rawpy/LibRaw (full develop), numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rawproof.errors import RawFormatError
from rawproof.raw import RawFrame
from rawproof_train.isp import (
    Demosaic,
    bayer_to_stack,
    develop_reference,
    grey_world_wb,
    inverse_tone_curve,
    srgb_decode,
    srgb_encode,
    stack_to_bayer,
    tone_curve,
)
from test_raw import SITES, chart, mosaic_numpy


def test_srgb_curve_matches_colour_science() -> None:
    colour = pytest.importorskip("colour")
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(srgb_encode(x), colour.cctf_encoding(x.astype(np.float64), function="sRGB"), atol=2e-6)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=2e-6)


def test_tone_curve_inverse() -> None:
    x = np.linspace(0, 1, 257, dtype=np.float32)
    np.testing.assert_allclose(inverse_tone_curve(tone_curve(x)), x, atol=1e-5)


def test_bayer_stack_inverse() -> None:
    s = np.random.default_rng(0).random((4, 3, 5)).astype(np.float32)
    b = stack_to_bayer(s)
    assert b.shape == (6, 10) and b[0, 1] == s[1, 0, 0] and b[1, 0] == s[2, 0, 0]
    np.testing.assert_array_equal(bayer_to_stack(b), s)
    with pytest.raises(RawFormatError):
        stack_to_bayer(np.zeros((3, 2, 2)))


@pytest.mark.parametrize("cfa", list(SITES))
@pytest.mark.parametrize("method", list(Demosaic))
def test_develop_chart_colours(cfa: str, method: Demosaic) -> None:
    m = mosaic_numpy(chart(), cfa)
    f = RawFrame.from_buffer(m.tobytes(), 16, 16, "u16le", cfa, 64, 1023, wb=(1, 1, 1))
    rgb = develop_reference(f, method=method)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.float32
    red, green, blue, white = rgb[2:6, 2:6].mean((0, 1)), rgb[2:6, 10:14].mean((0, 1)), rgb[10:14, 2:6].mean((0, 1)), rgb[10:14, 10:14].mean((0, 1))
    assert red.argmax() == 0 and red[0] > 0.8 and red[1:].max() < 0.4
    assert green.argmax() == 1 and green[1] > 0.8
    assert blue.argmax() == 2 and blue[2] > 0.8
    assert white.min() > 0.9


def test_grey_world() -> None:
    s = np.stack([np.full((4, 4), 0.2), np.full((4, 4), 0.4), np.full((4, 4), 0.4), np.full((4, 4), 0.1)]).astype(np.float32)
    assert grey_world_wb(s) == pytest.approx((2.0, 1.0, 1.0, 4.0))
    with pytest.raises(RawFormatError):
        grey_world_wb(np.zeros((4, 4, 4), np.float32))


def test_develop_matches_rawpy_bilinear(shared_data: Path) -> None:
    """Bilinear + camera WB + CCM + sRGB vs LibRaw LINEAR with matched settings (interior, 16-bit)."""
    import rawpy

    path = shared_data / "raw" / "canon550d_colorchart.dng"
    ours = develop_reference(RawFrame.from_file(path), method=Demosaic.BILINEAR)
    with rawpy.imread(str(path)) as raw:
        ref = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, use_camera_wb=True, no_auto_bright=True,
            output_color=rawpy.ColorSpace.sRGB, gamma=(2.4, 12.92), output_bps=16, user_flip=0,
            highlight_mode=rawpy.HighlightMode.Clip, adjust_maximum_thr=0.0,
        ).astype(np.float32) / 65535
    assert ours.shape == ref.shape
    mse = float(np.mean((ours[8:-8, 8:-8] - ref[8:-8, 8:-8]) ** 2))
    assert 10 * np.log10(1 / mse) > 60
