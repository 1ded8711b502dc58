"""Tests of rawproof.tiling: tile plans, tiled == whole-frame, rounding, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _onnx_models import NipWeights, make_fan, make_nip, nip_reference, write_model
from rawproof.errors import ModelError
from rawproof.runtime import clear_session_cache, get_session
from rawproof.tiling import margin_for, plan_tiles, quantize_into, run_nip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "plain": write_model(make_nip(NipWeights()), d / "plain.onnx", {"name": "plain", "kind": "nip", "receptive_field": 5}),
        "pooled": write_model(make_nip(NipWeights(), pooled=True), d / "pooled.onnx",
                              {"name": "pooled", "kind": "nip", "receptive_field": 7, "size_multiple": 2}),
        "fan": write_model(make_fan(), d / "fan.onnx", {"name": "fan", "kind": "fan", "classes": list("abcde")}),
    }


@pytest.fixture(autouse=True, scope="module")
def _fresh_cache():
    yield
    clear_session_cache()


class TestPlan:
    @pytest.mark.parametrize(
        ("h", "w", "tile", "margin", "mult"), [(100, 130, 32, 3, 1), (37, 50, 16, 5, 4), (8, 8, 64, 2, 1), (9, 7, 0, 3, 2)]
    )
    def test_cores_partition_frame(self, h: int, w: int, tile: int, margin: int, mult: int) -> None:
        cover = np.zeros((h, w), np.int32)
        for t in plan_tiles(h, w, tile, margin, mult):
            cover[t.y0:t.y1, t.x0:t.x1] += 1
            assert t.iy0 <= t.y0 and t.iy1 >= t.y1 and t.ix0 <= t.x0 and t.ix1 >= t.x1
            for v in (t.iy0, t.iy1, t.ix0, t.ix1):
                assert v % mult == 0
            # context on every side that is not the frame edge
            if t.y0 > 0:
                assert t.y0 - t.iy0 >= margin
            if t.y1 < h:
                assert t.iy1 - t.y1 >= margin
            assert t.iy1 < h + mult and t.ix1 < w + mult
        assert np.all(cover == 1)

    def test_whole_frame(self) -> None:
        (t,) = plan_tiles(10, 12, 0, 5)
        assert (t.iy0, t.iy1, t.ix0, t.ix1) == (0, 10, 0, 12)

    def test_bad_request(self) -> None:
        with pytest.raises(ValueError):
            plan_tiles(0, 10, 8, 1)

    def test_margin_for(self) -> None:
        assert margin_for(5) == 4 and margin_for(7, 2) == 6 and margin_for(9, 4) == 8 and margin_for(0) == 1


class TestQuantize:
    def test_rounds_not_truncates_and_clips(self) -> None:
        vals = np.array([-0.2, 0.0, 0.49 / 255, 0.51 / 255, 100.49 / 255, 100.51 / 255, 1.0, 1.7], np.float32)
        y = np.broadcast_to(vals, (3, 1, 8)).copy()
        out = np.zeros((1, 8, 3), np.uint8)
        quantize_into(out, y)
        assert out[0, :, 0].tolist() == [0, 0, 0, 1, 100, 101, 255, 255]

    def test_nan_is_an_error(self) -> None:
        y = np.full((3, 1, 2), np.nan, np.float32)
        with pytest.raises(ModelError, match="NaN"):
            quantize_into(np.zeros((1, 2, 3), np.uint8), y)


class TestRunNip:
    def test_matches_numpy_reference(self, models: dict[str, Path]) -> None:
        stack = np.random.default_rng(0).random((4, 40, 52), dtype=np.float32)
        res = run_nip(get_session(models["plain"]), stack, tile=16)
        ref = np.rint(np.clip(nip_reference(stack, NipWeights()), 0, 1) * 255).transpose(1, 2, 0)
        assert res.rgb.shape == (80, 104, 3) and res.rgb.dtype == np.uint8 and res.tiles == 12
        assert np.abs(res.rgb.astype(int) - ref).max() <= 1
        assert np.mean(res.rgb != ref) < 1e-3

    def test_12mp_tiled_equals_whole(self, models: dict[str, Path]) -> None:
        """A 4 x 1500 x 2000 stack (12 MP output): tiled and whole-frame agree within 1/255."""
        rng = np.random.default_rng(3)
        stack = np.clip(rng.normal(0.35, 0.25, (4, 1500, 2000)), 0, 1).astype(np.float32)
        sess = get_session(models["plain"])
        tiled = run_nip(sess, stack, tile=512)
        whole = run_nip(sess, stack, tile=0)
        assert tiled.tiles == 12 and whole.tiles == 1
        assert tiled.rgb.shape == (3000, 4000, 3)
        assert np.abs(tiled.rgb.astype(np.int16) - whole.rgb).max() <= 1

    def test_pooled_model_tiled_equals_whole(self, models: dict[str, Path]) -> None:
        stack = np.random.default_rng(4).random((4, 75, 97), dtype=np.float32)  # odd: padded to multiples of 2
        sess = get_session(models["pooled"])
        tiled = run_nip(sess, stack, tile=20)
        whole = run_nip(sess, stack, tile=0)
        assert tiled.rgb.shape == (150, 194, 3)
        assert np.abs(tiled.rgb.astype(np.int16) - whole.rgb).max() <= 1

    def test_too_small_margin_shows_seams(self, models: dict[str, Path]) -> None:
        """The margin matters: without context, tile borders differ from the whole frame."""
        stack = np.random.default_rng(5).random((4, 64, 64), dtype=np.float32)
        sess = get_session(models["plain"])
        seamy = run_nip(sess, stack, tile=16, margin=0)
        whole = run_nip(sess, stack, tile=0)
        assert np.abs(seamy.rgb.astype(np.int16) - whole.rgb).max() > 1

    def test_preallocated_out(self, models: dict[str, Path]) -> None:
        stack = np.random.default_rng(6).random((1, 4, 10, 12), dtype=np.float32)
        out = np.zeros((20, 24, 3), np.uint8)
        assert run_nip(get_session(models["plain"]), stack, out=out).rgb is out

    def test_errors(self, models: dict[str, Path]) -> None:
        sess = get_session(models["plain"])
        with pytest.raises(ValueError, match="stack must be"):
            run_nip(sess, np.zeros((3, 8, 8), np.float32))
        with pytest.raises(ValueError, match="stack must be"):
            run_nip(sess, np.zeros((4, 8, 8), np.float64))
        with pytest.raises(ValueError, match="out must be"):
            run_nip(sess, np.zeros((4, 8, 8), np.float32), out=np.zeros((16, 16, 3), np.float32))
        with pytest.raises(ModelError, match="needs a NIP"):
            run_nip(get_session(models["fan"], "fan"), np.zeros((4, 8, 8), np.float32))


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from rawproof.runtime import get_session
    from rawproof.tiling import run_nip
    sess = get_session(sys.argv[1], threads=2)
    stack = np.random.default_rng(0).random((4, 1500, 2000), dtype=np.float32)
    out = np.ones((3000, 4000, 3), np.uint8)  # ones, not zeros: touch the pages now
    run_nip(sess, stack[:, :64, :64], tile=0)  # warm up allocator and kernels

    def hwm_kb():
        # VmHWM belongs to this process image; ru_maxrss would inherit the parent's peak across fork+exec.
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0])

    before = hwm_kb()
    run_nip(sess, stack, tile=int(sys.argv[2]), out=out)
    print(json.dumps({"before_kb": before, "after_kb": hwm_kb()}))
    """
)


