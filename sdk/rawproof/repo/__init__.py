"""Durable Content Credentials: a manifest repository and its client.

* :mod:`rawproof.repo.client`: :class:`RepoClient` (publish, match, fetch) and :class:`Publisher`
  (publish or queue on disk). Standard library only.
* :mod:`rawproof.repo.store`: SQLite/PostgreSQL storage (``open_store``).
* :mod:`rawproof.repo.app`: ``create_app(store)``, the FastAPI app (needs the ``repo`` extra).
* :mod:`rawproof.repo.cli`: ``rawproof repo serve | add-key | flush``.

See ``docs/credentials.md``.
"""

from __future__ import annotations

from rawproof.repo.client import Publisher, PublishResult, RepoClient, RepoMatch

__all__ = ["RepoClient", "RepoMatch", "Publisher", "PublishResult"]
