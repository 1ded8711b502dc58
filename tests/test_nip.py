"""NIPs: parameter counts (Korus & Memon), shapes, receptive field (empirical), ONNX export (onnxruntime)."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from rawproof_train._checks import ShapeError
from rawproof_train.nip import NIPS, DNet, INet, INetPlus, UNet, count_parameters, create_nip, srgb_oetf

# Parameter counts reported by Korus & Memon (CVPR 2019, Table 1).
PAPER_PARAMETERS = {"INet": 321, "UNet": 7.76e6, "DNet": 0.49e6}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_parameter_count_matches_paper(name: str) -> None:
    n = count_parameters(create_nip(name))
    assert abs(n - PAPER_PARAMETERS[name]) <= 0.01 * PAPER_PARAMETERS[name], n


def _small(name: str) -> nn.Module:
    return {"INet": INet(), "UNet": UNet(base_filters=2), "DNet": DNet(n_layers=4, n_features=8),
            "INetPlus": INetPlus(base_filters=2)}[name]


def test_inetplus_starts_as_its_inet() -> None:
    torch.manual_seed(0)
    inet = INet()
    with torch.no_grad():
        for p in inet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    plus = INetPlus.from_inet(inet)
    x = torch.rand(2, 4, 20, 36)
    torch.testing.assert_close(plus(x), inet(x), rtol=0, atol=0)
    assert count_parameters(plus) == count_parameters(INet()) + count_parameters(UNet(base_filters=8))
    assert plus.receptive_field == UNet().receptive_field
    # the residual learns: its zero head still receives gradient
    plus(x).square().mean().backward()
    assert plus.residual.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(NIPS))
@pytest.mark.parametrize("hw", [(2, 2), (6, 10), (18, 22), (34, 14), (16, 48)])
def test_shapes(name: str, hw: tuple[int, int]) -> None:
    model = create_nip(name) if name != "UNet" else UNet(base_filters=8)
    out = model(torch.rand(2, 4, *hw))
    assert out.shape == (2, 3, 2 * hw[0], 2 * hw[1])
    assert out.dtype == torch.float32


def test_float64() -> None:
    model = INet().double()
    assert model(torch.rand(1, 4, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_errors() -> None:
    with pytest.raises(ShapeError) as info:
        INet()(torch.rand(1, 3, 8, 8))
    assert info.value.expected_shape == ("N", "4", "H", "W")
    assert info.value.actual_shape == (1, 3, 8, 8)
    with pytest.raises(ShapeError):
        UNet(base_filters=4)(torch.rand(4, 8, 8))
    with pytest.raises(ValueError):
        create_nip("ResNet")
    with pytest.raises(ValueError):
        INet(kernel=4)
    with pytest.raises(ValueError):
        DNet(n_layers=0)


def test_create_nip_case_insensitive() -> None:
    assert isinstance(create_nip("unet", base_filters=4), UNet)


def test_inet_starts_as_classic_pipeline() -> None:
    """Init: a flat grey linear input develops to the sRGB-encoded grey (reference: IEC 61966-2-1 curve)."""
    for level in (0.05, 0.18, 0.5, 0.9):
        out = INet()(torch.full((1, 4, 8, 8), level))
        np.testing.assert_allclose(out[0, :, 4:12, 4:12].detach().numpy(), srgb_oetf(level), atol=0.03)
    assert not INet().scatter.weight.requires_grad


def _empirical_radius(model: nn.Module, size: int, y: int) -> int:
    """Largest |2i - y| over input rows/cols i with a non-zero gradient of output pixel (y, y)."""
    x = torch.rand(1, 4, size, size, dtype=torch.float64, requires_grad=True)
    model(x)[0, :, y, y].sum().backward()
    nz = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(nz.any(dim=1)).flatten()
    cols = torch.nonzero(nz.any(dim=0)).flatten()
    idx = torch.cat([rows, cols])
    return int((2 * idx - y).abs().max())


@pytest.mark.parametrize("name", sorted(NIPS))
def test_receptive_field_empirical(name: str) -> None:
    torch.manual_seed(0)
    model = _small(name).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    r = model.receptive_field
    size = r + 24 + (-(r + 24)) % 16
    measured = max(_empirical_radius(model, size, size + dy) for dy in (0, 17))
    assert measured <= r
    # The analysis is tight for INet; max-pooling routes gradients through one input of four, and
    # ReLUs switch some paths off, so allow slack for the deep models.
    assert measured >= (r if name == "INet" else int(0.8 * r))


def test_receptive_field_values() -> None:
    assert INet().receptive_field == 3
    assert DNet().receptive_field == 2 * 15 + 2
    assert UNet().receptive_field == UNet(base_filters=4).receptive_field


@pytest.mark.parametrize("name", sorted(NIPS))
def test_onnx_export_matches_torch(name: str) -> None:
    model = _small(name).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.rand(1, 4, 16, 16),),
        buf,
        opset_version=17,
        input_names=["rggb"],
        output_names=["rgb"],
        dynamic_axes={"rggb": {0: "n", 2: "h", 3: "w"}, "rgb": {0: "n", 2: "h2", 3: "w2"}},
        dynamo=False,
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, 4, 16, 16), (2, 4, 22, 34)]:
        x = torch.rand(*shape)
        got = session.run(["rgb"], {"rggb": x.numpy()})[0]
        np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)


def test_check_shape_patterns() -> None:
    """The shared helper every op uses (rawproof_train._checks)."""
    from rawproof_train._checks import check_shape

    assert check_shape(torch.zeros(2, 4, 8, 6), ["N", "4", "H", "W"]) == {"N": 2, "H": 8, "W": 6}
    assert check_shape(torch.zeros(5, 2, 8, 8), ["*", "H", "H"]) == {"H": 8}
    with pytest.raises(ShapeError):
        check_shape(torch.zeros(2, 8, 6), ["*", "C", "H", "W", "X"])
    with pytest.raises(ShapeError):
        check_shape(torch.zeros(8, 6), ["H", "H"])
    with pytest.raises(TypeError):
        check_shape(np.zeros((1, 4, 2, 2)), ["N", "4", "H", "W"])  # type: ignore[arg-type]
