"""Tests of rawproof_export: ONNX export, checker, metadata, parity through the SDK runtime, CLI.

Parity is against the torch model itself; the real NIP architectures (small configurations)
and the FAN are exported too, and tiled inference of the exported NIPs is checked against
whole-frame inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="export needs the [train] extra (torch)")

from rawproof.errors import ModelError  # noqa: E402
from rawproof.models import file_sha256, load_model_info  # noqa: E402
from rawproof.runtime import Session, clear_session_cache  # noqa: E402
from rawproof.tiling import run_nip  # noqa: E402
from rawproof_export.cli import main as cli_main  # noqa: E402
from rawproof_export.onnx_export import ExportError, export_model, load_checkpoint  # noqa: E402
from rawproof_train import fan as fan_mod  # noqa: E402
from rawproof_train import nip as nip_mod  # noqa: E402

CLASSES = ["native", "sharpen", "gaussian", "jpeg", "resample"]


class TinyNip(torch.nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> PixelShuffle: stack radius 2, R = 5 output pixels."""

    receptive_field = 5

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_shuffle(self.b(torch.relu(self.a(x))), 2)


class TinyFan(torch.nn.Module):
    def __init__(self, n: int = 5) -> None:
        super().__init__()
        self.c = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c(x)).mean(dim=(2, 3)))


