"""rawproof._native.mosaic_to_rggb / rggb_to_mosaic against a numpy reference built from the CFA naming rule."""

from __future__ import annotations


import numpy as np
import pytest

from _threads import run_concurrently
from rawproof import _native

CFAS = ["RGGB", "BGGR", "GRBG", "GBRG"]


def positions(cfa: str) -> dict[str, tuple[int, int]]:
    """(row, col) in the 2x2 block of R, Gr, Gb, B, from the naming rule (letters row-major).

    Gr is the green sharing a row with red.
    """
    cells = {(i // 2, i % 2): letter for i, letter in enumerate(cfa)}
    r = next(p for p, c in cells.items() if c == "R")
    b = next(p for p, c in cells.items() if c == "B")
    greens = [p for p, c in cells.items() if c == "G"]
    gr = next(p for p in greens if p[0] == r[0])
    gb = next(p for p in greens if p[0] == b[0])
    return {"R": r, "Gr": gr, "Gb": gb, "B": b}


def ref_mosaic_to_rggb(m: np.ndarray, cfa: str, black, white: float, wb) -> np.ndarray:
    pos = positions(cfa)
    wb = np.ones(4) if wb is None else np.asarray(wb, np.float64)
    out = []
    for c, name in enumerate(["R", "Gr", "Gb", "B"]):
        dy, dx = pos[name]
        v = m[dy::2, dx::2].astype(np.float64)
        out.append(np.clip((v - black[c]) / (white - black[c]) * wb[c], 0, 1))
    return np.stack(out).astype(np.float32)


def ref_rggb_to_mosaic(s: np.ndarray, cfa: str, black, white: float, wb) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic (round half away from zero) and the unrounded float64 values."""
    pos = positions(cfa)
    wb = np.ones(4) if wb is None else np.asarray(wb, np.float64)
    h, w = s.shape[1:]
    y = np.zeros((2 * h, 2 * w))
    for c, name in enumerate(["R", "Gr", "Gb", "B"]):
        dy, dx = pos[name]
        y[dy::2, dx::2] = np.clip(s[c] / wb[c], 0, 1) * (white - black[c]) + black[c]
    return np.floor(y + 0.5).astype(np.uint16), y


BLACK = np.array([64, 60, 62, 66], np.float32)
WB = np.array([2.1, 1.0, 0.97, 1.6], np.float32)


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("h, w", [(2, 2), (4, 6), (38, 130)])
@pytest.mark.parametrize("wb", [None, WB])
def test_mosaic_to_rggb_matches_numpy(cfa: str, h: int, w: int, wb) -> None:
    rng = np.random.default_rng(h * w)
    m = rng.integers(0, 1100, (h, w), dtype=np.uint16)  # below black and above white: both clip
    out = _native.mosaic_to_rggb(m, cfa, BLACK, 1023.0, wb, 1)
    assert out.dtype == np.float32 and out.shape == (4, h // 2, w // 2)
    np.testing.assert_allclose(out, ref_mosaic_to_rggb(m, cfa, BLACK, 1023.0, wb), rtol=0, atol=1e-5)


def test_canonical_channel_order_by_hand() -> None:
    m = np.array([[10, 20], [30, 40]], np.uint16)
    black = np.zeros(4, np.float32)
    got = {cfa: _native.mosaic_to_rggb(m, cfa, black, 40.0)[:, 0, 0] * 40 for cfa in CFAS}
    np.testing.assert_allclose(got["RGGB"], [10, 20, 30, 40], rtol=1e-6)
    np.testing.assert_allclose(got["BGGR"], [40, 30, 20, 10], rtol=1e-6)
    np.testing.assert_allclose(got["GRBG"], [20, 10, 40, 30], rtol=1e-6)
    np.testing.assert_allclose(got["GBRG"], [30, 40, 10, 20], rtol=1e-6)


def test_max_values_16_bit() -> None:
    m = np.full((2, 2), 65535, np.uint16)
    out = _native.mosaic_to_rggb(m, "RGGB", [0, 0, 0, 0], 65535.0)
    np.testing.assert_array_equal(out, np.ones((4, 1, 1), np.float32))


def test_black_and_wb_accept_sequences() -> None:
    m = np.full((2, 2), 100, np.uint16)
    a = _native.mosaic_to_rggb(m, "RGGB", (10, 10, 10, 10), 1000.0, [1, 1, 1, 1])
    b = _native.mosaic_to_rggb(m, "RGGB", np.full(4, 10, np.float32), 1000.0, None)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cfa", CFAS)
def test_round_trip_without_clipping(cfa: str) -> None:
    rng = np.random.default_rng(5)
    white = 4095.0
    wb = np.array([0.5, 1.0, 0.9, 0.75], np.float32)  # <= 1: nothing clips at white
    m = rng.integers(66, 4096, (64, 96), dtype=np.uint16)  # >= every black level
    stack = _native.mosaic_to_rggb(m, cfa, BLACK, white, wb)
    np.testing.assert_array_equal(_native.rggb_to_mosaic(stack, cfa, BLACK, white, wb), m)


@pytest.mark.parametrize("cfa", CFAS)
def test_rggb_to_mosaic_matches_numpy(cfa: str) -> None:
    rng = np.random.default_rng(6)
    s = rng.uniform(-0.2, 1.3, (4, 17, 23)).astype(np.float32)
    got = _native.rggb_to_mosaic(s, cfa, BLACK, 1023.0, WB, 1)
    want, y = ref_rggb_to_mosaic(s, cfa, BLACK, 1023.0, WB)
    assert got.dtype == np.uint16 and got.shape == (34, 46)
    # float32 vs float64 may only disagree where the value sits on a .5 boundary
    mismatch = got != want
    assert np.all(np.abs(y[mismatch] % 1 - 0.5) < 1e-3)
    assert mismatch.mean() < 0.01


def test_rggb_to_mosaic_rounds_half_away_from_zero() -> None:
    # white - black = 2: x = 0.25 -> 0.5 -> 1 and x = 0.75 -> 1.5 -> 2 (round-half-even would give 0 and 2)
    s = np.zeros((4, 1, 2), np.float32)
    s[0, 0] = [0.25, 0.75]
    out = _native.rggb_to_mosaic(s, "RGGB", np.zeros(4, np.float32), 2.0)
    np.testing.assert_array_equal(out[0, ::2], [1, 2])


@pytest.mark.parametrize("threads", [0, 2, 3])
def test_threads_give_identical_results(threads: int) -> None:
    rng = np.random.default_rng(7)
    m = rng.integers(0, 65536, (1030, 1024), dtype=np.uint16)
    want = _native.mosaic_to_rggb(m, "GBRG", BLACK, 65535.0, WB, 1)
    np.testing.assert_array_equal(_native.mosaic_to_rggb(m, "GBRG", BLACK, 65535.0, WB, threads), want)
    np.testing.assert_array_equal(_native.rggb_to_mosaic(want, "GBRG", BLACK, 65535.0, WB, threads),
                                  _native.rggb_to_mosaic(want, "GBRG", BLACK, 65535.0, WB, 1))


def test_two_python_threads_match_sequential() -> None:
    rng = np.random.default_rng(8)
    ms = [rng.integers(0, 65536, (800, 1200), dtype=np.uint16) for _ in range(2)]
    want = [_native.mosaic_to_rggb(m, "RGGB", BLACK, 65535.0, WB) for m in ms]
    got = run_concurrently(lambda i: _native.mosaic_to_rggb(ms[i], "RGGB", BLACK, 65535.0, WB))
    for i in range(2):
        np.testing.assert_array_equal(got[i], want[i])


# ---- errors -----------------------------------------------------------------------------------

M = np.zeros((4, 4), np.uint16)
S = np.zeros((4, 2, 2), np.float32)


@pytest.mark.parametrize("cfa", ["rggb", "RGBG", "", "RGGBX"])
def test_unknown_cfa(cfa: str) -> None:
    with pytest.raises(ValueError, match="unknown cfa"):
        _native.mosaic_to_rggb(M, cfa, BLACK, 1023.0)
    with pytest.raises(ValueError, match="unknown cfa"):
        _native.rggb_to_mosaic(S, cfa, BLACK, 1023.0)


@pytest.mark.parametrize("black, white, match", [
    ([0, 0, 1023, 0], 1023.0, "black < white"),
    ([0, 0, 2000, 0], 1023.0, "black < white"),
    ([-1, 0, 0, 0], 1023.0, "0 <= black"),
    ([0, 0, 0, 0], 0.0, "white must be finite and > 0"),
    ([0, 0, 0, 0], float("inf"), "white must be finite"),
    ([0, 0, 0, np.nan], 1023.0, r"black\[3\] must be finite"),
    ([0, 0, 0], 1023.0, "black must have 4 values"),
])
def test_bad_levels(black, white: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _native.mosaic_to_rggb(M, "RGGB", black, white)
    with pytest.raises(ValueError, match=match):
        _native.rggb_to_mosaic(S, "RGGB", black, white)


@pytest.mark.parametrize("wb, match", [([1, 0, 1, 1], "wb gains must be > 0"), ([1, -2, 1, 1], "wb gains must be > 0"),
                                       ([1, 1, np.inf, 1], "must be finite"), ([1, 1], "wb must have 4 values")])
def test_bad_wb(wb, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _native.mosaic_to_rggb(M, "RGGB", BLACK, 1023.0, wb)


def test_black_not_numbers_is_type_error() -> None:
    with pytest.raises(TypeError, match="black must be 4 real numbers"):
        _native.mosaic_to_rggb(M, "RGGB", "abcd", 1023.0)


@pytest.mark.parametrize("shape", [(3, 4), (4, 5), (0, 4), (1, 2), (2, 2, 1), (8,)])
def test_bad_mosaic_shape(shape) -> None:
    with pytest.raises(ValueError, match="mosaic"):
        _native.mosaic_to_rggb(np.zeros(shape, np.uint16), "RGGB", BLACK, 1023.0)


@pytest.mark.parametrize("shape", [(3, 2, 2), (4, 0, 2), (4, 4)])
def test_bad_stack_shape(shape) -> None:
    with pytest.raises(ValueError, match="stack must be 4 x h x w"):
        _native.rggb_to_mosaic(np.zeros(shape, np.float32), "RGGB", BLACK, 1023.0)


def test_wrong_dtype_is_type_error() -> None:
    with pytest.raises(TypeError, match="mosaic must be a uint16"):
        _native.mosaic_to_rggb(M.astype(np.int32), "RGGB", BLACK, 1023.0)
    with pytest.raises(TypeError, match="mosaic must be a uint16"):
        _native.mosaic_to_rggb(M.astype(">u2"), "RGGB", BLACK, 1023.0)
    with pytest.raises(TypeError, match="stack must be a float32"):
        _native.rggb_to_mosaic(S.astype(np.float64), "RGGB", BLACK, 1023.0)


def test_non_contiguous_is_type_error() -> None:
    with pytest.raises(TypeError, match="C-contiguous"):
        _native.mosaic_to_rggb(np.zeros((4, 8), np.uint16)[:, ::2], "RGGB", BLACK, 1023.0)
    with pytest.raises(TypeError, match="C-contiguous"):
        _native.mosaic_to_rggb(np.asfortranarray(np.zeros((4, 6), np.uint16)), "RGGB", BLACK, 1023.0)
    with pytest.raises(TypeError, match="C-contiguous"):
        _native.rggb_to_mosaic(np.zeros((4, 2, 4), np.float32)[..., ::2], "RGGB", BLACK, 1023.0)


def test_nan_input_rejected() -> None:
    s = np.zeros((4, 8, 8), np.float32)
    s[2, 7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _native.rggb_to_mosaic(s, "RGGB", BLACK, 1023.0)


def test_white_above_uint16_rejected_for_mosaic_output() -> None:
    with pytest.raises(ValueError, match="white must be <= 65535"):
        _native.rggb_to_mosaic(S, "RGGB", BLACK, 70000.0)
