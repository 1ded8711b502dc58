"""Whole images for "is this ours?": rawproof developments and other pipelines' images, by split.

Both sides come from the prepared dataset (``python -m rawproof_train prepare``), so a split
never mixes scenes:

- **rawproof**: each pair's RGGB stack developed whole by the ONNX NIP through the SDK
  (:func:`rawproof.tiling.run_nip`, the code :func:`rawproof.develop` runs), uint8 as
  ``develop()`` returns it.
- **foreign**, images no rawproof NIP made:
  - ``photo``: the original camera/phone photo behind a ``photo`` pair (its target);
  - ``reference-isp``: a ``raw`` pair's target, the reference pipeline
    (``rawproof_train.isp``) development of a real RAW;
  - ``libraw``: the same RAW file developed by rawpy/LibRaw (camera white balance, AHD,
    sRGB, 8 bits), when LibRaw reads the source (DNG, CRW, KDC; not headerless dumps).

Sources are looked up under ``$RAWPROOF_DATA`` (default ``../shared/data``) and its
``extra/`` folder, as ``prepare`` was given them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawproof.models import ModelKind, find_model
from rawproof.runtime import get_session
from rawproof.tiling import run_nip
from rawproof_train.data import load_manifest, load_pair

__all__ = ["WholeImage", "rawproof_images", "foreign_images", "data_root"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WholeImage:
    """One whole image.

    Attributes:
        id: ``<pair id>/<origin>``.
        origin: ``"rawproof"``, ``"photo"``, ``"reference-isp"`` or ``"libraw"``.
        rgb: uint8, H x W x 3, sRGB, read-only.
    """

    id: str
    origin: str
    rgb: np.ndarray


def data_root() -> Path:
    """``$RAWPROOF_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("RAWPROOF_DATA", "../shared/data"))


def _pairs(data: str | os.PathLike[str], splits: tuple[str, ...]) -> list[dict]:
    return sorted((p for p in load_manifest(data)["pairs"] if p["split"] in splits), key=lambda p: p["id"])


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def rawproof_images(data: str | os.PathLike[str], nip: str | os.PathLike[str], splits: tuple[str, ...],
                    threads: int | None = 1) -> list[WholeImage]:
    """Every pair of ``splits`` developed whole by the ONNX ``nip``."""
    session = get_session(find_model(nip, ModelKind.NIP), ModelKind.NIP, threads=threads)
    out = []
    for p in _pairs(data, splits):
        stack = np.ascontiguousarray(load_pair(data, p["id"]).stack, dtype=np.float32)
        out.append(WholeImage(f"{p['id']}/rawproof", "rawproof", _ro(run_nip(session, stack).rgb)))
    return out


def _libraw(source: str) -> np.ndarray | None:
    import rawpy

    for base in (data_root(), data_root() / "extra"):
        path = base / source
        if path.is_file():
            try:
                with rawpy.imread(str(path)) as raw:
                    return raw.postprocess(use_camera_wb=True, output_bps=8)
            except (rawpy.LibRawError, ValueError) as e:  # headerless dumps, unsupported files
                log.debug("LibRaw cannot develop %s: %s", path, e)
                return None
    return None


def foreign_images(data: str | os.PathLike[str], splits: tuple[str, ...], *, libraw: bool = True) -> list[WholeImage]:
    """Images of ``splits`` that no rawproof NIP developed (module docstring)."""
    out = []
    for p in _pairs(data, splits):
        target = load_pair(data, p["id"]).target
        origin = "photo" if p.get("kind") == "photo" else "reference-isp"
        out.append(WholeImage(f"{p['id']}/{origin}", origin, _ro(target)))
        if libraw and p.get("kind") == "raw":
            rgb = _libraw(p["source"])
            if rgb is not None:
                out.append(WholeImage(f"{p['id']}/libraw", "libraw", _ro(rgb)))
    return out