class ExportOnlyDiffers(TinyNip):
    """Behaves differently while being exported: parity must catch it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y + 0.01 if torch.onnx.is_in_onnx_export() else y


@pytest.fixture(autouse=True, scope="module")
def _fresh_cache():
    yield
    clear_session_cache()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    module = TinyNip().eval()
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    rep = export_model(module, "nip", out, {"trained_on": "sha256:abc", "metrics": {"psnr_db": 1.5}})
    return module, rep


class TestExportModel:
    def test_checker_dims_and_opset(self, tiny_export) -> None:
        _, rep = tiny_export
        model = onnx.load(str(rep.path))
        onnx.checker.check_model(model, full_check=True)
        (inp,), (out,) = model.graph.input, model.graph.output
        assert inp.name == "rggb" and out.name == "rgb"
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 4, "h", "w"]
        opset = {o.domain: o.version for o in model.opset_import}[""]
        assert opset == rep.opset >= 17
        assert rep.exporter == "dynamo"

    def test_metadata_round_trip(self, tiny_export) -> None:
        _, rep = tiny_export
        meta = json.loads(rep.path.with_suffix(".json").read_text())
        assert meta["sha256"] == file_sha256(rep.path) == rep.sha256
        props = {p.key: p.value for p in onnx.load(str(rep.path)).metadata_props}
        assert "sha256" not in props
        assert set(props) == set(meta) - {"sha256"}
        assert props["name"] == "tiny" and props["kind"] == "nip" and props["receptive_field"] == "5"
        assert json.loads(props["metrics"]) == {"psnr_db": 1.5} and props["trained_on"] == "sha256:abc"
        for key in ("architecture", "input_layout", "config", "git_commit"):
            assert key in props
        info = load_model_info(rep.path)
        assert info.receptive_field == 5 and info.architecture == "TinyNip"

    def test_parity(self, tiny_export) -> None:
        module, rep = tiny_export
        assert rep.max_abs_diff <= 1e-4
        shapes = {c.shape for c in rep.parity}
        assert {(1, 4, 64, 64), (1, 4, 96, 160), (2, 4, 48, 80)} <= shapes
        assert {c.label for c in rep.parity} == {"random", "scene"}
        assert json.loads(rep.path.with_suffix(".json").read_text())["parity_max_abs_diff"] <= 1e-4
        # Independent re-check at a size the export never saw.
        x = np.random.default_rng(9).random((1, 4, 37, 53), dtype=np.float32)
        with Session(load_model_info(rep.path)) as s:
            got = s.run(x)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        assert np.abs(got - ref).max() <= 1e-4

    def test_fp16_variant(self, tmp_path: Path) -> None:
        torch.manual_seed(0)
        rep = export_model(TinyNip(), "nip", tmp_path / "tiny.onnx", {}, fp16=True, exporter="torchscript")
        assert rep.fp16_path == rep.path.with_name("tiny_fp16.onnx")
        meta = json.loads(rep.fp16_path.with_suffix(".json").read_text())
        assert meta["precision"] == "fp16" and meta["name"] == "tiny_fp16"
        assert meta["parity_max_abs_diff"] == rep.fp16_max_abs_diff
        # fp16 compute really happened: error well above fp32 rounding, below the sanity bound.
        assert 1e-5 < rep.fp16_max_abs_diff < 2e-2
        with Session(load_model_info(rep.fp16_path)) as s:
            assert s.run(np.zeros((1, 4, 8, 8), np.float32)).dtype == np.float32

    def test_torchscript_exporter(self, tmp_path: Path) -> None:
        rep = export_model(TinyNip(), "nip", tmp_path / "ts.onnx", {}, exporter="torchscript", opset=17)
        assert rep.exporter == "torchscript" and rep.opset == 17 and rep.max_abs_diff <= 1e-4

    def test_fan(self, tmp_path: Path) -> None:
        rep = export_model(TinyFan(), "fan", tmp_path / "fan.onnx", {"classes": CLASSES}, exporter="torchscript")
        assert rep.max_abs_diff <= 1e-4
        info = load_model_info(rep.path)
        assert info.classes == tuple(CLASSES)
        with Session(info) as s:
            assert s.run(np.zeros((2, 3, 128, 128), np.float32)).shape == (2, 5)

    def test_parity_failure_leaves_nothing(self, tmp_path: Path) -> None:
        out = tmp_path / "bad.onnx"
        with pytest.raises(ExportError, match="parity failed"):
            export_model(ExportOnlyDiffers(), "nip", out, {}, exporter="torchscript")
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize(
        ("kind", "module", "meta", "kw", "match"),
        [
            ("nip", "no_rf", {}, {}, "receptive_field"),
            ("fan", "fan", {}, {}, "classes"),
            ("nip", "tiny", {}, {"opset": 16}, "opset must be >= 17"),
            ("nip", "tiny", {}, {"exporter": "magic"}, "exporter must be"),
            ("nip", "tiny", {"config": {"x": object()}}, {}, "JSON-serialisable"),
        ],
    )
    def test_bad_requests(self, tmp_path: Path, kind: str, module: str, meta: dict, kw: dict, match: str) -> None:
        m = {"no_rf": torch.nn.Sequential(torch.nn.Conv2d(4, 12, 1), torch.nn.PixelShuffle(2)), "fan": TinyFan(), "tiny": TinyNip()}[module]
        with pytest.raises(ExportError, match=match):
            export_model(m, kind, tmp_path / "m.onnx", meta, **kw)

    def test_wrong_suffix(self, tmp_path: Path) -> None:
        with pytest.raises(ExportError, match=".onnx"):
            export_model(TinyNip(), "nip", tmp_path / "m.bin", {})


# Small configurations of each real architecture: the same code paths (pads, pools, skips), fast.
SMALL = {"INet": {}, "UNet": {"base_filters": 4}, "DNet": {"n_layers": 4, "n_features": 8}, "INetPlus": {"base_filters": 2}}


def test_small_configs_cover_every_nip() -> None:
    assert set(SMALL) == set(nip_mod.NIPS)


@pytest.fixture(scope="module", params=sorted(SMALL))
def real_nip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(1)
    module = nip_mod.create_nip(request.param, **SMALL[request.param]).eval()
    # Random init leaves some outputs near-constant; perturb weights so parity means something.
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rep = export_model(module, "nip", tmp_path_factory.mktemp("real") / f"{request.param.lower()}.onnx", {})
    return module, rep


class TestRealModels:
    def test_nip_parity(self, real_nip) -> None:
        module, rep = real_nip
        assert rep.max_abs_diff <= 1e-4, rep.parity
        assert load_model_info(rep.path).receptive_field == module.receptive_field

    def test_nip_tiled_equals_whole(self, real_nip) -> None:
        module, rep = real_nip
        info = load_model_info(rep.path)
        rng = np.random.default_rng(2)
        side = 2 * (-(-info.receptive_field // 2) + 1) + 96  # frame larger than tile + margins
        stack = rng.random((4, side + 6, side + 21), dtype=np.float32)
        with Session(info) as s:
            tiled = run_nip(s, stack, tile=48)
            whole = run_nip(s, stack, tile=0)
        assert tiled.tiles > 4
        assert np.abs(tiled.rgb.astype(np.int16) - whole.rgb).max() <= 1

    def test_fan_parity(self, tmp_path: Path) -> None:
        torch.manual_seed(3)
        fan = fan_mod.FAN(n_classes=5, n_filters=8).eval()  # the real architecture, narrower
        rep = export_model(fan, "fan", tmp_path / "fan.onnx", {"classes": CLASSES})
        assert rep.max_abs_diff <= 1e-4, rep.parity
        assert (1, 3, 128, 128) in {c.shape for c in rep.parity}


class TestCheckpointCli:
    def _save(self, path: Path, **over: object) -> Path:
        module = nip_mod.create_nip("INet")
        ckpt = {"arch": "INet", "kind": "nip", "state_dict": module.state_dict(), "config": {"lr": 1e-3},
                "classes": [], "metrics": {"psnr_db": 30.0}, "trained_on": "sha256:feed", **over}
        torch.save(ckpt, path)
        return path

    def test_cli_exports_checkpoint(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        ck = self._save(tmp_path / "inet.pt")
        out = tmp_path / "models" / "inet.onnx"
        rc = cli_main(["--kind", "nip", "--arch", "INet", "--checkpoint", str(ck), "--out", str(out),
                       "--metadata", "default=true", "note=hello", "--json"])
        assert rc == 0
        rep = json.loads(capsys.readouterr().out)
        assert rep["max_abs_diff"] <= 1e-4 and rep["sha256"] == file_sha256(out)
        info = load_model_info(out)
        assert info.is_default and info.architecture == "INet" and info.metadata["note"] == "hello"
        assert info.metadata["metrics"] == {"psnr_db": 30.0} and info.metadata["config"] == {"lr": 1e-3}
        assert info.metadata["trained_on"] == "sha256:feed"

    def test_cli_arch_mismatch(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        ck = self._save(tmp_path / "inet.pt")
        rc = cli_main(["--kind", "nip", "--arch", "UNet", "--checkpoint", str(ck), "--out", str(tmp_path / "x.onnx")])
        assert rc == 3 and "checkpoint is INet" in capsys.readouterr().err

    def test_bad_checkpoint(self, tmp_path: Path) -> None:
        torch.save({"kind": "nip"}, tmp_path / "c.pt")
        with pytest.raises(ExportError, match="lacks keys"):
            load_checkpoint(tmp_path / "c.pt")
        (tmp_path / "d.pt").write_bytes(b"junk")
        with pytest.raises(ExportError, match="cannot load"):
            load_checkpoint(tmp_path / "d.pt")

    def test_tampered_export_is_rejected(self, tmp_path: Path) -> None:
        rep = export_model(TinyNip(), "nip", tmp_path / "t.onnx", {}, exporter="torchscript")
        data = bytearray(rep.path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        rep.path.write_bytes(bytes(data))
        with pytest.raises(ModelError, match="sha256 mismatch"):
            Session(load_model_info(rep.path))
