"""``python -m rawproof_train prepare``: build the cache of aligned (RGGB stack, sRGB target) pairs.

Sources:

* ``--photos DIR``: sRGB photos (png/jpg/jpeg/tif/bmp), unprocessed into synthetic RAW
  (:mod:`rawproof_train.unprocess`) with WB gains drawn from a generator seeded by
  ``(seed, CRC32 of the file's relative name)``, so adding files does not change the
  others, and an identity colour matrix (the NIP input is in sRGB primaries). The target
  is the reference development of the synthetic frame (``--photo-target reference``,
  default) or the original photo (``original``, cropped to even size).
* ``--raws DIR``: camera RAW files LibRaw reads (by extension), and headerless dumps
  listed in a ``manifest.json`` found in the folder or one of its parents (the data
  manifest). Stack = the white-balanced stack (grey-world WB when the file has none),
  converted to linear sRGB primaries per quad (:func:`rawproof.raw.stack_to_srgb_primaries`,
  exactly what ``develop()`` feeds the NIP; identity when the frame has no colour matrix);
  target = :func:`rawproof_train.isp.develop_reference`. Frames whose
  normalised 99th percentile is below 0.05 (dark frames) are skipped and logged.

Reference demosaicing: Malvar-He-Cutler 2004 by default (``--demosaic``). It is a real,
widely used algorithm (gradient-corrected linear 5x5 filters) and the ISP a CPU-class NIP
can imitate closely; INet reached only ~33 dB against Menon 2007 targets in our runs,
because a 5x5 linear demosaicing layer cannot follow Menon's directional decisions. Menon
stays available for larger NIPs (UNet/DNet on a GPU).

Splits are by image: the sorted pair ids are shuffled with ``seed`` and the first
``val``/``test`` fractions (at least one image each when there are >= 3) go to val/test.
Everything written is deterministic: ``manifest.json`` holds each file's SHA-256 and a
``dataset_sha256`` over the pair list, and a second run gives the same hashes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawproof.errors import RawFormatError
from rawproof.raw import RawFrame, stack_to_srgb_primaries
from rawproof.sensor import SensorSpec, find_entry
from rawproof_train.isp import Demosaic, develop_reference, frame_stack
from rawproof_train.unprocess import random_params, random_noise, unprocess

__all__ = ["register", "main", "prepare", "PrepareResult", "RAW_EXTENSIONS", "PHOTO_EXTENSIONS", "render_previews"]

_log = logging.getLogger(__name__)

RAW_EXTENSIONS = frozenset(
    ".dng .nef .nrw .cr2 .cr3 .crw .arw .srf .sr2 .kdc .dcr .orf .rw2 .raf .pef .srw .3fr .erf .mrw .mos .iiq .x3f".split()
)
PHOTO_EXTENSIONS = frozenset(".png .jpg .jpeg .tif .tiff .bmp".split())
DATASET_VERSION = 2


@dataclass(frozen=True)
class PrepareResult:
    """Outcome of :func:`prepare`.

    Attributes:
        out: The cache folder.
        pairs: Number of pairs written.
        splits: Pairs per split.
        dataset_sha256: Hash of the manifest's pair list (stable across runs).
        skipped: ``(source, reason)`` for each input left out.
        seconds: Wall time.
    """

    out: Path
    pairs: int
    splits: dict[str, int]
    dataset_sha256: str
    skipped: tuple[tuple[str, str], ...]
    seconds: float


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pair_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _gather(dirs: Iterable[str | os.PathLike[str]], exts: frozenset[str], with_manifest: bool
            ) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """(name, path) per input file, and (name, reason) per file left out; the name is ``<dir name>/<relative path>``.

    A file is an input when its extension is in ``exts`` or (``with_manifest``) a sensor manifest lists it;
    every other file but the manifests themselves is reported as skipped, with the reason.
    """
    out: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise RawFormatError("input folder does not exist", path=d)
        for p in sorted(d.rglob("*")):
            if not p.is_file() or p.name == "manifest.json":
                continue
            name = f"{d.name}/{p.relative_to(d).as_posix()}"
            try:
                listed = with_manifest and find_entry(p) is not None
            except RawFormatError as e:
                skipped.append((name, str(e)))
                continue
            if p.suffix.lower() in exts or listed:
                out.append((name, p))
            else:
                kind = "a photo" if exts is PHOTO_EXTENSIONS else "a camera RAW"
                where = "" if exts is PHOTO_EXTENSIONS else " and not listed in a manifest.json (sensor manifest, docs/raw_ingest.md)"
                skipped.append((name, f"not {kind} by its extension{where}"))
    return out, skipped


def _open_raw(path: Path) -> RawFrame:
    found = find_entry(path)
    if found is None:
        return RawFrame.from_file(path)
    entry, root = found
    if entry.get("kind") in ("photo", "matrix"):
        raise RawFormatError(f"the manifest lists it as a {entry.get('kind')}, not a RAW frame", path=path)
    return SensorSpec.from_entry(entry, "manifest.json").read(root)


def _load_photo(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _save(arr: np.ndarray, path: Path) -> dict:
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
    return {"file": f"pairs/{path.name}", "sha256": _sha256(path), "shape": list(arr.shape), "dtype": str(arr.dtype)}


def _to_u8(srgb: np.ndarray) -> np.ndarray:
    return (np.clip(srgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def prepare(
    out: str | os.PathLike[str],
    *,
    photos: Iterable[str | os.PathLike[str]] = (),
    raws: Iterable[str | os.PathLike[str]] = (),
    seed: int = 0,
    limit: int | None = None,
    val: float = 0.1,
    test: float = 0.1,
    photo_target: str = "reference",
    noise: bool = False,
    method: Demosaic | str = Demosaic.MALVAR2004,
    progress: bool = True,
    strict: bool = False,
) -> PrepareResult:
    """Build the pair cache (see the module docstring); returns a :class:`PrepareResult`.

    ``limit`` caps the number of inputs (photos first, then RAWs, in sorted order).
    Existing pair files in ``out`` are overwritten; stale ones are not deleted. Every input
    left out is in :attr:`PrepareResult.skipped` and the manifest's ``skipped``, with its reason:
    files neither a photo/RAW by extension nor listed in a sensor manifest, entries that fail
    validation (the field is named), unreadable files and dark frames.

    Raises:
        RawFormatError: ``strict`` and at least one input was skipped (the message lists them all;
            no manifest is written).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    if photo_target not in ("original", "reference"):
        raise ValueError(f"photo_target must be 'original' or 'reference', got {photo_target!r}")
    photo_items, skipped = _gather(photos, PHOTO_EXTENSIONS, False)
    raw_items, raw_skipped = _gather(raws, RAW_EXTENSIONS, True)
    skipped += raw_skipped
    items = [("photo", n, p) for n, p in photo_items] + [("raw", n, p) for n, p in raw_items]
    if limit is not None:
        items = items[: max(0, int(limit))]
    outdir = Path(out)
    pairs: list[dict] = []
    for kind, name, path in tqdm(items, desc="prepare", unit="img", disable=not progress):
        pid = _pair_id(name)
        try:
            if kind == "photo":
                rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                photo = _load_photo(path)
                # The NIP sees linear sRGB primaries (stack_to_srgb_primaries), so an identity
                # camera matrix is exact here; a random one would only add the per-quad
                # approximation error. WB gains stay random (they are undone exactly).
                params = dataclasses.replace(random_params(rng), ccm=np.eye(3, dtype=np.float32))
                frame = unprocess(photo, params, noise=random_noise(rng) if noise else None, rng=rng)
                stack = frame.to_stack(colour=True)
                h, w = frame.height, frame.width
                target = photo[:h, :w] if photo_target == "original" else _to_u8(develop_reference(frame, method=method))
                info = {"wb": list(params.wb), "ccm": np.asarray(params.ccm).round(6).tolist(), "wb_source": "synthetic"}
            else:
                frame = _open_raw(path)
                stack, wb_source = frame_stack(frame)
                stack = stack_to_srgb_primaries(stack, frame.ccm)
                if float(np.percentile(frame.to_stack(white_balance=False), 99)) < 0.05:
                    skipped.append((name, "dark frame (99th percentile < 0.05 of white)"))
                    _log.info("skip %s: dark frame", name)
                    continue
                target = _to_u8(develop_reference(frame, method=method))
                info = {"camera": frame.camera, "cfa": frame.cfa.value, "wb_source": wb_source}
        except RawFormatError as e:
            skipped.append((name, str(e).replace(e.path, name) if e.path else str(e)))
            _log.warning("skip %s: %s", name, e)
            continue
        (outdir / "pairs").mkdir(parents=True, exist_ok=True)
        base = outdir / "pairs" / pid
        pairs.append({
            "id": pid, "kind": kind, "source": name, "source_sha256": _sha256(path), **info,
            "stack": _save(stack.astype(np.float32), base.with_name(pid + ".stack.npy")),
            "target": _save(target, base.with_name(pid + ".target.npy")),
        })
    if strict and skipped:
        raise RawFormatError(f"--strict: {len(skipped)} input(s) skipped: " + "; ".join(f"{n}: {r}" for n, r in skipped))
    pairs.sort(key=lambda p: p["id"])
    order = np.random.default_rng(seed).permutation(len(pairs))
    n = len(pairs)
    n_val = max(1, round(val * n)) if n >= 3 and val > 0 else 0
    n_test = max(1, round(test * n)) if n >= 3 and test > 0 else 0
    for rank, k in enumerate(order):
        pairs[k]["split"] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    canonical = json.dumps(pairs, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "version": DATASET_VERSION,
        "description": "rawproof training pairs: stack = NIP input (float32 4xhxw RGGB, WB'd, [0,1]); target = uint8 2hx2wx3 sRGB",
        "config": {"seed": seed, "limit": limit, "val": val, "test": test, "photo_target": photo_target,
                   "noise": noise, "demosaic": Demosaic(method).value},
        "dataset_sha256": hashlib.sha256(canonical).hexdigest(),
        "pairs": pairs,
        "skipped": [{"source": s, "reason": r} for s, r in skipped],
    }
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    splits = {s: sum(p["split"] == s for p in pairs) for s in ("train", "val", "test")}
    return PrepareResult(outdir, len(pairs), splits, manifest["dataset_sha256"], tuple(skipped), time.perf_counter() - t0)


