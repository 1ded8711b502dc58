"""Export trained NIP/FAN models to the ONNX files the SDK ships.

Checkpoint format (what ``rawproof_train`` saves with ``torch.save``, read here by
:func:`load_checkpoint`)::

    {
        "arch": "unet",              # NIP: name for rawproof_train.nip.create_nip(arch);
                                     # FAN: architecture label (built as fan.FAN(n_classes=len(classes)))
        "kind": "nip",               # "nip" | "fan"
        "state_dict": {...},         # module.state_dict(), float32 CPU tensors
        "config": {...},             # resolved training config (JSON-serialisable)
        "classes": [...],            # FAN: class names in logit order; NIP: [] or absent
        "metrics": {...},            # measured figures, e.g. {"psnr_db": 41.2, "channel": "..."}
        "trained_on": "sha256:...",  # data manifest hash
        "git_commit": "...",         # optional; the current checkout's commit otherwise
        "arch_kwargs": {...},        # NIP: optional constructor arguments, e.g. {"base_filters": 16}
    }

Export steps (:func:`export_model`): ``torch.onnx.export`` with dynamic N, h, w ->
``onnx.checker.check_model`` -> metadata into ``metadata_props`` and the sibling JSON (with
the file's sha256) -> parity against the torch model through the SDK runtime (max abs
difference <= 1e-4 for float32) -> optionally an fp16 variant ``<name>_fp16.onnx`` (float32
inputs/outputs, float16 inside) whose measured error is recorded in its metadata.

Exporter choice: the dynamo exporter (``torch.export`` + onnxscript) is tried first with
``Dim.AUTO`` for N, h, w; it emits opset 18 natively, hence the default opset 18 (17 works
through onnx's version converter). If it fails, or leaves h/w of a NIP static, the
TorchScript exporter with ``dynamic_axes`` is used instead; the metadata key ``exporter``
says which one produced the file.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch

from rawproof.errors import ModelError
from rawproof.models import ModelKind, encode_metadata, file_sha256, load_model_info
from rawproof.runtime import Session
from rawproof_export.parity import ParityCase, check_parity

__all__ = [
    "ExportError",
    "Checkpoint",
    "ExportReport",
    "FP32_TOLERANCE",
    "FP16_TOLERANCE",
    "DEFAULT_OPSET",
    "load_checkpoint",
    "build_module",
    "export_model",
    "export_checkpoint",
    "input_layout",
    "write_model_file",
    "trained_channel_from_config",
]

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4
"""Max abs difference allowed between torch and ONNX Runtime, float32 export."""
FP16_TOLERANCE = 2e-2
"""Max abs difference allowed for the fp16 variant (sanity bound; the measured value is recorded)."""
DEFAULT_OPSET = 18



def input_layout(kind: ModelKind, patch_size: int | None = None) -> str:
    """The ``input_layout`` metadata text of the DESIGN.md contract (a FAN's names its patch size)."""
    if kind is ModelKind.NIP:
        return ("rggb: float32 N x 4 x h x w, channels (R, Gr, Gb, B), black-subtracted, white-normalised, white-balanced, "
                "colour-corrected to linear sRGB primaries per 2x2 quad, [0,1]; rgb: float32 N x 3 x 2h x 2w sRGB nominal [0,1]")
    size = f"{patch_size} x {patch_size}" if patch_size else "128 x 128"
    return f"rgb: float32 N x 3 x H x W ({size} patches), sRGB [0,1]; logits: float32 N x C"


class ExportError(RuntimeError):
    """Export failed: the exporter, the checker or the parity check rejected the model."""


@dataclass(frozen=True)
class Checkpoint:
    """A training checkpoint in the format documented at the top of this module."""

    arch: str
    kind: ModelKind
    state_dict: Mapping[str, torch.Tensor]
    config: Mapping[str, Any]
    classes: tuple[str, ...]
    metrics: Mapping[str, Any]
    trained_on: str
    git_commit: str | None = None
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and measured.

    Attributes:
        path: The ``.onnx`` file (its JSON is ``path.with_suffix(".json")``).
        sha256: Hex SHA-256 of ``path``.
        exporter: ``"dynamo"`` or ``"torchscript"``.
        opset: ONNX opset of the default domain.
        parity: Cases compared for the float32 file.
        max_abs_diff: Max over ``parity``.
        metadata: The metadata written (JSON form, without sha256).
        fp16_path: The fp16 variant, or ``None``.
        fp16_max_abs_diff: Its max abs difference from the float32 torch model, or ``None``.
    """

    path: Path
    sha256: str
    exporter: str
    opset: int
    parity: tuple[ParityCase, ...]
    max_abs_diff: float
    metadata: Mapping[str, Any]
    fp16_path: Path | None = None
    fp16_max_abs_diff: float | None = None


def trained_channel_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trained_channel`` metadata of a training run's config (keys ``downscale``, ``quality``, ``subsampling``, ``resize``).

    A list-valued key (a channel drawn per step) gives its first value as nominal and all values in
    ``jpeg_qualities``/``subsampling``/``resize``.

    Raises:
        ExportError: the config lacks ``downscale`` or ``quality``.
    """
    if "downscale" not in config or "quality" not in config:
        raise ExportError("the FAN checkpoint's config lacks downscale/quality; pass trained_channel in --fan-metadata")

    def values(v: Any) -> list[Any]:
        return list(dict.fromkeys(v if isinstance(v, list) else [v]))

    qualities = [int(q) for q in values(config["quality"])]
    out: dict[str, Any] = {"downscale": int(config["downscale"]), "jpeg_quality": qualities[0],
                           "subsampling": [str(s) for s in values(config.get("subsampling", "444"))]}
    if len(qualities) > 1:
        out["jpeg_qualities"] = qualities
    if "resize" in config:
        out["resize"] = [str(r) for r in values(config["resize"])]
    return out


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint saved in the documented format.

    Raises:
        ExportError: the file is not such a dict or misses a key.
    """
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (pickle, zip, IO)
        raise ExportError(f"{path}: cannot load checkpoint: {e}") from e
    if not isinstance(raw, dict):
        raise ExportError(f"{path}: checkpoint must be a dict, got {type(raw).__name__}")
    missing = [k for k in ("arch", "kind", "state_dict") if k not in raw]
    if missing:
        raise ExportError(f"{path}: checkpoint lacks keys {missing}")
    return Checkpoint(
        arch=str(raw["arch"]),
        kind=ModelKind(raw["kind"]),
        state_dict=raw["state_dict"],
        config=dict(raw.get("config") or {}),
        classes=tuple(raw.get("classes") or ()),
        metrics=dict(raw.get("metrics") or {}),
        trained_on=str(raw.get("trained_on", "unknown")),
        git_commit=raw.get("git_commit"),
        arch_kwargs=dict(raw.get("arch_kwargs") or {}),
    )


def build_module(ckpt: Checkpoint) -> torch.nn.Module:
    """Instantiate the training architecture and load the checkpoint's weights (strict)."""
    if ckpt.kind is ModelKind.NIP:
        from rawproof_train.nip import create_nip

        module = create_nip(ckpt.arch, **ckpt.arch_kwargs)
    else:
        from rawproof_train.fan import FAN

        if not ckpt.classes:
            raise ExportError("a FAN checkpoint needs its 'classes'")
        module = FAN(n_classes=len(ckpt.classes))
    module.load_state_dict(ckpt.state_dict, strict=True)
    return module.eval()


def _git_commit() -> str:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 else "unknown"


class _Fp16(torch.nn.Module):
    """float32 in -> float16 compute -> float32 out, so the fp16 file keeps the I/O contract."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(module).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.half()).float()


def _rename_dims(model: onnx.ModelProto, kind: ModelKind) -> None:
    """Give the exporter's symbolic dims (``s0``, ``s77``) the contract's names everywhere."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    names = ("N", None, "h", "w") if kind is ModelKind.NIP else ("N", None, "H", "W")
    mapping = {d.dim_param: n for d, n in zip(dims, names) if n and d.dim_param}
    if not mapping:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b")
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = pattern.sub(lambda m: mapping[m.group(1)], d.dim_param)


def _is_dynamic(model: onnx.ModelProto, kind: ModelKind) -> bool:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    axes = (0, 2, 3) if kind is ModelKind.NIP else (0,)
    return all(not dims[a].HasField("dim_value") for a in axes)


def _torch_export(module: torch.nn.Module, kind: ModelKind, opset: int, exporter: str) -> tuple[onnx.ModelProto, str]:
    """Export to an in-memory ModelProto; returns it and the exporter that succeeded."""
    sample = torch.rand(1, kind.input_channels, *((32, 48) if kind is ModelKind.NIP else (128, 128)))
    names = {"input_names": [kind.input_name], "output_names": [kind.output_name]}
    errors = []
    order = ("dynamo", "torchscript") if exporter == "auto" else (exporter,)
    torch_onnx_log = logging.getLogger("torch.onnx")
    old_level = torch_onnx_log.level
    for which in order:
        try:
            # torch's exporters warn about their own internals; pytest runs with warnings as errors.
            with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
                warnings.simplefilter("ignore")
                torch_onnx_log.setLevel(logging.ERROR)
                f = Path(tmp) / "model.onnx"
                if which == "dynamo":
                    auto = torch.export.Dim.AUTO
                    dyn = ({0: auto, 2: auto, 3: auto},)
                    prog = torch.onnx.export(module, (sample,), None, opset_version=opset, dynamo=True,
                                             dynamic_shapes=dyn, verbose=False, **names)
                    prog.save(str(f))
                else:
                    hw = {2: "h", 3: "w"} if kind is ModelKind.NIP else {2: "H", 3: "W"}
                    axes = {kind.input_name: {0: "N", **hw}, kind.output_name: {0: "N"}}
                    if kind is ModelKind.NIP:
                        axes[kind.output_name].update({2: "2h", 3: "2w"})
                    torch.onnx.export(module, (sample,), str(f), opset_version=opset, dynamo=False,
                                      dynamic_axes=axes, **names)
                model = onnx.load(str(f), load_external_data=True)
        except Exception as e:  # exporter failures come in many types; the last one is re-raised below
            errors.append(f"{which}: {type(e).__name__}: {e}")
            log.warning("%s exporter failed: %s", which, str(e).splitlines()[0] if str(e) else type(e).__name__)
            continue
        finally:
            torch_onnx_log.setLevel(old_level)
        if not _is_dynamic(model, kind):
            errors.append(f"{which}: input dims left static")
            log.warning("%s exporter left the input dims static; trying the next exporter", which)
            continue
        return model, which
    raise ExportError("ONNX export failed:\n" + "\n".join(errors))


def write_model_file(model: onnx.ModelProto, path: Path, metadata: Mapping[str, Any]) -> str:
    """Set metadata_props, check, save the ONNX and the sibling JSON; return the file's sha256."""
    del model.metadata_props[:]
    for k, v in encode_metadata(metadata).items():
        model.metadata_props.add(key=k, value=v)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected the model: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    sha = file_sha256(path)
    path.with_suffix(".json").write_text(json.dumps({**metadata, "sha256": sha}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sha


def _verify(module: torch.nn.Module, path: Path, sizes: Sequence[tuple[int, int, int]] | None, seed: int) -> list[ParityCase]:
    try:
        with Session(load_model_info(path), providers=["CPUExecutionProvider"]) as sess:
            return check_parity(module, sess, sizes, seed)
    except ModelError as e:
        raise ExportError(f"the exported file breaks the SDK contract: {e}") from e


def export_model(
    module: torch.nn.Module,
    kind: ModelKind | str,
    out_path: str | os.PathLike[str],
    metadata: Mapping[str, Any],
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    exporter: str = "auto",
    parity_sizes: Sequence[tuple[int, int, int]] | None = None,
    tolerance: float = FP32_TOLERANCE,
    seed: int = 0,
) -> ExportReport:
    """Export ``module`` to ``out_path`` (+ ``.json``) and prove parity through the SDK runtime.

    Args:
        module: float32 CPU model. NIP: N x 4 x h x w -> N x 3 x 2h x 2w, with a
            ``receptive_field`` attribute (one-sided radius in output pixels, as in
            ``rawproof_train.nip``) unless the metadata gives one, and optionally a
            ``size_multiple`` (or UNet's ``factor``) attribute: the pooling period tiles align to.
            FAN: N x 3 x H x W -> N x C logits.
        kind: ``"nip"`` or ``"fan"``.
        out_path: Target ``.onnx`` path; the JSON goes beside it.
        metadata: Contract keys (``name`` defaults to the file stem; ``architecture``,
            ``trained_on``, ``config``, ``metrics``, ``git_commit``, ``classes`` for a FAN);
            extra keys are kept. ``kind``, ``input_layout``, ``exporter``, ``opset`` and the
            measured parity are filled in here.
        opset: ONNX opset, >= 17.
        fp16: Also write ``<stem>_fp16.onnx`` (float16 compute, float32 I/O).
        exporter: ``"auto"`` (dynamo, then TorchScript), ``"dynamo"`` or ``"torchscript"``.
        parity_sizes: (N, h, w) inputs compared; default :mod:`rawproof_export.parity`'s.
        tolerance: Max abs difference allowed for the float32 file.
        seed: Seed of the parity inputs.

    Raises:
        ExportError: export, checker or parity failed; no file is left at ``out_path``.
    """
    kind = ModelKind(kind)
    out = Path(out_path)
    if out.suffix != ".onnx":
        raise ExportError(f"output must end in .onnx, got {out}")
    if opset < 17:
        raise ExportError(f"opset must be >= 17, got {opset}")
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ExportError(f"exporter must be auto, dynamo or torchscript, got {exporter!r}")
    module = module.float().cpu().eval()
    meta: dict[str, Any] = {
        "name": out.stem,
        "architecture": type(module).__name__,
        "trained_on": "unknown",
        "config": {},
        "metrics": {},
        "git_commit": _git_commit(),
        **{k: v for k, v in metadata.items() if k != "sha256"},
        "kind": kind.value,
        "input_layout": input_layout(kind, metadata.get("patch_size")),
    }
    if kind is ModelKind.NIP:
        rf = meta.get("receptive_field", getattr(module, "receptive_field", None))
        if not isinstance(rf, int) or rf < 1:
            raise ExportError("a NIP needs a positive int receptive_field (module attribute or metadata) for tiling")
        meta["receptive_field"] = rf
        # UNet names its pooling period ``factor``; tiles must stay aligned to it.
        sm = meta.get("size_multiple", getattr(module, "size_multiple", getattr(module, "factor", 1)))
        if int(sm) != 1:
            meta["size_multiple"] = int(sm)
    else:
        classes = list(meta.get("classes") or [])
        if not classes:
            raise ExportError("a FAN needs its 'classes' in the metadata")
        meta["classes"] = classes
    try:
        json.dumps(meta)
    except TypeError as e:
        raise ExportError(f"metadata must be JSON-serialisable: {e}") from e

    model, used = _torch_export(module, kind, opset, exporter)
    _rename_dims(model, kind)
    meta.update(exporter=used, opset=opset, precision="fp32", parity_tolerance=tolerance)
    written: list[Path] = []
    try:
        # Pass 1 measures parity; pass 2 records it in the metadata and re-checks the final file.
        written.append(out)
        write_model_file(model, out, meta)
        cases = _verify(module, out, parity_sizes, seed)
        worst = max(c.max_abs_diff for c in cases)
        if not worst <= tolerance:
            raise ExportError(f"parity failed: max abs diff {worst:.3g} > {tolerance:g} ({cases})")
        meta["parity_max_abs_diff"] = worst
        sha = write_model_file(model, out, meta)
        cases = _verify(module, out, parity_sizes, seed)
        fp16_path = fp16_err = None
        if fp16:
            fp16_path = out.with_name(out.stem + "_fp16.onnx")
            written.append(fp16_path)
            model16, _ = _torch_export(_Fp16(module), kind, opset, used)
            _rename_dims(model16, kind)
            meta16 = {**meta, "name": f"{meta['name']}_fp16", "precision": "fp16", "parity_tolerance": FP16_TOLERANCE}
            meta16.pop("default", None)
            meta16.pop("parity_max_abs_diff")
            write_model_file(model16, fp16_path, meta16)
            fp16_err = max(c.max_abs_diff for c in _verify(module, fp16_path, parity_sizes, seed))
            if not fp16_err <= FP16_TOLERANCE:
                raise ExportError(f"fp16 parity failed: max abs diff {fp16_err:.3g} > {FP16_TOLERANCE:g}")
            meta16["parity_max_abs_diff"] = fp16_err
            write_model_file(model16, fp16_path, meta16)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)
        raise
    log.info("exported %s (%s, opset %d): max abs diff %.3g", out, used, opset, worst)
    return ExportReport(
        path=out, sha256=sha, exporter=used, opset=opset, parity=tuple(cases),
        max_abs_diff=max(c.max_abs_diff for c in cases), metadata=meta,
        fp16_path=fp16_path, fp16_max_abs_diff=fp16_err,
    )


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    kind: ModelKind | str | None = None,
    arch: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ExportReport:
    """Load a checkpoint, rebuild its module and :func:`export_model` it.

    ``kind``/``arch``, when given, must agree with the checkpoint (``arch`` case-insensitively,
    as ``create_nip`` resolves names). ``metadata`` overrides
    what the checkpoint provides; for a FAN, ``patch_size`` (NIP output patch / downscale) and
    ``trained_channel`` come from its training config unless given. ``kwargs`` go to :func:`export_model`.
    """
    ckpt = load_checkpoint(checkpoint)
    if kind is not None and ModelKind(kind) is not ckpt.kind:
        raise ExportError(f"--kind {ModelKind(kind).value} but the checkpoint is a {ckpt.kind.value}")
    if arch is not None and arch.lower() != ckpt.arch.lower():
        raise ExportError(f"--arch {arch} but the checkpoint is {ckpt.arch}")
    meta: dict[str, Any] = {
        "architecture": ckpt.arch,
        "config": dict(ckpt.config),
        "metrics": dict(ckpt.metrics),
        "trained_on": ckpt.trained_on,
    }
    if ckpt.git_commit:
        meta["git_commit"] = ckpt.git_commit
    meta.update(metadata or {})
    if ckpt.kind is ModelKind.FAN:
        meta.setdefault("classes", list(ckpt.classes))
        # The facts verify needs, from the run's config when not given: the view the FAN was trained on
        # (NIP output patch / downscale) and its channel. Without them verify would assume 128 px patches.
        if "trained_channel" not in meta and "downscale" in ckpt.config and "quality" in ckpt.config:
            meta["trained_channel"] = trained_channel_from_config(ckpt.config)
        if "patch_size" not in meta and "patch" in ckpt.config and "downscale" in ckpt.config:
            meta["patch_size"] = int(ckpt.config["patch"]) // int(ckpt.config["downscale"])
    return export_model(build_module(ckpt), ckpt.kind, out_path, meta, **kwargs)
