"""Image-level forensic detection through the SDK: ``python -m rawproof_train forensic-eval``.

What a verifier sees: an image developed by the shipped NIP (ONNX, the SDK runtime),
possibly manipulated by its owner, then shared through a platform (``--platforms``: the
paper's 2x box downscale + libjpeg q50 4:4:4, or Pillow's bilinear + q50/q75 4:2:0; metadata
gone). ``rawproof.verify`` analyses it as-is (no provenance) and returns a verdict; crops whose
encoding lies outside the FAN's trained channel read inconclusive and are counted apart. This module measures, per manipulation class, how often the
verdict says "manipulated" (true positives) and how often an untouched image is flagged
(false positives), on held-out images.

Images: each image of a split is developed whole, then cut into non-overlapping
``crop`` x ``crop`` crops (each crop is one verified image, so a split of a few large
photos still gives over a hundred decisions per class). Manipulations use the training
ops (``rawproof_train.manipulations``; ``jpeg`` through real libjpeg q80), applied to the
crop at full resolution before the channel.

Calibration: ``--calibrate`` first runs the validation split, fits temperature + Platt
(:func:`rawproof.forensics.fit_calibration`) on those images' patch logits, then the
decision thresholds for a target false-positive rate on the untouched validation crops
(:func:`rawproof.forensics.fit_decision`, ``--fpr``, default 5%), writes both into the
FAN's metadata (ONNX ``metadata_props`` and JSON, keeping its SHA-256 in step), then
evaluates the test split with the calibrated FAN.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rawproof.forensics import fit_calibration, fit_decision, measure_robustness
from rawproof.imageio import PILLOW_SUBSAMPLING
from rawproof.models import ModelKind, find_model, rewrite_metadata
from rawproof.runtime import clear_session_cache, get_session
from rawproof.tiling import run_nip
from rawproof.verify import Verdict, verify
from rawproof_train.channel import libjpeg_roundtrip
from rawproof_train.jpeg import Subsampling
from rawproof_train.data import load_manifest, load_pair
from rawproof_train.evaluate import wilson_interval
from rawproof_train.manipulations import create_manipulation

__all__ = ["ForensicEval", "develop_split", "manipulate", "share", "evaluate_split", "write_calibration", "register"]

log = logging.getLogger(__name__)

MANIPULATED = {Verdict.NO_PROVENANCE_MANIPULATED, Verdict.MANIPULATED}


@dataclass
class ForensicEval:
    split: str
    crops_per_class: int
    crop: int
    tpr: dict[str, float]
    tpr_ci: dict[str, tuple[float, float]]
    fpr: float
    fpr_ci: tuple[float, float]
    class_accuracy: float
    confusion: list[list[int]]
    classes: list[str]
    nip: str
    fan: str
    calibration: dict | None
    platform: dict
    inconclusive: float  # fraction of all verified crops the FAN's channel check set aside (not flagged)


def develop_split(data: str | Path, split: str, nip: str | Path, crop: int) -> list[np.ndarray]:
    """Develop every image of ``split`` with the ONNX NIP and cut it into crops (uint8 crop x crop x 3)."""
    info = find_model(nip, ModelKind.NIP)
    session = get_session(info, ModelKind.NIP)
    ids = sorted(p["id"] for p in load_manifest(data)["pairs"] if p["split"] == split)
    crops = []
    for pid in tqdm(ids, desc=f"develop {split}", unit="img"):
        pair = load_pair(data, pid)
        rgb = run_nip(session, np.ascontiguousarray(pair.stack, dtype=np.float32)).rgb
        for y in range(0, rgb.shape[0] - crop + 1, crop):
            for x in range(0, rgb.shape[1] - crop + 1, crop):
                c = rgb[y:y + crop, x:x + crop]
                if float((c / 255.0).var()) >= 0.005:  # skip flat sky/walls: no trace survives there, for any class
                    crops.append(np.ascontiguousarray(c))
    return crops


@torch.no_grad()
def manipulate(rgb: np.ndarray, name: str) -> np.ndarray:
    """Apply manipulation ``name`` to a uint8 HxWx3 image; returns uint8 (what an editor would save)."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    y = libjpeg_roundtrip(x, 80) if name == "jpeg" else create_manipulation(name)(x)
    return (y[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def share(rgb: np.ndarray, *, downscale: int = 2, quality: int = 50, subsampling: str = "444", resize: str = "box") -> bytes:
    """The platform: downscale, then real libjpeg.

    ``resize="box"``: 2x2 box average (= bilinear at exactly 2x without antialiasing, the
    training channel's); ``"bilinear"``: Pillow's antialiased ``Image.BILINEAR``, what most
    platforms (and the demo) do. ``subsampling``: ``"444"`` (the paper's) or ``"420"`` (Pillow's
    default).
    """
    h, w = rgb.shape[0] // downscale * downscale, rgb.shape[1] // downscale * downscale
    if resize == "box":
        small = rgb[:h, :w].reshape(h // downscale, downscale, w // downscale, downscale, 3).astype(np.float32).mean(axis=(1, 3))
        img = Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8))
    elif resize == "bilinear":
        img = Image.fromarray(rgb[:h, :w]).resize((w // downscale, h // downscale), Image.Resampling.BILINEAR)
    else:
        raise ValueError(f"resize must be 'box' or 'bilinear', got {resize!r}")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[Subsampling(str(subsampling)).value])
    return buf.getvalue()


PLATFORMS: dict[str, dict] = {
    "paper": {"quality": 50, "subsampling": "444", "resize": "box"},
    "web50": {"quality": 50, "subsampling": "420", "resize": "bilinear"},
    "web75": {"quality": 75, "subsampling": "420", "resize": "bilinear"},
}
"""Sharing channels :func:`share` models, by name (all 2x downscale)."""


def _verify_all(crops: list[np.ndarray], classes: list[str], fan: str | Path, stride: int | None, platform: dict) -> tuple[list, list]:
    reports, labels = [], []
    for label, name in enumerate(classes):
        for c in tqdm(crops, desc=f"verify {name}", unit="img", leave=False):
            reports.append(verify(share(manipulate(c, name), **platform), fan=fan, stride=stride, heatmap=True))
            labels.append(label)
    return reports, labels


def write_calibration(fan: str | Path, calibration: dict, decision: dict | None = None) -> None:
    """Store ``calibration`` (and ``decision``) in the FAN's ONNX metadata and JSON sidecar.

    The file's SHA-256 changes; :func:`rawproof.models.rewrite_metadata` re-links its paired NIP.
    """
    rewrite_metadata(fan, {"calibration": calibration, **({"decision": decision} if decision is not None else {})})
    clear_session_cache()


def evaluate_split(data: str | Path, split: str, nip: str | Path, fan: str | Path, *, crop: int = 256, stride: int | None = None,
                   platform: dict | None = None) -> tuple[ForensicEval, list, list]:
    """Verify every crop x class of ``split`` shared through ``platform`` (keyword arguments of
    :func:`share`; default the paper's channel); returns the summary, the reports and the labels."""
    info = find_model(fan, ModelKind.FAN)
    classes = list(info.metadata["classes"])
    crops = develop_split(data, split, nip, crop)
    reports, labels = _verify_all(crops, classes, info.path, stride, platform or {})
    native = classes.index("native")
    n = len(crops)
    flagged = np.array([r.verdict in MANIPULATED for r in reports])
    lab = np.array(labels)
    tpr, tpr_ci = {}, {}
    for k, name in enumerate(classes):
        if k == native:
            continue
        hits = int(flagged[lab == k].sum())
        tpr[name], tpr_ci[name] = hits / n, wilson_interval(hits, n)
    fp = int(flagged[lab == native].sum())
    conf = np.zeros((len(classes), len(classes)), dtype=int)
    for r, y in zip(reports, labels):
        probs = r.forensics.class_probabilities
        conf[y, classes.index(max(probs, key=probs.get))] += 1
    result = ForensicEval(
        split=split, crops_per_class=n, crop=crop, tpr=tpr, tpr_ci=tpr_ci, fpr=fp / n, fpr_ci=wilson_interval(fp, n),
        class_accuracy=float(np.trace(conf) / conf.sum()), confusion=conf.tolist(), classes=classes,
        nip=find_model(nip, ModelKind.NIP).name, fan=info.name, calibration=info.metadata.get("calibration"),
        platform=dict(platform or {}),
        inconclusive=float(np.mean([r.verdict is Verdict.NO_PROVENANCE_INCONCLUSIVE for r in reports])),
    )
    return result, reports, labels


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Keep what earlier runs measured (e.g. the calibration fit) unless this run measures it again.
    path = out / "forensic_eval.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    platforms = {name: PLATFORMS[name] for name in args.platforms}
    if args.calibrate:
        # One calibration for every listed platform: pooled validation logits and untouched crops.
        pooled: list[tuple] = []
        for name, platform in platforms.items():
            val, reports, labels = evaluate_split(args.data, "val", args.nip, args.fan, crop=args.crop, stride=args.stride, platform=platform)
            results[_key("val_uncalibrated", name)] = asdict(val)
            pooled += [(r.forensics.logits, y) for r, y in zip(reports, labels)]
        native = val.classes.index("native")
        cal = fit_calibration([lg for lg, _ in pooled], [y for _, y in pooled], native_index=native)
        rule = fit_decision([lg for lg, y in pooled if y == native], native, cal, false_positive_rate=args.fpr)
        results["calibration"], results["decision"] = cal.to_metadata(), asdict(rule)
        write_calibration(args.fan, results["calibration"], results["decision"])
        log.info("calibration %s and decision %s written into %s", cal.to_metadata(), rule, args.fan)
    for name, platform in platforms.items():
        test, _, _ = evaluate_split(args.data, "test", args.nip, args.fan, crop=args.crop, stride=args.stride, platform=platform)
        results[_key("test", name)] = asdict(test)
    if args.robustness:
        # Other scales and codecs than the trained channel: the test crops, manipulated, then
        # resized and/or JPEG-compressed, analysed as-is (what verify() does without provenance).
        crops = develop_split(args.data, "test", args.nip, args.crop)[: args.robustness]
        images = [(manipulate(c, name), name) for name in test.classes for c in crops]
        results["robustness"] = measure_robustness(images, args.fan, scales=(1.0, 0.5, 0.25), jpeg_qualities=(None, 90, 50),
                                                   stride=args.stride)
    path.write_text(json.dumps(results, indent=2, default=float))
    for name in platforms:
        t = results[_key("test", name)]
        print(f"test via {name}: {t['crops_per_class']} crops/class; FPR native {100 * t['fpr']:.1f}%; "
              + ", ".join(f"TPR {k} {100 * v:.1f}%" for k, v in t["tpr"].items()) + f"; class accuracy {100 * t['class_accuracy']:.1f}%"
              + f"; inconclusive (outside the FAN's channel) {100 * t['inconclusive']:.1f}%")
    return 0


def _key(prefix: str, platform: str) -> str:
    # The paper's platform keeps the unsuffixed keys that earlier results files used.
    return prefix if platform == "paper" else f"{prefix}_{platform}"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("forensic-eval", help="image-level detection rates of verify() after a real sharing channel",
                              description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nip", required=True, help="ONNX NIP (path or shipped name)")
    p.add_argument("--fan", required=True, help="ONNX FAN (path; --calibrate rewrites its metadata)")
    p.add_argument("--data", default="cache/dataset")
    p.add_argument("--crop", type=int, default=256, help="side of each verified crop at full resolution, px")
    p.add_argument("--stride", type=int, default=None, help="FAN patch stride (default: verify's)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit calibration and decision thresholds on the val split first and store them in the FAN")
    p.add_argument("--platforms", nargs="+", choices=list(PLATFORMS), default=["paper"],
                   help="sharing channels to measure (and, with --calibrate, to pool for the fit): paper = 2x box + q50 4:4:4; "
                        "web50/web75 = Pillow bilinear + q50/q75 4:2:0")
    p.add_argument("--fpr", type=float, default=0.05, help="target false-positive rate on val native images for --calibrate")
    p.add_argument("--robustness", type=int, default=0, metavar="N",
                   help="also measure N test crops per class at scales 1, 1/2, 1/4 x JPEG none/q90/q50 (verify's as-is path)")
    p.add_argument("-o", "--out", default="docs/results", help="folder for forensic_eval.json")
    p.set_defaults(func=_run)

