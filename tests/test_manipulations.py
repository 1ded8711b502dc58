"""Manipulations against independent references: colorsys (HSV), scipy.ndimage (filters), numpy (bilinear)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import scipy.ndimage
import torch

from rawproof_train._checks import ShapeError
from rawproof_train.jpeg import djpeg
from rawproof_train.manipulations import (
    MANIPULATIONS,
    SHARPEN_KERNEL,
    JPEG,
    Gaussian,
    Native,
    Resample,
    Sharpen,
    create_manipulation,
    gaussian,
    gaussian_kernel,
    jpeg,
    native,
    resample,
    sharpen,
)


def _image(h: int = 24, w: int = 20, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 4, w // 4, generator=g, dtype=dtype)
    smooth = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (0.15 + 0.7 * smooth + 0.05 * torch.rand(1, 3, h, w, generator=g, dtype=dtype)).clamp(0, 1)


def test_registry_order_and_factory() -> None:
    assert list(MANIPULATIONS) == ["native", "sharpen", "gaussian", "jpeg", "resample"]
    for name in MANIPULATIONS:
        assert isinstance(create_manipulation(name), torch.nn.Module)
    with pytest.raises(ValueError):
        create_manipulation("median")


@pytest.mark.parametrize("name", list(MANIPULATIONS))
@pytest.mark.parametrize("hw", [(16, 16), (18, 30), (34, 22)])
def test_shape_and_range(name: str, hw: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *hw)
    out = create_manipulation(name)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("fn", [native, sharpen, gaussian, jpeg, resample])
def test_shape_error(fn: object) -> None:
    with pytest.raises(ShapeError):
        fn(torch.rand(1, 4, 16, 16))  # type: ignore[operator]


def test_sharpen_keeps_hue_and_saturation_colorsys() -> None:
    x = _image(32, 32)
    out = sharpen(x)[0].permute(1, 2, 0).numpy()
    src = x[0].permute(1, 2, 0).numpy()
    v = src.max(axis=2)
    v_new = scipy.ndimage.convolve(v, np.array(SHARPEN_KERNEL), mode="mirror")  # mirror == torch "reflect"
    ok = (v_new > 0) & (v_new <= 1) & (v > 0.05)
    assert ok.mean() > 0.8
    for (i, j) in zip(*np.nonzero(ok)):
        h0, s0, _ = colorsys.rgb_to_hsv(*src[i, j])
        h1, s1, v1 = colorsys.rgb_to_hsv(*out[i, j])
        dh = abs(h1 - h0)
        assert min(dh, 1 - dh) < 1e-4 or s0 < 1e-6
        assert abs(s1 - s0) < 1e-4
        assert abs(v1 - v_new[i, j]) < 1e-6


def test_sharpen_black_pixels_become_grey() -> None:
    x = torch.zeros(1, 3, 6, 6, dtype=torch.float64)
    x[0, :, 2, 2] = torch.tensor([0.9, 0.3, 0.1], dtype=torch.float64)
    out = sharpen(x)
    assert torch.isfinite(out).all()
    neighbour = out[0, :, 2, 3]
    assert torch.allclose(neighbour, neighbour[0].expand(3))


def test_gaussian_matches_scipy() -> None:
    k = gaussian_kernel(5, 0.83, torch.float64).numpy()
    assert abs(k.sum() - 1) < 1e-12 and k[2, 2] == k.max()
    x = _image(20, 24)
    ref = np.stack([scipy.ndimage.convolve(c, k, mode="mirror") for c in x[0].numpy()])
    np.testing.assert_allclose(gaussian(x)[0].numpy(), np.clip(ref, 0, 1), atol=1e-12)
    with pytest.raises(ValueError):
        gaussian(x, size=4)


def test_resample_matches_numpy_bilinear() -> None:
    x = _image(12, 16)
    a = x[0].numpy()
    small = 0.25 * (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2])

    def up(t: np.ndarray, axis: int) -> np.ndarray:
        p = np.concatenate([np.take(t, [0], axis), t, np.take(t, [-1], axis)], axis)
        n = t.shape[axis]
        even = 0.75 * t + 0.25 * np.take(p, range(0, n), axis)
        odd = 0.75 * t + 0.25 * np.take(p, range(2, n + 2), axis)
        return np.stack([even, odd], axis + 1).reshape(*t.shape[:axis], 2 * n, *t.shape[axis + 1 :])

    ref = up(up(small, 1), 2)
    np.testing.assert_allclose(resample(x)[0].numpy(), ref, atol=1e-12)


def test_jpeg_is_djpeg_q80() -> None:
    x = _image(16, 24)
    torch.testing.assert_close(jpeg(x), djpeg(x, 80, "sin", "444"))
    assert not torch.allclose(jpeg(x), x)


def test_native_identity() -> None:
    x = _image()
    assert native(x) is x


@pytest.mark.parametrize(
    ("module", "fn"),
    [(Native(), native), (Sharpen(), sharpen), (Gaussian(), gaussian), (JPEG(), jpeg), (Resample(), resample)],
)
def test_module_equals_function(module: torch.nn.Module, fn: object) -> None:
    x = _image()
    torch.testing.assert_close(module(x), fn(x))  # type: ignore[operator]


@pytest.mark.parametrize("fn", [sharpen, gaussian, resample])
def test_gradcheck(fn: object) -> None:
    # Interior values keep the output away from the clip and v away from ties between channels.
    x = (0.3 + 0.4 * torch.rand(1, 3, 8, 8, dtype=torch.float64))
    x[:, 0] += 0.1
    x = x.clamp(0, 1).requires_grad_()
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, fast_mode=True)  # type: ignore[arg-type]
