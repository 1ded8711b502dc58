"""Model pairs: a NIP and the FAN trained with it are one unit (DESIGN.md contract), in tiers.

A pair is two models whose JSONs name each other under ``paired`` (``kind``, ``name``,
``sha256``) and share ``pair`` (the pair's name) and ``tier`` (``cpu`` or ``full``).
``python -m rawproof_export pair`` writes them. The traces a NIP leaves are learnt together
with its FAN, so a FAN reads only images developed by its own NIP: :func:`rawproof.develop`
records both in the capture assertion, :func:`rawproof.verify` finds that FAN (in
``models_dir`` and the shipped models) and refuses a FAN paired with another NIP
(:func:`pairing_mismatch`).

Tiers: ``develop()`` picks ``full`` when the NIP runs on an accelerator (CUDA, TensorRT or
any provider but CPU) and ``cpu`` on ``CPUExecutionProvider``, unless told (``tier=``); when
only one tier is installed it is used. ``rawproof models`` lists the installed pairs.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rawproof.errors import ModelError
from rawproof.models import TIERS, ModelInfo, ModelKind, find_model, list_models, model_dirs

__all__ = [
    "ModelPair",
    "installed_models",
    "paired_fan",
    "list_pairs",
    "tier_for_provider",
    "choose_nip",
    "find_in_dirs",
    "pairing_mismatch",
    "register",
]

ModelDirs = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


@dataclass(frozen=True)
class ModelPair:
    """An installed NIP and its FAN, each naming the other by SHA-256.

    Attributes:
        name: The pair's name (metadata ``pair``; the NIP's name when absent).
        tier: ``"cpu"``, ``"full"``, or ``None`` for a pair exported before tiers.
        nip, fan: The two models.
    """

    name: str
    tier: str | None
    nip: ModelInfo
    fan: ModelInfo

    def to_dict(self) -> dict[str, Any]:
        """JSON form: name, tier, folder, and per model its name, file, sha256, precision and metrics."""
        def one(m: ModelInfo) -> dict[str, Any]:
            return {"name": m.name, "file": m.path.name, "sha256": m.sha256, "architecture": m.architecture,
                    "precision": m.metadata.get("precision"), "default": m.is_default, "metrics": m.metadata.get("metrics", {})}

        fan_meta = self.fan.metadata
        return {"name": self.name, "tier": self.tier, "folder": str(self.nip.path.parent),
                "patch_size": fan_meta.get("patch_size"), "trained_channel": fan_meta.get("trained_channel"),
                "nip": one(self.nip), "fan": one(self.fan)}


def installed_models(kind: ModelKind | str, models_dir: ModelDirs = None) -> list[ModelInfo]:
    """Models of ``kind`` in :func:`rawproof.models.model_dirs` order (``models_dir`` first), one per SHA-256.

    Raises:
        ModelError: a model in one of the folders has invalid metadata.
    """
    seen: set[str] = set()
    out: list[ModelInfo] = []
    for d in model_dirs(models_dir):
        for info in list_models(kind, d):
            if info.sha256 not in seen:
                seen.add(info.sha256)
                out.append(info)
    return out


def find_in_dirs(model: str | os.PathLike[str] | ModelInfo | None, kind: ModelKind | str, models_dir: ModelDirs = None) -> ModelInfo:
    """:func:`rawproof.models.find_model` over several folders: a name is looked up in ``models_dir`` first, then the shipped ones.

    Raises:
        ModelError: no such model in any folder, or of another kind.
    """
    if model is None or isinstance(model, ModelInfo) or str(model).endswith(".onnx") or "/" in str(model) or os.sep in str(model):
        dirs = model_dirs(models_dir)
        if model is None:
            for d in dirs:
                if list_models(kind, d):
                    return find_model(None, kind, d)
        return find_model(model, kind, dirs[-1])
    for d in model_dirs(models_dir):
        if any(i.name == str(model) for i in list_models(None, d)):
            return find_model(model, kind, d)
    names = sorted({i.name for d in model_dirs(models_dir) for i in list_models(None, d)})
    raise ModelError(f"no model named {model!r} in {[str(d) for d in model_dirs(models_dir)]}; available: {names}")


def paired_fan(nip: ModelInfo, models_dir: ModelDirs = None) -> ModelInfo | None:
    """The installed FAN that ``nip`` names under ``paired`` and that names ``nip`` back, else ``None``.

    Searched in ``nip``'s own folder first, then ``models_dir`` and the shipped models.
    """
    ref = nip.paired
    if ref is None:
        return None
    for fan in installed_models(ModelKind.FAN, [nip.path.parent, *model_dirs(models_dir)]):
        back = fan.paired
        if fan.sha256 == ref["sha256"] and back is not None and back["sha256"] == nip.sha256:
            return fan
    return None


def list_pairs(models_dir: ModelDirs = None) -> list[ModelPair]:
    """Every installed pair (a NIP whose paired FAN is installed), ``models_dir`` first, then the shipped ones.

    Raises:
        ModelError: a model in one of the folders has invalid metadata.
    """
    pairs = []
    for nip in installed_models(ModelKind.NIP, models_dir):
        fan = paired_fan(nip, models_dir)
        if fan is not None:
            pairs.append(ModelPair(str(nip.metadata.get("pair", nip.name)), nip.tier, nip, fan))
    return pairs


def tier_for_provider(provider: str) -> str:
    """``"cpu"`` for ``CPUExecutionProvider``, ``"full"`` for any accelerator (CUDA, TensorRT, ...)."""
    return "cpu" if provider == "CPUExecutionProvider" else "full"


def choose_nip(tier: str | None, provider: str, models_dir: ModelDirs = None) -> ModelInfo:
    """The NIP ``develop()`` uses when no model is named.

    Rule: among installed pairs (``models_dir`` first), those of ``tier`` (``None``: the
    provider's tier, :func:`tier_for_provider`; if no pair of that tier is installed, any
    installed pair: one tier installed means it is used); of those, the ones in the first
    folder that has any (``models_dir`` before the shipped models), the one marked ``default``
    first, else the first by name. With no pair installed, the default NIP as before pairs existed.

    Raises:
        ValueError: ``tier`` is not one of :data:`rawproof.models.TIERS`.
        ModelError: ``tier`` was asked for and no pair of it is installed, or no NIP at all.
    """
    if tier is not None and tier not in TIERS:
        raise ValueError(f"tier must be one of {list(TIERS)}, got {tier!r}")
    pairs = list_pairs(models_dir)
    if not pairs:
        if tier is not None:
            raise ModelError(f"tier {tier!r} asked for, but no model pair is installed in {[str(d) for d in model_dirs(models_dir)]}")
        return find_in_dirs(None, ModelKind.NIP, models_dir)
    want = tier or tier_for_provider(provider)
    cands = [p for p in pairs if p.tier == want]
    if not cands:
        if tier is not None:
            raise ModelError(f"no {tier} pair installed; installed: {sorted({f'{p.name} ({p.tier})' for p in pairs})}")
        cands = pairs
    # A folder given by the caller wins over the shipped models; within a folder, a default pair wins.
    first = cands[0].nip.path.parent
    return sorted((p for p in cands if p.nip.path.parent == first), key=lambda p: not p.nip.is_default)[0].nip


def pairing_mismatch(fan: ModelInfo, nip_ref: Any) -> str | None:
    """Why ``fan`` must not read the traces of an image developed by ``nip_ref``, else ``None``.

    Args:
        fan: The FAN about to analyse the image.
        nip_ref: The capture assertion's ``nip`` (``{"name", "sha256"}``), or ``None``.

    Returns:
        A sentence when the FAN belongs to a pair and the image names another NIP. ``None``
        when they match, when the FAN predates pairs (no ``paired``), or when nothing says which
        NIP developed the image (no capture assertion: its readings then carry no provenance anyway).
    """
    ref = fan.paired
    if ref is None or not isinstance(nip_ref, Mapping) or not isinstance(nip_ref.get("sha256"), str):
        return None
    if ref["sha256"] == nip_ref["sha256"]:
        return None
    return (f"traces not read (inconclusive): FAN {fan.name} is paired with NIP {ref['name']} (sha256 {ref['sha256'][:12]}...), "
            f"but this image was developed by NIP {nip_ref.get('name')} (sha256 {nip_ref['sha256'][:12]}...); "
            "install that NIP's pair and pass its folder (--models DIR)")


def _run_cli(args: argparse.Namespace) -> int:
    pairs = list_pairs(args.models)
    if args.json:
        print(json.dumps({"folders": [str(d) for d in model_dirs(args.models)], "pairs": [p.to_dict() for p in pairs]}, indent=2))
        return 0
    if not pairs:
        print(f"no model pairs installed in {', '.join(str(d) for d in model_dirs(args.models))}")
        return 0
    for p in pairs:
        nm, fm = p.nip.metadata.get("metrics", {}), p.fan.metadata.get("metrics", {})
        psnr = nm.get("psnr_db")
        acc = fm.get("accuracy_joint", fm.get("accuracy"))
        default = " (default)" if p.nip.is_default else ""
        print(f"{p.name}{default}: tier {p.tier or '-'}, NIP {p.nip.name} [{p.nip.sha256[:12]}], FAN {p.fan.name} [{p.fan.sha256[:12]}]"
              f", patch {p.fan.metadata.get('patch_size', '-')} px, {p.nip.path.parent}")
        print(f"  metrics: PSNR {psnr if psnr is not None else '-'} dB, accuracy {acc if acc is not None else '-'}"
              + (f" ({fm['channel']})" if fm.get("channel") else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof models [--models DIR] [--json]``."""
    p = subparsers.add_parser("models", help="list installed model pairs (NIP + paired FAN) with tiers and metrics",
                              description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--models", metavar="DIR", action="append", help="also search this folder of exported pairs (first); repeatable")
    p.add_argument("--json", action="store_true", help="print the pairs as JSON")
    p.set_defaults(func=_run_cli)
