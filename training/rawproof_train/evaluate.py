"""Evaluation on held-out images through *real* codecs (Pillow's libjpeg and libwebp).

For a run folder (``nip.pt`` and/or ``fan.pt`` from :mod:`rawproof_train.train`):

* NIP fidelity: PSNR and SSIM of the NIP's development of every whole test image against
  the reference pipeline's target (SSIM after Wang et al. 2004: Gaussian window sigma 1.5,
  11 taps, K1 = 0.01, K2 = 0.03, per channel then averaged; computed with scipy).
* FAN accuracy: random 128 px patches of the test images (positions uniform, flat patches
  rejected as in training), developed by the NIP, manipulated by every class (the ``jpeg``
  class through real libjpeg q80), then sent through the distribution channel: 2x bilinear
  downscale followed by a real codec. The main channel is JPEG q50 (as trained); JPEG
  q30/70/90 and WebP q50 show robustness. Per-class accuracy with Wilson 95% intervals and
  the confusion matrix (rows true, columns predicted).

Results go to ``<run>/eval.json``; ``python -m rawproof_train report`` turns them into the
results document.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from rawproof_train.channel import downscale, libjpeg_roundtrip
from rawproof_train.data import load_manifest, load_pair, sample_patches
from rawproof_train.fan import FAN
from rawproof_train.manipulations import create_manipulation
from rawproof_train.nip import nip_from_checkpoint

__all__ = ["ChannelSpec", "CHANNELS", "EvalResult", "ssim", "wilson_interval", "evaluate_run", "register"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelSpec:
    """A real distribution channel: integer downscale, then a codec at a quality."""

    name: str
    codec: str  # "jpeg" | "webp"
    quality: int
    downscale: int = 2
    subsampling: str = "444"  # JPEG only
    resize: str = "box"  # rawproof_train.channel.Resize


CHANNELS = (
    ChannelSpec("jpeg50", "jpeg", 50),
    ChannelSpec("jpeg30", "jpeg", 30),
    ChannelSpec("jpeg70", "jpeg", 70),
    ChannelSpec("jpeg90", "jpeg", 90),
    ChannelSpec("webp50", "webp", 50),
    ChannelSpec("web50", "jpeg", 50, subsampling="420", resize="bilinear"),
    ChannelSpec("web75", "jpeg", 75, subsampling="420", resize="bilinear"),
)
"""The paper's channel first (2x box + 4:4:4 JPEG q50), then the robustness channels; ``web*``
are Pillow's defaults (antialiased bilinear, 4:2:0) as platforms and the demo re-encode."""


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion ``k / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two H x W x C float images in [0, 1] (data range 1)."""
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        blur = lambda z: gaussian_filter(z, sigma=1.5, truncate=3.5)  # noqa: E731 - 11-tap window
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(m[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def _codec_roundtrip(x: torch.Tensor, spec: ChannelSpec) -> torch.Tensor:
    if spec.codec == "jpeg":
        return libjpeg_roundtrip(x, spec.quality, spec.subsampling)
    out = []
    for img in (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="WEBP", quality=spec.quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def real_channel(x: torch.Tensor, spec: ChannelSpec) -> torch.Tensor:
    """Downscale with the spec's filter, then encode/decode with the real codec."""
    return _codec_roundtrip(downscale(x, spec.downscale, spec.resize), spec)


@dataclass
class ChannelResult:
    channel: str
    accuracy: float
    accuracy_ci: tuple[float, float]
    per_class: dict[str, dict[str, Any]]
    confusion: list[list[int]]
    n_per_class: int


