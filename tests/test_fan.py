"""FAN: parameter count (Korus & Memon), shapes, the Bayar-Stamm constraint, errors."""

from __future__ import annotations

import pytest
import torch

from rawproof_train._checks import ShapeError
from rawproof_train.fan import FAN, ConstrainedConv2d, project_constraints
from rawproof_train.nip import count_parameters


def _assert_constraint(conv: ConstrainedConv2d) -> None:
    w = conv.weight.detach()
    c = conv.kernel // 2
    torch.testing.assert_close(w[:, :, c, c], -torch.ones(w.shape[:2]))
    off_centre = w.sum(dim=(2, 3)) - w[:, :, c, c]
    torch.testing.assert_close(off_centre, torch.ones(w.shape[:2]), atol=1e-5, rtol=0)


def test_parameter_count() -> None:
    # 1.34 M for 5 classes (Korus & Memon).
    n = count_parameters(FAN(n_classes=5))
    assert abs(n - 1.34e6) <= 0.01 * 1.34e6, n


@pytest.mark.parametrize("hw", [(128, 128), (160, 144), (16, 16)])
def test_logits_shape(hw: tuple[int, int]) -> None:
    out = FAN(n_classes=5)(torch.rand(3, 3, *hw))
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


def test_logits_not_softmax() -> None:
    out = FAN(n_classes=5)(torch.rand(4, 3, 32, 32))
    assert not torch.allclose(out.sum(dim=1), torch.ones(4))


def test_constraint_at_init_and_after_step() -> None:
    torch.manual_seed(0)
    fan = FAN(n_classes=3)
    _assert_constraint(fan.residual)
    opt = torch.optim.SGD(fan.parameters(), lr=0.5)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    torch.nn.functional.cross_entropy(fan(x), y).backward()
    opt.step()
    c = fan.residual.kernel // 2
    assert not torch.allclose(fan.residual.weight[:, :, c, c], -torch.ones(3, 3))
    fan.project_constraints()
    _assert_constraint(fan.residual)


def test_project_constraints_walks_submodules() -> None:
    model = torch.nn.Sequential(torch.nn.Identity(), FAN(n_classes=2))
    with torch.no_grad():
        model[1].residual.weight.normal_()
    project_constraints(model)
    _assert_constraint(model[1].residual)


def test_degenerate_kernel_is_reset() -> None:
    conv = ConstrainedConv2d(1, 1, 3)
    with torch.no_grad():
        conv.weight.zero_()
    conv.project_()
    _assert_constraint(conv)


def test_residual_suppresses_flat_content() -> None:
    conv = ConstrainedConv2d()
    assert conv(torch.full((1, 3, 12, 12), 0.7)).abs().max() < 1e-4


def test_errors() -> None:
    with pytest.raises(ShapeError):
        FAN()(torch.rand(1, 4, 128, 128))
    with pytest.raises(ShapeError):
        FAN()(torch.rand(1, 3, 8, 128))
    with pytest.raises(ValueError):
        FAN(n_classes=1)
    with pytest.raises(ValueError):
        ConstrainedConv2d(kernel=4)


def test_onnx_export_matches_torch() -> None:
    import io

    import numpy as np
    import onnxruntime as ort

    fan = FAN(n_classes=5).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        fan, (torch.rand(1, 3, 128, 128),), buf, opset_version=17, input_names=["rgb"], output_names=["logits"],
        dynamic_axes={"rgb": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n"}}, dynamo=False,
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 128, 128), (1, 3, 144, 160)]:
        x = torch.rand(*shape)
        got = session.run(["logits"], {"rgb": x.numpy()})[0]
        np.testing.assert_allclose(got, fan(x).detach().numpy(), atol=1e-4, rtol=1e-4)
