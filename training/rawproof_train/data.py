"""Training pairs: the on-disk cache written by :mod:`rawproof_train.prepare`, patch sampling,
and a torch-free iterable patch dataset.

Cache layout (``<root>/``)::

    manifest.json                 # see prepare.py; lists every pair, its split and SHA-256s
    pairs/<id>.stack.npy          # float32, 4 x h x w, RGGB, black/white-normalised, white-balanced, [0,1]
    pairs/<id>.target.npy         # uint8, 2h x 2w x 3, sRGB-encoded (divide by 255)

A pair's stack is the NIP input and its target the sRGB image at full resolution
(DESIGN.md contract). Splits are by image, never by patch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawproof.errors import RawFormatError

__all__ = [
    "Pair",
    "load_pair",
    "load_manifest",
    "sample_patches",
    "PatchDataset",
    "FLAT_REJECT",
    "FLAT_HALF",
]

FLAT_REJECT = 0.01
"""Target patches with variance below this are always rejected (Korus & Memon)."""
FLAT_HALF = 0.02
"""Target patches with variance in [FLAT_REJECT, FLAT_HALF) are kept with probability 0.5."""


@dataclass(frozen=True)
class Pair:
    """One aligned training pair.

    Attributes:
        id: Pair identifier (file stem in the cache).
        stack: float32, 4 x h x w, RGGB, linear, white-balanced, [0,1] (memory-mapped, read-only).
        target: uint8, 2h x 2w x 3, sRGB-encoded (memory-mapped, read-only).
    """

    id: str
    stack: np.ndarray
    target: np.ndarray


def load_manifest(root: str | os.PathLike[str]) -> dict:
    """The cache's ``manifest.json`` as a dict; :class:`RawFormatError` if missing or malformed."""
    p = Path(root) / "manifest.json"
    try:
        m = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RawFormatError(f"cannot read dataset manifest: {e}", path=p) from e
    if not isinstance(m, dict) or "pairs" not in m:
        raise RawFormatError("dataset manifest has no 'pairs'", path=p)
    return m


def load_pair(root: str | os.PathLike[str], pair_id: str) -> Pair:
    """Memory-map one pair of the cache and check that stack and target sizes agree."""
    base = Path(root) / "pairs"
    stack = np.load(base / f"{pair_id}.stack.npy", mmap_mode="r")
    target = np.load(base / f"{pair_id}.target.npy", mmap_mode="r")
    if stack.ndim != 3 or stack.shape[0] != 4 or target.shape != (2 * stack.shape[1], 2 * stack.shape[2], 3):
        raise RawFormatError(f"pair {pair_id}: stack {stack.shape} and target {target.shape} do not align")
    return Pair(id=pair_id, stack=stack, target=target)


def sample_patches(
    pair: Pair, size: int, n: int, rng: np.random.Generator, *, max_tries: int = 50
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random aligned patches, rejecting flat ones as Korus & Memon do.

    Flatness is the variance of the *target* patch as float in [0,1], over all its
    pixels and the three channels together: below :data:`FLAT_REJECT` the patch is
    rejected, below :data:`FLAT_HALF` it is kept with probability 0.5. Positions are
    uniform over even target offsets, so the stack patch is exactly aligned.

    Args:
        pair: The pair to cut.
        size: Target patch side in pixels, even; the stack patch is ``size // 2``.
        n: Number of patches wanted.
        rng: Generator (seed it for reproducibility).
        max_tries: Attempts per wanted patch before giving up; a flat image then
            yields fewer than ``n`` patches (never padded with flat ones).

    Returns:
        Up to ``n`` tuples ``(stack_patch float32 4 x size/2 x size/2,
        target_patch float32 3 x size x size in [0,1])``, new arrays.
    """
    if size < 2 or size % 2:
        raise ValueError(f"patch size must be even and >= 2, got {size}")
    h, w = pair.stack.shape[1:]
    s = size // 2
    if h < s or w < s:
        return []
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(n * max_tries):
        if len(out) == n:
            break
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        tgt = np.asarray(pair.target[2 * y:2 * y + size, 2 * x:2 * x + size], dtype=np.float32) / 255.0
        var = float(tgt.var())
        if var < FLAT_REJECT or (var < FLAT_HALF and rng.random() < 0.5):
            continue
        out.append((np.array(pair.stack[:, y:y + s, x:x + s], dtype=np.float32), np.ascontiguousarray(tgt.transpose(2, 0, 1))))
    return out


class PatchDataset:
    """Iterable of ``(stack_patch, target_patch)`` numpy pairs from one split of the cache (no torch).

    Each pass visits the split's images in a seeded random order and yields
    ``patches_per_image`` patches from each (:func:`sample_patches`). The order and the
    patches depend only on ``seed``, the epoch (:meth:`set_epoch`) and the shard.

    Args:
        root: Cache folder written by ``python -m rawproof_train prepare``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        patch_size: Target patch side (even); stack patches are half that.
        patches_per_image: Patches per image per pass.
        seed: Base seed.

    Yields:
        ``stack_patch`` float32 4 x p/2 x p/2 (RGGB, [0,1]) and ``target_patch`` float32
        3 x p x p (sRGB, [0,1]).
    """

    def __init__(self, root: str | os.PathLike[str], split: str, *, patch_size: int = 128, patches_per_image: int = 16, seed: int = 0) -> None:
        self.root = Path(root)
        manifest = load_manifest(self.root)
        self.ids = sorted(p["id"] for p in manifest["pairs"] if p["split"] == split)
        if not self.ids:
            raise RawFormatError(f"split {split!r} is empty in {self.root.name}/manifest.json")
        self.split, self.patch_size, self.patches_per_image, self.seed = split, patch_size, patches_per_image, seed
        self.epoch = 0
        self._shard = (0, 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the pass: a different, reproducible image order and patch positions."""
        self.epoch = int(epoch)

    def shard(self, index: int, count: int) -> PatchDataset:
        """Restrict iteration to images ``index, index + count, ...`` (e.g. one DataLoader worker); returns self."""
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} not in [0, {count})")
        self._shard = (index, count)
        return self

    def __len__(self) -> int:
        """Upper bound of the patches one pass yields (flat images may yield fewer)."""
        idx, cnt = self._shard
        return len(self.ids[idx::cnt]) * self.patches_per_image

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.ids))
        idx, cnt = self._shard
        for k in order[idx::cnt]:
            pair = load_pair(self.root, self.ids[k])
            rng = np.random.default_rng([self.seed, self.epoch, int(k)])
            yield from sample_patches(pair, self.patch_size, self.patches_per_image, rng)
