"""rawproof.jpeg_trace: the last JPEG's grid offset and IJG quality from pixels, against files Pillow made."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rawproof.imageio import PILLOW_SUBSAMPLING, decode_rgb
from rawproof.jpeg_trace import MIN_STRENGTH, estimate_jpeg


def scene(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 image: smooth gradients, edges and fine texture (not i.i.d. noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 110 + 60 * np.sin(x / 23.0 + seed) * np.cos(y / 31.0) + 40 * (x + 2 * y > w)
    tex = np.asarray(Image.fromarray(rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8)).resize((w, h), Image.BICUBIC), np.float64)
    rgb = np.stack([base + 0.3 * (tex - 128), base * 0.9 + 0.25 * (tex - 128) + 10, base * 0.8 - 0.2 * (tex - 128) + 20], axis=2)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def pillow_jpeg(rgb: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[subsampling])
    return decode_rgb(buf.getvalue()).rgb


@pytest.mark.parametrize(("quality", "subsampling", "crop"), [
    (40, "444", (0, 0)), (50, "420", (3, 5)), (63, "444", (7, 1)), (75, "420", (2, 0)), (90, "444", (5, 6)),
])
def test_quality_and_grid_of_a_jpeg_resaved_as_png(quality, subsampling, crop):
    decoded = pillow_jpeg(scene(seed=quality), quality, subsampling)
    cy, cx = crop
    png = io.BytesIO()
    Image.fromarray(decoded[cy:, cx:]).save(png, "PNG")  # the header now says PNG, the pixels say JPEG
    d = decode_rgb(png.getvalue())
    assert d.format == "PNG" and d.jpeg_quality is None
    est = estimate_jpeg(d.rgb)
    assert est is not None
    assert est.quality == quality
    assert est.offset == ((8 - cy) % 8, (8 - cx) % 8)
    assert MIN_STRENGTH <= est.strength <= 1


def test_no_trace_when_never_compressed_or_resized_after_the_jpeg():
    rgb = scene(seed=3)
    assert estimate_jpeg(rgb) is None
    small = np.asarray(Image.fromarray(pillow_jpeg(rgb, 50, "444")).resize((200, 200), Image.BILINEAR))
    assert estimate_jpeg(small) is None


def test_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        estimate_jpeg(scene().astype(np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="16 x 16"):
        estimate_jpeg(np.zeros((8, 64, 3), np.uint8))
