"""Distribution channel: downscale + JPEG, torch vs libjpeg back ends, and end-to-end gradient flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rawproof_train._checks import ShapeError
from rawproof_train.channel import Channel, RandomChannel, channel, downscale, libjpeg_roundtrip
from rawproof_train.fan import FAN
from rawproof_train.jpeg import djpeg
from rawproof_train.manipulations import MANIPULATIONS, create_manipulation
from rawproof_train.nip import UNet


def _smooth(n: int = 2, h: int = 64, w: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, h // 8, w // 8, generator=g)
    return (0.1 + 0.8 * F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)).clamp(0, 1)


def test_downscale_is_box_average_at_2x() -> None:
    x = torch.rand(2, 3, 16, 12, dtype=torch.float64)
    torch.testing.assert_close(downscale(x, 2), F.avg_pool2d(x, 2))
    assert downscale(x, 1) is x


@pytest.mark.parametrize("factor", [2, 4])
def test_bilinear_downscale_matches_pillow(factor: int) -> None:
    from PIL import Image

    img = np.random.default_rng(factor).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize((64 // factor, 48 // factor), Image.Resampling.BILINEAR), dtype=np.float64)
    ours = downscale(torch.from_numpy(img).permute(2, 0, 1)[None].double(), factor, "bilinear")[0].permute(1, 2, 0).numpy()
    # Pillow works in 8-bit fixed point; the antialiased filter is the same.
    assert np.abs(ours - ref).max() <= 1.0
    assert np.abs(ours - img.reshape(48 // factor, factor, 64 // factor, factor, 3).mean(axis=(1, 3))).max() > 5.0


def test_random_channel_draws_every_combination_and_is_seeded() -> None:
    x = _smooth(1, 32, 32)
    rc = RandomChannel(qualities=[30, 90], subsamplings=["444", "420"], resizes=["box", "bilinear"], rounding="hard")
    fixed = [Channel(2, q, "hard", "torch", s, r)(x) for q in (30, 90) for s in ("444", "420") for r in ("box", "bilinear")]
    assert all(not torch.equal(a, b) for i, a in enumerate(fixed) for b in fixed[i + 1:])

    def draws() -> list[int]:
        torch.manual_seed(0)
        return [next(i for i, f in enumerate(fixed) if torch.equal(y, f)) for y in (rc(x) for _ in range(80))]

    drawn = draws()
    assert set(drawn) == set(range(8)) and draws() == drawn
    assert (rc.nominal.quality, rc.nominal.subsampling.value, rc.nominal.resize.value) == (30, "444", "box")
    with pytest.raises(ValueError):
        RandomChannel(qualities=[])
    with pytest.raises(ValueError):
        RandomChannel(resizes=["lanczos"])


@pytest.mark.parametrize("backend", ["torch", "libjpeg"])
@pytest.mark.parametrize("hw", [(64, 48), (34, 66)])
def test_shapes(backend: str, hw: tuple[int, int]) -> None:
    out = Channel(backend=backend)(torch.rand(2, 3, *hw))
    assert out.shape == (2, 3, hw[0] // 2, hw[1] // 2)
    assert out.min() >= 0 and out.max() <= 1


def test_torch_channel_is_downscale_then_djpeg() -> None:
    x = _smooth()
    torch.testing.assert_close(channel(x, 2, 50, "sin"), djpeg(F.avg_pool2d(x, 2), 50, "sin"))


@pytest.mark.parametrize("subsampling", ["444", "420"])
def test_torch_hard_close_to_libjpeg(subsampling: str) -> None:
    x = (_smooth() * 255).round() / 255
    ours = Channel(rounding="hard", subsampling=subsampling)(x)
    ref = Channel(backend="libjpeg", subsampling=subsampling)(x)
    # libjpeg's input is the downscaled image rounded to 8 bits; dJPEG's is not: allow for that.
    psnr = 10 * np.log10(1.0 / float(((ours - ref) ** 2).mean()))
    assert psnr > 35.0


def test_libjpeg_keeps_device_dtype_and_has_no_grad() -> None:
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    out = libjpeg_roundtrip(x, 50)
    assert out.dtype == torch.float64 and not out.requires_grad
    assert torch.allclose(out * 255, (out * 255).round())


def test_parameters_and_errors() -> None:
    ch = Channel(downscale=4, quality=70, rounding="soft", backend="torch", subsampling="420")
    assert ch(torch.rand(1, 3, 64, 64)).shape == (1, 3, 16, 16)
    assert "quality=70" in repr(ch)
    with pytest.raises(ValueError):
        Channel(backend="opencv")
    with pytest.raises(ValueError):
        Channel(downscale=0)
    with pytest.raises(ValueError):
        Channel(quality=0)
    with pytest.raises(ShapeError):
        channel(torch.rand(1, 1, 8, 8))


def test_module_equals_function() -> None:
    x = _smooth()
    torch.testing.assert_close(Channel(quality=30, rounding="soft")(x), channel(x, 2, 30, "soft"))


@pytest.mark.parametrize("name", list(MANIPULATIONS))
def test_gradient_reaches_nip_first_layer(name: str) -> None:
    """loss(FAN(channel(manipulation(NIP(rggb))))) back-propagates into the NIP's first conv."""
    torch.manual_seed(0)
    nip, fan = UNet(base_filters=4), FAN(n_classes=len(MANIPULATIONS))
    rggb = torch.rand(2, 4, 32, 32)
    rgb = nip(rggb).clamp(0, 1)
    logits = fan(Channel()(create_manipulation(name)(rgb)))
    F.cross_entropy(logits, torch.full((2,), list(MANIPULATIONS).index(name))).backward()
    grad = nip.encoders[0][0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_straight_through_backend_is_real_libjpeg_forward_and_identity_backward() -> None:
    x = _smooth(2, 64, 48).requires_grad_()
    y = channel(x, 2, 50, backend="libjpeg-st")
    small = downscale(x.detach(), 2)
    torch.testing.assert_close(y.detach(), libjpeg_roundtrip(small, 50), atol=1e-6, rtol=0)
    w = torch.rand_like(y)
    (y * w).sum().backward()
    # the gradient is the downscale's alone: d/dx sum(w * avgpool(x)) = w / 4 spread over each 2x2 block
    torch.testing.assert_close(x.grad, w.repeat_interleave(2, 2).repeat_interleave(2, 3) / 4)
    none = channel(x.detach(), 2, 50, backend="none")
    torch.testing.assert_close(none, small)


def test_random_channel_draws_backends() -> None:
    x = _smooth(1, 32, 32)
    rc = RandomChannel(qualities=[50], backends=["libjpeg-st", "none"], rounding="hard")
    assert rc.nominal.backend.value == "libjpeg-st" and "backends=['libjpeg-st', 'none']" in repr(rc)
    torch.manual_seed(0)
    outs = [rc(x) for _ in range(20)]
    assert any(torch.equal(o, downscale(x, 2)) for o in outs) and any(not torch.equal(o, downscale(x, 2)) for o in outs)
    with pytest.raises(ValueError):
        RandomChannel(backends=[])