@dataclass
class EvalResult:
    """Evaluation of one run on the test split."""

    run: str
    nip: str
    classes: list[str]
    psnr_db: float | None = None
    ssim: float | None = None
    psnr_per_image: dict[str, float] = field(default_factory=dict)
    channels: list[ChannelResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Flat figures for tables: PSNR/SSIM and accuracy per channel."""
        row: dict[str, Any] = {"psnr_db": self.psnr_db, "ssim": self.ssim}
        for c in self.channels:
            row[f"acc_{c.channel}"] = c.accuracy
        return row


def _load(path: Path, kind: str) -> tuple[torch.nn.Module, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if kind == "nip":
        return nip_from_checkpoint(ckpt), ckpt
    m = FAN(n_classes=len(ckpt["classes"]))
    m.load_state_dict(ckpt["state_dict"])
    return m.eval(), ckpt


@torch.no_grad()
def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] = "cache/dataset",
    nip_path: str | os.PathLike[str] | None = None,
    patches_per_class: int = 1000,
    patch: int = 128,
    channels: tuple[ChannelSpec, ...] = CHANNELS,
    seed: int = 1234,
    batch: int = 50,
) -> EvalResult:
    """Evaluate a run folder on the test split; writes and returns ``<run_dir>/eval.json``.

    ``nip_path`` overrides the NIP (e.g. the fidelity-only NIP for a ``train-fan`` baseline run,
    whose folder has only ``fan.pt``).
    """
    run_dir = Path(run_dir)
    nip_file = Path(nip_path) if nip_path else run_dir / "nip.pt"
    if not nip_file.exists():
        nip_file = Path(yaml.safe_load((run_dir / "config.yaml").read_text())["nip_checkpoint"])
    nip, nip_ckpt = _load(nip_file, "nip")
    manifest = load_manifest(data)
    test_ids = sorted(p["id"] for p in manifest["pairs"] if p["split"] == "test")
    if not test_ids:
        raise ValueError("the dataset has no test split")
    pairs = [load_pair(data, i) for i in test_ids]

    psnrs, ssims = {}, []
    for pair in tqdm(pairs, desc="NIP fidelity", unit="img"):
        rgb = nip(torch.from_numpy(np.array(pair.stack))[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        tgt = np.asarray(pair.target, dtype=np.float32) / 255.0
        mse = float(np.mean((rgb - tgt) ** 2))
        psnrs[pair.id] = 10 * math.log10(1 / mse)
        ssims.append(ssim(rgb, tgt))
    mean_mse = float(np.mean([10 ** (-p / 10) for p in psnrs.values()]))
    result = EvalResult(run=run_dir.name, nip=str(nip_ckpt["arch"]), classes=[], psnr_db=10 * math.log10(1 / mean_mse), ssim=float(np.mean(ssims)), psnr_per_image=psnrs)

    fan_file = run_dir / "fan.pt"
    if fan_file.exists():
        fan, fan_ckpt = _load(fan_file, "fan")
        classes = list(fan_ckpt["classes"])
        result.classes = classes
        manips = [create_manipulation(c) for c in classes]
        rng = np.random.default_rng(seed)
        per_image = math.ceil(patches_per_class / len(pairs))
        patches = []
        for pair in pairs:
            patches += sample_patches(pair, patch, per_image, rng)
        patches = patches[:patches_per_class]
        if len(patches) < patches_per_class:
            log.warning("only %d test patches available (asked %d)", len(patches), patches_per_class)
        stack = torch.from_numpy(np.stack([s for s, _ in patches]))
        developed = torch.cat([nip(s).clamp(0, 1) for s in stack.split(batch)])
        manipulated = []
        for name, m in zip(classes, manips):
            if name == "jpeg":  # real libjpeg at the manipulation's quality, as a user's editor would
                manipulated.append(torch.cat([libjpeg_roundtrip(d, 80) for d in developed.split(batch)]))
            else:
                manipulated.append(torch.cat([m(d) for d in developed.split(batch)]))
        for spec in channels:
            conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
            for label, x in enumerate(tqdm(manipulated, desc=f"FAN via {spec.name}", unit="class", leave=False)):
                pred = torch.cat([fan(real_channel(chunk, spec)).argmax(1) for chunk in x.split(batch)])
                conf[label] += np.bincount(pred.numpy(), minlength=len(classes))
            n = int(conf[0].sum())
            correct = int(np.trace(conf))
            per_class = {
                c: {"accuracy": conf[i, i] / conf[i].sum(), "ci95": wilson_interval(int(conf[i, i]), int(conf[i].sum()))}
                for i, c in enumerate(classes)
            }
            result.channels.append(ChannelResult(spec.name, correct / conf.sum(), wilson_interval(correct, int(conf.sum())), per_class, conf.tolist(), n))
            log.info("%s: accuracy %.3f", spec.name, correct / conf.sum())
    (run_dir / "eval.json").write_text(json.dumps(asdict(result), indent=2, default=float))
    return result


def _run(args: argparse.Namespace) -> int:
    res = evaluate_run(args.run, data=args.data, nip_path=args.nip, patches_per_class=args.patches_per_class)
    print(json.dumps(res.summary(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a run on the test split through real libjpeg/libwebp",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("run", help="run folder holding nip.pt and/or fan.pt")
    p.add_argument("--data", default="cache/dataset", help="dataset cache (default cache/dataset)")
    p.add_argument("--nip", default=None, help="NIP checkpoint to develop with (default: <run>/nip.pt, else the run's nip_checkpoint)")
    p.add_argument("--patches-per-class", dest="patches_per_class", type=int, default=1000)
    p.set_defaults(func=_run)
