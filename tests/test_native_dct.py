"""rawproof._native.dct8x8 against the 8x8 DCT matrix in numpy and scipy.fft.dctn(norm='ortho')."""

from __future__ import annotations


import numpy as np
import pytest
from scipy.fft import dctn, idctn

from _threads import run_concurrently
from rawproof import _native


def dct_matrix() -> np.ndarray:
    """Orthonormal DCT-II matrix D[u, k], float64."""
    u, k = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    d = np.cos((2 * k + 1) * u * np.pi / 16) * np.sqrt(2 / 8)
    d[0] *= np.sqrt(0.5)
    return d


def ref_dct(img: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Blockwise D @ B @ D.T (inverse: D.T @ B @ D) in float64 on an (H/8, 8, W/8, 8[, C]) view."""
    d = dct_matrix()
    a = d.T if inverse else d
    h, w = img.shape[:2]
    blocks = img.astype(np.float64).reshape(h // 8, 8, w // 8, 8, *img.shape[2:])
    return np.einsum("uk,ikjl...,vl->iujv...", a, blocks, a).reshape(img.shape)


def scipy_dct(img: np.ndarray, inverse: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    blocks = img.astype(np.float64).reshape(h // 8, 8, w // 8, 8, *img.shape[2:])
    f = idctn if inverse else dctn
    return f(blocks, type=2, axes=(1, 3), norm="ortho").reshape(img.shape)


SHAPES = [(8, 8), (16, 24), (40, 64), (8, 8, 3), (24, 16, 3), (16, 8, 1), (8, 16, 5), (16, 1040)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("inverse", [False, True])
def test_matches_matrix_reference_and_scipy(shape, inverse: bool) -> None:
    rng = np.random.default_rng(sum(shape))
    img = rng.random(shape, dtype=np.float32)
    out = _native.dct8x8(img, inverse, 1)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, ref_dct(img, inverse), rtol=0, atol=1e-5)
    np.testing.assert_allclose(out, scipy_dct(img, inverse), rtol=0, atol=1e-5)


def test_coefficient_layout_dc_of_constant_block() -> None:
    img = np.zeros((16, 16), np.float32)
    img[8:, :8] = 1.0  # block (1, 0) constant: DC = 8 * 1 at [8, 0], all else 0
    out = _native.dct8x8(img)
    want = np.zeros_like(img)
    want[8, 0] = 8.0
    np.testing.assert_allclose(out, want, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8), (64, 48), (32, 32, 3)])
def test_round_trip(shape) -> None:
    img = np.random.default_rng(1).random(shape, dtype=np.float32)
    back = _native.dct8x8(_native.dct8x8(img), inverse=True)
    assert np.max(np.abs(back - img)) <= 1e-5


@pytest.mark.parametrize("threads", [0, 2, 3])
def test_threads_give_identical_results(threads: int) -> None:
    img = np.random.default_rng(2).random((1024, 512), dtype=np.float32)
    np.testing.assert_array_equal(_native.dct8x8(img, False, threads), _native.dct8x8(img, False, 1))


def test_two_python_threads_match_sequential() -> None:
    rng = np.random.default_rng(3)
    imgs = [rng.random((1024, 768), dtype=np.float32) for _ in range(2)]
    want = [_native.dct8x8(i) for i in imgs]
    got = run_concurrently(lambda i: _native.dct8x8(imgs[i]))
    for i in range(2):
        np.testing.assert_array_equal(got[i], want[i])


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(12, 16), (16, 12), (0, 8), (4, 8), (8, 8, 0), (8, 8, 65)])
def test_bad_shape(shape) -> None:
    with pytest.raises(ValueError, match="image"):
        _native.dct8x8(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(64,), (8, 8, 1, 1)])
def test_bad_ndim(shape) -> None:
    with pytest.raises(ValueError, match="H x W or H x W x C"):
        _native.dct8x8(np.zeros(shape, np.float32))


def test_wrong_dtype_is_type_error() -> None:
    with pytest.raises(TypeError, match="image must be a float32"):
        _native.dct8x8(np.zeros((8, 8), np.float64))


def test_non_contiguous_is_type_error() -> None:
    with pytest.raises(TypeError, match="C-contiguous"):
        _native.dct8x8(np.zeros((8, 16), np.float32)[:, ::2])
    with pytest.raises(TypeError, match="C-contiguous"):
        _native.dct8x8(np.zeros((16, 8), np.float32).T)


def test_bad_threads() -> None:
    with pytest.raises(ValueError, match="threads must be in"):
        _native.dct8x8(np.zeros((8, 8), np.float32), threads=5000)
