"""verify_batch(): :func:`rawproof.verify.verify` over many images, on a process pool or a Ray cluster.

One row per image goes to Parquet and/or JSONL (chosen by the output suffix)::

    from rawproof.batch import verify_batch

    summary = verify_batch("photos/", "results.parquet", workers=8, fan="fan.onnx")
    summary = verify_batch("manifest.parquet", "results.jsonl", ray=True, ray_address="auto")

Command line: ``rawproof verify-batch INPUT... --out results.parquet [--ray]``
(``docs/scale_out.md``).

Guarantees:

* **Every input is accounted for.** An image that cannot be read, decoded or analysed
  yields an error row (``status = "error"``), never a failed batch. A worker process
  that dies (killed, out of memory, a crashing decoder) has its chunk retried; a chunk
  that keeps killing workers is split into single images, so only the image that causes
  the crash ends up as an error row.
* **Resumable.** Finished rows are appended to a journal (``<out>.journal.jsonl``) as
  they arrive. A re-run reads the existing outputs and the journal and skips every
  ``path`` already there. The outputs are replaced atomically (write a temporary file,
  then ``os.replace``) when the batch ends.
* **One FAN session per worker process.** Images go to workers in chunks, and the
  worker processes live for the whole batch, so :func:`rawproof.runtime.get_session`
  loads the FAN once per process and serves the rest from its cache. Each row records
  which session ran it (``session``); :attr:`BatchSummary.sessions_created` counts them.

Inputs: a directory (searched recursively for ``.jpg``/``.jpeg``/``.png``/``.webp``,
sorted), a Parquet manifest with a string column ``path`` (relative paths are taken
relative to the manifest's folder), a ``.txt`` list with one path per line, a single
image, or a sequence of these. ``file://`` URIs are accepted; any other scheme
(``http://``, ``s3://``, ...) gives an error row: the batch never touches the network.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import enum
import json
import logging
import multiprocessing
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from tqdm import tqdm

from rawproof.errors import VerificationError
from rawproof.untrusted import dumps_strict, read_regular

__all__ = [
    "BatchMode",
    "RowStatus",
    "BatchOptions",
    "BatchSummary",
    "IMAGE_SUFFIXES",
    "ROW_FIELDS",
    "collect_inputs",
    "verify_one",
    "verify_chunk",
    "read_rows",
    "verify_batch",
    "bench_batch",
    "register",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
"""Suffixes (lower case) picked up when a directory is given as input."""

ROW_FIELDS: tuple[str, ...] = (
    "path", "status", "provenance_state", "verdict", "exit_code", "traces", "score", "raw_score",
    "manipulated_fraction", "class_probabilities", "fan_name", "width", "height", "patches", "significant_regions",
    "p_foreign", "summary", "provenance_ms", "decode_ms", "forensics_ms", "total_ms", "worker", "session", "error_type", "error",
    "recovered_manifest", "recovery_distance",
)
"""Columns of an output row, in order. ``class_probabilities`` maps class name -> mean
calibrated probability over patches (a Parquet ``map<string, double>``, a JSON object);
timings are wall milliseconds measured inside the worker; ``worker`` is ``host:pid``;
``session`` identifies the FAN onnxruntime session that ran the image (``None`` when no
explicit FAN was given or no analysis ran); ``significant_regions`` counts the regions that
passed the local rule (``forensics.regions``); ``p_foreign`` is the origin head's P(not a
rawproof development) when one read the image (verdict ``no_rawproof_traces`` when it says so).
``recovered_manifest`` and ``recovery_distance`` (bits of 64) name the manifest recovered through
the soft binding with ``--repo``, else ``None``."""

_RESULT_FIELDS = ("path", "status", "provenance_state", "verdict", "exit_code", "traces", "score", "raw_score",
                  "manipulated_fraction", "class_probabilities", "fan_name", "width", "height", "patches",
                  "significant_regions", "p_foreign", "summary", "error_type", "error", "recovered_manifest", "recovery_distance")
"""The fields that depend only on the image and the options: equal across modes and runs."""

_JOURNAL_SUFFIX = ".journal.jsonl"


class BatchMode(enum.Enum):
    """Where the per-image work runs."""

    LOCAL = "local"
    """A ``concurrent.futures`` process pool (spawn start method) on this machine."""
    RAY = "ray"
    """Ray tasks over chunks of images, on the cluster ``ray.init(address=...)`` joins or starts."""


class RowStatus(enum.Enum):
    """Outcome of one image."""

    OK = "ok"
    """verify() returned a report; the verdict columns are filled."""
    ERROR = "error"
    """The image could not be verified (unreadable, undecodable, unsupported URI, a worker
    that died on it); ``error_type`` and ``error`` say why, the verdict columns are null."""


@dataclass(frozen=True)
class BatchOptions:
    """What every worker needs to verify an image; plain values so it pickles anywhere.

    Attributes:
        trust_anchors: PEM bytes of other trusted signers' anchors (read once by the driver), or ``None``.
        fan: Path or shipped name of the FAN, or ``None`` (verify's own choice per image).
        stride: Patch grid step in analysed pixels, or ``None`` (patch size / 2).
        scale: As for :func:`rawproof.verify.verify`.
        providers: onnxruntime providers, or ``None`` (best available).
        threads: onnxruntime intra-op threads per worker (1 keeps N workers on N cores
            from oversubscribing, and makes results independent of the worker count).
        repo: Manifest repository URL for recovery (``verify(repo=)``), or ``None``.
        crash_once_marker: Testing aid for fault injection: when set, the first worker
            that manages to create this file exits abruptly (``os._exit``) before its
            chunk, exactly once across all workers sharing the filesystem.
        device_anchors, tsa_anchors: PEM bytes of the device and time-stamp authority
            anchors, or ``None`` (as for :func:`rawproof.verify.verify`).
    """

    trust_anchors: bytes | None = None
    fan: str | None = None
    stride: int | None = None
    scale: str | float = "auto"
    providers: str | None = None
    threads: int = 1
    crash_once_marker: str | None = None
    device_anchors: bytes | None = None
    tsa_anchors: bytes | None = None
    repo: str | None = None


@dataclass(frozen=True)
class BatchSummary:
    """Result of :func:`verify_batch`.

    Attributes:
        mode: Where it ran.
        outputs: The files written (all hold the same rows).
        total: Rows in the outputs now (this run and earlier ones).
        processed: Images verified by this run.
        skipped: Inputs skipped because an earlier run had finished them.
        ok, errors: Rows of each :class:`RowStatus` among all ``total`` rows.
        verdicts: Verdict value -> row count, among all rows.
        workers: Worker processes requested (local) or cluster CPUs used (Ray).
        worker_processes: Distinct worker processes that produced this run's rows.
        sessions_created: Distinct FAN sessions that ran this run's images (one per
            worker process when the session cache works; 0 without an explicit FAN).
        retried_chunks: Chunks re-run after a worker died (local mode; Ray retries its
            tasks itself and only failures past ``max_retries`` are counted here).
        wall_s: Wall time of this run, seconds, including pool/cluster start-up.
        images_per_s: ``processed / wall_s``.
    """

    mode: BatchMode
    outputs: tuple[Path, ...]
    total: int
    processed: int
    skipped: int
    ok: int
    errors: int
    verdicts: dict[str, int] = field(default_factory=dict)
    workers: int = 1
    worker_processes: int = 0
    sessions_created: int = 0
    retried_chunks: int = 0
    wall_s: float = 0.0
    images_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {"mode": self.mode.value, "outputs": [str(p) for p in self.outputs], "total": self.total,
                "processed": self.processed, "skipped": self.skipped, "ok": self.ok, "errors": self.errors,
                "verdicts": dict(self.verdicts), "workers": self.workers, "worker_processes": self.worker_processes,
                "sessions_created": self.sessions_created, "retried_chunks": self.retried_chunks,
                "wall_s": round(self.wall_s, 3), "images_per_s": round(self.images_per_s, 3)}


# ---------------------------------------------------------------------------------------------
# Inputs


def _require_pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError as e:
        raise VerificationError("Parquet input/output needs pyarrow: pip install 'rawproof[batch]'") from e
    return pq


def _scan_dir(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def collect_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """Expand ``inputs`` into the ordered list of image paths/URIs the batch will verify.

    Args:
        inputs: A directory, a Parquet manifest (column ``path``), a ``.txt`` list, one
            image path or URI, or a sequence of any of these. Duplicates are dropped
            (first occurrence kept).

    Returns:
        The row keys: each becomes the ``path`` of exactly one output row. Paths are
        kept as given (a directory's files are joined to the directory as given);
        manifest paths that are relative are joined to the manifest's folder.

    Raises:
        VerificationError: a manifest without a ``path`` column, or an unreadable list.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out: list[str] = []
    for item in items:
        s = os.fspath(item)
        p = Path(s)
        if "://" not in s and p.is_dir():
            out += _scan_dir(p)
        elif "://" not in s and p.suffix.lower() == ".parquet" and p.is_file():
            pq = _require_pyarrow()
            try:
                table = pq.read_table(p)
            except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
                raise VerificationError(f"cannot read manifest {p}: {e}") from e
            if "path" not in table.column_names:
                raise VerificationError(f"manifest {p} has no 'path' column (columns: {table.column_names})")
            for v in table.column("path").to_pylist():
                if v is None:
                    continue
                v = str(v)
                out.append(v if "://" in v or Path(v).is_absolute() else str(p.parent / v))
        elif "://" not in s and p.suffix.lower() in (".txt", ".lst") and p.is_file():
            try:
                lines = p.read_text().splitlines()
            except OSError as e:
                raise VerificationError(f"cannot read list {p}: {e}") from e
            out += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        else:
            out.append(s)
    return list(dict.fromkeys(out))


def _local_path(item: str) -> Path:
    """The filesystem path of a plain path or ``file://`` URI; ValueError for other schemes."""
    if "://" not in item:
        return Path(item)
    u = urlparse(item)
    if u.scheme != "file":
        raise ValueError(f"unsupported URI scheme {u.scheme!r}: only plain paths and file:// are read (no network access)")
    if u.netloc not in ("", "localhost"):
        raise ValueError(f"file:// URI with a remote host {u.netloc!r} is not supported")
    return Path(unquote(u.path))


# ---------------------------------------------------------------------------------------------
# Per-image work (runs in the workers)

# Sessions seen by this process, kept referenced so their ids cannot be reused.
_seen_sessions: dict[int, Any] = {}
_fan_info: dict[str, Any] = {}


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _session_tag(opts: BatchOptions) -> str | None:
    if opts.fan is None:
        return None
    from rawproof.models import ModelKind, find_model
    from rawproof.runtime import get_session

    info = _fan_info.get(opts.fan)
    if info is None:
        info = _fan_info[opts.fan] = find_model(opts.fan, ModelKind.FAN)
    # Same arguments as verify's analyze() call, so this returns the session verify used.
    sess = get_session(info, ModelKind.FAN, providers=opts.providers, threads=opts.threads)
    _seen_sessions.setdefault(id(sess), sess)
    return f"{_worker_id()}:{id(sess):x}"


def _empty_row(path: str) -> dict[str, Any]:
    return dict.fromkeys(ROW_FIELDS) | {"path": path}


def _error_row(path: str, exc: BaseException, t0: float) -> dict[str, Any]:
    return _empty_row(path) | {"status": RowStatus.ERROR.value, "error_type": type(exc).__name__,
                               "error": str(exc) or repr(exc), "total_ms": (time.perf_counter() - t0) * 1e3,
                               "worker": _worker_id()}


def verify_one(item: str, opts: BatchOptions) -> dict[str, Any]:
    """Verify one image and return its output row (:data:`ROW_FIELDS`); never raises for a bad image.

    Args:
        item: A path or ``file://`` URI.
        opts: The batch options.

    Returns:
        A ``status = "ok"`` row with the verdict, provenance state, calibrated score,
        per-class probabilities and timings, or a ``status = "error"`` row with the
        exception type and message.
    """
    from rawproof.imageio import read_image_bytes
    from rawproof.verify import verify

    t0 = time.perf_counter()
    try:
        data = read_image_bytes(_local_path(item))
        rep = verify(data, device_anchors=opts.device_anchors, trust_anchors=opts.trust_anchors,
                     tsa_anchors=opts.tsa_anchors, fan=opts.fan, stride=opts.stride, scale=opts.scale,
                     providers=opts.providers, threads=opts.threads, heatmap=False, repo=opts.repo)
        session = _session_tag(opts) if rep.forensics.available else None
    except Exception as e:  # one bad image must not fail the batch; the row keeps the type and message
        return _error_row(item, e, t0)
    fa = rep.forensics
    t = rep.timings_ms
    return {
        "path": item, "status": RowStatus.OK.value, "provenance_state": rep.provenance.state.value,
        "verdict": rep.verdict.value, "exit_code": rep.exit_code, "traces": fa.traces.value,
        "score": float(fa.score) if fa.available else None, "raw_score": float(fa.raw_score) if fa.available else None,
        "manipulated_fraction": float(fa.manipulated_fraction) if fa.available else None,
        "class_probabilities": {k: float(v) for k, v in fa.class_probabilities.items()} if fa.available else None,
        "fan_name": fa.fan_name, "width": rep.width, "height": rep.height,
        "patches": len(fa.grid_y) * len(fa.grid_x) if fa.available else 0,
        "significant_regions": sum(g.significant for g in fa.regions),
        "p_foreign": None if rep.origin is None else float(rep.origin.p_foreign),
        "summary": rep.summary, "provenance_ms": t["provenance"], "decode_ms": t["decode"],
        "forensics_ms": t["forensics"], "total_ms": (time.perf_counter() - t0) * 1e3,
        "worker": _worker_id(), "session": session, "error_type": None, "error": None,
        "recovered_manifest": None if rep.recovery is None else rep.recovery.manifest_id,
        "recovery_distance": None if rep.recovery is None else rep.recovery.distance,
    }


def _maybe_crash(opts: BatchOptions) -> None:
    if opts.crash_once_marker is None:
        return
    try:
        fd = os.open(opts.crash_once_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, _worker_id().encode())
    os.close(fd)
    os._exit(17)


def verify_chunk(items: Sequence[str], opts: BatchOptions) -> list[dict[str, Any]]:
    """:func:`verify_one` over a chunk, in order: the unit of work sent to a worker."""
    _maybe_crash(opts)
    return [verify_one(i, opts) for i in items]


# ---------------------------------------------------------------------------------------------
# Output


def _normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    cp = row.get("class_probabilities")
    if isinstance(cp, list):  # Parquet maps read back as [(key, value), ...]
        row["class_probabilities"] = {k: v for k, v in cp}
    return _empty_row(row["path"]) | {k: row.get(k) for k in ROW_FIELDS}


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of an output (``.parquet``, ``.jsonl``) or journal file; ``[]`` if it does not exist.

    A JSONL file whose last line is incomplete (a writer killed mid-line) yields the
    complete lines only.

    Raises:
        VerificationError: the file exists but is not a readable output.
    """
    p = Path(path)
    if not p.exists():
        return []
    if p.suffix.lower() == ".parquet":
        pq = _require_pyarrow()
        try:
            rows = pq.read_table(p).to_pylist()
        except Exception as e:  # pyarrow's own error classes
            raise VerificationError(f"cannot read {p}: {e}") from e
        return [_normalise_row(r) for r in rows]
    out = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.endswith("\n"):
                break
            try:
                out.append(_normalise_row(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise VerificationError(f"{p}: line {n + 1} is not a batch row: {e}") from e
    return out


def _arrow_schema() -> Any:
    import pyarrow as pa

    s, f, i = pa.string(), pa.float64(), pa.int64()
    types = {"path": s, "status": s, "provenance_state": s, "verdict": s, "exit_code": i, "traces": s,
             "score": f, "raw_score": f, "manipulated_fraction": f, "class_probabilities": pa.map_(s, f),
             "fan_name": s, "width": i, "height": i, "patches": i, "significant_regions": i, "p_foreign": f, "summary": s,
             "provenance_ms": f, "decode_ms": f, "forensics_ms": f, "total_ms": f, "worker": s, "session": s, "error_type": s,
             "error": s, "recovered_manifest": s, "recovery_distance": i}
    return pa.schema([(k, types[k]) for k in ROW_FIELDS])


def _write_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow as pa

            pq = _require_pyarrow()
            cols = {k: [r[k] for r in rows] for k in ROW_FIELDS}
            cols["class_probabilities"] = [None if v is None else list(v.items()) for v in cols["class_probabilities"]]
            pq.write_table(pa.table(cols, schema=_arrow_schema()), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(dumps_strict(r) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Journal:
    """Append-only JSONL of finished rows; what a crashed or interrupted run leaves behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A line cut by a crash would swallow the next row's start: drop it first.
        if path.exists():
            raw = path.read_bytes()
            keep = raw[: raw.rfind(b"\n") + 1]
            if len(keep) != len(raw):
                path.write_bytes(keep)
        self._fh = open(path, "a", encoding="utf-8")
        self._last_sync = time.monotonic()

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._fh.write("".join(dumps_strict(r) + "\n" for r in rows))
        self._fh.flush()
        if time.monotonic() - self._last_sync > 5:
            os.fsync(self._fh.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


# ---------------------------------------------------------------------------------------------
# Executors


def _chunks(items: list[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(items[i:i + size]) for i in range(0, len(items), size)]


def _died_rows(chunk: Sequence[str], why: str) -> list[dict[str, Any]]:
    return [_empty_row(p) | {"status": RowStatus.ERROR.value, "error_type": "WorkerDied", "error": why} for p in chunk]


def _run_local(chunks: list[tuple[str, ...]], opts: BatchOptions, workers: int, max_retries: int) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Yield (rows, retried_chunks_so_far). A dead worker breaks the whole pool, so the
    unfinished chunks go to a fresh pool; a chunk that keeps killing workers is split."""
    attempts: dict[tuple[str, ...], int] = {}
    pending = list(chunks)
    retried = 0
    ctx = multiprocessing.get_context("spawn")
    while pending:
        broken = False
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futs = {pool.submit(verify_chunk, c, opts): c for c in pending}
            pending = []
            for fut in cf.as_completed(futs):
                chunk = futs[fut]
                try:
                    rows = fut.result()
                except cf.process.BrokenProcessPool as e:
                    broken = True
                    attempts[chunk] = attempts.get(chunk, 0) + 1
                    if attempts[chunk] <= max_retries:
                        pending.append(chunk)
                        retried += 1
                    elif len(chunk) > 1:
                        pending += [(p,) for p in chunk]
                        retried += 1
                    else:
                        yield _died_rows(chunk, f"worker process died {attempts[chunk]} times on this image: {e}"), retried
                    continue
                yield rows, retried
        if broken:
            log.warning("a worker process died; re-running %d unfinished chunk(s) on a fresh pool", len(pending))


def _run_ray(chunks: list[tuple[str, ...]], opts: BatchOptions, workers: int, max_retries: int,
             address: str | None) -> Iterator[tuple[list[dict[str, Any]], int]]:
    try:
        import ray
    except ImportError as e:
        raise VerificationError("--ray needs Ray: pip install 'rawproof[ray]'") from e
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        started = True
    try:
        # Tasks over chunks: Ray keeps its worker processes between tasks, so each process
        # loads the FAN once and serves later chunks from its session cache.
        remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(verify_chunk)
        opts_ref = ray.put(opts)
        window = max(2, 4 * int(ray.cluster_resources().get("CPU", workers)))
        queue = list(chunks)
        inflight: dict[Any, tuple[str, ...]] = {}
        retried = 0
        while queue or inflight:
            while queue and len(inflight) < window:
                c = queue.pop(0)
                inflight[remote.remote(c, opts_ref)] = c
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                chunk = inflight.pop(ref)
                try:
                    rows = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.RayTaskError, ray.exceptions.ObjectLostError) as e:
                    retried += 1
                    if len(chunk) > 1:
                        queue += [(p,) for p in chunk]
                    else:
                        yield _died_rows(chunk, f"Ray task failed after {max_retries} retries: {type(e).__name__}"), retried
                    continue
                yield rows, retried
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------
# Driver


def _outputs(out: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[Path, ...]:
    outs = (Path(out),) if isinstance(out, (str, os.PathLike)) else tuple(Path(o) for o in out)
    if not outs:
        raise ValueError("at least one output path is required")
    for o in outs:
        if o.suffix.lower() not in (".parquet", ".jsonl"):
            raise ValueError(f"output {o} must end in .parquet or .jsonl")
        if o.suffix.lower() == ".parquet":
            _require_pyarrow()
    return outs


def _read_anchors(source: str | os.PathLike[str] | bytes | None) -> bytes | None:
    """PEM bytes from bytes, PEM text or a path; ``None`` stays ``None``."""
    if source is None or isinstance(source, bytes):
        return source
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode()
    from rawproof.provenance import MAX_PEM_BYTES

    try:
        return read_regular(Path(source), MAX_PEM_BYTES)
    except OSError as e:
        raise VerificationError(f"cannot read trust anchors: {e}") from e


def verify_batch(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    trust_anchors: str | os.PathLike[str] | bytes | None = None,
    fan: str | os.PathLike[str] | None = None,
    stride: int | None = None,
    resume: bool = True,
    retry_errors: bool = False,
    scale: str | float = "auto",
    providers: str | None = None,
    threads: int = 1,
    chunk_size: int = 8,
    max_retries: int = 3,
    progress: bool = True,
    device_anchors: str | os.PathLike[str] | bytes | None = None,
    tsa_anchors: str | os.PathLike[str] | bytes | None = None,
    repo: str | None = None,
    _crash_once_marker: str | None = None,
) -> BatchSummary:
    """Verify every image of ``inputs`` and write one row per image to ``out``.

    Args:
        inputs: See :func:`collect_inputs`.
        out: ``.parquet`` and/or ``.jsonl`` path(s); every output gets the same rows, in
            input order. Parquet needs pyarrow (``rawproof[batch]``).
        workers: Local: worker processes (default: CPU count). Ray without an address:
            CPUs of the local cluster started for the batch (default: CPU count); with an
            address, ignored (the cluster's CPUs are used).
        ray: Run on Ray instead of a local process pool (``rawproof[ray]``).
        ray_address: ``ray.init(address=...)``, e.g. ``"auto"`` or ``"ray://head:10001"``;
            ``None`` starts a local cluster. An already initialised Ray is reused and left
            running.
        device_anchors, trust_anchors, tsa_anchors: PEM text, bytes or a path each (as for
            :func:`rawproof.verify.verify`), read once here and sent to the workers.
        fan, stride, scale, providers: As for :func:`rawproof.verify.verify`.
        resume: Skip inputs whose ``path`` is already in ``out`` or its journal;
            ``False`` starts over (the outputs are replaced).
        retry_errors: With ``resume``, verify earlier error rows again.
        threads: onnxruntime intra-op threads per worker.
        chunk_size: Images per task: larger amortises dispatch, smaller balances load.
        max_retries: Re-runs of a chunk whose worker died, before it is split into
            single images (and a single image that still kills its worker gets an
            error row).
        progress: Show a tqdm bar (stderr).
        repo: Manifest repository URL: images without a valid manifest are looked up by soft binding (``verify(repo=)``).

    Returns:
        :class:`BatchSummary`.

    Raises:
        ValueError: bad ``out`` suffix, ``workers``, ``chunk_size`` or ``stride``.
        VerificationError: unreadable manifest/list/trust anchors, or a missing optional
            dependency (pyarrow, ray).
        ModelError, ProviderError: ``fan`` cannot be loaded here (checked before any work).
    """
    t0 = time.perf_counter()
    outs = _outputs(out)
    workers = int(os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1 or chunk_size < 1 or max_retries < 0:
        raise ValueError("workers >= 1, chunk_size >= 1 and max_retries >= 0 are required")
    if stride is not None and stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    anchors, devices, tsas = (_read_anchors(a) for a in (trust_anchors, device_anchors, tsa_anchors))
    fan_arg = None if fan is None else os.fspath(fan)
    if fan_arg is not None:
        # A broken FAN would turn every row into an error: fail once, here, instead.
        from rawproof.models import ModelKind, find_model
        from rawproof.runtime import get_session

        get_session(find_model(fan_arg, ModelKind.FAN), ModelKind.FAN, providers=providers, threads=threads)
        if "://" not in fan_arg and Path(fan_arg).exists():
            fan_arg = str(Path(fan_arg).resolve())
    opts = BatchOptions(anchors, fan_arg, stride, scale, providers, threads, _crash_once_marker,
                        device_anchors=devices, tsa_anchors=tsas, repo=repo)

    items = collect_inputs(inputs)
    journal_path = outs[0].with_name(outs[0].name + _JOURNAL_SUFFIX)
    done: dict[str, dict[str, Any]] = {}
    if resume:
        for src in (*outs, journal_path):
            for r in read_rows(src):
                done.setdefault(r["path"], r)
        if retry_errors:
            done = {k: r for k, r in done.items() if r["status"] != RowStatus.ERROR.value}
    else:
        journal_path.unlink(missing_ok=True)
    todo = [i for i in items if i not in done]
    skipped = len(items) - len(todo)
    if resume and retry_errors and journal_path.exists():
        _write_atomic(journal_path, [r for r in read_rows(journal_path) if r["status"] != RowStatus.ERROR.value])
    journal = _Journal(journal_path)
    mode = BatchMode.RAY if ray else BatchMode.LOCAL
    new: dict[str, dict[str, Any]] = {}
    retried = 0
    chunks = _chunks(todo, chunk_size)
    bar = tqdm(total=len(items), initial=skipped, desc=f"verify-batch ({mode.value})", unit="img",
               disable=not progress, dynamic_ncols=True)
    try:
        runner = (_run_ray(chunks, opts, workers, max_retries, ray_address) if ray
                  else _run_local(chunks, opts, min(workers, max(1, len(chunks))), max_retries))
        for rows, retried in runner if chunks else ():
            journal.add(rows)
            for r in rows:
                new[r["path"]] = r
            bar.update(len(rows))
    finally:
        bar.close()
        journal.close()
    rows_by_path = done | new
    # Input order first, then rows of earlier runs whose inputs were not given this time.
    ordered = [rows_by_path[i] for i in items if i in rows_by_path]
    seen = set(items)
    ordered += [r for k, r in rows_by_path.items() if k not in seen]
    for o in outs:
        o.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(o, ordered)
    journal_path.unlink(missing_ok=True)
    wall = time.perf_counter() - t0
    status = Counter(r["status"] for r in ordered)
    return BatchSummary(
        mode=mode, outputs=outs, total=len(ordered), processed=len(new), skipped=skipped,
        ok=status[RowStatus.OK.value], errors=status[RowStatus.ERROR.value],
        verdicts=dict(Counter(r["verdict"] for r in ordered if r["verdict"] is not None)),
        workers=workers, worker_processes=len({r["worker"] for r in new.values() if r["worker"]}),
        sessions_created=len({r["session"] for r in new.values() if r["session"]}),
        retried_chunks=retried, wall_s=wall, images_per_s=len(new) / wall if wall > 0 else 0.0,
    )


def bench_batch(fan: str | os.PathLike[str], *, n: int = 500, size: int = 256, workers: int = 2,
                out_dir: str | os.PathLike[str] = "cache/batch_bench", chunk_size: int = 8) -> dict[str, Any]:
    """Throughput of local mode against a local Ray cluster on the same images, and whether the rows agree.

    Writes ``n`` random-texture ``size`` x ``size`` JPEGs (q90, generated once) under
    ``out_dir/images``, then runs :func:`verify_batch` over them twice from scratch
    (``resume=False``): a ``workers``-process pool, then a ``workers``-CPU local Ray
    cluster, started before the clock starts (its start-up is reported separately).
    Call it under ``if __name__ == "__main__":`` or ``python -c`` (spawned workers).

    Returns:
        ``{"images", "local": BatchSummary.to_dict(), "ray": ..., "ray_startup_s",
        "identical": every row's result fields equal, "max_abs_score_diff"}``.
    """
    import ray as ray_mod
    from PIL import Image

    root = Path(out_dir)
    img = root / "images"
    img.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        p = img / f"{i:05d}.jpg"
        if not p.exists():
            small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            noise = rng.integers(-20, 21, (size, size, 3))
            base = np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR), dtype=np.int64)
            Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(p, quality=90)
    paths = [str(img / f"{i:05d}.jpg") for i in range(n)]
    local = verify_batch(paths, root / "local.parquet", workers=workers, fan=fan, resume=False, chunk_size=chunk_size, progress=False)
    t = time.perf_counter()
    ray_mod.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - t
    try:
        on_ray = verify_batch(paths, root / "ray.parquet", ray=True, fan=fan, resume=False, chunk_size=chunk_size, progress=False)
    finally:
        ray_mod.shutdown()
    a, b = read_rows(root / "local.parquet"), read_rows(root / "ray.parquet")
    same = [{k: r[k] for k in _RESULT_FIELDS} for r in a] == [{k: r[k] for k in _RESULT_FIELDS} for r in b]
    diff = max((abs(x["score"] - y["score"]) for x, y in zip(a, b) if x["score"] is not None), default=0.0)
    return {"images": n, "size": size, "local": local.to_dict(), "ray": on_ray.to_dict(), "ray_startup_s": round(startup, 2),
            "identical": same, "max_abs_score_diff": diff}


def _run_cli(args: argparse.Namespace) -> int:
    summary = verify_batch(
        args.inputs, args.out, workers=args.workers, ray=args.ray, ray_address=args.ray_address,
        device_anchors=args.trust_device, trust_anchors=args.trust, tsa_anchors=args.trust_tsa, fan=args.fan, stride=args.stride, resume=not args.no_resume,
        retry_errors=args.retry_errors, providers=args.providers, threads=args.threads,
        chunk_size=args.chunk_size, progress=not args.no_progress and sys.stderr.isatty(), repo=args.repo,
    )
    print(dumps_strict(summary.to_dict(), indent=2))
    return 1 if summary.errors else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof verify-batch INPUT... --out OUT [--ray] [--workers N] ...``."""
    p = subparsers.add_parser(
        "verify-batch", help="verify many images (process pool or Ray) into Parquet/JSONL",
        description="Verify a directory, a Parquet manifest (column 'path'), a .txt list or image paths, "
                    "writing one row per image. Re-running resumes. Exit codes: 0 every image verified, "
                    "1 the batch completed but some rows are errors, 3 the batch could not run.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="directory, manifest.parquet, list.txt, image path or file:// URI")
    p.add_argument("--out", action="append", required=True, help="output .parquet or .jsonl (repeat for both)")
    p.add_argument("--workers", type=int, help="worker processes / local Ray CPUs (default: CPU count)")
    p.add_argument("--ray", action="store_true", help="run on Ray (pip install 'rawproof[ray]')")
    p.add_argument("--ray-address", dest="ray_address", help="Ray cluster address (default: start a local one)")
    p.add_argument("--trust-device", metavar="ROOT_PEM", help="device trust anchors, PEM (as for rawproof verify)")
    p.add_argument("--trust", metavar="ROOT_PEM", help="other trusted signers' anchors, PEM (as for rawproof verify)")
    p.add_argument("--trust-tsa", metavar="ROOT_PEM", help="time-stamp authority anchors, PEM")
    p.add_argument("--fan", metavar="MODEL", help="FAN .onnx (with its .json) or shipped name")
    p.add_argument("--repo", metavar="URL", help="manifest repository: recover stripped images' manifests by soft binding")
    p.add_argument("--stride", type=int, metavar="N", help="patch grid step in analysed pixels")
    p.add_argument("--providers", help="onnxruntime providers, comma-separated")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker (default 1)")
    p.add_argument("--chunk-size", dest="chunk_size", type=int, default=8, help="images per task (default 8)")
    p.add_argument("--no-resume", dest="no_resume", action="store_true", help="start over instead of skipping finished rows")
    p.add_argument("--retry-errors", dest="retry_errors", action="store_true", help="verify earlier error rows again")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_cli)
