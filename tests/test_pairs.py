"""Model pairs: export as one unit, tiers, develop() records both, verify() refuses a FAN of another NIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _onnx_models import NipWeights, make_fan, make_nip, write_model

from rawproof import cli
from rawproof.develop import develop
from rawproof.errors import ModelError
from rawproof.keygen import generate_test_pki
from rawproof.models import encode_metadata, file_sha256, load_model_info, rewrite_metadata
from rawproof.pairs import choose_nip, list_pairs, pairing_mismatch, tier_for_provider
from rawproof.provenance import Signer
from rawproof.raw import CFA, RawFrame
from rawproof.verify import Verdict, verify
from rawproof_export.onnx_export import ExportError
from rawproof_export.pair import pair_exported, trained_channel_from_config

CLASSES = ["native", "sharpen", "gaussian", "jpeg", "resample"]


def _raw_models(d: Path, seed: int) -> tuple[Path, Path]:
    """An exported-looking NIP and FAN (no pair yet), as single-model export writes them."""
    nip = write_model(make_nip(NipWeights(seed)), d / f"n{seed}.onnx",
                      {"name": f"n{seed}", "kind": "nip", "receptive_field": 5, "classes": []})
    fan = write_model(make_fan(5, seed), d / f"f{seed}.onnx",
                      {"name": f"f{seed}", "kind": "fan", "classes": CLASSES,
                       "config": {"patch": 64, "downscale": 2, "quality": [50, 60], "subsampling": 444, "resize": "box"}})
    return nip, fan


@pytest.fixture()
def two_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Folder ``shipped`` (pair ``a``, tier cpu) as RAWPROOF_MODELS and a vendor folder (pair ``b``, tier full)."""
    shipped, vendor, src = tmp_path / "shipped", tmp_path / "vendor", tmp_path / "src"
    src.mkdir()
    n0, f0 = _raw_models(src, 0)
    n1, f1 = _raw_models(src, 1)
    pair_exported(n0, f0, shipped, name="a", tier="cpu", default=True)
    pair_exported(n1, f1, vendor, name="b", tier="full")
    monkeypatch.setenv("RAWPROOF_MODELS", str(shipped))
    return shipped, vendor


def _frame(seed: int = 0) -> RawFrame:
    rng = np.random.default_rng(seed)
    mosaic = rng.integers(64, 4000, (64, 96)).astype(np.uint16)
    return RawFrame(mosaic=mosaic, cfa=CFA.RGGB, black=64, white=4095, wb=(2.0, 1.0, 1.0, 1.5), camera="Test Cam")


