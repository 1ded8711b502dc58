"""Train the origin head: "was this image developed by our NIP at all?" (``train-origin``).

A FAN learns the difference between its NIP's output and that output manipulated; shown a
photo from another pipeline it has no right answer and often says "manipulated". The origin
head is a separate small network (the FAN architecture at 16 filters, 2 classes ``native``
= developed by this NIP, ``foreign`` = not), trained with the NIP frozen on whole-image data
of the train split (``rawproof_train.foreign``: NIP developments vs. the original photos,
the reference ISP and LibRaw developments), each batch through one channel drawn from the
platform set (:data:`rawproof.platforms.PLATFORM_SET`, real codecs), patches cropped at
random positions of the channel's output.

The image-level rule is the mean P(foreign) over the non-overlapping patches of an image,
as :func:`rawproof.forensics.analyze` computes it; its threshold ``foreign_threshold`` is
set on the val split (each image through ``--val-draws`` channels of the set) so that at most
``--fpr`` of the rawproof images read foreign. The head is exported next to the FAN as ONNX
with metadata ``role: "origin"`` and ``origin: {fan_name, nip_name, nip_sha256,
foreign_threshold}``; :func:`rawproof.verify` uses it for images the FAN analyses without a
trusted manifest (verdict ``NO_RAWPROOF_TRACES``).

Re-run on a new pair::

    nice -n 10 python -m rawproof_train train-origin --nip sdk/rawproof/models/<nip>.onnx \\
        --fan sdk/rawproof/models/<fan>.onnx --out runs/origin_<nip> --steps 1500
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rawproof.models import ModelKind, find_model
from rawproof.platforms import PLATFORM_SET, PlatformChannel
from rawproof_train.fan import FAN
from rawproof_train.foreign import WholeImage, foreign_images, rawproof_images

__all__ = ["channel_patches", "train_origin", "image_score", "register"]

log = logging.getLogger(__name__)

PATCH = 64
CLASSES = ["native", "foreign"]


def channel_patches(img: np.ndarray, channel: PlatformChannel, n: int, rng: np.random.Generator, patch: int = PATCH) -> np.ndarray:
    """``n`` random ``patch`` x ``patch`` crops of one random region of ``img`` sent through ``channel``.

    The region (side ``ceil(2.5 patch / scale)``, or the whole image if smaller) goes through
    the channel with real codecs; the crops are then taken at random positions of its output.

    Returns:
        float32, n x 3 x patch x patch, [0, 1].
    """
    h, w = img.shape[:2]
    side = int(np.ceil(2.5 * patch / channel.scale))
    y = int(rng.integers(0, max(1, h - side + 1)))
    x = int(rng.integers(0, max(1, w - side + 1)))
    out = channel.apply_rgb(np.ascontiguousarray(img[y:y + side, x:x + side]))
    oh, ow = out.shape[:2]
    crops = np.empty((n, 3, patch, patch), np.float32)
    for k in range(n):
        cy, cx = int(rng.integers(0, oh - patch + 1)), int(rng.integers(0, ow - patch + 1))
        crops[k] = out[cy:cy + patch, cx:cx + patch].transpose(2, 0, 1) / 255.0
    return crops


def _batch(images: list[WholeImage], channel: PlatformChannel, n: int, rng: np.random.Generator) -> np.ndarray:
    per = 4  # crops per source region
    picks = rng.integers(0, len(images), size=(n + per - 1) // per)
    return np.concatenate([channel_patches(images[int(i)].rgb, channel, per, rng) for i in picks])[:n]


@torch.no_grad()
def image_score(model: torch.nn.Module, rgb: np.ndarray, patch: int = PATCH) -> float | None:
    """Mean P(foreign) over the non-overlapping patches of uint8 ``rgb`` (``None``: smaller than a patch)."""
    from rawproof.forensics import patch_origins

    ys, xs = patch_origins(rgb.shape[0], patch, patch), patch_origins(rgb.shape[1], patch, patch)
    if not ys.size or not xs.size:
        return None
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0
    crops = torch.stack([x[:, y:y + patch, c:c + patch] for y in ys for c in xs])
    p = torch.cat([F.softmax(model(crops[i:i + 64]), dim=1)[:, 1] for i in range(0, len(crops), 64)])
    return float(p.mean())


def _val_scores(model: torch.nn.Module, images: list[WholeImage], draws: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    scores = []
    for img in images:
        for _ in range(draws):
            s = image_score(model, PLATFORM_SET.sample(rng).apply_rgb(img.rgb))
            if s is not None:
                scores.append(s)
    return scores


def train_origin(nip: str, fan: str, data: str, out: Path, *, steps: int, batch: int, lr: float, seed: int,
                 val_draws: int, fpr: float) -> dict:
    """Train, calibrate on val, export; returns the metrics written to ``out/origin.json``."""
    from rawproof_export.onnx_export import export_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    nip_info, fan_info = find_model(nip, ModelKind.NIP), find_model(fan, ModelKind.FAN)
    t0 = time.perf_counter()
    ours = rawproof_images(data, nip, ("train",))
    theirs = foreign_images(data, ("train",))
    log.info("train split: %d rawproof, %d foreign images (%.0f s)", len(ours), len(theirs), time.perf_counter() - t0)
    model = FAN(n_classes=2, n_filters=16)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    half = batch // 2
    labels = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(batch - half, dtype=torch.long)])
    losses = []
    for step in range(1, steps + 1):
        ch = PLATFORM_SET.sample(rng)
        x = torch.from_numpy(np.concatenate([_batch(ours, ch, half, rng), _batch(theirs, ch, batch - half, rng)]))
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.project_constraints()
        losses.append(loss.item())
        if step % 100 == 0:
            log.info("step %d loss %.4f (%.0f s)", step, float(np.mean(losses[-100:])), time.perf_counter() - t0)
    model.eval()
    val_ours, val_theirs = rawproof_images(data, nip, ("val",)), foreign_images(data, ("val",))
    s_ours = _val_scores(model, val_ours, val_draws, seed + 1)
    s_theirs = _val_scores(model, val_theirs, val_draws, seed + 2)
    threshold = float(min(1.0, np.nextafter(np.quantile(s_ours, 1 - fpr), np.inf)))
    metrics = {
        "val_rawproof_images": len(val_ours), "val_foreign_images": len(val_theirs), "val_draws": val_draws,
        "val_rawproof_read_foreign": float(np.mean(np.array(s_ours) >= threshold)),
        "val_foreign_read_foreign": float(np.mean(np.array(s_theirs) >= threshold)),
        "val_mean_p_foreign_rawproof": float(np.mean(s_ours)), "val_mean_p_foreign_foreign": float(np.mean(s_theirs)),
        "final_train_loss": float(np.mean(losses[-100:])), "train_seconds": time.perf_counter() - t0,
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "origin.pt")
    meta = {
        "name": f"origin_{fan_info.name}", "architecture": "fan(n_filters=16)", "classes": CLASSES, "role": "origin",
        "patch_size": PATCH, "trained_channel": PLATFORM_SET.to_metadata(),
        "origin": {"fan_name": fan_info.name, "nip_name": nip_info.name, "nip_sha256": nip_info.sha256,
                   "foreign_threshold": threshold, "rule": "mean P(foreign) over non-overlapping patches >= foreign_threshold"},
        "trained_on": nip_info.metadata.get("trained_on"), "metrics": metrics,
        "config": {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "val_draws": val_draws, "fpr": fpr, "data": data},
    }
    onnx_path = fan_info.path.parent / f"origin_{fan_info.name}.onnx"
    export_model(model, "fan", onnx_path, meta, parity_sizes=[(2, 64, 64)])
    (out / "origin.json").write_text(json.dumps({**meta, "onnx": onnx_path.name}, indent=2, default=float) + "\n")
    log.info("origin head %s: %s", onnx_path, metrics)
    return metrics


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    train_origin(args.nip, args.fan, args.data, Path(args.out), steps=args.steps, batch=args.batch, lr=args.lr,
                 seed=args.seed, val_draws=args.val_draws, fpr=args.fpr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-origin", help="train the origin head (rawproof NIP output vs other pipelines)",
                              description=(__doc__ or "").split("\n\n")[0])
    g = p.add_argument_group("models and data")
    g.add_argument("--nip", required=True, help="ONNX NIP (frozen; its developments are the 'native' class)")
    g.add_argument("--fan", required=True, help="ONNX FAN the head serves; the head is written beside it")
    g.add_argument("--data", default="cache/dataset")
    g.add_argument("--out", required=True, help="run folder (origin.pt, origin.json)")
    t = p.add_argument_group("training")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    c = p.add_argument_group("calibration")
    c.add_argument("--val-draws", type=int, default=8, help="channels drawn per val image")
    c.add_argument("--fpr", type=float, default=0.01, help="largest share of val rawproof images read foreign")
    p.set_defaults(func=_run)
