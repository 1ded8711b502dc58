"""Measurements of Durable Content Credentials: lookup latency of the repository, and recovery vs false matches.

* :func:`bench_lookup` (``rawproof repo bench``): fill a repository with N manifests (19 codes
  each), serve it with ``rawproof repo serve`` in its own process, and time ``GET
  /matches/byBinding`` from C concurrent clients over keep-alive HTTP connections.
* :func:`eval_recovery` (``rawproof repo eval``): enrol photos (their soft-binding blocks in a
  :class:`CodeIndex`, exactly as the repository stores them), send every enrolled photo and every
  distractor through the platform channels (scale, JPEG 4:2:0, WebP, crop), and count how often the
  nearest match is the photo's own manifest, and how often a distractor matches anything.
"""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rawproof import softbinding as sb
from rawproof.repo.store import Binding, CodeIndex, open_store, to_int64

__all__ = ["CHANNELS", "bench_lookup", "eval_recovery", "load_photos", "load_raw_developments"]


def _encode(im: Image.Image, fmt: str, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=quality, subsampling=2)  # 4:2:0
    else:
        im.save(buf, "WEBP", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _scale(im: Image.Image, f: float) -> Image.Image:
    return im if f == 1.0 else im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.BILINEAR)


def _crop(im: Image.Image, rng: np.random.Generator, max_cut: float) -> Image.Image:
    """Cut up to ``max_cut`` of the width and of the height, split at random between the two sides."""
    cw, ch = rng.uniform(0, max_cut) * im.width, rng.uniform(0, max_cut) * im.height
    left, top = rng.uniform(0, cw), rng.uniform(0, ch)
    return im.crop((round(left), round(top), round(im.width - (cw - left)), round(im.height - (ch - top))))


def _channels() -> dict[str, Callable[[Image.Image, np.random.Generator], np.ndarray]]:
    out: dict[str, Callable[[Image.Image, np.random.Generator], np.ndarray]] = {}
    for s in (0.5, 0.75, 1.0):
        for q in (50, 75, 95):
            out[f"scale{s}_jpeg{q}"] = lambda im, rng, s=s, q=q: _encode(_scale(im, s), "JPEG", q)
    for s in (0.5, 1.0):
        for q in (50, 80):
            out[f"scale{s}_webp{q}"] = lambda im, rng, s=s, q=q: _encode(_scale(im, s), "WEBP", q)
    for i, (s, q) in enumerate(((1.0, 75), (0.75, 75), (0.5, 50), (1.0, 95))):
        out[f"crop10_{i}_scale{s}_jpeg{q}"] = lambda im, rng, s=s, q=q: _encode(_scale(_crop(im, rng, 0.10), s), "JPEG", q)
    return out


CHANNELS = _channels()
"""The platform set: name -> function(PIL image, rng) -> received uint8 RGB. 17 channels: scales
0.5/0.75/1.0 x JPEG q50/75/95 (4:2:0), WebP q50/80 at 0.5/1.0, and four crops of up to 10 % of
each dimension (random split between opposite sides) followed by a scale and a JPEG."""


