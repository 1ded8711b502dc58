"""The verify page: drop an image in a browser, read the verdict, the provenance and the evidence.

``rawproof serve`` runs it (docs/web.md)::

    from rawproof.web import WebConfig, create_app
    app = create_app(WebConfig())          # FastAPI app; run it with uvicorn on 127.0.0.1

or mount the router in another FastAPI app::

    service = VerifyService(WebConfig())
    app.include_router(create_router(service), prefix="/verify")

Parts: :mod:`rawproof.web.app` (routes, CSRF, upload bounds), :mod:`rawproof.web.pool`
(worker processes with time and memory limits), :mod:`rawproof.web.analysis` (the job a
worker runs), :mod:`rawproof.web.explain` (the report in plain words), ``static/`` (the
page: HTML, CSS and JavaScript, no external assets).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["WebConfig", "PoolConfig", "VerifyService", "VerifyPool", "create_router", "create_app", "explain",
           "MAX_UPLOAD_BYTES"]

# FastAPI and uvicorn are the optional extra ``rawproof[web]``: they are imported on first use,
# so that ``rawproof --help`` and the SDK work without them.
_WHERE = {"WebConfig": "app", "VerifyService": "app", "create_router": "app", "MAX_UPLOAD_BYTES": "pool",
          "PoolConfig": "pool", "VerifyPool": "pool", "create_app": "serve", "explain": "explain"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rawproof.web' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rawproof.web.{_WHERE[name]}"), name)
