"""``rawproof serve``: the verify page as one ASGI app on 127.0.0.1.

With ``--repo-db`` the same app also serves the manifest repository (the routes of
``rawproof repo serve``, :func:`rawproof.repo.app.create_app`), and the page recovers
stripped copies through it; with ``--repo URL`` it recovers through another repository.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rawproof.imageio import MAX_PIXELS
from rawproof.web.pool import MAX_UPLOAD_BYTES, PoolConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rawproof.web.app import VerifyService, WebConfig

__all__ = ["create_app", "register"]

_log = logging.getLogger(__name__)


def create_app(cfg: WebConfig | None = None, *, service: VerifyService | None = None, app: FastAPI | None = None) -> FastAPI:
    """A FastAPI app serving the verify page at ``/`` (routes: :mod:`rawproof.web.app`).

    Args:
        cfg: The page's settings (default :class:`WebConfig`).
        service: A ready service to share (the caller closes it); ``None``: one is made
            from ``cfg`` when the app starts (ASGI lifespan) and closed when it stops.
        app: An existing app to add the page to (e.g. the manifest repository's,
            ``rawproof.repo.app.create_app``), whose own lifespan still runs first;
            ``None``: a new app.
    """
    from fastapi import FastAPI

    from rawproof.web.app import VerifyService, WebConfig, create_router

    if app is None:
        app = FastAPI(title="rawproof verify", docs_url=None, redoc_url=None, openapi_url=None)
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with outer(a) as state:
            svc = service or VerifyService(cfg or WebConfig())
            a.include_router(create_router(svc))
            a.state.verify_service = svc
            try:
                yield state
            finally:
                if service is None:
                    svc.close()

    app.router.lifespan_context = lifespan
    return app


def _config(args: argparse.Namespace) -> WebConfig:
    from rawproof.web.app import WebConfig

    verify_kwargs: dict[str, Any] = {"max_pixels": args.max_pixels}
    for option, kwarg in (("trust_device", "device_anchors"), ("trust", "trust_anchors"), ("trust_tsa", "tsa_anchors")):
        if getattr(args, option):
            verify_kwargs[kwarg] = Path(getattr(args, option)).read_bytes()
    if args.fan:
        verify_kwargs["fan"] = args.fan
    repository = None
    if args.repo_db:  # the repository is this very server: the workers ask it over loopback
        repository = f"http://127.0.0.1:{args.port}" if args.host in ("0.0.0.0", "::") else f"http://{_url_host(args.host)}:{args.port}"
    elif args.repo:
        repository = args.repo
    if repository:
        verify_kwargs["repo"] = repository
    pool = PoolConfig(workers=args.workers, timeout_s=args.timeout, memory_bytes=args.memory_mb << 20 if args.memory_mb else None,
                      queue_limit=args.queue, verify_kwargs=verify_kwargs)
    hosts = None if args.any_host else tuple(dict.fromkeys(("127.0.0.1", "localhost", "::1", *args.allow_host)))
    return WebConfig(pool=pool, max_bytes=args.max_mb << 20, allowed_hosts=hosts,
                     keep_dir=Path(args.keep_uploads) if args.keep_uploads else None, repository=repository)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from rawproof.errors import VerificationError

    try:
        cfg = _config(args)
    except OSError as e:
        raise VerificationError(f"cannot read the trust anchors: {e}") from e
    repo = f"; manifest repository {cfg.repository}" if cfg.repository else ""
    print(f"rawproof serve: http://{_url_host(args.host)}:{args.port}/ ({cfg.pool.workers} workers, uploads up to "
          f"{cfg.max_bytes >> 20} MiB; {'keeping uploads in ' + str(cfg.keep_dir) if cfg.keep_dir else 'nothing kept'}{repo})",
          flush=True)
    run = {"host": args.host, "port": args.port, "log_level": "warning", "limit_concurrency": 256, "timeout_keep_alive": 5}
    if not args.repo_db:
        uvicorn.run(create_app(cfg), **run)
        return 0
    from rawproof.repo.app import create_app as create_repo_app
    from rawproof.repo.store import open_store

    with open_store(args.repo_db) as store:
        uvicorn.run(create_app(cfg, app=create_repo_app(store)), **run)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof serve``."""
    p = subparsers.add_parser(
        "serve", help="serve the verify web page (drop an image, read the verdict)",
        description="Serve the verify page on 127.0.0.1: people drop or pick an image and read the verdict, "
                    "the provenance chain and the forensic heatmap. Uploads are analysed in worker processes under "
                    "byte, pixel, time and memory limits and are not kept unless --keep-uploads is given.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--trust-device", metavar="ROOT_PEM", help="device trust anchors, PEM: roots whose signers' capture claims count (as rawproof verify)")
    p.add_argument("--trust", metavar="ROOT_PEM", help="other trusted signers' anchors, PEM (editors, services): believed about edits, not captures")
    p.add_argument("--trust-tsa", metavar="ROOT_PEM", help="time-stamp authority anchors, PEM")
    p.add_argument("--fan", metavar="MODEL", help="FAN .onnx or shipped name (default: as rawproof verify)")
    p.add_argument("--workers", type=int, default=PoolConfig.workers, help="analysis worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=PoolConfig.timeout_s, help="seconds one analysis may take (default 120)")
    p.add_argument("--memory-mb", type=int, default=(PoolConfig.memory_bytes or 0) >> 20,
                   help="address-space limit per worker, MiB; 0: none (default 6144)")
    p.add_argument("--queue", type=int, default=PoolConfig.queue_limit, help="uploads allowed to wait (default 16)")
    p.add_argument("--max-mb", type=int, default=MAX_UPLOAD_BYTES >> 20, help="largest upload, MiB (default 64)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest image, pixels (default: verify's 100 MP)")
    p.add_argument("--keep-uploads", metavar="DIR", help="keep each upload and its report here (default: keep nothing)")
    repo = p.add_mutually_exclusive_group()
    repo.add_argument("--repo-db", metavar="DB", help="also serve a manifest repository over this SQLite file or postgresql:// "
                      "URL (the API of `rawproof repo serve`) in the same app; stripped copies are recovered through it")
    repo.add_argument("--repo", metavar="URL", help="recover stripped copies through this manifest repository")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer for this Host name (repeatable), e.g. behind a reverse proxy")
    p.add_argument("--any-host", action="store_true", help="answer for any Host header (only behind a proxy that checks it)")
    p.set_defaults(func=_run)
