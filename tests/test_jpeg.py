"""dJPEG against Pillow's libjpeg (reference decoder, reference quantisation tables) and scipy's DCT."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from rawproof_train._checks import ShapeError
from rawproof_train.jpeg import (
    DJPEG,
    block_dct,
    block_idct,
    djpeg,
    fancy_upsample,
    jpeg_coefficients,
    quality_qtable,
    round_approx,
)
from rawproof_train.jpeg_report import compare_image, image_blocks, pillow_jpeg, read_jpeg_coefficients

QUALITIES = (30, 50, 80, 95)
SUBSAMPLINGS = ("444", "420")


def _synthetic(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth gradients, a few edges and mild noise: exercises every DCT frequency."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 90 * np.sin(xx / 9.0), 128 + 80 * np.cos(yy / 7.0 + xx / 13.0), 60 + 120 * (xx > w / 2) * (yy > h / 3)], axis=-1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def _to_tensor(img: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0).to(dtype) / 255.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


class TestTables:
    @pytest.mark.parametrize("quality", [1, 10, 30, 50, 75, 80, 95, 100])
    def test_qtables_equal_pillow(self, quality: int) -> None:
        buf = io.BytesIO()
        Image.fromarray(_synthetic(16, 16)).save(buf, "JPEG", quality=quality, subsampling=0)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            tables = im.quantization  # Pillow returns them in natural order
        np.testing.assert_array_equal(np.array(tables[0]).reshape(8, 8), quality_qtable(quality))
        np.testing.assert_array_equal(np.array(tables[1]).reshape(8, 8), quality_qtable(quality, chroma=True))

    @pytest.mark.parametrize("quality", [0, 101, 50.0, True])
    def test_bad_quality(self, quality: object) -> None:
        with pytest.raises(ValueError):
            quality_qtable(quality)  # type: ignore[arg-type]


class TestTransforms:
    def test_block_dct_matches_scipy(self) -> None:
        x = torch.rand(2, 16, 24, dtype=torch.float64)
        ours = block_dct(x).numpy()
        blocks = x.numpy().reshape(2, 2, 8, 3, 8).transpose(0, 1, 3, 2, 4)
        ref = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(-2, -1))
        np.testing.assert_allclose(ours, ref, atol=1e-12)
        torch.testing.assert_close(block_idct(block_dct(x)), x)

    def test_block_dct_needs_multiple_of_8(self) -> None:
        with pytest.raises(ValueError):
            block_dct(torch.zeros(1, 12, 16))

    def test_fancy_upsample_matches_libjpeg_formula(self) -> None:
        # libjpeg h2v2_fancy_upsample: colsum = 3*near_row + far_row; out = (3*colsum + other_colsum) / 16
        c = np.random.default_rng(1).uniform(0, 255, (5, 7))
        rows = np.pad(c, ((1, 1), (0, 0)), mode="edge")
        ref = np.zeros((10, 14))
        for i in range(5):
            for dy, far in ((0, rows[i]), (1, rows[i + 2])):
                colsum = np.pad(3 * c[i] + far, 1, mode="edge")
                for j in range(7):
                    ref[2 * i + dy, 2 * j] = (3 * colsum[j + 1] + colsum[j]) / 16
                    ref[2 * i + dy, 2 * j + 1] = (3 * colsum[j + 1] + colsum[j + 2]) / 16
        ours = fancy_upsample(torch.from_numpy(c)[None, None])[0, 0].numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-10)

    def test_round_approx(self) -> None:
        x = torch.tensor([-1.5, -0.3, 0.0, 0.25, 0.5, 2.0, 3.7], dtype=torch.float64)
        torch.testing.assert_close(round_approx(x, "hard"), torch.round(x))
        torch.testing.assert_close(round_approx(x, "sin"), x - torch.sin(2 * np.pi * x) / (2 * np.pi))
        assert (round_approx(x, "soft") - torch.round(x)).abs().max() <= 0.125 + 1e-12
        with pytest.raises(ValueError):
            round_approx(x, "floor")


class TestDJPEG:
    def test_shapes_and_padding(self) -> None:
        for h, w in [(8, 8), (13, 21), (16, 40), (1, 3)]:
            for sub in SUBSAMPLINGS:
                assert djpeg(torch.rand(2, 3, h, w), 50, "sin", sub).shape == (2, 3, h, w)

    def test_errors(self) -> None:
        with pytest.raises(ShapeError):
            djpeg(torch.rand(1, 4, 8, 8), 50)
        with pytest.raises(ValueError):
            djpeg(torch.rand(1, 3, 8, 8), 50, rounding="floor")
        with pytest.raises(ValueError):
            djpeg(torch.rand(1, 3, 8, 8), 50, subsampling="422")
        with pytest.raises(ValueError):
            DJPEG(quality=0)

    @pytest.mark.parametrize("quality", QUALITIES)
    @pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
    def test_synthetic_vs_libjpeg(self, quality: int, subsampling: str) -> None:
        img = _synthetic()
        _, decoded = pillow_jpeg(img, quality, subsampling)
        ours = (djpeg(_to_tensor(img), quality, "hard", subsampling)[0].permute(1, 2, 0).numpy() * 255).round()
        assert _psnr(ours, decoded) >= 35.0

    @pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
    def test_coefficients_vs_file(self, subsampling: str) -> None:
        """The quantised coefficients libjpeg wrote (parsed from the file) agree with dJPEG's."""
        img = _synthetic(40, 56)
        data, _ = pillow_jpeg(img, 75, subsampling)
        ref = read_jpeg_coefficients(data)
        luma, chroma = jpeg_coefficients(_to_tensor(img), 75, subsampling)
        ours = [luma[0].numpy(), chroma[0, 0].numpy(), chroma[0, 1].numpy()]
        for o, r, (by, bx) in zip(ours, ref.blocks, image_blocks(ref, *img.shape[:2])):
            assert o.shape == r.shape
            o, r = o[:by, :bx], r[:by, :bx]
            assert np.mean(np.abs(o - r)) < 0.05
            assert np.mean(o == r) > 0.95
        assert ref.sampling[0] == ((2, 2) if subsampling == "420" else (1, 1))

    def test_read_coefficients_rejects_non_jpeg(self) -> None:
        with pytest.raises(ValueError):
            read_jpeg_coefficients(b"\x89PNG....")

    @pytest.mark.parametrize("rounding", ["hard", "sin", "soft"])
    @pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
    def test_gradients_finite_nonzero(self, rounding: str, subsampling: str) -> None:
        x = (0.1 + 0.8 * torch.rand(2, 3, 24, 24)).requires_grad_()
        djpeg(x, 50, rounding, subsampling).square().sum().backward()
        assert torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0

    @pytest.mark.parametrize("rounding", ["sin", "soft"])
    def test_gradcheck(self, rounding: str) -> None:
        # Away from the clip boundaries the op is smooth for these roundings.
        x = (0.3 + 0.4 * torch.rand(1, 3, 16, 16, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: djpeg(t, 50, rounding, "420"), (x,), eps=1e-6, atol=1e-5, fast_mode=True)

    def test_module_equals_function(self) -> None:
        x = torch.rand(2, 3, 20, 12)
        mod = DJPEG(quality=80, rounding="soft", subsampling="420")
        torch.testing.assert_close(mod(x), djpeg(x, 80, "soft", "420"))
        assert "quality=80" in repr(mod)

    def test_float32_and_float64_agree(self) -> None:
        x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
        torch.testing.assert_close(djpeg(x.float(), 50, "sin"), djpeg(x, 50, "sin").float(), atol=1e-4, rtol=0)


@pytest.mark.data
@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
def test_kodak_crops_vs_libjpeg(shared_data: Path, quality: int, subsampling: str) -> None:
    """>= 10 real photos (128x128 crops): PSNR >= 35 dB, identical quantisation tables, coefficients agree."""
    photos = sorted((shared_data / "photos" / "kodak").glob("*.png"))[:10]
    if len(photos) < 10:
        pytest.skip("fewer than 10 Kodak photos in the data folder")
    for path in photos:
        with Image.open(path) as im:
            img = np.array(im.convert("RGB"))[192:320, 320:448]
        result = compare_image(img, quality, subsampling)
        assert result.psnr_db >= 35.0, (path.name, result)
        assert result.qtables_match
        assert result.coef_mad < 0.1
