"""rawproof_train.prnu_experiment: pair statistics, the channel, and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from rawproof_train.nip import create_nip
from rawproof_train.prnu_experiment import channel_uint8, pair_stats, pce_matrix, register, run_experiment


def test_pair_stats_counts() -> None:
    genuine = np.repeat(np.eye(2, dtype=bool), 2, axis=0)
    scores = np.array([[100.0, 3.0], [50.0, 70.0], [1.0, 200.0], [-2.0, 61.0]])
    s = pair_stats(scores, genuine)
    assert (s.tp, s.n_genuine, s.fp, s.n_impostor) == (3, 4, 1, 4)
    assert s.tpr == 0.75 and s.fpr == 0.25 and s.genuine_min == 50.0 and s.impostor_max == 70.0
    assert s.tpr_ci[0] < 0.75 < s.tpr_ci[1]


def test_channel_is_box_downscale_then_jpeg_q50() -> None:
    img = (np.random.default_rng(0).random((64, 48, 3)) * 255).astype(np.uint8)
    small = np.rint(img.astype(np.float64).reshape(32, 2, 24, 2, 3).mean(axis=(1, 3))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=50, subsampling=0)
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64)
    got = channel_uint8(img)
    assert got.shape == (32, 24, 3) and got.dtype == np.uint8
    # Ties of the 2x2 mean may round differently in float32, and JPEG can amplify one code value locally.
    assert np.abs(got - expected).mean() < 1.0


def test_pce_matrix_shape_and_alignment() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    m = pce_matrix([img, img[:32, :32]], [rng.normal(size=(64, 64)).astype(np.float32)] * 3)
    assert m.shape == (2, 3) and np.all(np.isfinite(m))


@pytest.fixture()
def tiny_data(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(4):
        tex = ndimage.gaussian_filter(rng.random((80, 96, 3)), (3, 3, 0))
        tex = (tex - tex.min()) / (tex.max() - tex.min())
        Image.fromarray((tex * 200 + 30).astype(np.uint8)).save(tmp_path / "photos" / f"p{i}.png")
    nip = tmp_path / "nip.pt"
    torch.save({"arch": "INet", "state_dict": create_nip("INet").state_dict()}, nip)
    return tmp_path, nip


def test_tiny_run(tiny_data, tmp_path) -> None:
    data, nip = tiny_data
    out = tmp_path / "out"
    res = run_experiment(out, nip_checkpoints={"inet": str(nip), "absent": str(tmp_path / "no.pt")}, cameras=2, enrol=3,
                         held_out=1, size=64, real=False, bench=False, data=data)
    assert res["pipelines"] == ["reference", "inet"] and res["missing_nips"][0].startswith("absent")
    assert len(res["rows"]) == 2 * 2 * 2
    for r in res["rows"]:
        assert (r["stats"]["n_genuine"], r["stats"]["n_impostor"]) == (2, 2)
    assert json.loads((out / "results.json").read_text())["cameras"] == 2
    assert "| reference | flat | none |" in (out / "results.md").read_text()
    assert (out / "pce_reference.png").is_file() and (out / "pce_inet.npz").is_file()


def test_register_parses() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["prnu-experiment", "--out", "x", "--nip-checkpoints", "fid=a/nip.pt", "--size", "64", "--no-real"])
    assert args.out == "x" and args.nip_checkpoints == ["fid=a/nip.pt"] and args.size == 64 and args.no_real and not args.no_bench
