"""Training loops: NIP pretraining, FAN baseline, joint NIP+FAN optimisation, lambda sweep.

After Korus & Memon, "Content Authentication for Neural Imaging Pipelines" (CVPR 2019):
the NIP develops RGGB patches, each developed patch goes through every manipulation class,
then through the distribution channel (2x bilinear downscale + differentiable JPEG q50),
and the FAN classifies the result. Three regimes share one loop (:func:`run`):

* ``train-nip``   -- NIP alone, loss = MSE(NIP(stack), reference target);
* ``train-fan``   -- FAN alone on the outputs of a frozen NIP: the fidelity-only one (the baseline),
  or a joint run's, to fine-tune its FAN (``--fan-checkpoint``), also behind real libjpeg
  (``backend=libjpeg``; no gradient has to pass the codec when the NIP is frozen);
* ``train-joint`` -- both, loss = CE(FAN) + lambda * MSE8(NIP), starting from the pretrained NIP.

Two protocols. The paper's (``region: 0``): the NIP develops isolated ``patch`` px patches and the
FAN sees each whole, so a NIP can learn traces that lean on the patch borders, which do not exist
when ``develop()`` runs it on a whole frame. The product's (``region`` > 0, e.g. 256): the NIP
develops a ``region`` px window (context, as in a whole frame), every manipulation is applied to
the whole window, and the FAN sees ``crops`` crops of ``patch`` px per window at uniform random
integer offsets at least ``context`` px from its border, so the 2x downscale phase and the JPEG
8x8 grid take every alignment relative to the NIP output. ``backend`` may be a list drawn per
batch (e.g. real libjpeg with a straight-through gradient, the dJPEG, or no codec), and ``vis``
weighs :func:`rawproof_train.visibility.flat_gradient_penalty` (trace energy in flat areas).

``MSE8`` is the mean squared error in 8-bit units (255^2 x MSE on [0,1]), so lambda reads the
same at any fidelity level: at 40 dB PSNR, MSE8 = 6.5; lambda = 0.01 then weighs the fidelity
term like a cross-entropy of 0.065.

Every run writes to ``<out>/``: ``config.yaml`` (resolved config, seed, git commit),
``log.csv`` (one row per logged step), ``state.pt`` (everything needed to resume: models,
optimisers, step, RNG states), and the export-format checkpoints ``nip.pt`` / ``fan.pt``
(see :mod:`rawproof_export.onnx_export`). Re-running the same command resumes from
``state.pt``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from rawproof_train import distributed as ddp
from rawproof_train.channel import RandomChannel
from rawproof_train.data import Pair, load_manifest, load_pair, sample_patches
from rawproof_train.fan import FAN
from rawproof_train.manipulations import MANIPULATIONS, create_manipulation
from rawproof_train.nip import INetPlus, create_nip
from rawproof_train.visibility import flat_gradient_penalty

__all__ = ["TrainConfig", "load_config", "run", "register", "PatchSampler", "git_commit"]

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("configs")
REGIMES = ("nip", "fan", "joint")
BACKENDS = ("torch", "libjpeg", "libjpeg-st", "none")


def _choices(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


@dataclass
class TrainConfig:
    """Resolved training configuration; YAML keys and ``--set key=value`` overrides use these names.

    Units: patch sizes in pixels of the NIP *output* (full resolution); ``steps`` are optimiser
    steps; ``lr_decay`` multiplies the learning rate every ``decay_every`` steps.
    """

    regime: str = "joint"
    data: str = "cache/dataset"
    out: str = "runs/joint"
    nip: str = "inet"
    # Filters of the first UNet level (unet: 32 = the paper's; inetplus's residual: 8 = quarter
    # width); None keeps the architecture's default. Saved in nip.pt as arch_kwargs.
    nip_width: int | None = None
    nip_checkpoint: str | None = None
    fan_checkpoint: str | None = None
    classes: list[str] = field(default_factory=lambda: list(MANIPULATIONS))
    patch: int = 128
    # Product protocol (see the module docstring): NIP window side in output px (0 = the paper's
    # patch-wise protocol), the least distance of a FAN crop from the window border, crops per window.
    region: int = 0
    context: int = 0
    crops: int = 1
    batch: int = 20
    steps: int = 2000
    lr: float = 1e-4
    nip_lr: float | None = None
    lr_decay: float = 0.85
    decay_every: int = 600
    lam: float = 0.01
    # Weight of the flat-area trace penalty (squared 8-bit DN of the residual's row/column differences).
    vis: float = 0.0
    downscale: int = 2
    # A list draws one value per step (RandomChannel); its first value is the nominal channel
    # that validation uses. Repeat a value to weight it.
    quality: int | list[int] = 50
    subsampling: str | list[str] = "444"
    resize: str | list[str] = "box"
    rounding: str = "hard"
    # "libjpeg": real JPEG (Pillow) in the channel. It passes no gradient, so only train-fan, whose
    # NIP is frozen, may use it: a FAN fine-tuned behind the very codec it is evaluated through.
    # "libjpeg-st": real JPEG forward, straight-through gradient; "none": downscale only. A list
    # draws one per step; its first value is the nominal channel validation uses.
    backend: str | list[str] = "torch"
    patches_per_image: int = 32
    val_patches: int = 120
    val_every: int = 100
    ckpt_every: int = 100
    seed: int = 0
    threads: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        if self.patch % (2 * self.downscale * 8):
            raise ValueError(f"patch {self.patch} must be a multiple of {2 * self.downscale * 8} (Bayer x channel x JPEG block)")
        if self.batch < 1 or self.steps < 0 or self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("batch >= 1, steps >= 0, lr > 0 and 0 < lr_decay <= 1 are required")
        for key in ("quality", "subsampling", "resize"):
            if isinstance(getattr(self, key), list) and not getattr(self, key):
                raise ValueError(f"{key} must be a value or a non-empty list of values")
        if self.nip_width is not None and (self.nip.lower() not in ("unet", "inetplus") or isinstance(self.nip_width, bool)
                                           or not isinstance(self.nip_width, int) or self.nip_width < 1):
            raise ValueError(f"nip_width (an integer >= 1) applies to unet and inetplus only, got {self.nip_width!r} for {self.nip!r}")
        backends = _choices(self.backend)
        if not backends or any(b not in BACKENDS for b in backends):
            raise ValueError(f"backend must be one of {BACKENDS} or a non-empty list of them, got {self.backend!r}")
        if "libjpeg" in backends and self.regime != "fan":
            raise ValueError(f"backend 'libjpeg' passes no gradient to the NIP: train-{self.regime} needs 'torch' or 'libjpeg-st' (only train-fan may use libjpeg)")
        if self.region:
            if self.region % 32 or self.region - 2 * self.context < self.patch or self.context < 0 or self.crops < 1:
                raise ValueError(f"region {self.region} must be a multiple of 32 holding a {self.patch} px crop {self.context} px from each border, with crops >= 1")
        elif self.context or self.crops != 1:
            raise ValueError("context and crops apply to the product protocol only (set region)")
        if self.vis < 0:
            raise ValueError(f"vis must be >= 0, got {self.vis}")
        unknown = [c for c in self.classes if c not in MANIPULATIONS]
        if unknown or len(self.classes) < 2:
            raise ValueError(f"classes must be >= 2 of {list(MANIPULATIONS)}, got {self.classes}")


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None, **kw: Any) -> TrainConfig:
    """YAML defaults (``path`` or the packaged ``configs/cpu.yaml``), then ``key=value`` overrides, then ``kw``."""
    values: dict[str, Any] = {}
    src = Path(path) if path else CONFIG_DIR / "cpu.yaml"
    values.update(yaml.safe_load(src.read_text()) or {})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"bad override {item!r}; use key=value with key in {sorted(names)}")
        values[key] = yaml.safe_load(raw)
    # YAML 1.1 reads "1e-3" as a string; coerce by the field's declared type.
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    for key, val in values.items():
        if isinstance(val, str) and types.get(key, "").startswith("float"):
            values[key] = float(val)
    values.update({k: v for k, v in kw.items() if v is not None})
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    return TrainConfig(**values)


def git_commit() -> str:
    """Commit of the checkout this code runs from, ``"unknown"`` outside git."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class PatchSampler:
    """Random aligned (stack, target) patch batches from one split of the prepared cache.

    Keeps a pool of pre-cut patches in memory, refilled from randomly chosen images, so a
    step costs no disk access. All randomness comes from ``rng`` (seeded by the caller).

    Args:
        root: Dataset cache folder (``python -m rawproof_train prepare``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        patch: Target patch side in pixels (the stack patch is half).
        patches_per_image: Patches cut from an image each time it is visited.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, patch: int, patches_per_image: int, rng: np.random.Generator) -> None:
        manifest = load_manifest(root)
        self.ids = sorted(p["id"] for p in manifest["pairs"] if p["split"] == split)
        if not self.ids:
            raise ValueError(f"split {split!r} of {root} is empty")
        self.pairs: list[Pair] = [load_pair(root, i) for i in self.ids]
        self.patch, self.per_image, self.rng = patch, patches_per_image, rng
        self.trained_on = str(manifest.get("dataset_sha256", manifest.get("hash", "")))
        self._pool: list[tuple[np.ndarray, np.ndarray]] = []

    def _refill(self) -> None:
        for k in self.rng.permutation(len(self.pairs)):
            self._pool += sample_patches(self.pairs[k], self.patch, self.per_image, self.rng)
        order = self.rng.permutation(len(self._pool))
        self._pool = [self._pool[i] for i in order]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(stack N x 4 x p/2 x p/2, target N x 3 x p x p)`` float32 tensors in [0, 1]."""
        while len(self._pool) < n:
            before = len(self._pool)
            self._refill()
            if len(self._pool) == before:
                raise ValueError("every image of the split is too small or too flat for the patch size")
        take, self._pool = self._pool[:n], self._pool[n:]
        return torch.from_numpy(np.stack([s for s, _ in take])), torch.from_numpy(np.stack([t for _, t in take]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (``a`` clipped first), averaged over the batch in the MSE domain."""
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def random_crops(x: torch.Tensor, size: int, margin: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` crops of ``size`` px from each image, at uniform random integer offsets >= ``margin`` px from every border.

    Shape: x (N, C, H, W) -> (N * k, C, size, size), crops of image i at rows i*k .. i*k + k - 1.
    """
    n, _, h, w = x.shape
    ys = torch.randint(margin, h - margin - size + 1, (n, k), generator=generator).tolist()
    xs = torch.randint(margin, w - margin - size + 1, (n, k), generator=generator).tolist()
    return torch.stack([x[i, :, y:y + size, xx:xx + size] for i in range(n) for y, xx in zip(ys[i], xs[i])])


def forensic_batch(
    rgb: torch.Tensor, manipulations: list[nn.Module], channel: nn.Module,
    crop: tuple[int, int, int] | None = None, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply every manipulation to every developed patch (or window), then the channel; return (FAN input, labels).

    ``crop = (size, margin, k)``: the product protocol; after the manipulation, ``k`` crops of
    ``size`` px per window at random offsets (:func:`random_crops`) go through the channel.
    """
    rgb = rgb.clamp(0, 1)
    x = torch.cat([m(rgb) for m in manipulations])
    y = torch.arange(len(manipulations)).repeat_interleave(rgb.shape[0])
    if crop is not None:
        x = random_crops(x, *crop, generator=generator)
        y = y.repeat_interleave(crop[2])
    return channel(x), y


def _crop_spec(cfg: TrainConfig) -> tuple[int, int, int] | None:
    return (cfg.patch, cfg.context, cfg.crops) if cfg.region else None


@dataclass
class _Run:
    cfg: TrainConfig
    nip: nn.Module
    fan: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    manipulations: list[nn.Module]
    channel: nn.Module
    step: int = 0
    # DistributedDataParallel wrappers used for the forward pass under torchrun; the bare
    # modules above stay the ones checkpointed, so state_dict keys are the same either way.
    nip_ddp: nn.Module | None = None
    fan_ddp: nn.Module | None = None


def _load_weights(module: nn.Module, path: str, kind: str) -> None:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} checkpoint")
    if isinstance(module, INetPlus) and str(ckpt.get("arch", "")).lower() == "inet":
        # INetPlus starts from a trained INet with a zero residual (INetPlus.from_inet), so
        # its fidelity-only starting point is exactly that INet.
        module.inet.load_state_dict(ckpt["state_dict"])
        return
    own = module.state_dict() if kind == "nip" else {}
    if any(k in own and v.shape != own[k].shape for k, v in ckpt["state_dict"].items()):
        width = (ckpt.get("arch_kwargs") or {}).get("base_filters", "the architecture's default")
        raise ValueError(f"{path} holds a NIP of another width (nip_width: {width}); set nip_width to match")
    module.load_state_dict(ckpt["state_dict"])


def _nip_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    return {} if cfg.nip_width is None else {"base_filters": cfg.nip_width}


def _build(cfg: TrainConfig) -> _Run:
    nip = create_nip(cfg.nip, **_nip_kwargs(cfg)).to(cfg.device)
    if cfg.nip_checkpoint:
        _load_weights(nip, cfg.nip_checkpoint, "nip")
    elif cfg.regime != "nip":
        raise ValueError(f"train-{cfg.regime} starts from a pretrained NIP: set nip_checkpoint")
    fan = None
    params: list[dict[str, Any]] = []
    if cfg.regime in ("fan", "joint"):
        fan = FAN(n_classes=len(cfg.classes)).to(cfg.device)
        if cfg.fan_checkpoint:
            _load_weights(fan, cfg.fan_checkpoint, "fan")
        params.append({"params": fan.parameters(), "lr": cfg.lr})
    if cfg.regime in ("nip", "joint"):
        params.append({"params": nip.parameters(), "lr": cfg.nip_lr or cfg.lr})
    else:
        nip.requires_grad_(False)
        nip.eval()
    opt = torch.optim.Adam(params)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.decay_every, gamma=cfg.lr_decay)
    manip = [create_manipulation(c).to(cfg.device) for c in cfg.classes]
    return _Run(cfg, nip, fan, opt, sched, manip, make_channel(cfg))


def make_channel(cfg: TrainConfig, rounding: str | None = None) -> RandomChannel:
    """The training channel of ``cfg`` (one fixed channel when no key is a list)."""
    # str(): YAML reads an unquoted 444 as an integer.
    return RandomChannel(
        cfg.downscale, [int(q) for q in _choices(cfg.quality)], rounding or cfg.rounding,
        [str(v) for v in _choices(cfg.subsampling)], [str(v) for v in _choices(cfg.resize)], [str(v) for v in _choices(cfg.backend)],
    )


def describe_channel(cfg: TrainConfig | Mapping[str, Any]) -> str:
    """Human-readable training channel, e.g. ``2x box down + dJPEG q50 444 (hard rounding)``.

    ``cfg`` may also be a run's raw ``config.yaml`` dict (the report reads those); keys it lacks
    (runs older than the key) take the :class:`TrainConfig` defaults.
    """
    c = {**dataclasses.asdict(TrainConfig()), **cfg} if isinstance(cfg, Mapping) else dataclasses.asdict(cfg)

    def fmt(value: Any, unit: str = "") -> str:
        vals = list(dict.fromkeys(_choices(value)))
        return f"{unit}{vals[0]}" if len(vals) == 1 else "{" + ", ".join(f"{unit}{v}" for v in vals) + "}"

    codec_names = {"torch": "dJPEG", "libjpeg": "libjpeg", "libjpeg-st": "libjpeg (straight-through)", "none": "no codec"}
    backends = _choices(c["backend"])
    desc = (f"{c['downscale']}x {fmt(c['resize'])} down + {fmt([codec_names[b] for b in backends])} {fmt(c['quality'], 'q')} "
            f"{fmt(c['subsampling'])}" + (f" ({c['rounding']} rounding)" if "torch" in backends else ""))
    if any(isinstance(c[k], list) for k in ("quality", "subsampling", "resize", "backend")):
        desc += ", drawn per step"
    if c.get("region"):
        desc += f"; product protocol: {c['crops']} crops of {c['patch']} px per {c['region']} px NIP window, >= {c['context']} px inside"
    return desc


def _state(run: _Run, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "step": run.step,
        "nip": run.nip.state_dict(),
        "fan": None if run.fan is None else run.fan.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "config": dataclasses.asdict(run.cfg),
    }


def _export_ckpt(module: nn.Module, kind: str, arch: str, cfg: TrainConfig, metrics: dict, trained_on: str) -> dict[str, Any]:
    return {
        "arch": arch,
        "arch_kwargs": _nip_kwargs(cfg) if kind == "nip" else {},
        "kind": kind,
        "state_dict": {k: v.detach().cpu().float() for k, v in module.state_dict().items()},
        "config": dataclasses.asdict(cfg),
        "classes": list(cfg.classes) if kind == "fan" else [],
        "metrics": metrics,
        "trained_on": trained_on,
        "git_commit": git_commit(),
    }


@torch.no_grad()
def validate(run: _Run, val: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """NIP PSNR against the reference target and, with a FAN, accuracy through the nominal training channel (dJPEG hard-rounded, or libjpeg)."""
    run.nip.eval()
    stack, target = val
    rgb = torch.cat([run.nip(s) for s in stack.split(40)])
    out = {"val_psnr_db": psnr(rgb, target)}
    if run.fan is not None:
        run.fan.eval()
        chan = make_channel(run.cfg, rounding="hard").nominal
        # Validation crops come from their own seeded generator: the same positions at every validation.
        gen = torch.Generator().manual_seed(run.cfg.seed + 7)
        correct = total = 0
        for chunk in rgb.split(20 if not run.cfg.region else max(1, 20 // run.cfg.crops)):
            x, y = forensic_batch(chunk, run.manipulations, chan, _crop_spec(run.cfg), gen)
            correct += int((run.fan(x).argmax(1) == y).sum())
            total += len(y)
        out["val_accuracy"] = correct / total
        run.fan.train()
    if run.cfg.regime != "fan":
        run.nip.train()
    return out


def train_step(run: _Run, stack: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """One optimiser step of the configured regime; returns the step's loss terms."""
    cfg = run.cfg
    rgb = (run.nip if run.nip_ddp is None else run.nip_ddp)(stack)
    mse8 = F.mse_loss(rgb, target) * 255.0**2
    out = {"mse8": mse8.item()}
    fidelity = mse8
    if cfg.vis and cfg.regime != "fan":
        vis = flat_gradient_penalty(rgb, target)
        out["vis"] = vis.item()
        # lambda scales the whole fidelity side, so vis reads as "squared DN of flat-area residual vs of MSE".
        fidelity = mse8 + cfg.vis * vis
    if cfg.regime == "nip":
        loss = fidelity
    else:
        x, y = forensic_batch(rgb, run.manipulations, run.channel, _crop_spec(cfg))
        logits = (run.fan if run.fan_ddp is None else run.fan_ddp)(x)
        ce = F.cross_entropy(logits, y)
        out.update(ce=ce.item(), accuracy=(logits.argmax(1) == y).float().mean().item())
        loss = ce + cfg.lam * fidelity if cfg.regime == "joint" else ce
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    if run.fan is not None:
        run.fan.project_constraints()
    out["loss"] = loss.item()
    return out


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step``: a run killed after its last checkpoint logged steps it will redo."""
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",", 1)[0]) <= step]
    if len(keep) != len(lines):
        path.write_text("".join(keep))


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume) one configuration to ``cfg.steps``; return the final validation metrics.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this runs data-parallel: each rank draws
    ``batch / WORLD_SIZE`` patches from a generator seeded ``(seed, rank)``, DDP averages the
    gradients, and rank 0 alone validates and writes (see :mod:`rawproof_train.distributed`).
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    env = ddp.init_distributed(cfg.device)
    main = env is None or env.is_main
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = ddp.rank_rng(cfg.seed, env)
    per_rank = ddp.shard_size(cfg.batch, env)
    side = cfg.region or cfg.patch
    # Validation draws as many FAN crops as the paper protocol's val_patches, in fewer, larger windows.
    n_val = max(1, cfg.val_patches // (cfg.crops if cfg.region else 1))
    val_sampler = PatchSampler(cfg.data, "val", side, max(1, n_val // 4), np.random.default_rng(cfg.seed + 1))
    val = val_sampler.batch(min(n_val, len(val_sampler._pool) or n_val))
    train = PatchSampler(cfg.data, "train", side, cfg.patches_per_image, rng)
    run_ = _build(cfg)
    state_path = out / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location=cfg.device, weights_only=False)
        run_.nip.load_state_dict(state["nip"])
        if run_.fan is not None and state["fan"] is not None:
            run_.fan.load_state_dict(state["fan"])
        run_.optimizer.load_state_dict(state["optimizer"])
        run_.scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        if env is not None:
            if state.get("world_size") != env.world_size:
                raise ValueError(f"{state_path} was written by {state.get('world_size', 1)} process(es); resume with as many")
            rng.bit_generator.state = state["ddp_numpy_rng"][env.rank]
        torch.set_rng_state(state["torch_rng"])
        run_.step = int(state["step"])
        log.info("resumed %s at step %d", out, run_.step)
        # A key missing from an older checkpoint had its field's default then.
        then = dataclasses.asdict(TrainConfig()) | state["config"]
        changed = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "steps") and then.get(k) != v}
        if changed and main:
            # A continuation with other settings (e.g. a randomised channel from a fixed-channel
            # checkpoint): config.yaml keeps the original and records what changed, and when.
            log.warning("resuming %s at step %d with changed settings %s", out, run_.step, changed)
            meta = yaml.safe_load((out / "config.yaml").read_text()) or {}
            meta.setdefault("changed_on_resume", []).append({"step": run_.step, "git_commit": git_commit(), **changed})
            (out / "config.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    elif main:
        meta = dataclasses.asdict(cfg) | {"git_commit": git_commit(), "trained_on": train.trained_on}
        (out / "config.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    run_.nip_ddp = ddp.wrap_ddp(run_.nip, env)
    run_.fan_ddp = ddp.wrap_ddp(run_.fan, env)
    log_path = out / "log.csv"
    new_log = not log_path.exists() or run_.step == 0
    if not new_log and main:
        _truncate_log(log_path, run_.step)
    fields = ["step", "time_s", "lr", "loss", "mse8", "vis", "ce", "accuracy", "val_psnr_db", "val_accuracy"]
    metrics: dict[str, float] = {}
    with open(log_path if main else os.devnull, "w" if new_log else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new_log:
            writer.writeheader()
        t0 = time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=run_.step, desc=f"train-{cfg.regime}", unit="step", dynamic_ncols=True, disable=not main)
        if cfg.regime != "fan":
            run_.nip.train()
        while run_.step < cfg.steps:
            stack, target = train.batch(per_rank)
            row = train_step(run_, stack.to(cfg.device), target.to(cfg.device))
            run_.step += 1
            bar.update(1)
            last = run_.step == cfg.steps
            if env is not None and (run_.step % cfg.val_every == 0 or last or run_.step % 10 == 0):
                row = ddp.mean_over_ranks(row, env, cfg.device)
            if main and (run_.step % cfg.val_every == 0 or last):
                metrics = validate(run_, (val[0].to(cfg.device), val[1].to(cfg.device)))
                row |= metrics
                bar.set_postfix({k: round(v, 3) for k, v in metrics.items()})
            if run_.step % cfg.val_every == 0 or last or run_.step % 10 == 0:
                writer.writerow({"step": run_.step, "time_s": round(time.perf_counter() - t0, 2), "lr": run_.scheduler.get_last_lr()[0], **row})
                fh.flush()
            if run_.step % cfg.ckpt_every == 0 or last:
                state = _state(run_, rng)
                if env is not None:
                    state |= {"world_size": env.world_size, "ddp_numpy_rng": ddp.gather_objects(rng.bit_generator.state, env)}
                if main:
                    torch.save(state, state_path.with_suffix(".tmp"))
                    os.replace(state_path.with_suffix(".tmp"), state_path)
        bar.close()
    if not main:
        metrics = ddp.gather_objects(metrics, env)[0]
        ddp.shutdown(env)
        return metrics
    if not metrics:
        metrics = validate(run_, val)
    channel_desc = f"{describe_channel(cfg)}, val patches through its nominal channel"
    trained_on = train.trained_on
    if cfg.regime in ("nip", "joint"):
        torch.save(_export_ckpt(run_.nip, "nip", cfg.nip, cfg, {"psnr_db": metrics["val_psnr_db"], "regime": cfg.regime}, trained_on), out / "nip.pt")
    if run_.fan is not None:
        fan_metrics = {"accuracy": metrics.get("val_accuracy"), "channel": channel_desc, "regime": cfg.regime, "nip": cfg.nip}
        torch.save(_export_ckpt(run_.fan, "fan", "fan", cfg, fan_metrics, trained_on), out / "fan.pt")
    (out / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
    if env is not None:
        ddp.gather_objects(metrics, env)
        ddp.shutdown(env)
    return metrics


def _add_common(p: argparse.ArgumentParser, regime: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", help="YAML defaults (default: the packaged configs/cpu.yaml; configs/gpu.yaml for the GPU machine)")
    g.add_argument("--data", help="dataset cache from `prepare` (default cache/dataset)")
    g.add_argument("--out", help=f"run folder (default runs/{regime}); re-running resumes from its state.pt")
    g.add_argument("--steps", type=int, help="optimiser steps")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", choices=["cpu", "cuda"])
    g.add_argument("--threads", type=int, help="torch CPU threads (0 = torch default)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override any config key, e.g. --set batch=10")
    m = p.add_argument_group("models")
    m.add_argument("--nip", help="NIP architecture: inet, inetplus, unet or dnet")
    m.add_argument(
        "--nip-checkpoint",
        dest="nip_checkpoint",
        help="pretrained NIP (nip.pt from train-nip; an INet checkpoint also starts --nip inetplus)"
        + ("; train-nip fine-tunes it" if regime == "nip" else ""),
    )
    if regime == "joint":
        m.add_argument("--lambda", dest="lam", type=float, help="weight of the NIP fidelity term (MSE in 8-bit units)")
    if regime in ("fan", "joint"):
        m.add_argument(
            "--fan-checkpoint",
            dest="fan_checkpoint",
            help="start the FAN from this checkpoint (e.g. the baseline"
            + (", or a joint run's fan.pt to fine-tune it on that run's frozen NIP; --set backend=libjpeg trains it behind real JPEG)" if regime == "fan" else ")"),
        )


def _cmd(regime: str):
    def run_cmd(args: argparse.Namespace) -> int:
        kw = {k: getattr(args, k, None) for k in ("data", "out", "steps", "seed", "device", "threads", "nip", "nip_checkpoint", "lam", "fan_checkpoint")}
        kw["regime"] = regime
        kw.setdefault("out", None)
        if kw["out"] is None:
            kw["out"] = f"runs/{regime}"
        metrics = run(load_config(args.config, args.overrides, **kw))
        print(json.dumps(metrics, indent=2))
        return 0

    return run_cmd


def _sweep(args: argparse.Namespace) -> int:
    from rawproof_train.evaluate import evaluate_run

    rows = []
    for lam in args.lambdas:
        out = Path(args.out) / f"lambda_{lam:g}"
        cfg = load_config(args.config, args.overrides, regime="joint", data=args.data, out=str(out), nip_checkpoint=args.nip_checkpoint, lam=lam, steps=args.steps, nip=args.nip)
        run(cfg)
        res = evaluate_run(out, data=cfg.data, patches_per_class=args.patches_per_class)
        rows.append({"lambda": lam, **res.summary()})
    table = Path(args.out) / "sweep.json"
    table.write_text(json.dumps(rows, indent=2))
    for r in rows:
        print(json.dumps(r))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    helps = {
        "nip": "pretrain a NIP alone (L2 against the reference pipeline)",
        "fan": "train the FAN alone on a frozen NIP (the baseline; or fine-tune a joint run's FAN, also behind real libjpeg)",
        "joint": "train NIP and FAN jointly: CE + lambda * MSE8",
    }
    for regime in REGIMES:
        p = subparsers.add_parser(f"train-{regime}", help=helps[regime], description=helps[regime] + ". " + (__doc__ or "").split("\n\n")[1])
        _add_common(p, regime)
        p.set_defaults(func=_cmd(regime))
    p = subparsers.add_parser("sweep", help="joint training for several lambda values, evaluated through real libjpeg, one table")
    p.add_argument("--lambdas", type=float, nargs="+", required=True)
    p.add_argument("--nip-checkpoint", dest="nip_checkpoint", required=True)
    p.add_argument("--nip", default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--patches-per-class", dest="patches_per_class", type=int, default=1000)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_sweep)