def load_photos(folders: Sequence[str | os.PathLike[str]], max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """Every JPEG/PNG/WebP under ``folders`` (sorted), RGB, reduced to ``max_side`` px on the long edge."""
    out = []
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                continue
            with Image.open(p) as im:
                im = im.convert("RGB")
                f = max_side / max(im.size)
                if f < 1:
                    im = im.resize((round(im.width * f), round(im.height * f)), Image.BOX)
                out.append((str(p), im))
    return out


def load_raw_developments(data_root: str | os.PathLike[str], max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """Every RAW frame of a data folder's ``manifest.json`` developed by ``develop()`` with the default NIP.

    Dark frames (``black`` in the file name) and frames smaller than 128 px are skipped.
    """
    import json

    from rawproof.develop import develop
    from rawproof.errors import RawFormatError
    from rawproof.rawio import read_manifest_entry

    root = Path(data_root)
    out = []
    for entry in json.loads((root / "manifest.json").read_text())["files"]:
        if entry.get("kind") in ("photo", "matrix") or "black" in Path(entry["path"]).name:
            continue
        try:
            frame = read_manifest_entry(entry, root)
        except RawFormatError:
            continue
        if min(frame.mosaic.shape) < 128:
            continue
        im = Image.fromarray(np.asarray(develop(frame).rgb))
        f = max_side / max(im.size)
        if f < 1:
            im = im.resize((round(im.width * f), round(im.height * f)), Image.BOX)
        out.append((f"{entry['path']}@develop", im))
    return out


def _tiles(im: Image.Image, n: int) -> list[Image.Image]:
    w, h = im.width // n, im.height // n
    return [im.crop((x * w, y * h, (x + 1) * w, (y + 1) * h)) for y in range(n) for x in range(n)]


def eval_recovery(photos: Sequence[tuple[str, Image.Image]], *, thresholds: Sequence[int] = (6, 8, 10, 12, 14),
                  seed: int = 0) -> dict[str, Any]:
    """Recovery and false-match rates of the soft binding through :data:`CHANNELS`.

    Photos with an even index are enrolled: each whole photo and its four 2x2 tiles is one
    "manifest" (five per photo). Photos with an odd index are distractors, never enrolled: each
    whole photo, its 2x2 and its 3x3 tiles (14 images per photo). Images without content
    (:func:`rawproof.softbinding.has_content`) are not enrolled and not looked up, as in
    ``develop``/``verify``. Every image goes through every channel. A received enrolled copy is recovered when its nearest enrolled code (over all blocks)
    is within the threshold and belongs to its own manifest; a distractor copy is a false match
    when anything is within the threshold.

    Returns:
        ``photos``, ``enrolled``, ``distractors``, ``queries_enrolled``, ``queries_distractor``,
        and per threshold: ``recovered``, ``recovery_rate``, ``wrong_manifest``, ``false_matches``,
        ``false_match_rate``; plus ``per_channel`` recovery at :data:`MATCH_THRESHOLD`.
    """
    rng = np.random.default_rng(seed)
    index = CodeIndex()
    enrolled: list[tuple[str, Image.Image]] = []
    distractors: list[Image.Image] = []
    for i, (name, im) in enumerate(photos):
        if i % 2 == 0:
            enrolled += [(f"{name}#full", im)] + [(f"{name}#t{j}", t) for j, t in enumerate(_tiles(im, 2))]
        else:
            distractors += [im, *_tiles(im, 2), *_tiles(im, 3)]
    # As develop() and verify() do: an image without content (flat or tiny) gets no soft binding
    # and is never looked up; such a received copy counts as not recovered.
    enrolled = [(mid, im) for mid, im in enrolled if sb.has_content(np.asarray(im))]
    rows, rid = [], 0
    for mid, im in enrolled:
        for b, block in enumerate(sb.soft_binding_blocks(np.asarray(im))):
            rid += 1
            rows.append((rid, mid, to_int64(sb.parse_value(block["value"])), b))
    index.add(rows)
    tmax = max(thresholds)
    own: list[tuple[str, int | None, bool]] = []  # (channel, nearest distance, nearest is own)
    def nearest(rgb: np.ndarray) -> Any:
        found = index.nearest(sb.image_code(rgb), tmax, 1) if sb.has_content(rgb) else []
        return found[0] if found else None

    for mid, im in enrolled:
        for ch, fn in CHANNELS.items():
            m = nearest(fn(im, rng))
            own.append((ch, None if m is None else m.distance, m is not None and m.manifest_id == mid))
    false_d: list[int | None] = []
    for im in distractors:
        for fn in CHANNELS.values():
            m = nearest(fn(im, rng))
            false_d.append(None if m is None else m.distance)
    result: dict[str, Any] = {"photos": len(photos), "enrolled": len(enrolled), "distractors": len(distractors),
                              "channels": len(CHANNELS), "queries_enrolled": len(own), "queries_distractor": len(false_d),
                              "thresholds": {}}
    for t in thresholds:
        rec = sum(1 for _, d, ok in own if d is not None and d <= t and ok)
        wrong = sum(1 for _, d, ok in own if d is not None and d <= t and not ok)
        fm = sum(1 for d in false_d if d is not None and d <= t)
        result["thresholds"][t] = {"recovered": rec, "recovery_rate": rec / max(1, len(own)), "wrong_manifest": wrong,
                                   "false_matches": fm, "false_match_rate": fm / max(1, len(false_d))}
    per = {}
    for ch in CHANNELS:
        sel = [(d, ok) for c, d, ok in own if c == ch]
        per[ch] = sum(1 for d, ok in sel if d is not None and d <= sb.MATCH_THRESHOLD and ok) / max(1, len(sel))
    result["per_channel"] = per
    return result


def _fill(db: str, manifests: int, seed: int) -> list[int]:
    """Store synthetic entries (random codes, a 4 kB store blob each) until ``db`` holds ``manifests``; returns block-0 codes.

    A database that already holds enough (``--db`` of an earlier run) is reused as it is.
    """
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    firsts: list[int] = []
    with open_store(db) as store:
        if store.count() >= manifests:
            return store.block_codes(0)
        for start in range(store.count(), manifests, 5000):
            items = []
            for i in range(start, min(manifests, start + 5000)):
                codes = rng.integers(0, 2**64, len(sb.REGIONS), dtype=np.uint64)
                bindings = [Binding(sb.ALG, sb.format_value(int(c)), int(c), b) for b, c in enumerate(codes)]
                items.append((f"urn:c2pa:bench-{seed}-{i:08d}", blob, "bench", bindings))
                firsts.append(int(codes[0]))
            store.put_many(items)
    return firsts


def bench_lookup(*, manifests: int = 100_000, clients: int = 8, queries: int = 4000, db: str | None = None,
                 seed: int = 0, workers: int = 1) -> list[dict[str, Any]]:
    """Lookup latency of ``rawproof repo serve`` with ``manifests`` stored: one client, then ``clients`` at once.

    Half the queries are a stored code with 3 bits flipped (a hit), half a random code (a miss).
    Each client holds one keep-alive HTTP connection and sends its next query when the answer
    is in (a closed loop), so with C clients a request also waits for up to C - 1 others: the
    one-client row is the service time, the C-client row what a client sees under that load.
    Clients run as threads of this process, on the same cores as the server.

    Returns:
        One row per client count: ``manifests``, ``codes``, ``workers``, ``backend``, ``clients``,
        ``queries``, ``fill_s``, ``p50_ms``, ``p99_ms``, ``max_ms``, ``throughput_qps``, ``hits``,
        ``errors`` (answers other than 200).
    """
    from rawproof.repo.cli import _free_port

    tmp = tempfile.TemporaryDirectory()
    db = db or str(Path(tmp.name) / "bench.sqlite")
    t0 = time.perf_counter()
    firsts = _fill(db, manifests, seed)
    fill_s = time.perf_counter() - t0
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "rawproof", "repo", "serve", "--db", db, "--port", str(port), "--workers", str(workers),
                             "--reads-per-s", "1e6"],  # all bench clients share one address: no rate limit
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the repository did not start") from None
                time.sleep(0.2)
        rng = np.random.default_rng(seed + 1)
        paths = []
        for i in range(queries):
            if i % 2 == 0:
                code = firsts[int(rng.integers(len(firsts)))]
                for bit in rng.choice(64, 3, replace=False):
                    code ^= 1 << int(bit)
            else:
                code = int(rng.integers(0, 2**64, dtype=np.uint64))
            paths.append(f"/matches/byBinding?alg={sb.ALG}&value={sb.encode_query(sb.format_value(code))}")

        def run(n_clients: int, mine: list[str]) -> tuple[list[float], int, float]:
            lat: list[float] = []
            hits, errors = [0], [0]
            lock = threading.Lock()

            def client(part: list[str]) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                local, h, e = [], 0, 0
                for p in part:
                    t = time.perf_counter()
                    conn.request("GET", p)
                    resp = conn.getresponse()
                    body = resp.read()
                    local.append((time.perf_counter() - t) * 1e3)
                    h += b"manifestId" in body
                    e += resp.status != 200
                conn.close()
                with lock:
                    lat.extend(local)
                    hits[0] += h
                    errors[0] += e

            threads = [threading.Thread(target=client, args=(mine[i::n_clients],)) for i in range(n_clients)]
            t1 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            return lat, hits[0], errors[0], time.perf_counter() - t1

        runs = {n: run(n, paths if n == clients else paths[: max(100, len(paths) // 8)]) for n in dict.fromkeys((1, clients))}
    finally:
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()
    rows = []
    for n, (lat, hits, errors, wall) in runs.items():
        arr = np.array(lat)
        rows.append({"manifests": manifests, "codes": manifests * len(sb.REGIONS), "workers": workers,
                     "backend": "postgresql" if db.startswith("postgres") else "sqlite", "clients": n, "queries": len(arr),
                     "fill_s": round(fill_s, 1), "p50_ms": round(float(np.percentile(arr, 50)), 2),
                     "p99_ms": round(float(np.percentile(arr, 99)), 2), "max_ms": round(float(arr.max()), 2),
                     "throughput_qps": round(len(arr) / wall, 1), "hits": hits, "errors": errors})
    return rows
