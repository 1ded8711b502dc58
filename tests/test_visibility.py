"""Flat-area visibility: the metric against a hand-written numpy reference, and the training penalty."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rawproof_train.visibility import FLAT_STD, flat_gradient_penalty, flat_mask, flat_mask_np, row_col_differences  # noqa: E402


def _scene() -> np.ndarray:
    """Left half flat grey, right half strong texture (uint8 64 x 64 x 3)."""
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), 120, np.uint8)
    img[:, 32:] = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    return img


def test_flat_mask_finds_the_flat_half_in_numpy_and_torch() -> None:
    img = _scene()
    m = flat_mask_np(img)
    assert m[:, :28].all() and not m[:, 36:].any()
    t = flat_mask(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy().astype(bool)
    # torch pools with zero-excluded borders, scipy with nearest: they agree away from the image border
    np.testing.assert_array_equal(t[4:-4, 4:-4], m[4:-4, 4:-4])
    assert FLAT_STD == pytest.approx(2 / 255)


def test_row_col_differences_match_a_direct_loop() -> None:
    img = _scene().astype(np.int64)
    img[::3, :32] += 3  # horizontal stripes every 3 rows in the flat half
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    rows, cols = row_col_differences(img, mask)
    dy = [abs(img[y + 1, x] - img[y, x]).mean() for y in range(63) for x in range(32)]
    dx = [abs(img[y, x + 1] - img[y, x]).mean() for y in range(64) for x in range(31)]
    assert rows == pytest.approx(np.mean(dy)) and cols == pytest.approx(np.mean(dx)) == 0.0
    assert np.isnan(row_col_differences(img, np.zeros((64, 64), bool))[0])


def test_penalty_is_zero_for_the_reference_and_grows_with_stripes_in_flat_areas_only() -> None:
    target = torch.from_numpy(_scene()).permute(2, 0, 1)[None].float() / 255
    assert float(flat_gradient_penalty(target, target)) == 0.0
    stripes = torch.zeros_like(target)
    stripes[..., ::3, :] = 3 / 255
    flat_side, textured_side = stripes.clone(), stripes.clone()
    flat_side[..., 32:] = 0
    textured_side[..., :32] = 0
    p_flat = float(flat_gradient_penalty(target + flat_side, target))
    p_tex = float(flat_gradient_penalty(target + textured_side, target))
    assert p_flat > 1.0 and p_tex < 0.1 * p_flat
    # gradients flow to the developed image
    x = (target + flat_side).requires_grad_()
    flat_gradient_penalty(x, target).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
