"""rawproof_train.sensor_sim: virtual cameras, PRNU applied to the unprocessed mosaic, frame sources."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from rawproof.errors import RawFormatError
from rawproof_train.isp import develop_reference
from rawproof_train.sensor_sim import (
    MIN_SCENE_STD,
    PRNU_STD_RANGE,
    capture,
    flat_frame,
    load_photos,
    make_camera,
    make_cameras,
    scene_frame,
)
from rawproof_train.unprocess import NoiseParams, unprocess


def test_cameras_are_seeded_and_distinct() -> None:
    a, b = make_cameras(2, (32, 48), seed=3)
    again = make_camera(0, (32, 48), seed=3)
    np.testing.assert_array_equal(a.prnu, again.prnu)
    assert a.name == "sim-00" and (a.height, a.width) == (32, 48) and a.prnu.dtype == np.float32
    assert abs(np.corrcoef(a.prnu.ravel(), b.prnu.ravel())[0, 1]) < 0.1
    for cam in (a, b):
        assert PRNU_STD_RANGE[0] <= cam.prnu_std <= PRNU_STD_RANGE[1]
        assert cam.prnu.std() == pytest.approx(cam.prnu_std, rel=0.1)
    assert not np.array_equal(make_camera(0, (32, 48), seed=4).prnu, a.prnu)
    with pytest.raises(RawFormatError):
        make_camera(0, (31, 48))


def test_capture_multiplies_the_linear_mosaic_by_one_plus_k() -> None:
    cam = replace(make_camera(1, (64, 64)), noise=NoiseParams(shot=0.0, read=0.0))
    photo = np.full((64, 64, 3), 0.6, np.float32)
    frame = capture(cam, photo, np.random.default_rng(0))
    clean = unprocess(photo, cam.params)
    lin = lambda m: (m.astype(np.float64) - cam.params.black) / (cam.params.white - cam.params.black)  # noqa: E731
    ratio = lin(frame.mosaic) / lin(clean.mosaic) - 1
    # Equal up to 14-bit quantisation of both mosaics.
    assert np.corrcoef(ratio.ravel(), cam.prnu.ravel())[0, 1] > 0.99
    assert frame.mosaic.dtype == np.uint16 and frame.camera == cam.name and frame.wb == clean.wb
    assert develop_reference(frame).shape == (64, 64, 3)


def test_capture_noise_and_shape_check() -> None:
    cam = make_camera(2, (32, 32))
    photo = np.full((32, 32, 3), 0.5, np.float32)
    f1, f2 = (capture(cam, photo, np.random.default_rng(s)) for s in (0, 1))
    assert not np.array_equal(f1.mosaic, f2.mosaic)
    with pytest.raises(RawFormatError):
        capture(cam, np.zeros((16, 32, 3), np.float32), np.random.default_rng(0))


def test_scene_frame() -> None:
    rng = np.random.default_rng(0)
    photo = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    out = scene_frame(photo, (40, 40), rng)
    assert out.shape == (40, 40, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert (out @ np.array([0.299, 0.587, 0.114], np.float32)).std() >= MIN_SCENE_STD
    assert not np.array_equal(out, scene_frame(photo, (40, 40), rng))
    with pytest.raises(RawFormatError):
        scene_frame(np.full((90, 120, 3), 128, np.uint8), (40, 40), rng)


def test_flat_frame_is_bright_smooth_unclipped() -> None:
    f = flat_frame((64, 96), np.random.default_rng(0))
    assert f.shape == (64, 96, 3) and 0.4 < f.min() and f.max() < 0.95
    assert np.abs(np.diff(f, axis=1)).max() < 0.01


def test_load_photos(tmp_path) -> None:
    (tmp_path / "photos" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 3000, 3), np.uint8)).save(tmp_path / "photos" / "a" / "wide.png")
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(tmp_path / "photos" / "b.jpg")
    got = load_photos(tmp_path, folders=("photos", "extra/photos"), max_side=1024)
    assert [p for p, _ in got] == ["photos/a/wide.png", "photos/b.jpg"]
    assert max(got[0][1].shape[:2]) == 1024 and got[1][1].shape == (8, 6, 3)
    with pytest.raises(RawFormatError):
        load_photos(tmp_path / "nothing")
