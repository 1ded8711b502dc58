"""Evaluation on held-out images, the way the product is used: whole frames, real codecs.

For a run folder (``nip.pt`` and/or ``fan.pt`` from :mod:`rawproof_train.train`), or a shipped
``.onnx`` NIP/FAN pair:

* **Development as shipped.** Every test image is developed *whole* through the SDK path
  (:func:`rawproof.tiling.run_nip`: the exported ONNX NIP in an onnxruntime session, tiled as
  ``develop()`` tiles it, quantised to 8 bits, clipped highlights kept white). A checkpoint is
  first exported to ``<run>/nip.onnx`` with the exporter's parity check.
* **NIP fidelity** on those developments: PSNR and SSIM against the reference pipeline's target
  (SSIM after Wang et al. 2004: Gaussian window sigma 1.5, 11 taps, K1 = 0.01, K2 = 0.03, per
  channel then averaged; computed with scipy), and **visibility**: mean absolute row-to-row and
  column-to-column differences over the reference's flat pixels (:mod:`rawproof_train.visibility`),
  NIP beside reference, and the share of clipped sensor values that come out at 255.
* **FAN accuracy (product protocol, the headline).** 128 px patches cropped from the developed
  frames at uniform random *integer* positions (flat ones rejected as in training), so the 2x
  downscale phase and the JPEG 8x8 grid take every alignment relative to the NIP output. Each is
  manipulated by every class with 8 px of surrounding context (so filters see the frame, not a
  patch border; the ``jpeg`` class through real libjpeg q80), then sent through the distribution
  channel: a downscale followed by a real codec. The main channel is JPEG q50 (as trained);
  JPEG q30/70/90, WebP q50 and the platform defaults show robustness. Per-class accuracy with
  Wilson 95% intervals and the confusion matrix (rows true, columns predicted).
* **Paper protocol (secondary, labelled).** ``--paper``: the NIP run on isolated 64 px stack
  patches, as Korus & Memon and the training loop do; JPEG q50 only. Never the headline: a NIP
  can learn traces that lean on the borders of the patch it was run on.

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

from rawproof.models import ModelInfo, ModelKind, file_sha256, load_model_info
from rawproof.runtime import get_session
from rawproof.tiling import STACK_CHANNELS_OF_RGB, run_nip
from rawproof_train.channel import downscale, libjpeg_roundtrip
from rawproof_train.data import FLAT_HALF, FLAT_REJECT, Pair, load_manifest, load_pair, sample_patches
from rawproof_train.fan import FAN
from rawproof_train.manipulations import create_manipulation
from rawproof_train.nip import nip_from_checkpoint
from rawproof_train.visibility import flat_mask_np, row_col_differences

__all__ = ["ChannelSpec", "CHANNELS", "EvalResult", "ssim", "wilson_interval", "evaluate_run", "develop_whole", "product_patches", "nip_model", "register"]

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
    protocol: str = "product"
    psnr_db: float | None = None
    ssim: float | None = None
    psnr_per_image: dict[str, float] = field(default_factory=dict)
    visibility: dict[str, float] = field(default_factory=dict)
    channels: list[ChannelResult] = field(default_factory=list)
    paper: ChannelResult | None = None

    def summary(self) -> dict[str, Any]:
        """Flat figures for tables: PSNR/SSIM, visibility, accuracy per channel (product protocol), paper figure."""
        row: dict[str, Any] = {"protocol": self.protocol, "psnr_db": self.psnr_db, "ssim": self.ssim, **self.visibility}
        for c in self.channels:
            row[f"acc_{c.channel}"] = c.accuracy
        if self.paper is not None:
            row["acc_jpeg50_paper_protocol"] = self.paper.accuracy
        return row


def _load_fan(path: Path) -> tuple[torch.nn.Module, list[str]]:
    if path.suffix == ".onnx":
        from rawproof_train.onnx_import import checkpoint_from_onnx

        ckpt = checkpoint_from_onnx(path)
    else:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    m = FAN(n_classes=len(ckpt["classes"]))
    m.load_state_dict(ckpt["state_dict"])
    return m.eval(), list(ckpt["classes"])


def nip_model(nip_file: Path) -> ModelInfo:
    """The NIP as ``develop()`` loads it: an ``.onnx`` as is; a checkpoint exported next to itself (``nip.onnx``,
    with the exporter's parity check), re-exported unless that file records this checkpoint's SHA-256 (a copied
    or resumed run folder never reuses a stale export)."""
    if nip_file.suffix == ".onnx":
        return load_model_info(nip_file)
    digest = file_sha256(nip_file)
    onnx_path = nip_file.with_suffix(".onnx")
    if onnx_path.exists():
        info = load_model_info(onnx_path)
        if info.metadata.get("checkpoint_sha256") == digest:
            return info
    from rawproof_export.onnx_export import export_checkpoint

    export_checkpoint(nip_file, onnx_path, metadata={"name": f"{nip_file.parent.name}_nip", "checkpoint_sha256": digest})
    return load_model_info(onnx_path)


def clipped_kept(rgb: np.ndarray, stack: np.ndarray) -> float:
    """Share of clipped sensor values (stack planes == 1 for an output colour) that come out at 255; NaN if none."""
    kept = total = 0
    for c, planes in enumerate(STACK_CHANNELS_OF_RGB):
        clipped = np.logical_and.reduce([np.asarray(stack[p]) >= 1.0 for p in planes])
        full = np.repeat(np.repeat(clipped, 2, axis=0), 2, axis=1)
        kept += int((rgb[:, :, c][full] == 255).sum())
        total += int(full.sum())
    return kept / total if total else float("nan")


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN (no warning) when there are none (e.g. an image set with no flat area)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass
class Developed:
    """One test image developed whole through the SDK path: uint8 H x W x 3 and its reference target."""

    id: str
    rgb: np.ndarray
    target: np.ndarray


def develop_whole(pairs: list[Pair], model: ModelInfo, threads: int = 0) -> list[Developed]:
    """Develop every pair's whole stack as ``develop()`` does (ONNX session, tiling, quantisation, clipped highlights)."""
    session = get_session(model, ModelKind.NIP, threads=threads)
    return [Developed(p.id, run_nip(session, np.ascontiguousarray(p.stack, dtype=np.float32)).rgb, np.asarray(p.target))
            for p in tqdm(pairs, desc="develop whole frames", unit="img")]


def product_patches(images: list[Developed], patch: int, n: int, rng: np.random.Generator, context: int = 8,
                    max_tries: int = 50) -> np.ndarray:
    """``n`` crops of ``patch + 2 context`` px from developed frames at uniform random integer positions.

    Images are visited in turn; a crop whose *reference* patch is flat is rejected as in training
    (variance below FLAT_REJECT always, below FLAT_HALF with probability 0.5).

    Returns:
        float32 n x 3 x (patch + 2 context) x (patch + 2 context), [0, 1] (multiples of 1/255).
    """
    side = patch + 2 * context
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n:
        img = images[len(out) % len(images)]
        h, w = img.rgb.shape[:2]
        tries += 1
        if tries > n * max_tries:
            break
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        ref = img.target[y + context:y + context + patch, x + context:x + context + patch].astype(np.float32) / 255.0
        var = float(ref.var())
        if var < FLAT_REJECT or (var < FLAT_HALF and rng.random() < 0.5):
            continue
        out.append(img.rgb[y:y + side, x:x + side].transpose(2, 0, 1).astype(np.float32) / 255.0)
    if len(out) < n:
        log.warning("only %d test patches available (asked %d)", len(out), n)
    return np.stack(out)


def _manipulate(classes: list[str], developed: torch.Tensor, batch: int, context: int) -> list[torch.Tensor]:
    """Every class applied to every (context-padded) patch, then the context cropped off."""
    crop = (slice(None), slice(None), slice(context, developed.shape[2] - context), slice(context, developed.shape[3] - context))
    out = []
    for name in classes:
        m = create_manipulation(name)
        # The jpeg class through real libjpeg at the manipulation's quality, as a user's editor would.
        op = (lambda d: libjpeg_roundtrip(d, 80)) if name == "jpeg" else m
        out.append(torch.cat([op(d)[crop] for d in developed.split(batch)]))
    return out


def _classify(fan: torch.nn.Module, classes: list[str], manipulated: list[torch.Tensor], spec: ChannelSpec, batch: int) -> ChannelResult:
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for label, x in enumerate(tqdm(manipulated, desc=f"FAN via {spec.name}", unit="class", leave=False)):
        pred = torch.cat([fan(real_channel(chunk, spec)).argmax(1) for chunk in x.split(batch)])
        conf[label] += np.bincount(pred.numpy(), minlength=len(classes))
    correct = int(np.trace(conf))
    per_class = {
        c: {"accuracy": conf[i, i] / conf[i].sum(), "ci95": wilson_interval(int(conf[i, i]), int(conf[i].sum()))}
        for i, c in enumerate(classes)
    }
    log.info("%s: accuracy %.3f", spec.name, correct / conf.sum())
    return ChannelResult(spec.name, correct / conf.sum(), wilson_interval(correct, int(conf.sum())), per_class, conf.tolist(), int(conf[0].sum()))


@torch.no_grad()
def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] = "cache/dataset",
    nip_path: str | os.PathLike[str] | None = None,
    fan_path: str | os.PathLike[str] | None = None,
    patches_per_class: int = 1000,
    patch: int = 128,
    channels: tuple[ChannelSpec, ...] = CHANNELS,
    seed: int = 1234,
    batch: int = 50,
    paper: bool = False,
    threads: int = 0,
) -> EvalResult:
    """Evaluate a run folder on the test split under the product protocol; writes and returns ``<run_dir>/eval.json``.

    ``nip_path`` overrides the NIP (e.g. the fidelity-only NIP for a ``train-fan`` baseline run,
    whose folder has only ``fan.pt``), ``fan_path`` the FAN (default ``<run>/fan.pt``); either may
    be a shipped ``.onnx``. ``paper`` adds the paper-protocol figure (JPEG q50) as a labelled
    secondary result.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    nip_file = Path(nip_path) if nip_path else run_dir / "nip.pt"
    if not nip_file.exists():
        nip_file = Path(yaml.safe_load((run_dir / "config.yaml").read_text())["nip_checkpoint"])
    model = nip_model(nip_file)
    manifest = load_manifest(data)
    test_ids = sorted(p["id"] for p in manifest["pairs"] if p["split"] == "test")
    if not test_ids:
        raise ValueError("the dataset has no test split")
    pairs = [load_pair(data, i) for i in test_ids]

    developed = develop_whole(pairs, model, threads)
    psnrs, ssims, vis_nip, vis_ref, kept, kept_ref = {}, [], [], [], [], []
    for d, pair in zip(developed, pairs):
        rgb, tgt = d.rgb.astype(np.float32) / 255.0, d.target.astype(np.float32) / 255.0
        psnrs[d.id] = 10 * math.log10(1 / max(float(np.mean((rgb - tgt) ** 2)), 1e-12))
        ssims.append(ssim(rgb, tgt))
        flat = flat_mask_np(d.target)
        vis_nip.append(row_col_differences(d.rgb, flat))
        vis_ref.append(row_col_differences(d.target, flat))
        kept.append(clipped_kept(d.rgb, pair.stack))
        kept_ref.append(clipped_kept(d.target, pair.stack))
    mean_mse = float(np.mean([10 ** (-p / 10) for p in psnrs.values()]))
    rows_n, cols_n = _nanmean([v[0] for v in vis_nip]), _nanmean([v[1] for v in vis_nip])
    rows_r, cols_r = _nanmean([v[0] for v in vis_ref]), _nanmean([v[1] for v in vis_ref])
    visibility = {
        "flat_row_diff_dn": rows_n, "flat_col_diff_dn": cols_n, "flat_row_diff_ref_dn": rows_r, "flat_col_diff_ref_dn": cols_r,
        "flat_row_ratio": rows_n / rows_r if rows_r > 0 else float("nan"),
        "flat_col_ratio": cols_n / cols_r if cols_r > 0 else float("nan"),
        "clipped_kept_white": _nanmean(kept), "clipped_kept_white_ref": _nanmean(kept_ref),
    }
    result = EvalResult(run=run_dir.name, nip=str(model.architecture), classes=[], psnr_db=10 * math.log10(1 / mean_mse),
                        ssim=float(np.mean(ssims)), psnr_per_image=psnrs, visibility=visibility)

    fan_file = Path(fan_path) if fan_path else run_dir / "fan.pt"
    if fan_file.exists():
        fan, classes = _load_fan(fan_file)
        result.classes = classes
        context = 8
        x = torch.from_numpy(product_patches(developed, patch, patches_per_class, np.random.default_rng(seed), context))
        manipulated = _manipulate(classes, x, batch, context)
        result.channels = [_classify(fan, classes, manipulated, spec, batch) for spec in channels]
        if paper:
            from rawproof_train.onnx_import import checkpoint_from_onnx

            ckpt = checkpoint_from_onnx(nip_file) if nip_file.suffix == ".onnx" else torch.load(nip_file, map_location="cpu", weights_only=False)
            nip = nip_from_checkpoint(ckpt)
            rng = np.random.default_rng(seed)
            per_image = math.ceil(patches_per_class / len(pairs))
            patches = [pp for pair in pairs for pp in sample_patches(pair, patch, per_image, rng)][:patches_per_class]
            stack = torch.from_numpy(np.stack([s for s, _ in patches]))
            dev = torch.cat([nip(s).clamp(0, 1) for s in stack.split(batch)])
            result.paper = _classify(fan, classes, _manipulate(classes, dev, batch, 0), channels[0], batch)
    (run_dir / "eval.json").write_text(json.dumps(asdict(result), indent=2, default=float))
    return result


def _pick_channels(names: str | None) -> tuple[ChannelSpec, ...]:
    if not names:
        return CHANNELS
    by_name = {c.name: c for c in CHANNELS}
    unknown = [n for n in names.split(",") if n not in by_name]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; choose from {list(by_name)}")
    return tuple(by_name[n] for n in names.split(","))


def _run(args: argparse.Namespace) -> int:
    res = evaluate_run(args.run, data=args.data, nip_path=args.nip, fan_path=args.fan, patches_per_class=args.patches_per_class,
                       paper=args.paper, threads=args.threads, channels=_pick_channels(args.channels))
    print(json.dumps(res.summary(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a run on the test split: whole frames developed as shipped, random crops, real codecs",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("run", help="run folder holding nip.pt and/or fan.pt")
    p.add_argument("--data", default="cache/dataset", help="dataset cache (default cache/dataset)")
    p.add_argument("--nip", default=None, help="NIP to develop with: a checkpoint or a shipped .onnx (default: <run>/nip.pt, else the run's nip_checkpoint)")
    p.add_argument("--fan", default=None, help="FAN to classify with (default: <run>/fan.pt); a checkpoint or a shipped .onnx")
    p.add_argument("--patches-per-class", dest="patches_per_class", type=int, default=1000)
    p.add_argument("--paper", action="store_true", help="also measure the paper protocol (NIP on isolated patches), JPEG q50, as a secondary figure")
    p.add_argument("--channels", default=None, help=f"comma-separated subset of {[c.name for c in CHANNELS]} (default: all; the first is the headline)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for the development (0 = all cores)")
    p.set_defaults(func=_run)