def _peak_rss_growth_mb(model: Path, tile: int) -> float:
    cmd = [sys.executable, "-c", _RSS_SCRIPT, str(model), str(tile)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    r = json.loads(res.stdout)
    return (r["after_kb"] - r["before_kb"]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for VmHWM")
def test_peak_memory_bounded(models: dict[str, Path]) -> None:
    """Peak RSS growth (VmHWM, fresh subprocess) of a 12 MP run, beyond the stack and output already held.
 Whole-frame inference materialises full-resolution
    activations (8 x 1500 x 2000 float32 = 96 MB each, plus the 144 MB float32 output);
    tiled inference must only need per-tile buffers.
    """
    tiled = _peak_rss_growth_mb(models["plain"], 512)
    whole = _peak_rss_growth_mb(models["plain"], 0)
    assert tiled < 128, f"tiled run grew peak RSS by {tiled:.0f} MB"
    assert whole > 2 * tiled + 100, f"whole {whole:.0f} MB vs tiled {tiled:.0f} MB"


def test_clipped_sensor_values_stay_white_in_every_tile(models: dict[str, Path]) -> None:
    rng = np.random.default_rng(3)
    stack = rng.uniform(0.1, 0.6, (4, 40, 56)).astype(np.float32)
    stack[:, 5:9, 30:50] = 1.0          # blown highlight spanning a tile seam: every plane clipped
    stack[0, 20:24, 10:14] = 1.0        # red alone clipped
    stack[1, 30:33, 40:44] = 1.0        # one green plane only: not a clipped green
    sess = get_session(models["plain"], "nip")
    raw = np.empty((80, 112, 3), np.uint8)
    quantize_into(raw, sess.run(stack[None])[0].copy())
    out = run_nip(sess, stack, tile=16).rgb
    assert (out[10:18, 60:100] == 255).all()
    assert (out[40:48, 20:28, 0] == 255).all() and (out[40:48, 20:28, 1:] == raw[40:48, 20:28, 1:]).all()
    assert (out[60:66, 80:88, 1] == raw[60:66, 80:88, 1]).all()
    # nothing else changed
    mask = np.zeros(out.shape, bool)
    mask[10:18, 60:100] = True
    mask[40:48, 20:28, 0] = True
    np.testing.assert_array_equal(out[~mask], raw[~mask])
    assert (raw[mask] < 255).mean() > 0.5  # the toy NIP alone would leave them grey
