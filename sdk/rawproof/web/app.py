"""The verify page as a FastAPI router: the page, its static assets, and the upload API.

Routes (under the router's prefix):

- ``GET /``: the page (HTML; a CSRF token and the server's limits are filled in).
- ``GET /static/{name}``: the page's script and style sheet, from the package (a fixed
  table of names read at start-up: no part of a request reaches the filesystem).
- ``POST /api/verify``: the image as the raw request body (``application/octet-stream``),
  with header ``X-CSRF-Token``. With ``Accept: application/x-ndjson`` the answer is a stream
  of JSON lines (``received``, ``queued``, ``running``..., then ``result`` or ``error``) that
  the page uses for its progress bar; otherwise one JSON object (the ``result`` or ``error``
  line) with an HTTP status: 200, 400 (empty), 403 (CSRF or host check), 413 (too large),
  415 (wrong content type), 422 (not an analysable image), 503 (busy), 504 (time limit),
  500 (the worker died).

Safety (docs/web.md): uploads are bounded in bytes before they are read to the end, in
pixels by ``verify(max_pixels=)`` (checked from the header), and in time and memory by the
worker pool; nothing is written to disk unless ``keep_dir`` is set; the API accepts only
same-origin requests (``Origin`` and ``Sec-Fetch-Site`` when the browser sends them) that
carry an HMAC token the page was given, and only for the configured host names.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rawproof.errors import ImageFormatError, RawproofError, ServiceLimitError
from rawproof.imageio import MAX_PIXELS
from rawproof.web.pool import MAX_UPLOAD_BYTES, JobEvent, PoolConfig, VerifyPool

__all__ = ["WebConfig", "VerifyService", "create_router", "MAX_UPLOAD_BYTES"]

_log = logging.getLogger(__name__)

_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
_LIMIT_STATUS = {"bytes": 413, "queue": 503, "closed": 503, "time": 504, "memory": 422, "crash": 500}


@dataclass(frozen=True)
class WebConfig:
    """Settings of the verify page.

    Attributes:
        pool: Worker bounds and the ``verify()`` arguments (:class:`PoolConfig`); its
            ``verify_kwargs["max_pixels"]`` defaults to verify()'s own :data:`MAX_PIXELS`.
        max_bytes: Largest upload, bytes.
        allowed_hosts: Host names (without port) the page answers for; ``None``: any
            (only behind a proxy that checks ``Host``). Guards against DNS rebinding.
        keep_dir: Folder where each upload and its JSON report are kept, named by the
            upload's SHA-256; ``None`` (default): nothing is kept.
        token_ttl_s: Lifetime of a page's CSRF token, seconds.
        secret: HMAC key of the CSRF tokens; ``None``: random per process.
        repository: Name or URL of the manifest repository shown on the page, ``None``
            when none is configured.
    """

    pool: PoolConfig = field(default_factory=PoolConfig)
    max_bytes: int = MAX_UPLOAD_BYTES
    allowed_hosts: tuple[str, ...] | None = ("127.0.0.1", "localhost", "::1")
    keep_dir: Path | None = None
    token_ttl_s: float = 12 * 3600
    secret: bytes | None = None
    repository: str | None = None

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.token_ttl_s > 0:
            raise ValueError(f"bad web bounds: max_bytes={self.max_bytes}, token_ttl_s={self.token_ttl_s}")


def _pixels(data: bytes) -> int | None:
    """width x height from the image header (no pixel decoded), ``None`` if Pillow cannot read it."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return int(im.width) * int(im.height)
    except Exception:  # noqa: BLE001 - any unreadable header is just "unknown size" here; the worker reports why
        return None


