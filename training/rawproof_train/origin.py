"""Train the origin head: "was this image developed by our NIP at all?" (``train-origin``).

The head (:mod:`rawproof.origin`) is a logistic regression on image-level statistics of the
FAN's per-patch logits, so the NIP and the FAN stay frozen and verify() pays nothing extra.
Data (``rawproof_train.foreign``), train split only:

- class 0, rawproof: each image developed whole by the ONNX NIP, untouched and once with a
  global manipulation drawn from the FAN's classes (the head must not take an edited
  rawproof image for a foreign one: that would hide the edit);
- class 1, foreign: the original photos, the reference ISP's and LibRaw's developments.

Each image goes through the channels the FAN is checked against: the paper's (``trained``),
``web75`` and ``--draws`` channels drawn from :data:`rawproof.platforms.PLATFORM_SET`
(real codecs); verify() then reads it exactly as it would a received file, and draws whose
encoding lies outside the FAN's channels are dropped (verify never consults the head there).
The threshold on P(foreign) is set on the val split so that at most ``--fpr`` of the rawproof
readings (untouched and manipulated) read foreign.

Re-run on a new pair (35 min on the shared 2-core machine, most of it verify() reading the images)::

    nice -n 10 python -m rawproof_train train-origin --nip sdk/rawproof/models/<nip>.onnx \\
        --fan sdk/rawproof/models/<fan>.onnx --out runs/origin_<fan>
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rawproof.models import ModelKind, find_model
from rawproof.origin import FEATURES, OriginHead, head_path, origin_features
from rawproof.platforms import NAMED_CHANNELS, PLATFORM_SET, PlatformChannel
from rawproof.verify import verify
from rawproof_train.foreign import WholeImage, foreign_images, rawproof_images

__all__ = ["read_features", "fit_logistic", "train_origin", "register"]

log = logging.getLogger(__name__)


def _channels(draws: int, rng: np.random.Generator) -> list[PlatformChannel]:
    return [NAMED_CHANNELS["trained"], NAMED_CHANNELS["web75"]] + [PLATFORM_SET.sample(rng) for _ in range(draws)]


def read_features(images: list[tuple[np.ndarray, int]], fan: str | Path, draws: int, seed: int, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``(rgb, label)`` images, each through :func:`_channels`, read by verify().

    Returns:
        (n x F float64 features, n int labels) over the draws inside the FAN's channels.
    """
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for rgb, label in tqdm(images, desc=desc, unit="img"):
        for ch in _channels(draws, rng):
            rep = verify(ch.apply(rgb), fan=fan, threads=1)
            fa = rep.forensics
            if fa.available and not fa.out_of_channel:
                feats.append(origin_features(fa.logits))
                labels.append(label)
    return np.array(feats), np.array(labels)


