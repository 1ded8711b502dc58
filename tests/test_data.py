"""Tests of rawproof_train.data and rawproof_train.prepare: reproducible cache, splits, patches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rawproof.errors import RawFormatError
from rawproof_train.data import Pair, PatchDataset, load_pair, sample_patches
from rawproof_train.prepare import main, prepare


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("src")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(48 + 2 * i, 65, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    raws = root / "raws"
    raws.mkdir()
    dump = rng.integers(60, 1000, size=(40, 64)).astype("<u2")
    (raws / "d.u16le").write_bytes(dump.tobytes())
    (raws / "dark.u16le").write_bytes(np.full((40, 64), 5, "<u2").tobytes())
    entries = [
        {"path": "raws/d.u16le", "kind": "raw_dump", "container": "u16le", "width": 64, "height": 40, "cfa": "GRBG", "black": 50, "white": 1023},
        {"path": "raws/dark.u16le", "kind": "raw_dump", "container": "u16le", "width": 64, "height": 40, "cfa": "GRBG", "black": 4, "white": 1023},
    ]
    (root / "manifest.json").write_text(json.dumps({"files": entries}))
    return photos, raws


def test_prepare_reproducible_and_split_by_image(sources: tuple[Path, Path], tmp_path: Path) -> None:
    photos, raws = sources
    a = prepare(tmp_path / "a", photos=[photos], raws=[raws], seed=0, progress=False)
    assert main(["--photos", str(photos), "--raws", str(raws), "--out", str(tmp_path / "b"), "--seed", "0"]) == 0
    ma = json.loads((tmp_path / "a" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert a.pairs == 5 and a.splits == {"train": 3, "val": 1, "test": 1}
    assert [s["source"] for s in ma["skipped"]] == ["raws/dark.u16le"]
    assert ma["dataset_sha256"] == mb["dataset_sha256"] == a.dataset_sha256
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    for p in ma["pairs"]:
        pair = load_pair(tmp_path / "a", p["id"])
        assert pair.stack.dtype == np.float32 and pair.target.dtype == np.uint8
        assert pair.target.shape[:2] == (2 * pair.stack.shape[1], 2 * pair.stack.shape[2])
        assert "/" not in p["id"] and not Path(p["source"]).is_absolute()
    c = prepare(tmp_path / "c", photos=[photos], raws=[raws], seed=1, progress=False)
    assert c.dataset_sha256 != a.dataset_sha256


def test_prepare_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(RawFormatError):
        prepare(tmp_path / "o", photos=[tmp_path / "nope"], progress=False)


def make_pair(target: np.ndarray) -> Pair:
    h, w = target.shape[0] // 2, target.shape[1] // 2
    stack = np.stack([target[0::2, 0::2, 0], target[0::2, 1::2, 1], target[1::2, 0::2, 1], target[1::2, 1::2, 2]]).astype(np.float32) / 255
    assert stack.shape == (4, h, w)
    return Pair("t", stack, target)


def test_sample_patches_alignment_and_flat_rejection() -> None:
    rng = np.random.default_rng(0)
    pair = make_pair(rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8))
    patches = sample_patches(pair, 16, 5, np.random.default_rng(1))
    assert len(patches) == 5
    for s, t in patches:
        assert s.shape == (4, 8, 8) and t.shape == (3, 16, 16) and t.dtype == np.float32
        np.testing.assert_allclose(s[0], t[0, 0::2, 0::2], atol=1e-6)  # R sites of the same area
        np.testing.assert_allclose(s[3], t[2, 1::2, 1::2], atol=1e-6)
    flat = make_pair(np.full((64, 64, 3), 128, np.uint8))
    assert sample_patches(flat, 16, 3, np.random.default_rng(0), max_tries=5) == []
    # variance 0.015 (between the thresholds): about half are kept
    half = np.zeros((64, 64, 3), np.uint8)
    half[:, ::2] = round(255 * 2 * 0.015**0.5)
    kept = sample_patches(make_pair(half), 16, 200, np.random.default_rng(0), max_tries=1)
    assert 60 < len(kept) < 140


def test_patch_dataset_deterministic(sources: tuple[Path, Path], tmp_path: Path) -> None:
    photos, _ = sources
    prepare(tmp_path / "ds", photos=[photos], seed=0, progress=False)
    ds = PatchDataset(tmp_path / "ds", "train", patch_size=16, patches_per_image=3, seed=0)
    a = list(ds)
    b = list(PatchDataset(tmp_path / "ds", "train", patch_size=16, patches_per_image=3, seed=0))
    assert len(a) == len(ds) == 6
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    ds.set_epoch(1)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, list(ds)))
    assert len(list(PatchDataset(tmp_path / "ds", "train", patch_size=16, patches_per_image=3).shard(0, 2))) == 3
    with pytest.raises(RawFormatError):
        PatchDataset(tmp_path / "ds", "nosuchsplit")