class TestPairExport:
    def test_each_names_the_other_by_sha256_and_facts_are_carried(self, two_pairs: tuple[Path, Path]) -> None:
        shipped, _ = two_pairs
        nip, fan = load_model_info(shipped / "a.onnx"), load_model_info(shipped / "fan_a.onnx")
        assert nip.paired == {"kind": "fan", "name": "fan_a", "sha256": file_sha256(shipped / "fan_a.onnx")}
        assert fan.paired == {"kind": "nip", "name": "a", "sha256": file_sha256(shipped / "a.onnx")}
        assert nip.tier == fan.tier == "cpu" and nip.metadata["pair"] == fan.metadata["pair"] == "a"
        # patch size = NIP patch / downscale of the training config; the channel with its drawn qualities
        assert fan.metadata["patch_size"] == 32 and "(32 x 32 patches)" in fan.metadata["input_layout"]
        assert fan.metadata["trained_channel"] == nip.metadata["trained_channel"] == {
            "downscale": 2, "jpeg_quality": 50, "jpeg_qualities": [50, 60], "subsampling": ["444"], "resize": ["box"]}
        assert "linear sRGB primaries" in nip.metadata["input_layout"]
        # ``paired`` is in the JSON only (it depends on the file's own bytes); everything else is in both
        import onnx

        props = {p.key: p.value for p in onnx.load(str(nip.path)).metadata_props}
        assert "paired" not in props and props == encode_metadata(nip.metadata)

    def test_wrong_inputs_are_refused(self, tmp_path: Path) -> None:
        n, f = _raw_models(tmp_path, 0)
        with pytest.raises(ExportError, match="expected a NIP and a FAN"):
            pair_exported(f, n, tmp_path / "o", name="x", tier="cpu")
        with pytest.raises(ExportError, match="tier must be"):
            pair_exported(n, f, tmp_path / "o", name="x", tier="gpu")
        with pytest.raises(ExportError, match="plain file stem"):
            pair_exported(n, f, tmp_path / "o", name="../x", tier="cpu")
        bare = write_model(make_fan(5, 2), tmp_path / "bare.onnx", {"name": "bare", "kind": "fan", "classes": CLASSES})
        with pytest.raises(ExportError, match="downscale/quality"):
            pair_exported(n, bare, tmp_path / "o", name="x", tier="cpu")
        assert trained_channel_from_config({"downscale": 2, "quality": 50}) == {"downscale": 2, "jpeg_quality": 50, "subsampling": ["444"]}

    def test_rewriting_a_member_keeps_the_pair_linked(self, two_pairs: tuple[Path, Path]) -> None:
        shipped, _ = two_pairs
        old = file_sha256(shipped / "fan_a.onnx")
        info = rewrite_metadata(shipped / "fan_a.onnx", {"calibration": {"temperature": 2.0}})
        assert info.sha256 != old and info.metadata["calibration"] == {"temperature": 2.0}
        assert load_model_info(shipped / "a.onnx").paired["sha256"] == info.sha256
        assert [p.name for p in list_pairs()] == ["a"]

    def test_a_broken_link_is_not_a_pair(self, two_pairs: tuple[Path, Path]) -> None:
        shipped, _ = two_pairs
        js = shipped / "a.json"
        meta = json.loads(js.read_text())
        meta["paired"]["sha256"] = "0" * 64
        js.write_text(json.dumps(meta))
        assert list_pairs() == []
        meta["paired"] = {"kind": "nip", "name": "x", "sha256": "0" * 64}
        js.write_text(json.dumps(meta))
        with pytest.raises(ModelError, match="paired must be"):
            load_model_info(shipped / "a.onnx")

    def test_shipped_models_are_a_cpu_pair(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("RAWPROOF_MODELS", raising=False)
        pairs = list_pairs()
        assert [(p.name, p.tier, p.nip.name, p.fan.name) for p in pairs] == [("inetplus_joint", "cpu", "inetplus_joint", "fan_inetplus_joint")]
        assert pairs[0].fan.metadata["patch_size"] == 64


class TestTiers:
    def test_provider_picks_the_tier(self, two_pairs: tuple[Path, Path]) -> None:
        shipped, vendor = two_pairs
        assert tier_for_provider("CPUExecutionProvider") == "cpu"
        assert tier_for_provider("CUDAExecutionProvider") == tier_for_provider("TensorrtExecutionProvider") == "full"
        assert choose_nip(None, "CPUExecutionProvider", vendor).name == "a"
        assert choose_nip(None, "CUDAExecutionProvider", vendor).name == "b"
        assert choose_nip("full", "CPUExecutionProvider", vendor).name == "b"
        # one tier installed: it is used whatever the provider
        assert choose_nip(None, "CUDAExecutionProvider").name == "a"
        with pytest.raises(ModelError, match="no full pair installed"):
            choose_nip("full", "CPUExecutionProvider")
        with pytest.raises(ValueError, match="tier must be"):
            choose_nip("fast", "CPUExecutionProvider")
        with pytest.raises(ModelError, match="models folder not found"):
            choose_nip(None, "CPUExecutionProvider", vendor / "typo")

    def test_the_callers_folder_wins_within_a_tier(self, two_pairs: tuple[Path, Path], tmp_path: Path) -> None:
        n, f = _raw_models(tmp_path, 2)
        pair_exported(n, f, tmp_path / "v2", name="c", tier="cpu")
        assert choose_nip(None, "CPUExecutionProvider", tmp_path / "v2").name == "c"
        assert choose_nip(None, "CPUExecutionProvider").name == "a"

    def test_develop_records_the_pair_and_its_tier(self, two_pairs: tuple[Path, Path], tmp_path: Path) -> None:
        shipped, vendor = two_pairs
        pki = generate_test_pki(tmp_path / "pki", alg="es256")
        with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
            res = develop(_frame(), tier="full", models_dir=vendor, signer=signer, fmt="png")
        assert res.model_name == "b" and res.capture.develop["tier"] == "full"
        assert res.capture.fan.name == "fan_b" and res.capture.fan.sha256 == file_sha256(vendor / "fan_b.onnx")


class TestVerifyPairing:
    @pytest.fixture()
    def signed_b(self, two_pairs: tuple[Path, Path], tmp_path: Path) -> tuple[bytes, Path, Path]:
        _, vendor = two_pairs
        pki = generate_test_pki(tmp_path / "pki", alg="es256")
        with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
            res = develop(_frame(), model="b", models_dir=vendor, signer=signer, fmt="png")
        return res.signed, pki.root_cert, vendor

    def test_the_manifests_fan_is_found_in_the_models_folder(self, signed_b: tuple[bytes, Path, Path]) -> None:
        data, root, vendor = signed_b
        r = verify(data, device_anchors=root, models_dir=vendor)
        assert r.forensics.available and r.forensics.fan_name == "fan_b" and r.forensics.fan_source == "manifest"
        assert r.verdict in (Verdict.AUTHENTIC, Verdict.MANIPULATED)  # an untrained toy FAN: the traces may read either way

    @pytest.mark.parametrize("how", ["explicit", "default"])
    def test_a_fan_of_another_nip_does_not_read_the_traces(self, signed_b: tuple[bytes, Path, Path], how: str) -> None:
        data, root, vendor = signed_b
        r = verify(data, device_anchors=root, fan="fan_a") if how == "explicit" else verify(data, device_anchors=root)
        assert r.verdict is Verdict.AUTHENTIC and r.exit_code == 0  # the signature still vouches; never MANIPULATED
        assert not r.forensics.available and r.forensics.fan_name == "fan_a"
        assert r.forensics.reason.startswith("traces not read (inconclusive): FAN fan_a is paired with NIP a")
        assert "developed by NIP b" in r.forensics.reason and r.forensics.reason in r.summary
        if how == "default":
            assert "the FAN named in the manifest (fan_b" in r.forensics.reason

    def test_after_recalibration_the_pairs_fan_is_still_found(self, signed_b: tuple[bytes, Path, Path]) -> None:
        data, root, vendor = signed_b
        rewrite_metadata(vendor / "fan_b.onnx", {"calibration": {"temperature": 1.5}})
        r = verify(data, device_anchors=root, models_dir=vendor)
        assert r.forensics.available and r.forensics.fan_name == "fan_b" and r.forensics.fan_source == "pair"

    def test_pairing_mismatch_rules(self, two_pairs: tuple[Path, Path]) -> None:
        shipped, _ = two_pairs
        fan = load_model_info(shipped / "fan_a.onnx")
        nip = load_model_info(shipped / "a.onnx")
        assert pairing_mismatch(fan, {"name": "a", "sha256": nip.sha256}) is None
        assert pairing_mismatch(fan, None) is None  # no capture: nothing names a NIP
        assert "paired with NIP a" in pairing_mismatch(fan, {"name": "z", "sha256": "e" * 64})


def test_models_cli_lists_pairs(two_pairs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _, vendor = two_pairs
    assert cli.main(["models", "--models", str(vendor), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["tier"], p["fan"]["name"]) for p in doc["pairs"]] == [("b", "full", "fan_b"), ("a", "cpu", "fan_a")]
    assert doc["pairs"][1]["nip"]["default"] is True and doc["pairs"][0]["patch_size"] == 32
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("a (default): tier cpu, NIP a [") and "FAN fan_a" in out


def test_single_fan_export_carries_patch_size_and_channel_from_its_config(tmp_path: Path) -> None:
    """Export drops no facts: without --metadata patch_size, the FAN's view comes from its run's config."""
    import torch

    from rawproof_export.onnx_export import export_checkpoint
    from rawproof_train.fan import FAN

    ck = tmp_path / "fan.pt"
    torch.save({"arch": "fan", "kind": "fan", "state_dict": FAN(n_classes=5).state_dict(), "classes": CLASSES,
                "config": {"patch": 128, "downscale": 2, "quality": 50, "subsampling": "444"}}, ck)
    rep = export_checkpoint(ck, tmp_path / "f.onnx", exporter="torchscript")
    meta = load_model_info(rep.path).metadata
    assert meta["patch_size"] == 64 and meta["trained_channel"] == {"downscale": 2, "jpeg_quality": 50, "subsampling": ["444"]}
    assert "(64 x 64 patches)" in meta["input_layout"]


def test_pair_from_checkpoints_fp16(tmp_path: Path) -> None:
    """``--fp16`` (a full pair): both members are the float16 exports, parity-checked, named and linked as the pair."""
    import torch

    from rawproof_export.pair import export_pair
    from rawproof_train.fan import FAN
    from rawproof_train.nip import create_nip

    cfg = {"patch": 64, "downscale": 2, "quality": 50}
    torch.save({"arch": "INet", "kind": "nip", "state_dict": create_nip("INet").state_dict(), "config": cfg}, tmp_path / "nip.pt")
    torch.save({"arch": "fan", "kind": "fan", "state_dict": FAN(n_classes=5).state_dict(), "classes": CLASSES, "config": cfg},
               tmp_path / "fan.pt")
    rep = export_pair(tmp_path / "nip.pt", tmp_path / "fan.pt", tmp_path / "out", name="g", tier="full", default=True,
                      fp16=True, exporter="torchscript")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.onnx")) == ["fan_g.onnx", "g.onnx"]
    for info in (rep.nip, rep.fan):
        assert info.metadata["precision"] == "fp16" and info.is_default and info.tier == "full"
        assert 0 < info.metadata["parity_max_abs_diff"] <= 2e-2
    assert rep.nip.name == "g" and rep.fan.name == "fan_g" and rep.fan.metadata["patch_size"] == 32
    assert [(p.name, p.tier) for p in list_pairs(tmp_path / "out") if p.name == "g"] == [("g", "full")]
