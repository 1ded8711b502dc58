"""The manifest repository as an ASGI app (FastAPI): the C2PA Soft Binding Resolution API.

Routes follow "C2PA Soft Binding API" (the companion document of the C2PA specification
2.1-2.3, section "Soft Binding Resolution API for C2PA Manifest Recovery") and its OpenAPI
description "C2PA Soft Binding Resolution API" version 1.0.0; see ``docs/credentials.md``:

* ``GET /matches/byBinding?alg=&value=&maxResults=`` and ``POST /matches/byBinding``
  (``{"alg", "value"}``): ``value`` is base64 of the assertion block's value string.
* ``POST /matches/byContent?alg=&maxResults=`` with an ``image/*`` body.
* ``GET /manifests/{manifestId}``: the manifest store, ``application/c2pa``.
* ``GET /services/supportedAlgorithms``.

Answers are ``{"matches": [{"manifestId", "similarityScore" (0..100), "distance", "block"}]}``;
``distance`` (Hamming bits of 64) and ``block`` (index of the matched crop region) are rawproof
additions. Writing is rawproof's own route, ``POST /manifests`` with a device API key
(``Authorization: Bearer ...``) and a manifest store as the body: the service reads the store
with c2pa, checks its signature, and takes the soft-binding codes from its own
``c2pa.soft-binding`` assertion, so a client cannot attach codes the signer did not sign.

``create_app`` returns the app so that other routers (the verify web page) can be included.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from rawproof import softbinding as sb
from rawproof.errors import ImageFormatError, VerificationError
from rawproof.imageio import decode_rgb
from rawproof.provenance import ProvenanceState, check_manifest_store
from rawproof.repo.store import Binding, ManifestStore

__all__ = ["Limits", "create_app"]

# c2pa reports these for a detached store that is intact: the hard binding names bytes it does
# not have, and the repository does not judge trust (readers do, with their own anchors).
_EXPECTED_FAILURES = {"assertion.dataHash.mismatch", "signingCredential.untrusted"}


@dataclass(frozen=True)
class Limits:
    """Request limits of the service.

    Attributes:
        max_manifest_bytes: Largest manifest store accepted by ``POST /manifests`` (bytes).
        max_upload_bytes: Largest image accepted by ``POST /matches/byContent`` (bytes).
        max_pixels: Largest decoded image for ``byContent`` (pixels).
        reads_per_s, read_burst: Token bucket per client address for every other route.
        writes_per_s, write_burst: Token bucket per client address for ``POST /manifests``.
    """

    max_manifest_bytes: int = 1 << 20
    max_upload_bytes: int = 32 << 20
    max_pixels: int = 50_000_000
    reads_per_s: float = 200.0
    read_burst: int = 400
    writes_per_s: float = 20.0
    write_burst: int = 40


class _Buckets:
    """Token buckets keyed by client address (thread-safe); old idle entries are dropped."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if len(self._state) > 100_000:
                self._state.clear()
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / self.rate


class _RateLimit:
    """ASGI middleware: a token bucket per client address, one for ``POST /manifests``, one for the rest.

    A plain ASGI class rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    costs about a millisecond per request, as much as a lookup.
    """

    def __init__(self, app: Any, reads: _Buckets, writes: _Buckets) -> None:
        self.app, self.reads, self.writes = app, reads, writes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            client = scope["client"][0] if scope.get("client") else "-"
            write = scope["method"] == "POST" and scope["path"] == "/manifests"
            wait = (self.writes if write else self.reads).take(client)
            if wait > 0:
                response = JSONResponse({"detail": "rate limit exceeded"}, status_code=429,
                                        headers={"Retry-After": str(math.ceil(wait))})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BindingQuery(BaseModel):
    """Body of ``POST /matches/byBinding`` (``c2pa.softBindingQuery``)."""

    alg: str
    value: str


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _matches(found: list[Any]) -> dict[str, Any]:
    return {"matches": [
        {"manifestId": m.manifest_id, "similarityScore": round(100 * (1 - m.distance / sb.BITS)),
         "distance": m.distance, "block": m.block}
        for m in found
    ]}


def _check_alg(alg: str | None) -> None:
    if alg is not None and alg != sb.ALG:
        raise HTTPException(400, f"unsupported soft binding algorithm {alg[:80]!r}; supported: {sb.ALG}")


