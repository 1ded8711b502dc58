"""A bounded pool of worker processes that run :func:`rawproof.verify` on uploads.

The web page never runs ``verify()`` in the server process: a file that hangs the
decoder, exhausts memory or crashes native code must cost one worker, not the service.

- ``workers`` long-lived processes (``spawn``: no fork of a threaded server), each
  under an address-space bound (``RLIMIT_AS``, ``memory_bytes``) and a wall-clock bound
  per job (``timeout_s``): a worker past its time is killed and replaced, and so is one
  that died.
- Jobs wait in one FIFO queue of at most ``queue_limit`` entries; beyond it an upload is
  refused at once (HTTP 503) instead of queueing without bound.
- A *light lane*: with two or more workers, jobs that declare more than ``heavy_pixels``
  pixels (or whose header Pillow cannot read) may occupy at most ``workers - 1`` of them,
  so a flood of large or unreadable uploads leaves one worker for ordinary photos.
- The pool learns its own speed (milliseconds per megapixel, a moving average over
  finished jobs) to tell the page how long an analysis should take.

Use it from asyncio (:meth:`VerifyPool.run`) or from a thread (:meth:`VerifyPool.run_sync`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from rawproof.errors import ServiceLimitError

__all__ = ["PoolConfig", "JobEvent", "VerifyPool", "MAX_UPLOAD_BYTES"]

_log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 64 << 20
"""Default bound on one upload to the verify page, bytes (64 MiB)."""

_DIED = "the analysis stopped unexpectedly (the worker process died)"


@dataclass(frozen=True)
class PoolConfig:
    """Bounds of a :class:`VerifyPool`.

    Attributes:
        workers: Worker processes (>= 1).
        timeout_s: Wall-clock limit of one analysis, seconds, from the moment a worker
            takes the job; the worker is killed past it.
        memory_bytes: Address-space limit of each worker (``RLIMIT_AS``), bytes;
            ``None``: no limit.
        queue_limit: Jobs allowed to wait for a worker; more are refused.
        heavy_pixels: Jobs above this many pixels (width x height from the header) or with
            an unreadable header use at most ``workers - 1`` workers.
        verify_kwargs: Keyword arguments for :func:`rawproof.verify` in the workers
            (``trust_anchors`` as PEM bytes, ``max_pixels``, ``fan``, ``threads``...);
            must be picklable.
        analyse: The job function ``(data, verify_kwargs) -> dict`` run in the workers;
            must be a picklable module-level function.
    """

    workers: int = 2
    timeout_s: float = 120.0
    memory_bytes: int | None = 6 << 30
    queue_limit: int = 16
    heavy_pixels: int = 16_000_000
    verify_kwargs: Mapping[str, Any] = field(default_factory=dict)
    analyse: Callable[[bytes, Mapping[str, Any]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue_limit < 0 or not self.timeout_s > 0 or self.heavy_pixels < 1:
            raise ValueError(f"bad pool bounds: {self}")
        if self.memory_bytes is not None and self.memory_bytes < 256 << 20:
            raise ValueError(f"memory_bytes must be >= 256 MiB, got {self.memory_bytes}")


@dataclass(frozen=True)
class JobEvent:
    """Progress of one job, for the page.

    Attributes:
        stage: ``"queued"`` (``position`` = jobs ahead of it) or ``"running"``
            (``expected_s`` = the pool's estimate for this many pixels, or ``None``).
    """

    stage: str
    position: int = 0
    expected_s: float | None = None


def _worker_main(conn: Connection, memory_bytes: int | None, analyse: Callable[..., dict[str, Any]],
                 verify_kwargs: Mapping[str, Any]) -> None:
    """Worker loop: receive ``bytes``, reply ``("ok", dict)`` or ``("error", kind, message)``."""
    if memory_bytes is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    _warm_up(verify_kwargs)
    conn.send(("ready",))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", analyse(data, verify_kwargs)))
        except MemoryError:
            conn.send(("error", "memory", "analysing this file needs more memory than this server allows"))
        except Exception as e:  # noqa: BLE001 - every failure becomes a message; the worker keeps serving
            from rawproof.errors import RawproofError

            if isinstance(e, RawproofError):
                conn.send(("error", type(e).__name__, str(e)))
            else:
                _log.exception("worker: unexpected error")
                conn.send(("error", "internal", f"the server could not analyse this file ({type(e).__name__})"))


def _warm_up(verify_kwargs: Mapping[str, Any]) -> None:
    """Load the FAN session once, so that the first upload does not pay for it."""
    from rawproof.errors import RawproofError
    from rawproof.models import ModelKind, list_models
    from rawproof.runtime import get_session

    try:
        if verify_kwargs.get("fan") is not None or list_models(ModelKind.FAN):
            get_session(verify_kwargs.get("fan"), ModelKind.FAN, providers=verify_kwargs.get("providers"),
                        threads=verify_kwargs.get("threads"))
    except RawproofError as e:  # a broken install shows on every job, with its own message
        _log.warning("worker warm-up: %s", e)


class _Worker:
    """One worker process and its pipe."""

    def __init__(self, cfg: PoolConfig, analyse: Callable[..., dict[str, Any]]) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, cfg.memory_bytes, analyse, dict(cfg.verify_kwargs)),
                                daemon=True, name="rawproof-web-worker")
        self.proc.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> bool:
        if not self.ready and self.conn.poll(timeout_s):
            try:
                self.ready = self.conn.recv() == ("ready",)
            except (EOFError, OSError):
                return False
        return self.ready

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


@dataclass
class _Job:
    heavy: bool
    pixels: int | None
    on_event: Callable[[JobEvent], None]
    granted: threading.Event = field(default_factory=threading.Event)
    worker: _Worker | None = None


class VerifyPool:
    """Worker processes that run the analysis of uploads under time, memory and queue bounds.

    ``with VerifyPool(cfg) as pool: result = pool.run_sync(data, pixels)``. Thread-safe;
    :meth:`close` is idempotent.
    """

    def __init__(self, cfg: PoolConfig) -> None:
        from rawproof.web.analysis import analyse_upload

        self.cfg = cfg
        self._analyse = cfg.analyse or analyse_upload
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._waiting: deque[_Job] = deque()
        self._heavy_running = 0
        self._closed = False
        self._ms_per_mp: float | None = None
        self.stats = {"done": 0, "errors": 0, "timeouts": 0, "crashes": 0, "refused": 0}
        workers = [_Worker(cfg, self._analyse) for _ in range(cfg.workers)]
        for w in workers:
            w.wait_ready(120)
        self._idle.extend(workers)
        self._all.update(workers)

    # ---- scheduling -----------------------------------------------------------------------

    def _max_heavy(self) -> int:
        return max(1, self.cfg.workers - 1)

    def _dispatch_locked(self) -> None:
        """Hand idle workers to the first eligible waiting jobs (FIFO; heavy jobs capped)."""
        for job in list(self._waiting):
            if not self._idle:
                break
            if job.heavy and self._heavy_running >= self._max_heavy():
                continue
            self._waiting.remove(job)
            job.worker = self._idle.pop()
            self._heavy_running += job.heavy
            job.granted.set()
        for pos, job in enumerate(self._waiting):
            job.on_event(JobEvent("queued", position=pos + 1))

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _release(self, job: _Job, worker: _Worker, broken: bool) -> None:
        if broken:
            worker.kill()
            fresh = _Worker(self.cfg, self._analyse)  # its ready handshake is awaited before its first job
            with self._lock:
                self._all.discard(worker)
                self._all.add(fresh)
            worker = fresh
        with self._lock:
            self._heavy_running -= job.heavy
            if self._closed:
                self._all.discard(worker)
                worker.kill()
                return
            self._idle.append(worker)
            self._dispatch_locked()

    def expected_s(self, pixels: int | None) -> float | None:
        """The pool's estimate of one analysis of ``pixels`` pixels, seconds (``None`` before any job)."""
        if pixels is None or self._ms_per_mp is None:
            return None
        return self._ms_per_mp * pixels / 1e6 / 1e3

    # ---- jobs -----------------------------------------------------------------------------

    def run_sync(self, data: bytes, pixels: int | None, on_event: Callable[[JobEvent], None] = lambda e: None) -> dict[str, Any]:
        """Analyse ``data`` in a worker and return the analysis dict (blocking).

        Args:
            data: The uploaded bytes.
            pixels: Width x height from the header, ``None`` if unreadable (counts as heavy).
            on_event: Called (from this or another thread) with queue and start events.

        Raises:
            ServiceLimitError: queue full (``limit="queue"``), past ``timeout_s``
                (``"time"``), the worker died (``"crash"``), out of memory (``"memory"``),
                or the pool is closed (``"closed"``).
            RawproofError: re-raised as the worker reported it (same class name when
                rawproof defines it, e.g. ImageFormatError).
        """
        job = _Job(heavy=pixels is None or pixels > self.cfg.heavy_pixels, pixels=pixels, on_event=on_event)
        with self._lock:
            if self._closed:
                raise ServiceLimitError("the verification service is shutting down", limit="closed")
            if len(self._waiting) >= self.cfg.queue_limit and not (self._idle and not job.heavy):
                self.stats["refused"] += 1
                raise ServiceLimitError(f"the server is busy ({len(self._waiting)} files waiting); try again in a minute",
                                        limit="queue")
            self._waiting.append(job)
            self._dispatch_locked()
        job.granted.wait()
        worker = job.worker
        if worker is None:  # woken by close()
            raise ServiceLimitError("the verification service is shutting down", limit="closed")
        broken = True
        try:
            if not worker.wait_ready(120):
                self._count("crashes")
                raise ServiceLimitError("an analysis worker failed to start", limit="crash")
            on_event(JobEvent("running", expected_s=self.expected_s(pixels)))
            t0 = time.perf_counter()
            try:
                worker.conn.send_bytes(data)
            except OSError:  # the worker died between two jobs
                self._count("crashes")
                raise ServiceLimitError(_DIED, limit="crash") from None
            if not worker.conn.poll(self.cfg.timeout_s):
                self._count("timeouts")
                raise ServiceLimitError(f"the analysis took longer than this server's limit of {self.cfg.timeout_s:g} s",
                                        limit="time")
            try:
                reply = worker.conn.recv()
            except (EOFError, OSError):
                self._count("crashes")
                raise ServiceLimitError(_DIED, limit="crash") from None
            broken = False
            if reply[0] == "ok":
                self._count("done")
                if pixels:
                    ms = (time.perf_counter() - t0) * 1e3 / (pixels / 1e6)
                    with self._lock:
                        self._ms_per_mp = ms if self._ms_per_mp is None else 0.7 * self._ms_per_mp + 0.3 * ms
                return reply[1]
            self._count("errors")
            _, kind, message = reply
            if kind == "memory":
                raise ServiceLimitError(message, limit="memory")
            raise _rebuild_error(kind, message)
        finally:
            self._release(job, worker, broken)

    async def run(self, data: bytes, pixels: int | None, on_event: Callable[[JobEvent], None] = lambda e: None) -> dict[str, Any]:
        """:meth:`run_sync` from asyncio: waits in a thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.run_sync, data, pixels, on_event)

    def running(self) -> int:
        """Workers running a job now."""
        with self._lock:
            return len(self._all) - len(self._idle)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers, idle or busy (for tests and monitoring)."""
        with self._lock:
            return sorted(w.proc.pid for w in self._all if w.proc.pid is not None)

    def close(self) -> None:
        """Stop every idle worker; busy ones stop when their job ends. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._all.difference_update(idle)
            waiting, self._waiting = list(self._waiting), deque()
        for w in idle:
            w.kill()
        for job in waiting:  # wake them; they find the pool closed
            job.worker = None
            job.granted.set()

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rebuild_error(kind: str, message: str) -> Exception:
    """The worker's rawproof error as the same class here (``VerificationError`` for others)."""
    import rawproof.errors as errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.RawproofError) and kind in errors.__all__:
        try:
            return cls(message)
        except TypeError:
            pass
    return errors.VerificationError(message)
