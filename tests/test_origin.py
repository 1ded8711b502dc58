"""rawproof.origin (the origin head) and the NO_RAWPROOF_TRACES verdict, with the toy FAN."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _toy_fan import blur, noise_image, toy_fan_path
from rawproof.errors import ModelError
from rawproof.models import load_model_info
from rawproof.origin import OriginHead, find_origin_head, head_path, origin_features
from rawproof.verify import Verdict, save_heatmap, verify


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _head(classes: list[str], weight_on: int, threshold: float = 0.5) -> dict:
    n = 3 * len(classes) + 6
    w = np.zeros(n)
    w[weight_on] = 20.0
    return {"name": "origin_toy_fan", "fan_name": "toy_fan", "classes": classes, "mean": [0.0] * n, "scale": [1.0] * n,
            "weights": w.tolist(), "bias": -10.0, "threshold": threshold, "kind": "origin-head"}


@pytest.fixture()
def models(tmp_path, monkeypatch):
    src = toy_fan_path()
    for suffix in (".onnx", ".json"):
        shutil.copy(src.with_suffix(suffix), tmp_path / f"toy_fan{suffix}")
    monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path))
    return tmp_path


def test_features_against_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (3, 4, 5))
    f = origin_features(z)
    flat = z.reshape(-1, 5)
    p = np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True)
    assert f.shape == (21,)
    assert np.allclose(f[:5], p.mean(axis=0)) and np.allclose(f[5:10], p.std(axis=0))
    assert np.allclose(f[10:15], [(p.argmax(axis=1) == k).mean() for k in range(5)])
    assert np.allclose(f[15:18], np.quantile(p[:, 0], [0.1, 0.5, 0.9]))
    assert np.isclose(f[18], (-(p * np.log(p)).sum(axis=1)).mean())
    assert np.isclose(f[19], flat.max(axis=1).mean()) and np.isclose(f[20], flat.max(axis=1).std())
    with pytest.raises(ValueError, match="one patch"):
        origin_features(np.zeros((0, 5)))


def test_head_reads_and_verdict_is_never_manipulated(models, tmp_path):
    fan = load_model_info(models / "toy_fan.onnx")
    assert find_origin_head(fan) is None
    # A head that calls an image foreign when its mean P(gaussian) (feature 1) exceeds 0.5.
    head_path(fan).write_text(json.dumps(_head(["native", "gaussian"], weight_on=1)))
    head = find_origin_head(fan)
    assert head is not None and head.threshold == 0.5
    rgb = noise_image(96, 128, seed=5)
    r = verify(_png(rgb))
    assert r.verdict is Verdict.NO_PROVENANCE_CONSISTENT and r.origin is not None and not r.origin.foreign
    r2 = verify(_png(blur(rgb)))
    assert r2.verdict is Verdict.NO_RAWPROOF_TRACES and r2.exit_code == 2
    assert r2.origin.foreign and r2.origin.p_foreign > 0.5 and "no rawproof traces" in r2.summary
    assert r2.to_dict()["origin"]["foreign"] is True and r2.to_dict()["verdict"] == "no_rawproof_traces"
    with Image.open(save_heatmap(r2, tmp_path / "h.png")) as im:
        assert im.size[1] > 96  # the picture with its NOT EVIDENCE panel
    # Without the head the same image reads manipulated.
    head_path(fan).unlink()
    assert verify(_png(blur(rgb))).verdict is Verdict.NO_PROVENANCE_MANIPULATED


def test_broken_or_foreign_head_is_loud(models):
    fan = load_model_info(models / "toy_fan.onnx")
    head_path(fan).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read origin head"):
        find_origin_head(fan)
    head_path(fan).write_text(json.dumps({**_head(["native", "gaussian"], 1), "fan_name": "other_fan"}))
    with pytest.raises(ModelError, match="made for FAN other_fan"):
        find_origin_head(fan)
    bad = _head(["native", "gaussian"], 1)
    bad["weights"] = bad["weights"][:-1]
    with pytest.raises(ModelError, match="invalid origin head"):
        OriginHead.from_json(bad)
    with pytest.raises(ModelError, match="invalid origin head"):
        OriginHead.from_json({**_head(["native", "gaussian"], 1), "threshold": 0})
    with pytest.raises(ModelError, match="invalid origin head"):
        OriginHead.from_json({k: v for k, v in _head(["native", "gaussian"], 1).items() if k != "bias"})


def test_verify_batch_rows_carry_the_new_verdict(models, tmp_path):
    from rawproof.batch import read_rows, verify_batch

    fan = load_model_info(models / "toy_fan.onnx")
    head_path(fan).write_text(json.dumps(_head(["native", "gaussian"], weight_on=1)))
    rgb = noise_image(96, 128, seed=8)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png(rgb))
    (tmp_path / "in" / "b.png").write_bytes(_png(blur(rgb)))
    verify_batch(tmp_path / "in", tmp_path / "rows.jsonl", workers=1, fan=str(models / "toy_fan.onnx"))
    rows = {Path(r["path"]).name: r for r in read_rows(tmp_path / "rows.jsonl")}
    assert rows["a.png"]["verdict"] == "no_provenance_consistent" and rows["a.png"]["p_foreign"] < 0.5
    assert rows["b.png"]["verdict"] == "no_rawproof_traces" and rows["b.png"]["p_foreign"] > 0.5
    assert rows["b.png"]["significant_regions"] == 0