def create_app(store: ManifestStore, *, limits: Limits = Limits(), title: str = "rawproof manifest repository") -> FastAPI:
    """Build the repository app over an open :class:`ManifestStore`.

    Args:
        store: Where manifests live (SQLite or PostgreSQL); the app does not close it.
        limits: Request size and rate limits.

    Returns:
        The FastAPI app; include further routers with ``app.include_router``.
    """
    app = FastAPI(title=title, version="1.0.0")
    app.state.store = store
    reads, writes = _Buckets(limits.reads_per_s, limits.read_burst), _Buckets(limits.writes_per_s, limits.write_burst)

    app.add_middleware(_RateLimit, reads=reads, writes=writes)

    def lookup(value_b64: str, alg: str, max_results: int, max_distance: int) -> JSONResponse:
        # Runs on the event loop: a lookup takes ~1 ms (multi-index hashing), less than a
        # thread-pool hop, and JSONResponse skips FastAPI's re-encoding of the answer.
        _check_alg(alg)
        try:
            code = sb.parse_value(sb.decode_query(value_b64))
        except ValueError as e:
            raise HTTPException(400, f"invalid value: {e}") from None
        return JSONResponse(_matches(store.nearest(code, max_distance, max_results)))

    @app.get("/services/supportedAlgorithms")
    def supported_algorithms() -> dict[str, Any]:
        return {"watermarks": [], "fingerprints": [{"alg": sb.ALG}]}

    @app.get("/matches/byBinding")
    async def by_binding(value: str = Query(max_length=200), alg: str = Query(max_length=200),
                         maxResults: int = Query(10, ge=1, le=100),  # noqa: N803 (the API's parameter name)
                         maxDistance: int = Query(sb.MATCH_THRESHOLD, ge=0, le=24)) -> JSONResponse:  # noqa: N803
        return lookup(value, alg, maxResults, maxDistance)

    @app.post("/matches/byBinding")
    async def by_large_binding(query: BindingQuery, maxResults: int = Query(10, ge=1, le=100),  # noqa: N803
                               maxDistance: int = Query(sb.MATCH_THRESHOLD, ge=0, le=24)) -> JSONResponse:  # noqa: N803
        if len(query.value) > 200:
            raise HTTPException(400, "value too long for this algorithm")
        return lookup(query.value, query.alg, maxResults, maxDistance)

    @app.post("/matches/byContent")
    async def by_content(request: Request, alg: str | None = Query(None, max_length=200),
                         maxResults: int = Query(10, ge=1, le=100),  # noqa: N803
                         maxDistance: int = Query(sb.MATCH_THRESHOLD, ge=0, le=24)) -> JSONResponse:  # noqa: N803
        _check_alg(alg)
        if not request.headers.get("content-type", "").startswith("image/"):
            raise HTTPException(415, "the body must be an image/* asset")
        data = await _read_body(request, limits.max_upload_bytes)

        def code_of() -> int | None:
            rgb = decode_rgb(data, max_pixels=limits.max_pixels).rgb
            return sb.image_code(rgb) if sb.has_content(rgb) else None  # a flat frame matches nothing

        try:
            code = await run_in_threadpool(code_of)
        except (ImageFormatError, ValueError) as e:
            raise HTTPException(400, f"cannot read the image: {e}") from None
        return JSONResponse(_matches([] if code is None else store.nearest(code, maxDistance, maxResults)))

    @app.get("/manifests/{manifestId}")
    def get_manifest(manifestId: str, returnActiveManifest: bool = False) -> Response:  # noqa: N803
        if len(manifestId) > 200:
            raise HTTPException(400, "invalid manifest id")
        if returnActiveManifest:
            raise HTTPException(400, "returnActiveManifest is not supported; the whole manifest store is returned")
        data = store.get(manifestId)
        if data is None:
            raise HTTPException(404, "manifest not found")
        return Response(data, media_type="application/c2pa")

    @app.post("/manifests", status_code=201)
    async def put_manifest(request: Request, response: Response) -> dict[str, Any]:
        auth = request.headers.get("authorization", "")
        device = store.device_for_key(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if device is None:
            raise HTTPException(401, "a device API key is required (Authorization: Bearer ...)", headers={"WWW-Authenticate": "Bearer"})
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/c2pa":
            raise HTTPException(415, "the body must be a manifest store (application/c2pa)")
        data = await _read_body(request, limits.max_manifest_bytes)
        manifest_id, bindings = await run_in_threadpool(_parse_store, data)
        created = await run_in_threadpool(store.put, manifest_id, data, device, bindings)
        if not created:
            response.status_code = 200
        return {"manifestId": manifest_id, "bindings": len(bindings), "created": created}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backend": store.kind, "codes": len(store.index)}

    return app


def _parse_store(data: bytes) -> tuple[str, list[Binding]]:
    """(active manifest id, its soft-binding codes) from a manifest store; HTTP 400 if it is not usable."""
    try:
        report = check_manifest_store(data)
    except VerificationError as e:
        raise HTTPException(400, f"not a manifest store: {e}") from None
    if report.state is ProvenanceState.NO_MANIFEST or report.active_manifest is None or report.error:
        raise HTTPException(400, f"not a readable C2PA manifest store: {report.error or 'no manifest'}")
    broken = set(report.status_codes) - _EXPECTED_FAILURES
    if broken or "claimSignature.validated" not in report.success_codes:
        raise HTTPException(400, f"the manifest does not validate: {sorted(broken) or 'signature not validated'}")
    blocks = sb.blocks_of(report.soft_binding or {})
    if not blocks:
        raise HTTPException(400, f"the manifest has no {sb.ALG} soft binding")
    try:
        bindings = [Binding(sb.ALG, b["value"], sb.parse_value(b["value"]), i) for i, b in enumerate(blocks)]
    except ValueError as e:
        raise HTTPException(400, f"bad soft-binding value: {e}") from None
    return report.active_manifest, bindings