def fit_logistic(x: np.ndarray, t: np.ndarray, ridge: float = 1e-2) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression by Newton's method (L2 ``ridge`` on the weights).

    Args:
        x: n x F standardised features; t: n binary targets (both classes present).

    Returns:
        (weights F, bias).
    """
    if t.min() == t.max():
        raise ValueError("need both classes")
    sw = np.where(t == 1, 0.5 / t.mean(), 0.5 / (1 - t.mean()))  # each class weighs half
    X = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(X.shape[1])
    reg = ridge * np.eye(X.shape[1])
    reg[-1, -1] = 0
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -60, 60)))
        grad = X.T @ (sw * (p - t)) + reg @ w
        hess = (X * (sw * p * (1 - p))[:, None]).T @ X + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w[:-1], float(w[-1])


def _labelled(ours: list[WholeImage], theirs: list[WholeImage], classes: list[str], rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    from rawproof_train.forensic_eval import manipulate

    manips = [c for c in classes if c != "native"]
    items = [(im.rgb, 0) for im in ours]
    items += [(manipulate(np.array(im.rgb), manips[int(rng.integers(len(manips)))]), 0) for im in ours]
    return items + [(im.rgb, 1) for im in theirs]


def train_origin(nip: str, fan: str, data: str, out: Path, *, draws: int, seed: int, fpr: float, ridge: float) -> dict:
    """Read features, fit, set the threshold on val, write the head beside the FAN; returns the metrics."""
    t0 = time.perf_counter()
    nip_info, fan_info = find_model(nip, ModelKind.NIP), find_model(fan, ModelKind.FAN)
    classes = list(fan_info.classes)
    rng = np.random.default_rng(seed)
    tr = _labelled(rawproof_images(data, nip, ("train",)), foreign_images(data, ("train",)), classes, rng)
    va = _labelled(rawproof_images(data, nip, ("val",)), foreign_images(data, ("val",)), classes, rng)
    x_tr, t_tr = read_features(tr, fan_info.path, draws, seed, "train features")
    x_va, t_va = read_features(va, fan_info.path, draws, seed + 1, "val features")
    mean, scale = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    w, b = fit_logistic((x_tr - mean) / scale, t_tr, ridge)
    head = OriginHead(f"origin_{fan_info.name}", fan_info.name, tuple(classes), mean, scale, w, b, 1.0, {})
    p_va, p_tr = head.p_foreign(x_va), head.p_foreign(x_tr)
    threshold = float(min(1.0, np.nextafter(np.quantile(p_va[t_va == 0], 1 - fpr), np.inf)))
    metrics = {
        "train_readings": {"rawproof": int((t_tr == 0).sum()), "foreign": int((t_tr == 1).sum())},
        "val_readings": {"rawproof": int((t_va == 0).sum()), "foreign": int((t_va == 1).sum())},
        "train_rawproof_read_foreign": float((p_tr[t_tr == 0] >= threshold).mean()),
        "train_foreign_read_foreign": float((p_tr[t_tr == 1] >= threshold).mean()),
        "val_rawproof_read_foreign": float((p_va[t_va == 0] >= threshold).mean()),
        "val_foreign_read_foreign": float((p_va[t_va == 1] >= threshold).mean()) if (t_va == 1).any() else None,
        "seconds": time.perf_counter() - t0,
    }
    meta = {
        "kind": "origin-head", "features": FEATURES, "nip_name": nip_info.name, "nip_sha256": nip_info.sha256,
        "fan_sha256": fan_info.sha256, "trained_channel": PLATFORM_SET.to_metadata(), "metrics": metrics,
        "rule": "P(foreign) = sigmoid(weights . (features - mean) / scale + bias) >= threshold",
        "config": {"draws": draws, "seed": seed, "fpr": fpr, "ridge": ridge, "data": data, "channels": "trained, web75 + draws"},
    }
    head = OriginHead(head.name, head.fan_name, head.classes, mean, scale, w, b, threshold, meta)
    text = json.dumps(head.to_json(), indent=2) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "origin.json").write_text(text)
    head_path(fan_info).write_text(text)
    log.info("origin head %s (threshold %.3f): %s", head_path(fan_info), threshold, metrics)
    return metrics


def _run(args: argparse.Namespace) -> int:
    m = train_origin(args.nip, args.fan, args.data, Path(args.out), draws=args.draws, seed=args.seed, fpr=args.fpr, ridge=args.ridge)
    print(json.dumps(m, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-origin", help="train the origin head (rawproof NIP output vs other pipelines)",
                              description=(__doc__ or "").split("\n\n")[0])
    g = p.add_argument_group("models and data")
    g.add_argument("--nip", required=True, help="ONNX NIP (frozen; its developments are class 0)")
    g.add_argument("--fan", required=True, help="ONNX FAN whose logits the head reads; the head is written beside it")
    g.add_argument("--data", default="cache/dataset")
    g.add_argument("--out", required=True, help="run folder (a copy of the head as origin.json)")
    t = p.add_argument_group("training")
    t.add_argument("--draws", type=int, default=2, help="channels drawn from the platform set per image, on top of trained and web75")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ridge", type=float, default=1e-2)
    t.add_argument("--fpr", type=float, default=0.01, help="largest share of val rawproof readings that may read foreign")
    p.set_defaults(func=_run)
