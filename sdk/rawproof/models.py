"""The model registry: shipped ONNX models and their metadata.

A model is an ``.onnx`` file plus a sibling ``.json`` with the same stem. Both carry
the metadata keys of the DESIGN.md contract; the JSON also holds ``sha256`` (of the
``.onnx`` bytes), which the ONNX file cannot hold about itself. In the ONNX
``metadata_props`` (strings only) a string value is stored as is and any other value as
its JSON text (:func:`encode_metadata`).

Shipped models live in the ``rawproof/models/`` package folder; set ``RAWPROOF_MODELS``
to look in another folder instead. Sessions are opened from a :class:`ModelInfo` by
:func:`rawproof.runtime.get_session`; :func:`rawproof.develop` does all of this for you.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rawproof.errors import ModelError
from rawproof.untrusted import read_json_file

__all__ = [
    "ModelKind",
    "ModelInfo",
    "REQUIRED_KEYS",
    "models_dir",
    "encode_metadata",
    "file_sha256",
    "load_model_info",
    "list_models",
    "find_model",
    "JSON_ONLY_KEYS",
    "TIERS",
    "model_dirs",
    "rewrite_metadata",
]

REQUIRED_KEYS: tuple[str, ...] = (
    "name", "kind", "architecture", "input_layout", "trained_on", "config", "git_commit", "metrics",
)
"""Keys every model's metadata must have (plus ``classes`` for a FAN, ``receptive_field`` for a NIP)."""

MAX_SIZE_MULTIPLE = 256
"""Largest ``size_multiple`` accepted (a 8-level UNet needs 256); tiles are padded to it."""

MAX_RECEPTIVE_FIELD = 4096
"""Largest NIP ``receptive_field`` accepted, output pixels; tiling adds it as a margin."""

MAX_METADATA_BYTES = 16 << 20
"""Largest metadata JSON read, bytes."""

JSON_ONLY_KEYS: tuple[str, ...] = ("sha256", "paired")
"""Keys kept in the JSON only, never in the ONNX ``metadata_props``: a file cannot hold its own hash, nor
its partner's (``paired``), which depends on its own bytes when the partner names it back."""

TIERS: tuple[str, ...] = ("cpu", "full")
"""Model pair tiers: ``cpu`` (fast, the default on CPUExecutionProvider) and ``full`` (most accurate, for
CUDA/TensorRT/other accelerators). See :mod:`rawproof.pairs`."""


class ModelKind(str, enum.Enum):
    """What a model does; fixes its ONNX input/output contract (DESIGN.md)."""

    NIP = "nip"
    """Neural imaging pipeline: input ``rggb`` float32 Nx4xhxw, output ``rgb`` float32 Nx3x2hx2w."""
    FAN = "fan"
    """Forensic analysis network: input ``rgb`` float32 Nx3xHxW, output ``logits`` float32 NxC."""

    @property
    def input_name(self) -> str:
        """Name of the single graph input."""
        return "rggb" if self is ModelKind.NIP else "rgb"

    @property
    def output_name(self) -> str:
        """Name of the single graph output."""
        return "rgb" if self is ModelKind.NIP else "logits"

    @property
    def input_channels(self) -> int:
        """Channel count of the input (dimension 1)."""
        return 4 if self is ModelKind.NIP else 3


@dataclass(frozen=True)
class ModelInfo:
    """Validated metadata of one model file (read from its sibling JSON).

    Attributes:
        path: The ``.onnx`` file.
        name: Model name, e.g. ``"unet"``; unique among shipped models.
        kind: NIP or FAN.
        architecture: Architecture name understood by the training code (``create_nip``).
        sha256: Hex SHA-256 of the ``.onnx`` file as exported; checked when a session opens.
        receptive_field: NIP only: one-sided receptive-field radius ``R`` in output pixels
            (the ``receptive_field`` of ``rawproof_train.nip`` models): output pixel (y, x)
            depends only on stack pixels (i, j) with ``|2i - y| <= R`` and ``|2j - x| <= R``.
            Tiling derives its margin from it (:func:`rawproof.tiling.margin_for`).
        classes: FAN only: output classes in logit order; empty for a NIP.
        metadata: All keys of the JSON except ``sha256`` (the values the ONNX
            ``metadata_props`` must repeat).
    """

    path: Path
    name: str
    kind: ModelKind
    architecture: str
    sha256: str
    receptive_field: int | None = None
    classes: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def size_multiple(self) -> int:
        """Stack h and w passed to the model must be multiples of this (metadata ``size_multiple``,
        default 1; e.g. 16 for a 5-level UNet, whose pooling grid tiles must keep aligned)."""
        return int(self.metadata.get("size_multiple", 1))

    @property
    def tier(self) -> str | None:
        """``"cpu"`` or ``"full"`` (metadata ``tier``), ``None`` for a model exported outside a pair."""
        t = self.metadata.get("tier")
        return None if t is None else str(t)

    @property
    def paired(self) -> Mapping[str, str] | None:
        """The partner of a model pair: ``{"kind", "name", "sha256"}`` (JSON ``paired``), else ``None``."""
        p = self.metadata.get("paired")
        return p if isinstance(p, Mapping) else None

    @property
    def is_default(self) -> bool:
        """True when the JSON marks this model ``"default": true`` for its kind."""
        return bool(self.metadata.get("default", False))


