"""Tests of rawproof_train.unprocess: inverse of the reference ISP. References: numpy, Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rawproof.errors import RawFormatError
from rawproof.raw import CFA
from rawproof_train.isp import Demosaic, develop_reference, finish
from rawproof_train.unprocess import UnprocessParams, random_noise, random_params, unprocess, unprocess_linear


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def smooth_photo(h: int = 64, w: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return (np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.5 * x * y], -1) * 255).astype(np.uint8)


def test_random_params_valid() -> None:
    p = random_params(np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.inv(p.ccm).sum(axis=1), 1.0, atol=1e-5)
    assert 1.9 <= p.wb[0] <= 2.4 and p.wb[1] == 1.0 and 1.5 <= p.wb[2] <= 1.9


def test_demosaic_free_round_trip_is_exact() -> None:
    x = smooth_photo()
    p = random_params(np.random.default_rng(1))
    assert psnr(finish(unprocess_linear(x, p), p.ccm), x / 255.0) > 60
    pt = UnprocessParams(ccm=p.ccm, wb=p.wb, tone=True)
    assert psnr(finish(unprocess_linear(x, pt), pt.ccm, tone=True), x / 255.0) > 60


@pytest.mark.parametrize("cfa", list(CFA))
def test_frame_stack_equals_linear_sites(cfa: CFA) -> None:
    x = smooth_photo(33, 47)  # odd: cropped to 32 x 46
    p = random_params(np.random.default_rng(2), cfa=cfa)
    f = unprocess(x, p)
    assert (f.height, f.width, f.cfa, f.wb_source) == (32, 46, cfa, "given")
    cam = unprocess_linear(x[:32, :46], p)
    ref = np.stack([cam[0::2, 0::2, 0], cam[0::2, 1::2, 1], cam[1::2, 0::2, 1], cam[1::2, 1::2, 2]])
    np.testing.assert_allclose(f.to_stack(), ref, atol=2e-4)  # 14-bit quantisation


def test_full_round_trip_smooth_image() -> None:
    x = smooth_photo()
    f = unprocess(x, random_params(np.random.default_rng(3)))
    assert psnr(develop_reference(f, method=Demosaic.MENON2007)[4:-4, 4:-4], x[4:-4, 4:-4] / 255.0) > 40


def test_noise_seeded_and_required_rng() -> None:
    x = smooth_photo()
    p = random_params(np.random.default_rng(4))
    n = random_noise(np.random.default_rng(5))
    a = unprocess(x, p, noise=n, rng=np.random.default_rng(6)).mosaic
    b = unprocess(x, p, noise=n, rng=np.random.default_rng(6)).mosaic
    np.testing.assert_array_equal(a, b)
    assert np.any(a != unprocess(x, p).mosaic)
    with pytest.raises(RawFormatError, match="rng"):
        unprocess(x, p, noise=n)


def test_kodak_round_trip_crop(shared_data: Path) -> None:
    x = np.asarray(Image.open(shared_data / "photos" / "kodak" / "kodim23.png").convert("RGB"))[100:228, 200:328]
    p = random_params(np.random.default_rng(0))
    f = unprocess(x, p)
    assert psnr(finish(unprocess_linear(x, p), p.ccm), x / 255.0) > 50
    assert psnr(develop_reference(f), x / 255.0) > 28
