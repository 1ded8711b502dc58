"""A toy FAN for verify/forensics tests: rawproof_train's FAN, trained to tell Gaussian blur.

Classes ``["native", "gaussian"]``; 32 px patches; a few Adam steps on i.i.d. noise of random
contrast versus the same noise blurred by Pillow's ``GaussianBlur(1.5)``, so the network
learns spatial correlation rather than amplitude. Exported with
``rawproof_export.export_model`` (parity-checked through the SDK runtime).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

PATCH = 32
BLUR_RADIUS = 1.5
CLASSES = ["native", "gaussian"]


def blur(rgb: np.ndarray) -> np.ndarray:
    """The toy manipulation: Pillow GaussianBlur(1.5) of a uint8 H x W x 3 image."""
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)))


def noise_image(h: int, w: int, seed: int, contrast: float = 1.0) -> np.ndarray:
    """uint8 H x W x 3 i.i.d. noise around mid-grey with the given contrast (1 = full range)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(127.5 + contrast * (rng.random((h, w, 3)) - 0.5) * 255), 0, 255).astype(np.uint8)


def build_toy_fan(out_dir: Path, *, steps: int = 15, name: str = "toy_fan", metadata: dict | None = None) -> Path:
    """Train and export the toy FAN to ``out_dir/<name>.onnx`` (+ JSON); returns the path."""
    import torch

    from rawproof_export.onnx_export import export_model
    from rawproof_train.fan import FAN

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    fan = FAN(n_classes=2, n_filters=4, n_stages=2)
    opt = torch.optim.Adam(fan.parameters(), lr=3e-3)
    for step in range(steps):
        native = [noise_image(PATCH + 8, PATCH + 8, 1000 * step + i, rng.uniform(0.15, 1.0)) for i in range(16)]
        blurred = [blur(noise_image(PATCH + 8, PATCH + 8, 1000 * step + 100 + i, rng.uniform(0.3, 1.0))) for i in range(16)]
        x = np.stack([im[4:-4, 4:-4] for im in native + blurred]).astype(np.float32) / 255
        y = torch.tensor([0] * 16 + [1] * 16)
        loss = torch.nn.functional.cross_entropy(fan(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        fan.project_constraints()
    meta = {"classes": CLASSES, "patch_size": PATCH, "trained_channel": {"downscale": 2},
            **(metadata or {})}
    return export_model(fan.eval(), "fan", out_dir / f"{name}.onnx", meta, exporter="torchscript").path


_keep: list[tempfile.TemporaryDirectory] = []


@functools.lru_cache(maxsize=None)
def toy_fan_path() -> Path:
    """The toy FAN, built once per test process into a temporary folder removed at exit."""
    tmp = tempfile.TemporaryDirectory(prefix="rawproof-toy-fan-")
    _keep.append(tmp)
    return build_toy_fan(Path(tmp.name))
