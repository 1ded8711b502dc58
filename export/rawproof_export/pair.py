"""Export a NIP and the FAN trained with it as one model pair (``python -m rawproof_export pair``).

A pair is what ships: ``<out-dir>/<name>.onnx`` (the NIP) and ``<out-dir>/fan_<name>.onnx``
(its FAN), each with its JSON. Both carry ``pair`` (the name), ``tier`` (``cpu`` or ``full``)
and ``trained_channel``; the FAN carries ``patch_size`` (the FAN's view: NIP output patch /
downscale of the training config, unless given) and an ``input_layout`` naming it; the NIP's
``input_layout`` says its input is in linear sRGB primaries. Each JSON then names the other
model under ``paired`` (kind, name, SHA-256; JSON only, see
:data:`rawproof.models.JSON_ONLY_KEYS`). The written pair is re-opened through the SDK
(hash and contract checks) and must be listed by :func:`rawproof.pairs.list_pairs`.

Two sources: training checkpoints (``--nip-checkpoint``/``--fan-checkpoint``: exported with
the parity check of :func:`rawproof_export.onnx_export.export_model`), or models already
exported (``--nip-onnx``/``--fan-onnx``: their graphs are kept, their metadata rewritten),
which is how the pair shipped before pairs existed was converted.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from rawproof.errors import ModelError
from rawproof.models import TIERS, ModelInfo, ModelKind, load_model_info
from rawproof.pairs import list_pairs
from rawproof.runtime import Session, clear_session_cache
from rawproof_export.onnx_export import (
    ExportError, export_checkpoint, input_layout, load_checkpoint, trained_channel_from_config, write_model_file,
)

__all__ = ["PairReport", "pair_paths", "trained_channel_from_config", "export_pair", "pair_exported", "link_pair"]

# Keys of models exported before pairs that the pair format replaces.
_LEGACY_KEYS = ("paired_fan", "paired")


@dataclass(frozen=True)
class PairReport:
    """What :func:`export_pair` / :func:`pair_exported` wrote.

    Attributes:
        name, tier: The pair's name and tier.
        nip, fan: The written models, as the SDK reads them.
        nip_parity, fan_parity: Max abs difference torch vs ONNX Runtime (``None`` when the
            models were re-paired from ONNX files: their graphs are unchanged).
    """

    name: str
    tier: str
    nip: ModelInfo
    fan: ModelInfo
    nip_parity: float | None = None
    fan_parity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"name": self.name, "tier": self.tier,
                "nip": {"path": str(self.nip.path), "sha256": self.nip.sha256, "parity_max_abs_diff": self.nip_parity},
                "fan": {"path": str(self.fan.path), "sha256": self.fan.sha256, "parity_max_abs_diff": self.fan_parity,
                        "patch_size": self.fan.metadata.get("patch_size"), "trained_channel": self.fan.metadata.get("trained_channel")}}


def pair_paths(out_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """(NIP path, FAN path) of pair ``name`` in ``out_dir``: ``<name>.onnx`` and ``fan_<name>.onnx``."""
    d = Path(out_dir)
    return d / f"{name}.onnx", d / f"fan_{name}.onnx"


def _pair_keys(name: str, tier: str, channel: Mapping[str, Any], default: bool) -> dict[str, Any]:
    return {"pair": name, "tier": tier, "trained_channel": dict(channel), **({"default": True} if default else {})}


def _check_args(name: str, tier: str) -> None:
    if tier not in TIERS:
        raise ExportError(f"tier must be one of {list(TIERS)}, got {tier!r}")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ExportError(f"pair name must be a plain file stem, got {name!r}")


def link_pair(nip_path: Path, fan_path: Path) -> tuple[ModelInfo, ModelInfo]:
    """Write ``paired`` into both JSONs (each names the other by kind, name and SHA-256) and re-check both through the SDK.

    Raises:
        ExportError: a file breaks the SDK contract, or the pair is not listed afterwards.
    """
    nip, fan = load_model_info(nip_path), load_model_info(fan_path)
    for me, other in ((nip, fan), (fan, nip)):
        js = me.path.with_suffix(".json")
        meta = json.loads(js.read_text(encoding="utf-8"))
        meta["paired"] = {"kind": other.kind.value, "name": other.name, "sha256": other.sha256}
        js.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    nip, fan = load_model_info(nip_path), load_model_info(fan_path)
    clear_session_cache()
    try:
        for info in (nip, fan):
            with Session(info, providers=["CPUExecutionProvider"]):
                pass
    except ModelError as e:
        raise ExportError(f"the written pair breaks the SDK contract: {e}") from e
    if not any(p.nip.sha256 == nip.sha256 and p.fan.sha256 == fan.sha256 for p in list_pairs(nip.path.parent)):
        raise ExportError(f"{nip.path.name} and {fan.path.name} do not read back as a pair")
    return nip, fan


def _fan_facts(fan_meta: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    channel = fan_meta.get("trained_channel") or trained_channel_from_config(config)
    ps = fan_meta.get("patch_size")
    if ps is None:
        if "patch" not in config:
            raise ExportError("the FAN's patch size is unknown: its config lacks 'patch'; pass patch_size in --fan-metadata")
        ps = int(config["patch"]) // int(channel.get("downscale", 1))
    if not isinstance(ps, int) or ps < 8:
        raise ExportError(f"patch_size must be an int >= 8, got {ps!r}")
    return ps, dict(channel)


def export_pair(
    nip_checkpoint: str | os.PathLike[str],
    fan_checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    tier: str,
    nip_metadata: Mapping[str, Any] | None = None,
    fan_metadata: Mapping[str, Any] | None = None,
    default: bool = False,
    fp16: bool = False,
    **kwargs: Any,
) -> PairReport:
    """Export two training checkpoints as pair ``name`` (see the module docstring).

    Args:
        nip_checkpoint, fan_checkpoint: ``nip.pt`` and ``fan.pt`` of the runs (rawproof_export format).
        out_dir: Folder to write into (created).
        name: Pair name: the NIP is ``name``, the FAN ``fan_<name>``.
        tier: ``"cpu"`` or ``"full"``.
        nip_metadata, fan_metadata: Extra or overriding metadata per model (e.g. measured ``metrics``,
            ``patch_size``, ``trained_channel``).
        default: Mark both ``default`` (chosen first within their tier).
        fp16: Ship float16 compute (float32 I/O) for both models, e.g. for a ``full`` pair on a GPU/NPU:
            each is exported in float32 and as float16, parity-checked against the float32 torch model
            (bound 2e-2, :data:`rawproof_export.onnx_export.FP16_TOLERANCE`), and the float16 file becomes the
            pair's member (``precision`` ``fp16``; the measured error in ``parity_max_abs_diff``).
        kwargs: Passed to :func:`rawproof_export.onnx_export.export_model` (``opset``, ``exporter``, ``tolerance``).

    Raises:
        ExportError: a checkpoint of the wrong kind, unknown patch size or channel, export or parity failure.
    """
    _check_args(name, tier)
    nip_path, fan_path = pair_paths(out_dir, name)
    fan_ckpt = load_checkpoint(fan_checkpoint)
    fan_meta = dict(fan_metadata or {})
    ps, channel = _fan_facts(fan_meta, fan_ckpt.config)
    keys = _pair_keys(name, tier, channel, default)
    parity = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt, final, kind, meta in (
            (nip_checkpoint, nip_path, ModelKind.NIP, {**(nip_metadata or {}), **keys, "name": name}),
            (fan_checkpoint, fan_path, ModelKind.FAN, {**fan_meta, **keys, "name": f"fan_{name}", "patch_size": ps}),
        ):
            if not fp16:
                parity.append(export_checkpoint(ckpt, final, kind=kind, metadata=meta, **kwargs).max_abs_diff)
                continue
            rep = export_checkpoint(ckpt, Path(tmp) / final.name, kind=kind, metadata=meta, fp16=True, **kwargs)
            half = load_model_info(rep.fp16_path)
            # export_model names the variant <name>_fp16 and drops "default": here it is the member itself.
            write_model_file(onnx.load(str(half.path)), final, {**half.metadata, "name": meta["name"], **keys})
            parity.append(rep.fp16_max_abs_diff)
    nip, fan = link_pair(nip_path, fan_path)
    return PairReport(name, tier, nip, fan, parity[0], parity[1])


def pair_exported(
    nip_onnx: str | os.PathLike[str],
    fan_onnx: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    tier: str,
    nip_metadata: Mapping[str, Any] | None = None,
    fan_metadata: Mapping[str, Any] | None = None,
    default: bool = False,
) -> PairReport:
    """Make a pair of two models already exported (their graphs unchanged, their metadata completed and rewritten).

    The FAN's ``patch_size`` and ``trained_channel`` come from its metadata or, when absent,
    from its training config; an output path equal to an input path overwrites it.

    Raises:
        ExportError: the models are of the wrong kinds, or a fact cannot be derived.
    """
    _check_args(name, tier)
    try:
        nip_in, fan_in = load_model_info(nip_onnx), load_model_info(fan_onnx)
    except ModelError as e:
        raise ExportError(str(e)) from e
    if nip_in.kind is not ModelKind.NIP or fan_in.kind is not ModelKind.FAN:
        raise ExportError(f"expected a NIP and a FAN, got a {nip_in.kind.value} and a {fan_in.kind.value}")
    fan_meta = {**fan_in.metadata, **(fan_metadata or {})}
    ps, channel = _fan_facts(fan_meta, fan_meta.get("config") or {})
    keys = _pair_keys(name, tier, channel, default)
    nip_path, fan_path = pair_paths(out_dir, name)
    for src, dst, meta in (
        (nip_in, nip_path, {**nip_in.metadata, **(nip_metadata or {}), **keys, "name": name,
                            "input_layout": input_layout(ModelKind.NIP)}),
        (fan_in, fan_path, {**fan_meta, **keys, "name": f"fan_{name}", "patch_size": ps,
                            "input_layout": input_layout(ModelKind.FAN, ps)}),
    ):
        model = onnx.load(str(src.path))
        write_model_file(model, dst, {k: v for k, v in meta.items() if k not in _LEGACY_KEYS})
    nip, fan = link_pair(nip_path, fan_path)
    return PairReport(name, tier, nip, fan)
