"""Measurements of the verify page, for ``rawproof bench`` (section ``web``) and the tests.

- :class:`LocalServer`: the app on 127.0.0.1 (ephemeral port) in a background thread.
- :func:`upload`: one upload through the HTTP API, as the page sends it (token, NDJSON).
- :func:`hostile_uploads`: files built to hurt a verifier (bombs, truncations, pixel floods).
- :func:`bench_web`: time from upload to verdict for a 12 MP JPEG next to ``verify()``'s own
  time in the same run (HTTP client, and the page in headless Chromium when available),
  and a ninth user's verdict while 8 hostile uploads run at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LocalServer", "reserve_socket", "UploadResult", "page_token", "upload", "hostile_uploads", "bench_web", "CHROMIUM", "chromium_args"]

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium, which the browser tests and the bench drive through Playwright."""


def chromium_args() -> list[str]:
    """Flags for a headless Chromium that reaches nothing but the page under test."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def reserve_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 at an ephemeral port, for :class:`LocalServer` (when the
    app must know its own URL before it is built, e.g. to recover through its own repository)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LocalServer:
    """Serve a FastAPI ``app`` on 127.0.0.1 at an ephemeral port (or on ``sock``), in a thread
    (context manager).

    ``url`` is the base URL, e.g. ``http://127.0.0.1:40123/``. Startup (the app's lifespan,
    e.g. starting the worker pool) is complete when ``__enter__`` returns.
    """

    def __init__(self, app: Any, *, sock: socket.socket | None = None) -> None:
        import uvicorn

        self._sock = sock or reserve_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=5))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        deadline = time.monotonic() + 180
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the verify server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


@dataclass(frozen=True)
class UploadResult:
    """One upload's outcome.

    Attributes:
        status: HTTP status (200 for a streamed answer, whatever its last line says).
        final: The last JSON line (``event`` = ``"result"`` or ``"error"``).
        events: Every line, in order.
        seconds: Wall time from the first byte sent to the last line read.
    """

    status: int
    final: dict[str, Any]
    events: list[dict[str, Any]]
    seconds: float


def page_token(base_url: str) -> str:
    """The CSRF token the page at ``base_url`` hands out."""
    with urllib.request.urlopen(base_url, timeout=30) as r:
        html = r.read().decode()
    m = re.search(r'<meta name="csrf-token" content="([0-9]+\.[0-9a-f]+)">', html)
    if m is None:
        raise RuntimeError("the page carries no CSRF token")
    return m.group(1)


def upload(base_url: str, data: bytes, token: str, *, stream: bool = True, timeout_s: float = 300) -> UploadResult:
    """POST ``data`` to ``api/verify`` as the page does, and read the answer to its end."""
    req = urllib.request.Request(base_url + "api/verify", data=data, method="POST", headers={
        "Content-Type": "application/octet-stream", "X-CSRF-Token": token,
        "Accept": "application/x-ndjson" if stream else "application/json", "Origin": base_url.rstrip("/")})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            status, body = e.code, e.read()
    except (ConnectionError, urllib.error.URLError) as e:  # the server may close an oversized upload early
        return UploadResult(0, {"event": "error", "message": str(e)}, [], time.perf_counter() - t0)
    events = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    return UploadResult(status, events[-1] if events else {}, events, time.perf_counter() - t0)


def _png(rgb_or_size: np.ndarray | tuple[int, int], compress_level: int = 6) -> bytes:
    from PIL import Image

    if isinstance(rgb_or_size, tuple):
        im = Image.new("RGB", rgb_or_size, (128, 128, 128))
    else:
        im = Image.fromarray(rgb_or_size)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` and whose IDAT holds one row."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def hostile_uploads(*, flood_pixels: int = 40_000_000, oversize_bytes: int | None = None) -> dict[str, bytes]:
    """Eight uploads built to hurt a verifier, by name.

    ``garbage`` (random bytes), ``png_bomb`` (a PNG header declaring 200000 x 200000),
    ``jpeg_bomb`` (a JPEG frame declaring 65000 x 65000), ``truncated_jpeg`` (a real
    JPEG cut in half), ``png_bad_crc`` (a PNG whose data chunk fails its CRC),
    ``fake_c2pa`` (a JPEG with an APP11 JUMBF segment declaring a 4 GiB box),
    ``pixel_flood`` (a valid, highly compressed flat PNG of ``flood_pixels`` pixels: little
    to upload, much to analyse) and ``oversize`` (``oversize_bytes`` of zeros; omitted
    when ``None``).
    """
    from PIL import Image

    rng = np.random.default_rng(23)
    photo = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(photo, "JPEG", quality=90)
    jpeg = photo.getvalue()
    sof = jpeg.index(b"\xff\xc0")
    jpeg_bomb = jpeg[:sof + 5] + struct.pack(">HH", 65000, 65000) + jpeg[sof + 9:]
    png = bytearray(_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    idat = png.index(b"IDAT")
    png[idat + 20] ^= 0xFF
    jumbf = b"JP" + struct.pack(">HI", 1, 1) + struct.pack(">I", 0xFFFFFFF0) + b"jumb" + b"\0" * 32
    fake_c2pa = jpeg[:2] + b"\xff\xeb" + struct.pack(">H", len(jumbf) + 2) + jumbf + jpeg[2:]
    side = int(flood_pixels ** 0.5)
    out = {
        "garbage": rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes(),
        "png_bomb": _png_header_only(200_000, 200_000),
        "jpeg_bomb": jpeg_bomb,
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "png_bad_crc": bytes(png),
        "fake_c2pa": fake_c2pa,
        "pixel_flood": _png((side, side), compress_level=9),
    }
    if oversize_bytes is not None:
        out["oversize"] = bytes(oversize_bytes)
    return out


def _signed_jpeg(width: int, height: int) -> tuple[bytes, bytes]:
    """A signed synthetic ``width`` x ``height`` JPEG (q90) and its test root certificate (PEM),
    a device anchor: the image reads AUTHENTIC."""
    import tempfile

    from PIL import Image

    from rawproof.keygen import generate_test_pki
    from rawproof.models import ModelKind, find_model, list_models
    from rawproof.provenance import CaptureInfo, ModelRef, Signer, sign_image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(height // 10, 1), max(width // 10, 1), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buf, "JPEG", quality=90)
    fans = list_models(ModelKind.FAN)
    paired = find_model(None, ModelKind.FAN).paired if fans else None
    # Named as developed by the default FAN's paired NIP, so that verify() reads its traces.
    nip = ModelRef(paired["name"], paired["sha256"]) if paired else ModelRef("bench-nip", "0" * 64)
    capture = CaptureInfo(camera_make="Bench", camera_model="Synthetic", device_id="bench-0", raw_sha256="0" * 64,
                          nip=nip, capture_time="2025-01-01T00:00:00+00:00")
    with tempfile.TemporaryDirectory() as tmp:
        pki = generate_test_pki(tmp, alg="es256")
        with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
            signed = sign_image(buf.getvalue(), "image/jpeg", capture, signer)
        return signed, pki.root_cert.read_bytes()


def _median(xs: list[float]) -> float:
    return float(np.median(xs))


class _Browser:
    """Headless Chromium on the page (context manager); :meth:`check` picks a file and waits for the verdict."""

    def __init__(self, url: str, data: bytes) -> None:
        import tempfile

        self.url, self._tmp = url, tempfile.TemporaryDirectory()
        self.path = os.path.join(self._tmp.name, "bench.jpg")
        with open(self.path, "wb") as f:
            f.write(data)

    def __enter__(self) -> _Browser:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
        self.page = self._browser.new_page()
        return self

    def check(self) -> tuple[float, float]:
        """(ms from file chosen to verdict shown, the worker's verify() ms), as the page measured them."""
        self.page.goto(self.url)
        self.page.set_input_files("#file", self.path)
        self.page.wait_for_selector("#timing[data-total-ms]", timeout=600_000)
        t = self.page.locator("#timing")
        return float(t.get_attribute("data-total-ms") or "nan"), float(t.get_attribute("data-verify-ms") or "nan")

    def __exit__(self, *exc: object) -> None:
        self._browser.close()
        self._pw.stop()
        self._tmp.cleanup()


def _have_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM)


