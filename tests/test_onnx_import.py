"""Shipped ONNX -> training checkpoint: exact weights back, refusals for foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rawproof_export.onnx_export import export_model  # noqa: E402
from rawproof_train.fan import FAN  # noqa: E402
from rawproof_train.nip import INetPlus  # noqa: E402
from rawproof_train.onnx_import import checkpoint_from_onnx  # noqa: E402


def test_nip_and_fan_weights_come_back_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    nip = INetPlus(base_filters=4)
    for p in nip.residual.parameters():  # a non-zero residual, so every tensor matters
        p.data.normal_(0, 0.05)
    export_model(nip.eval(), "nip", tmp_path / "n.onnx", {"name": "n", "architecture": "inetplus", "config": {"nip_width": 4}})
    ckpt = checkpoint_from_onnx(tmp_path / "n.onnx")
    assert ckpt["kind"] == "nip" and ckpt["arch"] == "inetplus" and ckpt["arch_kwargs"] == {"base_filters": 4}
    for k, v in nip.state_dict().items():
        torch.testing.assert_close(ckpt["state_dict"][k], v, rtol=0, atol=0)

    fan = FAN(n_classes=3).eval()
    export_model(fan, "fan", tmp_path / "f.onnx", {"name": "f", "architecture": "fan", "classes": ["a", "b", "c"]})
    ckpt = checkpoint_from_onnx(tmp_path / "f.onnx")
    assert ckpt["classes"] == ["a", "b", "c"]
    rebuilt = FAN(n_classes=3)
    rebuilt.load_state_dict(ckpt["state_dict"])
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(rebuilt.eval()(x), fan(x))


def test_a_file_without_the_exporters_metadata_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(ValueError, match="not a rawproof export"):
        checkpoint_from_onnx(tmp_path / "plain.onnx")
