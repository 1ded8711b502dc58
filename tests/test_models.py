"""Tests of rawproof.models: metadata JSON validation, lookup of shipped models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _onnx_models import NipWeights, make_fan, make_nip, write_model
from rawproof.errors import ModelError
from rawproof.models import (
    ModelInfo,
    ModelKind,
    encode_metadata,
    file_sha256,
    find_model,
    list_models,
    load_model_info,
    models_dir,
)


@pytest.fixture()
def nip_path(tmp_path: Path) -> Path:
    return write_model(make_nip(NipWeights()), tmp_path / "tiny.onnx", {"name": "tiny", "kind": "nip", "receptive_field": 5})


def _edit_json(path: Path, **changes: object) -> None:
    j = path.with_suffix(".json")
    meta = json.loads(j.read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    j.write_text(json.dumps(meta))


class TestLoadModelInfo:
    def test_round_trip(self, nip_path: Path) -> None:
        info = load_model_info(nip_path)
        assert info.name == "tiny" and info.kind is ModelKind.NIP and info.receptive_field == 5
        assert info.sha256 == file_sha256(nip_path)
        assert info.path == nip_path.resolve() and info.size_multiple == 1 and info.classes == ()
        assert "sha256" not in info.metadata and info.metadata["config"] == {}

    def test_fan_classes(self, tmp_path: Path) -> None:
        p = write_model(make_fan(3), tmp_path / "fan.onnx", {"name": "fan", "kind": "fan", "classes": ["a", "b", "c"]})
        info = load_model_info(p)
        assert info.kind is ModelKind.FAN and info.classes == ("a", "b", "c") and info.receptive_field is None

    def test_missing_onnx(self, tmp_path: Path) -> None:
        with pytest.raises(ModelError, match="not found") as e:
            load_model_info(tmp_path / "none.onnx")
        assert e.value.path is not None

    def test_missing_json(self, nip_path: Path) -> None:
        nip_path.with_suffix(".json").unlink()
        with pytest.raises(ModelError, match="tiny.json not found"):
            load_model_info(nip_path)

    def test_malformed_json(self, nip_path: Path) -> None:
        nip_path.with_suffix(".json").write_text("{not json")
        with pytest.raises(ModelError, match="unreadable metadata"):
            load_model_info(nip_path)

    @pytest.mark.parametrize(
        ("change", "match"),
        [
            ({"metrics": None}, r"lacks keys \['metrics'\]"),
            ({"receptive_field": None}, r"lacks keys \['receptive_field'\]"),
            ({"sha256": None}, r"lacks keys \['sha256'\]"),
            ({"kind": "denoiser"}, "kind must be one of"),
            ({"receptive_field": 0}, "receptive_field must be an int in 1..4096"),
            ({"receptive_field": "5"}, "receptive_field must be an int in 1..4096"),
            ({"sha256": "ABC"}, "sha256 must be 64"),
            ({"size_multiple": 0}, "size_multiple must be an int in 1..256"),
        ],
    )
    def test_invalid_metadata(self, nip_path: Path, change: dict, match: str) -> None:
        _edit_json(nip_path, **change)
        with pytest.raises(ModelError, match=match):
            load_model_info(nip_path)

    def test_fan_without_classes(self, tmp_path: Path) -> None:
        p = write_model(make_fan(), tmp_path / "fan.onnx", {"name": "fan", "kind": "fan", "classes": []})
        with pytest.raises(ModelError, match="classes must be a non-empty list"):
            load_model_info(p)

    def test_wrong_suffix(self, tmp_path: Path) -> None:
        with pytest.raises(ModelError, match="end in .onnx"):
            load_model_info(tmp_path / "model.bin")


class TestFindModel:
    def test_no_model_shipped(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path))
        assert models_dir() == tmp_path
        with pytest.raises(ModelError, match="no shipped NIP model found in .*python -m rawproof_export"):
            find_model(None, ModelKind.NIP)

    def test_default_is_first_by_name_unless_marked(self, tmp_path: Path) -> None:
        for name in ("zeta", "alpha"):
            write_model(make_nip(NipWeights()), tmp_path / f"{name}.onnx", {"name": name, "kind": "nip", "receptive_field": 5})
        write_model(make_fan(), tmp_path / "fan.onnx", {"name": "fan", "kind": "fan", "classes": list("abcde")})
        assert [i.name for i in list_models("nip", tmp_path)] == ["alpha", "zeta"]
        assert [i.name for i in list_models(None, tmp_path)] == ["alpha", "fan", "zeta"]
        assert find_model(None, "nip", tmp_path).name == "alpha"
        assert find_model(None, "fan", tmp_path).name == "fan"
        _edit_json(tmp_path / "zeta.onnx", default=True)
        assert find_model(None, "nip", tmp_path).name == "zeta"

    def test_by_name_path_and_info(self, nip_path: Path) -> None:
        by_name = find_model("tiny", "nip", nip_path.parent)
        assert by_name == find_model(nip_path, "nip") == find_model(str(nip_path), "nip")
        assert find_model(by_name, "nip") is by_name
        assert isinstance(by_name, ModelInfo)

    def test_unknown_name(self, nip_path: Path) -> None:
        with pytest.raises(ModelError, match=r"no model named 'other'.*\['tiny'\]"):
            find_model("other", "nip", nip_path.parent)

    def test_wrong_kind(self, nip_path: Path) -> None:
        with pytest.raises(ModelError, match="expected a fan model, got a nip"):
            find_model(nip_path, "fan")

    def test_broken_model_in_folder_is_loud(self, nip_path: Path) -> None:
        (nip_path.parent / "orphan.onnx").write_bytes(b"x")
        with pytest.raises(ModelError, match="orphan.json not found"):
            list_models("nip", nip_path.parent)


def test_encode_metadata() -> None:
    enc = encode_metadata({"name": "n", "receptive_field": 5, "classes": ["a"], "config": {"b": 1, "a": 2}, "sha256": "x"})
    assert enc == {"name": "n", "receptive_field": "5", "classes": '["a"]', "config": '{"a": 2, "b": 1}'}


def test_shipped_models_are_valid() -> None:
    """Every model shipped in the package folder has valid metadata and an intact file."""
    folder = Path(__import__("rawproof").__file__).parent / "models"
    for info in list_models(None, folder):
        assert file_sha256(info.path) == info.sha256, info.path.name
