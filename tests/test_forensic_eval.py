"""Image-level forensic evaluation through verify(), on a tiny dataset with small ONNX test models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from _onnx_models import NipWeights, make_fan, make_nip, write_model  # noqa: E402
from rawproof.models import load_model_info  # noqa: E402
from rawproof.runtime import clear_session_cache  # noqa: E402
from rawproof_train.forensic_eval import evaluate_split, manipulate, share, write_calibration  # noqa: E402
from rawproof_train.prepare import prepare  # noqa: E402

CLASSES = ["native", "sharpen", "gaussian", "jpeg", "resample"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    src = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)).save(src / f"p{i}.png")
    data = tmp_path_factory.mktemp("data")
    prepare(data, photos=[src], seed=0, val=0.2, test=0.2, progress=False, method="bilinear")
    models = tmp_path_factory.mktemp("models")
    nip = write_model(make_nip(NipWeights(0)), models / "nip.onnx", {"name": "t_nip", "kind": "nip", "receptive_field": 5, "classes": []})
    fan = write_model(make_fan(5), models / "fan.onnx", {"name": "t_fan", "kind": "fan", "classes": CLASSES, "patch_size": 32,
                                                         "trained_channel": {"downscale": 2, "jpeg_quality": 50}})
    return data, nip, fan


def test_share_is_box_downscale_plus_libjpeg() -> None:
    yy, xx = np.mgrid[0:64, 0:48]
    rgb = (127 + 100 * np.sin(np.stack([xx / 5, yy / 7, (xx + yy) / 9], axis=-1))).astype(np.uint8)
    out = np.asarray(Image.open(io.BytesIO(share(rgb, quality=95))))
    box = rgb.reshape(32, 2, 24, 2, 3).mean(axis=(1, 3))
    assert out.shape == (32, 24, 3)
    assert np.abs(out.astype(float) - box).mean() < 3.0  # only JPEG q95 error left


def test_share_web_platform_is_pillow_bilinear_and_420() -> None:
    yy, xx = np.mgrid[0:64, 0:48]
    rgb = (127 + 100 * np.sin(np.stack([xx / 3, yy / 4, (xx + yy) / 5], axis=-1))).astype(np.uint8)
    data = share(rgb, quality=95, subsampling="420", resize="bilinear")
    with Image.open(io.BytesIO(data)) as im:
        assert im.layer[1][1:3] == (1, 1) and im.layer[0][1:3] == (2, 2)  # chroma at half resolution
        out = np.asarray(im.convert("RGB"), dtype=float)
    pil = np.asarray(Image.fromarray(rgb).resize((24, 32), Image.Resampling.BILINEAR), dtype=float)
    box = rgb.reshape(32, 2, 24, 2, 3).mean(axis=(1, 3))
    assert np.abs(out - pil).mean() < np.abs(out - box).mean()
    with pytest.raises(ValueError):
        share(rgb, resize="nearest")


def test_manipulate_native_is_identity_and_others_change() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(manipulate(rgb, "native"), rgb)
    for name in CLASSES[1:]:
        assert not np.array_equal(manipulate(rgb, name), rgb)


def test_evaluate_and_calibrate(setup: tuple[Path, Path, Path]) -> None:
    data, nip, fan = setup
    res, reports, labels = evaluate_split(data, "test", nip, fan, crop=64, stride=32)
    n = res.crops_per_class
    assert n > 0 and len(reports) == len(labels) == 5 * n
    assert set(res.tpr) == set(CLASSES[1:]) and 0.0 <= res.fpr <= 1.0
    assert np.array(res.confusion).sum() == 5 * n
    before = load_model_info(fan).sha256
    write_calibration(fan, {"temperature": 2.0, "platt": [1.0, 0.0]})
    info = load_model_info(fan)
    assert info.metadata["calibration"]["temperature"] == 2.0 and info.sha256 != before
    assert json.loads(fan.with_suffix(".json").read_text())["sha256"] == info.sha256
    clear_session_cache()