class VerifyService:
    """The state behind the router: the worker pool, the CSRF key, the page template.

    A context manager; :meth:`close` stops the workers (idempotent).
    """

    def __init__(self, cfg: WebConfig) -> None:
        kwargs = {"max_pixels": MAX_PIXELS, **cfg.pool.verify_kwargs}
        self.cfg = cfg
        self.max_pixels = kwargs["max_pixels"]
        self.pool = VerifyPool(PoolConfig(**{**vars(cfg.pool), "verify_kwargs": kwargs}))
        self._secret = cfg.secret or secrets.token_bytes(32)
        root = files("rawproof.web") / "static"
        self._static = {name: (root / name).read_bytes() for name in _STATIC}
        self._page = (root / "index.html").read_text(encoding="utf-8")
        self._uploads = threading.BoundedSemaphore(cfg.pool.workers + cfg.pool.queue_limit)

    def admit(self) -> bool:
        """Take one of the ``workers + queue_limit`` upload slots (bounds the bodies held in memory)."""
        return self._uploads.acquire(blocking=False)

    def finished(self) -> None:
        """Give back an upload slot taken by :meth:`admit`."""
        self._uploads.release()

    def close(self) -> None:
        """Stop the worker pool. Idempotent."""
        self.pool.close()

    def __enter__(self) -> VerifyService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- CSRF -----------------------------------------------------------------------------

    def issue_token(self, now: float | None = None) -> str:
        """A CSRF token: issue time and its HMAC-SHA256 under the service key."""
        stamp = str(int(now if now is not None else time.time()))
        mac = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()
        return f"{stamp}.{mac}"

    def token_ok(self, token: str | None, now: float | None = None) -> bool:
        """True for a token this service issued less than ``token_ttl_s`` ago."""
        if not token or token.count(".") != 1:
            return False
        stamp, mac = token.split(".")
        if not stamp.isdigit():
            return False
        good = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()
        age = (now if now is not None else time.time()) - int(stamp)
        return hmac.compare_digest(mac, good) and -60 <= age <= self.cfg.token_ttl_s

    def host_ok(self, request: Request) -> bool:
        if self.cfg.allowed_hosts is None:
            return True
        host = request.headers.get("host", "")
        name = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
        return name in self.cfg.allowed_hosts

    def refuse(self, request: Request) -> str | None:
        """Why a POST to the API is refused as cross-site or forged, ``None`` if it is not."""
        if not self.host_ok(request):
            return "unknown host"
        site = request.headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return f"cross-site request ({site})"
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            return "cross-origin request"
        if not self.token_ok(request.headers.get("x-csrf-token")):
            return "missing or expired page token; reload the page"
        return None

    # ---- pages ----------------------------------------------------------------------------

    def page(self) -> str:
        fill = {"csrf_token": self.issue_token(), "max_bytes": str(self.cfg.max_bytes),
                "max_mb": f"{self.cfg.max_bytes / 2**20:g}", "max_mp": f"{self.max_pixels / 1e6:g}" if self.max_pixels else "any number of",
                "repository": "on" if self.cfg.repository else "off",
                "timeout_s": f"{self.cfg.pool.timeout_s:g}"}
        html = self._page
        for key, value in fill.items():  # values are server-made: digits, hex, fixed words
            html = html.replace("{{" + key + "}}", value)
        return html

    def static(self, name: str) -> Response:
        if name not in self._static:
            return Response(status_code=404)
        return Response(self._static[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    # ---- uploads --------------------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        """The body, refused (ServiceLimitError ``bytes``) as soon as it passes ``max_bytes``."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.cfg.max_bytes:
            raise ServiceLimitError(f"the file is larger than this server's limit of {self.cfg.max_bytes / 2**20:g} MiB",
                                    limit="bytes")
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > self.cfg.max_bytes:
                raise ServiceLimitError(f"the file is larger than this server's limit of {self.cfg.max_bytes / 2**20:g} MiB",
                                        limit="bytes")
        return bytes(buf)

    def keep(self, data: bytes, result: Mapping[str, Any]) -> None:
        """Store the upload and its report under ``keep_dir`` (named by SHA-256) when configured."""
        if self.cfg.keep_dir is None:
            return
        digest = hashlib.sha256(data).hexdigest()
        self.cfg.keep_dir.mkdir(parents=True, exist_ok=True)
        for suffix, blob in ((".bin", data), (".json", json.dumps(result["report"], indent=1).encode())):
            tmp = self.cfg.keep_dir / f".{digest}{suffix}.tmp"
            tmp.write_bytes(blob)
            os.replace(tmp, self.cfg.keep_dir / f"{digest}{suffix}")

    async def analyse(self, data: bytes, pixels: int | None, emit: Any) -> dict[str, Any]:
        """Run one upload through the pool; ``emit(dict)`` receives progress events (in the loop)."""
        loop = asyncio.get_running_loop()

        def on_event(ev: JobEvent) -> None:
            loop.call_soon_threadsafe(emit, {"event": ev.stage, "position": ev.position, "expected_s": ev.expected_s})

        t0 = time.perf_counter()
        result = await self.pool.run(data, pixels, on_event)
        heat = result.get("heatmap_jpeg")
        out = {"event": "result", "report": result["report"], "page": result["page"],
               "heatmap": None if heat is None else "data:image/jpeg;base64," + base64.b64encode(heat).decode(),
               "timings_ms": {"verify": result["verify_ms"], "server": (time.perf_counter() - t0) * 1e3}}
        await asyncio.to_thread(self.keep, data, result)
        return out


def _error(e: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(e, ServiceLimitError):
        status, kind = _LIMIT_STATUS.get(e.limit, 500), e.limit
    elif isinstance(e, ImageFormatError):
        status, kind = 422, "image"
    elif isinstance(e, RawproofError):
        status, kind = 422, type(e).__name__
    else:
        _log.exception("verify page: unexpected error")
        status, kind = 500, "internal"
        e = RuntimeError("the server could not analyse this file")
    return status, {"event": "error", "kind": kind, "message": str(e) or type(e).__name__, "status": status}


def create_router(service: VerifyService) -> APIRouter:
    """The page's routes (see the module docstring), served by ``service``."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        if not service.host_ok(request):
            return Response("unknown host", status_code=403, media_type="text/plain")
        return Response(service.page(), media_type="text/html; charset=utf-8", headers=_HEADERS)

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return service.static(name)

    @router.post("/api/verify")
    async def verify_upload(request: Request) -> Response:
        why = service.refuse(request)
        if why is not None:
            return _json_error(403, "forbidden", why)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
            return _json_error(415, "content-type", "send the image as the request body, Content-Type application/octet-stream")
        if not service.admit():
            return _json_error(503, "queue", "the server is busy; try again in a minute")
        task = None
        try:
            data = await service.read_body(request)
            if not data:
                return _json_error(400, "empty", "the upload is empty")
            pixels = await asyncio.to_thread(_pixels, data)
            events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            task = asyncio.create_task(service.analyse(data, pixels, events.put_nowait))
            task.add_done_callback(lambda t: service.finished())
        except ServiceLimitError as e:
            status, body = _error(e)
            return JSONResponse(body, status, headers={**_HEADERS, "Connection": "close"})
        finally:
            if task is None:
                service.finished()
        if "application/x-ndjson" in request.headers.get("accept", ""):
            return StreamingResponse(_stream(task, events, len(data), pixels), media_type="application/x-ndjson",
                                     headers=_HEADERS)
        try:
            return JSONResponse(await task, headers=_HEADERS)
        except Exception as e:  # noqa: BLE001 - every failure is a message with a status
            status, body = _error(e)
            return JSONResponse(body, status, headers=_HEADERS)

    return router


def _json_error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"event": "error", "kind": kind, "message": message, "status": status}, status, headers=_HEADERS)


async def _stream(task: asyncio.Task[dict[str, Any]], events: asyncio.Queue[dict[str, Any]], nbytes: int,
                  pixels: int | None) -> AsyncIterator[bytes]:
    """NDJSON events of one analysis: ``received``, ``queued``/``running`` as they happen and a
    ``running`` heartbeat every 0.25 s, then the ``result`` or ``error`` line."""
    yield _line({"event": "received", "bytes": nbytes, "pixels": pixels})
    started: float | None = None
    getter: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({task, getter}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                ev = getter.result()
                getter = None
                if ev["event"] == "running" and started is None:
                    started = time.perf_counter()
                yield _line({**ev, "elapsed_s": 0.0 if started is None else time.perf_counter() - started})
            elif task in done:
                break
            elif started is not None:
                yield _line({"event": "running", "elapsed_s": time.perf_counter() - started})
    finally:
        if getter is not None:
            getter.cancel()
    try:
        yield _line(task.result())
    except Exception as e:  # noqa: BLE001 - every failure is a message with a status
        yield _line(_error(e)[1])


def _line(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()