def models_dir() -> Path:
    """Folder searched for shipped models: ``$RAWPROOF_MODELS`` or the package's ``models/``."""
    env = os.environ.get("RAWPROOF_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent / "models"


def model_dirs(extra: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> list[Path]:
    """Folders searched for models, in priority order: ``extra`` (one folder or several) then :func:`models_dir`.

    A vendor's exported pairs live in their own folder (``--models DIR``); the shipped ones stay searched after it.

    Raises:
        ModelError: a folder in ``extra`` does not exist (a typo would otherwise pass silently).
    """
    if extra is None:
        extras: list[Path] = []
    elif isinstance(extra, (str, os.PathLike)):
        extras = [Path(extra)]
    else:
        extras = [Path(e) for e in extra]
    for d in extras:
        if not d.is_dir():
            raise ModelError("models folder not found", path=d)
    out: list[Path] = []
    for d in [*extras, models_dir()]:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The ONNX ``metadata_props`` form of ``metadata``: strings as is, other values as JSON text.

    :data:`JSON_ONLY_KEYS` (``sha256``, ``paired``) are dropped: a file cannot contain its own hash.
    """
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in metadata.items()
        if k not in JSON_ONLY_KEYS
    }


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model_info(path: str | Path) -> ModelInfo:
    """Read and validate the metadata JSON beside an ``.onnx`` file.

    Only the JSON is read; the ONNX bytes are hashed and compared with ``sha256``, and the
    ``metadata_props`` compared with the JSON, when :func:`rawproof.runtime.get_session`
    opens the model.

    Raises:
        ModelError: the ``.onnx`` or its JSON is missing, the JSON is malformed (including
            ``NaN``/``Infinity``, numbers overflowing a float, and nesting too deep to
            parse; :func:`rawproof.untrusted.loads_strict`), not a regular file or above
            16 MiB, a key is missing, or ``kind``/``receptive_field``/``classes``/``size_multiple``
            are invalid or out of range.
    """
    onnx_path = Path(path)
    if onnx_path.suffix != ".onnx":
        raise ModelError("model files end in .onnx", path=onnx_path)
    if not onnx_path.is_file():
        raise ModelError("model file not found", path=onnx_path)
    json_path = onnx_path.with_suffix(".json")
    try:
        meta = read_json_file(json_path, MAX_METADATA_BYTES)
    except FileNotFoundError:
        raise ModelError(f"metadata file {json_path.name} not found beside the model", path=onnx_path) from None
    except (OSError, ValueError) as e:
        raise ModelError(f"unreadable metadata {json_path.name}: {e}", path=onnx_path) from e
    if not isinstance(meta, dict):
        raise ModelError(f"{json_path.name} must hold a JSON object", path=onnx_path)
    missing = [k for k in (*REQUIRED_KEYS, "sha256") if k not in meta]
    try:
        kind = ModelKind(meta.get("kind"))
    except ValueError:
        raise ModelError(f"kind must be one of {[k.value for k in ModelKind]}, got {meta.get('kind')!r}", path=onnx_path) from None
    if kind is ModelKind.NIP and "receptive_field" not in meta:
        missing.append("receptive_field")
    if kind is ModelKind.FAN and "classes" not in meta:
        missing.append("classes")
    if missing:
        raise ModelError(f"metadata lacks keys {missing}", path=onnx_path)
    sha = meta["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ModelError(f"sha256 must be 64 lowercase hex digits, got {sha!r}", path=onnx_path)
    rf: int | None = None
    classes: tuple[str, ...] = ()
    if kind is ModelKind.NIP:
        rf = meta["receptive_field"]
        if not isinstance(rf, int) or isinstance(rf, bool) or not 1 <= rf <= MAX_RECEPTIVE_FIELD:
            raise ModelError(f"receptive_field must be an int in 1..{MAX_RECEPTIVE_FIELD}, got {rf!r}", path=onnx_path)
    else:
        cl = meta["classes"]
        if not isinstance(cl, list) or not cl or not all(isinstance(c, str) for c in cl):
            raise ModelError(f"classes must be a non-empty list of names, got {cl!r}", path=onnx_path)
        classes = tuple(cl)
    tier = meta.get("tier")
    if tier is not None and tier not in TIERS:
        raise ModelError(f"tier must be one of {list(TIERS)}, got {tier!r}", path=onnx_path)
    paired = meta.get("paired")
    if paired is not None:
        other = ModelKind.FAN if kind is ModelKind.NIP else ModelKind.NIP
        if (not isinstance(paired, dict) or paired.get("kind") != other.value or not isinstance(paired.get("name"), str)
                or not isinstance(paired.get("sha256"), str) or len(paired["sha256"]) != 64
                or any(c not in "0123456789abcdef" for c in paired["sha256"])):
            raise ModelError(f"paired must be {{'kind': {other.value!r}, 'name': str, 'sha256': 64 hex}}, got {paired!r}", path=onnx_path)
    sm = meta.get("size_multiple", 1)
    if not isinstance(sm, int) or isinstance(sm, bool) or not 1 <= sm <= MAX_SIZE_MULTIPLE:
        raise ModelError(f"size_multiple must be an int in 1..{MAX_SIZE_MULTIPLE}, got {sm!r}", path=onnx_path)
    return ModelInfo(
        path=onnx_path.resolve(),
        name=str(meta["name"]),
        kind=kind,
        architecture=str(meta["architecture"]),
        sha256=sha,
        receptive_field=rf,
        classes=classes,
        metadata={k: v for k, v in meta.items() if k != "sha256"},
    )


def list_models(kind: ModelKind | str | None = None, directory: str | Path | None = None) -> list[ModelInfo]:
    """All models in ``directory`` (default :func:`models_dir`), sorted by name.

    A ``.onnx`` without a valid JSON is an error, not skipped: a broken install should
    be loud.

    Raises:
        ModelError: a model in the folder has invalid metadata.
    """
    folder = Path(directory) if directory is not None else models_dir()
    if not folder.is_dir():
        return []
    want = None if kind is None else ModelKind(kind)
    infos = [load_model_info(p) for p in sorted(folder.glob("*.onnx"))]
    return sorted((i for i in infos if want is None or i.kind is want), key=lambda i: i.name)


def find_model(model: str | Path | ModelInfo | None, kind: ModelKind | str, directory: str | Path | None = None) -> ModelInfo:
    """Resolve ``model`` to a :class:`ModelInfo` of the wanted kind.

    Args:
        model: ``None`` for the default shipped model of ``kind`` (the one whose JSON says
            ``"default": true``, else the first by name); a path to an ``.onnx`` file; a
            shipped model's name; or a ``ModelInfo``.
        kind: The kind the caller needs.
        directory: Folder of shipped models (default :func:`models_dir`).

    Raises:
        ModelError: no such model, none shipped, or the model is of another kind.
    """
    kind = ModelKind(kind)
    folder = Path(directory) if directory is not None else models_dir()
    if isinstance(model, ModelInfo):
        info = model
    elif model is None:
        found = list_models(kind, folder)
        if not found:
            raise ModelError(
                f"no shipped {kind.value.upper()} model found in {folder}; "
                "export one with python -m rawproof_export"
            )
        defaults = [i for i in found if i.is_default]
        info = defaults[0] if defaults else found[0]
    elif str(model).endswith(".onnx") or os.sep in str(model) or "/" in str(model):
        info = load_model_info(model)
    else:
        by_name = {i.name: i for i in list_models(None, folder)}
        if str(model) not in by_name:
            raise ModelError(f"no model named {model!r} in {folder}; available: {sorted(by_name)}")
        info = by_name[str(model)]
    if info.kind is not kind:
        raise ModelError(f"expected a {kind.value} model, got a {info.kind.value}", path=info.path)
    return info


def rewrite_metadata(path: str | os.PathLike[str], updates: Mapping[str, Any]) -> ModelInfo:
    """Merge ``updates`` into a model's metadata, in its ONNX ``metadata_props`` and its JSON.

    The ONNX bytes change, so its ``sha256`` is recomputed; if the model belongs to a pair
    (``paired``), the partner in the same folder (found by name) gets the new hash in its
    ``paired`` so the pair stays linked. Used e.g. by ``forensic-eval --calibrate``.

    Raises:
        ModelError: the model or its partner cannot be read or written.
    """
    import onnx

    info = load_model_info(path)
    meta = {**info.metadata, **updates}
    try:
        model = onnx.load(str(info.path))
        del model.metadata_props[:]
        for k, v in encode_metadata(meta).items():
            model.metadata_props.add(key=k, value=v)
        onnx.save(model, str(info.path))
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        raise ModelError(f"cannot rewrite the model: {e}", path=info.path) from e
    sha = file_sha256(info.path)
    info.path.with_suffix(".json").write_text(json.dumps({**meta, "sha256": sha}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partner = info.paired
    if partner is not None:
        other = info.path.with_name(f"{partner['name']}.onnx")
        if other.is_file():
            ometa = json.loads(other.with_suffix(".json").read_text(encoding="utf-8"))
            if isinstance(ometa.get("paired"), dict) and ometa["paired"].get("name") == info.name:
                ometa["paired"]["sha256"] = sha
                other.with_suffix(".json").write_text(json.dumps(ometa, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return load_model_info(info.path)
