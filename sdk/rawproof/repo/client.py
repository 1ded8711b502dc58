"""Client of a manifest repository (Soft Binding Resolution API), and the device's publish queue.

    client = RepoClient("http://127.0.0.1:8470", api_key="rpk_...")
    client.publish(manifest_store)                    # -> manifest id
    client.match_binding(value)                       # -> [RepoMatch(...)]
    client.manifest(manifest_id)                      # -> manifest store bytes

A camera is often offline. :class:`Publisher` sends a store when it can and otherwise keeps it
in a queue folder (one ``<sha256>.c2pa`` file each, written atomically), and :meth:`Publisher.flush`
sends what is queued, oldest first. Only the standard library is used, so the SDK needs no
HTTP package for publishing or recovery.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rawproof import softbinding as sb
from rawproof.errors import RepositoryError

__all__ = ["RepoMatch", "RepoClient", "PublishResult", "Publisher"]

_MAX_STORE_BYTES = 16 << 20
"""Largest manifest store the client reads back from a repository."""


@dataclass(frozen=True)
class RepoMatch:
    """One match from a repository: ``manifest_id``, ``similarity`` (0..100), ``distance`` (bits of 64, or ``None``), ``block``."""

    manifest_id: str
    similarity: int | None
    distance: int | None
    block: int | None


class RepoClient:
    """HTTP client of one repository.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:8470``.
        api_key: Device key for :meth:`publish` (``rawproof repo add-key``); reads need none.
        timeout: Seconds per request.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise RepositoryError(f"repository URL must be http(s)://..., got {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                 limit: int = _MAX_STORE_BYTES) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read(limit + 1)
                status = resp.status
        except urllib.error.HTTPError as e:
            detail = e.read(2000).decode("utf-8", "replace")
            raise RepositoryError(f"{method} {path}: HTTP {e.code}: {detail}", status=e.code) from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            # Includes a connection dropped mid-answer (IncompleteRead): nothing was acknowledged.
            raise RepositoryError(f"{method} {path}: repository unreachable: {e!r}", status=None) from e
        if len(data) > limit:
            raise RepositoryError(f"{method} {path}: answer larger than {limit} bytes", status=status)
        return status, data

    def publish(self, store: bytes) -> str:
        """Send a manifest store (``POST /manifests``); returns its manifest id. Idempotent.

        Raises:
            RepositoryError: no key, unreachable (``status`` ``None``), or refused (``status`` 4xx/5xx).
        """
        if not self.api_key:
            raise RepositoryError("publishing needs an API key (rawproof repo add-key)")
        _, data = self._request("POST", "/manifests", store,
                                {"Content-Type": "application/c2pa", "Authorization": f"Bearer {self.api_key}"})
        try:
            return str(json.loads(data)["manifestId"])
        except (ValueError, KeyError, TypeError) as e:
            # A cut-off answer is no acknowledgement: treat it like no answer (the publisher queues; publishing is idempotent).
            raise RepositoryError(f"POST /manifests: malformed answer {data[:80]!r}", status=None) from e

    def _matches(self, data: bytes) -> list[RepoMatch]:
        try:
            rows = json.loads(data)["matches"]
            return [RepoMatch(str(m["manifestId"]), m.get("similarityScore"), m.get("distance"), m.get("block")) for m in rows]
        except (ValueError, KeyError, TypeError) as e:
            raise RepositoryError(f"malformed answer from the repository: {e}") from e

    def match_binding(self, value: str, *, max_results: int = 5, max_distance: int | None = None) -> list[RepoMatch]:
        """Manifests whose soft binding is near ``value`` (an ISCC Image-Code string), nearest first."""
        q = {"alg": sb.ALG, "value": sb.encode_query(value), "maxResults": max_results}
        if max_distance is not None:
            q["maxDistance"] = max_distance
        _, data = self._request("GET", "/matches/byBinding?" + urllib.parse.urlencode(q))
        return self._matches(data)

    def match_content(self, image: bytes, mime: str, *, max_results: int = 5) -> list[RepoMatch]:
        """Manifests matching an image the repository fingerprints itself (``POST /matches/byContent``)."""
        q = urllib.parse.urlencode({"alg": sb.ALG, "maxResults": max_results})
        _, data = self._request("POST", "/matches/byContent?" + q, image, {"Content-Type": mime})
        return self._matches(data)

    def manifest(self, manifest_id: str) -> bytes:
        """The manifest store with this id (``GET /manifests/{id}``)."""
        _, data = self._request("GET", "/manifests/" + urllib.parse.quote(manifest_id, safe=""))
        return data


@dataclass(frozen=True)
class PublishResult:
    """What was done with a manifest store: ``status`` ``"published"`` (with ``manifest_id``),
    ``"queued"`` (with ``queued_as`` and ``error``), ``"rejected"`` (by :meth:`Publisher.flush`, with
    ``error``) or ``"skipped"`` (by ``develop``: the image carries no soft binding, see ``error``)."""

    status: str
    manifest_id: str | None = None
    queued_as: Path | None = None
    error: str | None = None


class Publisher:
    """Publishes manifest stores, queueing them on disk while the repository cannot be reached.

    Args:
        client: The repository (or its URL; the key then comes from ``api_key`` or ``$RAWPROOF_REPO_KEY``).
        queue_dir: Folder of the queue (created when needed).
    """

    def __init__(self, client: RepoClient | str, queue_dir: str | os.PathLike[str], api_key: str | None = None) -> None:
        self.client = client if isinstance(client, RepoClient) else RepoClient(client, api_key or os.environ.get("RAWPROOF_REPO_KEY"))
        self.queue_dir = Path(queue_dir)

    def _enqueue(self, store: bytes) -> Path:
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        path = self.queue_dir / f"{hashlib.sha256(store).hexdigest()}.c2pa"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(store)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def publish(self, store: bytes) -> PublishResult:
        """Send ``store`` now, or queue it if the repository is unreachable or busy (no answer, 429, 5xx).

        Raises:
            RepositoryError: the repository refused it for good (401, 400, 413, 415): queueing would not help.
        """
        try:
            return PublishResult("published", manifest_id=self.client.publish(store))
        except RepositoryError as e:
            if e.status is not None and e.status != 429 and e.status < 500:
                raise
            return PublishResult("queued", queued_as=self._enqueue(store), error=str(e))

    def pending(self) -> list[Path]:
        """Queued stores, oldest first."""
        if not self.queue_dir.is_dir():
            return []
        return sorted(self.queue_dir.glob("*.c2pa"), key=lambda p: (p.stat().st_mtime, p.name))

    def flush(self) -> list[PublishResult]:
        """Send every queued store, oldest first; stops at the first one the repository cannot take now.

        A store refused for good is moved to ``rejected/`` beside the queue, with the reason in a ``.txt``.
        """
        out = []
        for path in self.pending():
            try:
                out.append(PublishResult("published", manifest_id=self.client.publish(path.read_bytes())))
            except RepositoryError as e:
                if e.status is None or e.status == 429 or e.status >= 500:
                    break
                rejected = self.queue_dir / "rejected"
                rejected.mkdir(exist_ok=True)
                path.replace(rejected / path.name)
                (rejected / (path.stem + ".txt")).write_text(str(e))
                out.append(PublishResult("rejected", error=str(e)))
                continue
            path.unlink()
        return out