def bench_web(width: int = 4000, height: int = 3000, *, repeats: int = 3, workers: int = 2,
              browser: bool = True) -> list[dict[str, Any]]:
    """Time the verify page against ``verify()`` on one signed ``width`` x ``height`` JPEG.

    Each of ``repeats`` rounds (after one warm-up round) runs, back to back, ``verify()`` in
    this process, one upload through the HTTP API and one through the page in headless
    Chromium (when Playwright and Chromium are there), so that the three see the same load.
    Figures (medians over the rounds, ms): ``verify_inprocess`` (``patches``: FAN patches
    analysed, 0 when no FAN read the traces); ``http_to_verdict`` (upload to the last line
    read) and ``page_to_verdict`` (file chosen to verdict shown), each with
    ``over_inprocess_ms`` (minus the same round's in-process ``verify()``) and
    ``overhead_ms`` (minus the worker's own ``verify()`` time in that request); then
    ``ninth_user_under_flood``: the ninth user's time to a correct verdict while 8 hostile
    uploads (:func:`hostile_uploads`) are sent at once, with ``hostile_answered`` (how many
    got an answer), ``ninth_correct`` (1 if its verdict equals ``verify()``'s) and
    ``slowdown`` (over ``http_to_verdict``).
    """
    from rawproof.verify import verify
    from rawproof.web.app import WebConfig
    from rawproof.web.pool import PoolConfig
    from rawproof.web.serve import create_app

    signed, root = _signed_jpeg(width, height)
    reference = verify(signed, device_anchors=root)
    expected = reference.verdict.value
    image = f"{width}x{height} jpeg {len(signed)} bytes"
    cfg = WebConfig(pool=PoolConfig(workers=workers, verify_kwargs={"device_anchors": root}))
    runs: dict[str, list[tuple[float, float, float]]] = {"verify_inprocess": [], "http_to_verdict": [], "page_to_verdict": []}
    with LocalServer(create_app(cfg)) as srv, contextlib.ExitStack() as stack:
        token = page_token(srv.url)
        page = stack.enter_context(_Browser(srv.url, signed)) if browser and _have_browser() else None
        for k in range(repeats + 1):  # round 0 warms everything up
            t = time.perf_counter()
            verify(signed, device_anchors=root)
            own = (time.perf_counter() - t) * 1e3
            r = upload(srv.url, signed, token)
            if r.final.get("event") != "result" or r.final["report"]["verdict"] != expected:
                raise RuntimeError(f"the page gave {r.final.get('event')} {r.final.get('message', '')} for the bench image")
            shown = page.check() if page is not None else None
            if k:
                runs["verify_inprocess"].append((own, own, own))
                runs["http_to_verdict"].append((r.seconds * 1e3, own, r.final["timings_ms"]["verify"]))
                if shown is not None:
                    runs["page_to_verdict"].append((shown[0], own, shown[1]))
        rows: list[dict[str, Any]] = [{"name": "verify_inprocess", "median_ms": _median([t for t, _, _ in runs["verify_inprocess"]]),
                                       "image": image,
                                       "patches": reference.forensics.argmax.size if reference.forensics.available else 0}]
        for name in ("http_to_verdict", "page_to_verdict"):
            if runs[name]:
                rows.append({"name": name, "median_ms": _median([t for t, _, _ in runs[name]]),
                             "over_inprocess_ms": _median([t - own for t, own, _ in runs[name]]),
                             "overhead_ms": _median([t - worker for t, _, worker in runs[name]]), "image": image})
        flood = _flood(srv.url, token, signed, expected, cfg.max_bytes)
        flood["slowdown"] = flood["median_ms"] / rows[1]["median_ms"]
        rows.append(flood)
    return rows


def _flood(url: str, token: str, good: bytes, expected: str, max_bytes: int) -> dict[str, Any]:
    """8 hostile uploads at once, then a ninth user with ``good``; the ninth's time and verdict."""
    hostile = list(hostile_uploads(oversize_bytes=max_bytes + 1).values())[:8]
    with ThreadPoolExecutor(len(hostile) + 1) as ex:
        bad = [ex.submit(upload, url, h, token) for h in hostile]
        time.sleep(0.2)  # the hostile files are in (or queued) first
        ninth = ex.submit(upload, url, good, token).result()
        answered = sum(1 for f in bad if f.result().final.get("event") in ("error", "result"))
    ok = ninth.final.get("event") == "result" and ninth.final["report"]["verdict"] == expected
    return {"name": "ninth_user_under_flood", "median_ms": ninth.seconds * 1e3, "hostile_answered": answered,
            "ninth_correct": int(ok), "image": "8 hostile + 1 good"}