def render_previews(frames: Iterable[tuple[str, RawFrame]], out: str | os.PathLike[str], *, max_width: int = 512) -> list[Path]:
    """Develop frames with the reference pipeline (Menon) and save downscaled PNG previews.

    Args:
        frames: ``(name, frame)``; the file is ``<out>/<name>.png`` (name sanitised).
        out: Folder to write to.
        max_width: Previews are downscaled (Lanczos) to at most this width.

    Returns:
        The written paths.
    """
    from PIL import Image

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in frames:
        im = Image.fromarray(_to_u8(develop_reference(frame)))
        if im.width > max_width:
            im = im.resize((max_width, max(1, round(im.height * max_width / im.width))), Image.Resampling.LANCZOS)
        path = outdir / f"{_pair_id(name)}.png"
        im.save(path, optimize=True)
        written.append(path)
    return written


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` subcommand."""
    p = subparsers.add_parser("prepare", help="build the cache of (RGGB stack, sRGB target) pairs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("inputs")
    g.add_argument("--photos", nargs="*", default=[], metavar="DIR", help="folders of sRGB photos to unprocess")
    g.add_argument("--raws", nargs="*", default=[], metavar="DIR", help="folders of camera RAWs / manifest-listed dumps")
    g.add_argument("--limit", type=int, default=None, help="use at most N inputs")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="cache/dataset", help="cache folder (default: cache/dataset)")
    g = p.add_argument_group("options")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--val", type=float, default=0.1, help="fraction of images for validation")
    g.add_argument("--test", type=float, default=0.1, help="fraction of images for test")
    g.add_argument("--photo-target", choices=("original", "reference"), default="reference",
                   help="photo pairs' target: the reference development of the unprocessed frame (default) or the photo itself")
    g.add_argument("--noise", action="store_true", help="add Brooks et al. shot/read noise to unprocessed photos")
    g.add_argument("--demosaic", choices=[d.value for d in Demosaic], default=Demosaic.MALVAR2004.value,
                   help="reference demosaicing for targets (default malvar2004, see the module docstring)")
    g.add_argument("--strict", action="store_true", help="fail (exit 1, nothing written) when any input is skipped")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not args.photos and not args.raws:
        _log.error("nothing to do: give --photos and/or --raws")
        return 2
    try:
        r = prepare(args.out, photos=args.photos, raws=args.raws, seed=args.seed, limit=args.limit, val=args.val,
                    test=args.test, photo_target=args.photo_target, noise=args.noise, method=args.demosaic, strict=args.strict)
    except RawFormatError as e:
        _log.error("%s", e)
        return 1
    for name, reason in r.skipped:
        _log.warning("skipped %s: %s", name, reason)
    _log.info("%d pairs (%s) in %.1f s, %d skipped; dataset_sha256 %s", r.pairs, r.splits, r.seconds, len(r.skipped), r.dataset_sha256)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``prepare`` standalone (same arguments as the subcommand)."""
    parser = argparse.ArgumentParser(prog="python -m rawproof_train.prepare")
    register(parser.add_subparsers(dest="command", required=True))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser.parse_args(["prepare", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
