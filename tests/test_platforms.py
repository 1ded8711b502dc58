"""rawproof.platforms: the platform channel set, its sampler, and the channel check verify() makes with it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rawproof.forensics import channel_mismatch
from rawproof.imageio import decode_rgb
from rawproof.jpeg_trace import JpegEstimate
from rawproof.platforms import (
    NAMED_CHANNELS, PLATFORM_SET, SET_NAME, Codec, Encoding, PlatformChannel, Resize, named_channels,
)


def image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sampler_is_seeded_and_covers_the_set():
    a = [PLATFORM_SET.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    draws = [PLATFORM_SET.sample(np.random.default_rng(s)) for s in range(2000)]
    scales = np.array([d.scale for d in draws])
    assert scales.min() >= 0.4 and scales.max() == 1.0 and 0.10 < (scales == 1).mean() < 0.20
    encs = [e for d in draws for e in d.encodings]
    jq = [e.quality for e in encs if e.codec is Codec.JPEG]
    wq = [e.quality for e in encs if e.codec is Codec.WEBP]
    assert min(jq) == 40 and max(jq) == 95 and min(wq) == 50 and max(wq) == 90
    assert {e.subsampling for e in encs if e.codec is Codec.JPEG} == {"444", "420"}
    assert {d.resize for d in draws} == set(Resize)
    assert 0.25 < np.mean([len(d.encodings) == 2 for d in draws]) < 0.35
    assert 0.15 < len(wq) / len(encs) < 0.25


@pytest.mark.parametrize(("q", "sub"), [(40, "444"), (75, "420"), (95, "420")])
def test_jpeg_member_is_what_libjpeg_writes(q, sub):
    ch = PlatformChannel(0.5, Resize.ANTIALIAS, (Encoding(Codec.JPEG, q, sub),))
    rgb = image()
    d = decode_rgb(ch.apply(rgb))
    assert d.format == "JPEG" and d.jpeg_quality == q and d.jpeg_subsampling == sub
    assert (d.height, d.width) == (48, 64)
    # Independent reference: Pillow's own antialiased bilinear resize, then the same encode.
    ref = io.BytesIO()
    Image.fromarray(rgb).resize((64, 48), Image.BILINEAR).save(ref, "JPEG", quality=q, subsampling={"444": 0, "420": 2}[sub])
    assert ch.apply(rgb) == ref.getvalue()


def test_resize_filters_against_references():
    rgb = image(64, 64, seed=2)
    lossless = (Encoding(Codec.WEBP, 100),)
    box2 = rgb.astype(np.float64).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    from rawproof.platforms import _resize

    assert np.abs(_resize(rgb, 0.5, Resize.BILINEAR).astype(np.float64) - box2).max() <= 0.5 + 1e-9
    assert np.array_equal(_resize(rgb, 0.5, Resize.BOX), np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BOX)))
    assert _resize(rgb, 1.0, Resize.BOX) is rgb
    assert decode_rgb(PlatformChannel(0.7, Resize.BOX, lossless).apply(rgb)).rgb.shape == (45, 45, 3)


def test_second_reencode_serves_the_last_encoding():
    ch = NAMED_CHANNELS["s0.8-antialias-q85-420+q60-444"]
    d = decode_rgb(ch.apply(image()))
    assert d.jpeg_quality == 60 and d.jpeg_subsampling == "444"
    assert decode_rgb(NAMED_CHANNELS["s0.6-antialias-webp70"].apply(image())).format == "WEBP"
    assert ch.name == "s0.80-antialias+jpeg85-420+jpeg60-444"


def test_metadata_and_channel_check():
    meta = PLATFORM_SET.to_metadata()
    assert meta["set"] == SET_NAME and meta["jpeg_qualities"] == [40, 95] and meta["downscale"] == 2 and meta["jpeg_quality"] == 75
    assert channel_mismatch(meta, "JPEG", 40, "444") is None
    assert channel_mismatch(meta, "JPEG", 95, "420") is None
    assert "q30" in channel_mismatch(meta, "JPEG", 30, "420")
    assert "422" in channel_mismatch(meta, "JPEG", 75, "422")
    assert channel_mismatch(meta, "WEBP", None, None) is None
    assert "without a JPEG trace" in channel_mismatch(meta, "PNG", None, None)
    assert channel_mismatch(meta, "PNG", None, None, JpegEstimate(60, (0, 0), 0.9)) is None
    assert "q~20" in channel_mismatch(meta, "PNG", None, None, JpegEstimate(20, (0, 0), 0.9))
    # A FAN trained behind the fixed channel: WebP is outside, a PNG'd q50 JPEG inside.
    fixed = {"downscale": 2, "jpeg_quality": 50}
    assert "WEBP" in channel_mismatch(fixed, "WEBP", None, None)
    assert channel_mismatch(fixed, "PNG", None, None, JpegEstimate(50, (3, 1), 0.9)) is None


def test_errors():
    with pytest.raises(ValueError, match="scale"):
        PlatformChannel(0.0, Resize.BOX, (Encoding(Codec.JPEG, 50),))
    with pytest.raises(ValueError, match="at least one"):
        PlatformChannel(0.5, Resize.BOX, ())
    with pytest.raises(ValueError, match="uint8"):
        NAMED_CHANNELS["web75"].apply(image().astype(np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown channel"):
        named_channels(["web75", "nope"])
    assert list(named_channels(["trained"])) == ["trained"]


def test_training_sampler_matches_the_sdk_channel():
    import torch

    from rawproof_train.platforms import PlatformSampler, through_channel

    sampler = PlatformSampler(out_size=32, seed=4)
    assert sampler.min_input == 82
    x = torch.from_numpy(image(90, 100, seed=5)).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1) / 255
    y, ch = sampler(x)
    assert y.shape == (2, 3, 32, 32) and y.dtype == torch.float32 and not y.requires_grad
    # The crop is a window of exactly what the SDK channel serves.
    served = torch.from_numpy(ch.apply_rgb(image(90, 100, seed=5))).permute(2, 0, 1).float() / 255
    win = served.unfold(1, 32, 1).unfold(2, 32, 1)  # 3 x oh x ow x 32 x 32
    assert any(torch.equal(win[:, i, j], y[0]) for i in range(win.shape[1]) for j in range(win.shape[2]))
    with pytest.raises(ValueError, match="at least 82"):
        sampler(x[..., :60, :60])
    with pytest.raises(ValueError, match="smaller than"):
        through_channel(x[..., :40, :40], NAMED_CHANNELS["web75"], 32, np.random.default_rng(0))
