"""Storage of a manifest repository: manifest stores, their soft-binding codes, device API keys.

One class, :class:`ManifestStore`, over two databases through the same SQL:

* SQLite (default): one file, WAL journal, ``synchronous=FULL``, so a transaction that
  returned is on disk and survives a killed process.
* PostgreSQL (``postgresql://...`` URL, psycopg 3): for several server processes or a
  large repository. Commits are durable by PostgreSQL's defaults.

Lookups by soft binding run in memory: :class:`CodeIndex` keeps every stored 64-bit code in a
numpy array (8 bytes each: 1.9 M codes for 100,000 manifests of 19 blocks take 15 MB; about
80 MB with the manifest ids, the per-code manifest/block arrays and the 4 sorted 16-bit
substring copies of multi-index hashing, measured with tracemalloc) and checks only candidates
that share a near substring with the query. Every half second at most, a query first reads the rows
added since the last read (by any process), so several servers over one PostgreSQL database agree.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Binding", "Match", "ManifestStore", "CodeIndex", "open_store", "to_int64"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS manifests (manifest_id TEXT PRIMARY KEY, store {blob} NOT NULL, "
    "device TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bindings (id {serial}, manifest_id TEXT NOT NULL REFERENCES manifests(manifest_id), "
    "alg TEXT NOT NULL, value TEXT NOT NULL, code BIGINT NOT NULL, block INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bindings_value ON bindings (alg, value)",
    "CREATE TABLE IF NOT EXISTS api_keys (key_sha256 TEXT PRIMARY KEY, device TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)",
)


@dataclass(frozen=True)
class Binding:
    """One soft-binding block of a manifest: ``alg``, ``value`` (as in the assertion), ``code`` (uint64), ``block`` index."""

    alg: str
    value: str
    code: int
    block: int


@dataclass(frozen=True)
class Match:
    """A lookup result: the manifest, the Hamming ``distance`` (bits of 64) and the ``block`` that matched."""

    manifest_id: str
    distance: int
    block: int


def to_int64(code: int) -> int:
    """uint64 -> int64 with the same bits (both databases store BIGINT, and :class:`CodeIndex` reads that)."""
    return code - (1 << 64) if code >= 1 << 63 else code


def _flip_masks(bits: int, max_flips: int) -> np.ndarray:
    """All ``bits``-bit masks with at most ``max_flips`` bits set (the neighbours of a key), uint64."""
    from itertools import combinations

    masks = [sum(1 << b for b in c) for k in range(max_flips + 1) for c in combinations(range(bits), k)]
    return np.array(masks, dtype=np.uint64)


class CodeIndex:
    """In-memory nearest-code search over the ``bindings`` table (see module docstring). Thread-safe.

    Multi-index hashing (Norouzi et al., CVPR 2012): the 64 bits are cut into 4 substrings of 16.
    If two codes differ in at most ``r`` bits, one substring differs in at most ``r // 4`` bits
    (pigeonhole), so the candidates are the codes whose substring equals one of the query's
    substring neighbours within ``r // 4`` flips (137 keys per substring for r <= 11), found by
    binary search in 4 sorted copies; only they get an exact popcount. Codes added since the last
    sort (at most 5 % of the index, or 50,000) are compared directly. For ``r`` > 11 every code
    is compared.
    """

    _SUB_BITS = 16
    _SUBS = 4
    _MAX_MIH_RADIUS = 11

    def __init__(self) -> None:
        # Per code: the code, its manifest (index into _mids) and its block, as numpy arrays:
        # a list of 1.9 M tuples would make every full garbage collection walk 1.9 M objects.
        self._codes = np.zeros(0, np.uint64)
        self._row_mid = np.zeros(0, np.int32)
        self._row_block = np.zeros(0, np.int16)
        self._mids: list[str] = []
        self._mid_pos: dict[str, int] = {}
        self._last_id = 0
        self._sorted: list[tuple[np.ndarray, np.ndarray]] = []  # per substring: (sorted keys, positions)
        self._sorted_n = 0
        self._masks = {r: _flip_masks(self._SUB_BITS, r) for r in range(self._MAX_MIH_RADIUS // self._SUBS + 1)}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._codes.size)

    def _resort(self) -> None:
        shifts = [np.uint64(self._SUB_BITS * i) for i in range(self._SUBS)]
        keys = [((self._codes >> sh) & np.uint64(0xFFFF)).astype(np.uint16) for sh in shifts]
        orders = [np.argsort(k, kind="stable").astype(np.int32) for k in keys]
        self._sorted = [(k[o], o) for k, o in zip(keys, orders)]
        self._sorted_n = self._codes.size

    def add(self, rows: Sequence[tuple[int, str, int, int]]) -> None:
        """Append ``(row id, manifest_id, code int64, block)`` rows read from the database, in id order."""
        if not rows:
            return
        with self._lock:
            fresh = [r for r in rows if r[0] > self._last_id]
            if not fresh:
                return
            codes = np.array([r[2] for r in fresh], dtype=np.int64).view(np.uint64)
            for r in fresh:
                if r[1] not in self._mid_pos:
                    self._mid_pos[r[1]] = len(self._mids)
                    self._mids.append(r[1])  # append-only: a reader's snapshot of the arrays stays valid
            # New arrays (not in-place): a reader holding the previous ones keeps a consistent snapshot.
            self._codes = np.concatenate([self._codes, codes])
            self._row_mid = np.concatenate([self._row_mid, np.array([self._mid_pos[r[1]] for r in fresh], np.int32)])
            self._row_block = np.concatenate([self._row_block, np.array([r[3] for r in fresh], np.int16)])
            self._last_id = fresh[-1][0]
            if self._codes.size - self._sorted_n > max(50_000, self._codes.size // 20):
                self._resort()

    @property
    def last_id(self) -> int:
        """Largest row id already indexed."""
        return self._last_id

    def _candidates(self, code: int, radius: int, codes: np.ndarray, sorted_parts: list[tuple[np.ndarray, np.ndarray]],
                    sorted_n: int) -> np.ndarray:
        if radius > self._MAX_MIH_RADIUS or not sorted_parts:
            return np.arange(codes.size)
        masks = self._masks[radius // self._SUBS]
        found = [np.arange(sorted_n, codes.size)]
        for i, (keys, order) in enumerate(sorted_parts):
            probe = ((np.uint64(code >> (self._SUB_BITS * i)) & np.uint64(0xFFFF)) ^ masks).astype(np.uint16)
            lo, hi = np.searchsorted(keys, probe, "left"), np.searchsorted(keys, probe, "right")
            found.extend(order[a:b] for a, b in zip(lo.tolist(), hi.tolist()) if b > a)
        return np.concatenate(found)  # may repeat a position (several substrings hit); nearest() dedupes by manifest

    def nearest(self, code: int, max_distance: int, max_results: int) -> list[Match]:
        """Manifests with a block within ``max_distance`` bits of ``code``, nearest first, one entry per manifest."""
        with self._lock:
            codes, row_mid, row_block, sorted_parts, sorted_n = (self._codes, self._row_mid, self._row_block,
                                                                 self._sorted, self._sorted_n)
        if codes.size == 0:
            return []
        cand = self._candidates(code, max_distance, codes, sorted_parts, sorted_n)
        dist = np.bitwise_count(codes[cand] ^ np.uint64(code))
        keep = np.flatnonzero(dist <= max_distance)
        keep = keep[np.lexsort((cand[keep], dist[keep]))]  # nearest first, then oldest
        out: list[Match] = []
        seen: set[int] = set()
        for j in keep:
            pos = int(cand[j])
            m = int(row_mid[pos])
            if m in seen:
                continue
            seen.add(m)
            out.append(Match(self._mids[m], int(dist[j]), int(row_block[pos])))
            if len(out) >= max_results:
                break
        return out


class ManifestStore:
    """Manifest stores and their bindings in SQLite or PostgreSQL (use :func:`open_store`).

    Methods are thread-safe: one connection, one lock (SQLite serialises writers anyway, and
    lookups are answered from :class:`CodeIndex` without touching the database).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._lock = threading.RLock()
        if self.kind == "postgresql":
            import psycopg

            self._conn: Any = psycopg.connect(url, autocommit=True)  # writes open explicit transactions
            self._ph = "%s"
            blob, serial = "BYTEA", "BIGSERIAL PRIMARY KEY"
            self._integrity = psycopg.errors.UniqueViolation
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a returned commit survives power loss, not only a kill
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._ph = "?"
            blob, serial = "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"
            self._integrity = sqlite3.IntegrityError
        with self._tx() as cur:
            for stmt in _SCHEMA:
                cur.execute(stmt.format(blob=blob, serial=serial))
        self.index = CodeIndex()
        self.refresh_interval = 0.5
        """Seconds between reads of rows other processes added (see :meth:`nearest`)."""
        self._refreshed = 0.0
        self.refresh()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._ph)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A write transaction; committed (durably) when the block exits without an exception."""
        with self._lock:
            if self.kind == "postgresql":
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
                return
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _query(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(text), tuple(params))
                return cur.fetchall()
            finally:
                cur.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ManifestStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, manifest_id: str, store: bytes, device: str, bindings: Sequence[Binding]) -> bool:
        """Store a manifest store and its bindings in one transaction, durable when this returns.

        Returns:
            ``True`` if it was added, ``False`` if ``manifest_id`` was already stored (nothing changes).
        """
        try:
            self.put_many([(manifest_id, store, device, bindings)])
        except self._integrity:
            return False
        return True

    def put_many(self, items: Sequence[tuple[str, bytes, str, Sequence[Binding]]]) -> None:
        """Store several ``(manifest_id, store, device, bindings)`` in one transaction (an import, a benchmark).

        Raises:
            sqlite3.IntegrityError / psycopg.errors.UniqueViolation: an id is already stored (nothing is added).
        """
        with self._tx() as cur:
            if self.kind == "postgresql":
                # Writers in several processes take turns, so binding ids commit in increasing
                # order and refresh() (which reads ids above the last one seen) misses none.
                cur.execute("LOCK TABLE bindings IN SHARE ROW EXCLUSIVE MODE")
            now = time.time()
            cur.executemany(self._sql("INSERT INTO manifests (manifest_id, store, device, created) VALUES (?, ?, ?, ?)"),
                            [(mid, data, dev, now) for mid, data, dev, _ in items])
            cur.executemany(self._sql("INSERT INTO bindings (manifest_id, alg, value, code, block) VALUES (?, ?, ?, ?, ?)"),
                            [(mid, b.alg, b.value, to_int64(b.code), b.block) for mid, _, _, bs in items for b in bs])
        self.refresh()

    def get(self, manifest_id: str) -> bytes | None:
        """The manifest store bytes, or ``None`` when unknown."""
        rows = self._query("SELECT store FROM manifests WHERE manifest_id = ?", (manifest_id,))
        return bytes(rows[0][0]) if rows else None

    def count(self) -> int:
        """Number of manifests stored."""
        return int(self._query("SELECT COUNT(*) FROM manifests")[0][0])

    def block_codes(self, block: int) -> list[int]:
        """The stored codes (uint64) of one block index, in insertion order."""
        return [int(c) & (2**64 - 1) for (c,) in self._query("SELECT code FROM bindings WHERE block = ? ORDER BY id", (block,))]

    def refresh(self) -> None:
        """Load bindings added since the index's last read (by this or another process)."""
        self._refreshed = time.monotonic()
        rows = self._query("SELECT id, manifest_id, code, block FROM bindings WHERE id > ? ORDER BY id", (self.index.last_id,))
        self.index.add([(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows])

    def nearest(self, code: int, max_distance: int, max_results: int) -> list[Match]:
        """See :meth:`CodeIndex.nearest`. Writes by this object are seen at once; writes by other
        processes (several servers over one PostgreSQL) within :attr:`refresh_interval` seconds."""
        if time.monotonic() - self._refreshed >= self.refresh_interval:
            self.refresh()
        return self.index.nearest(code, max_distance, max_results)

    def add_key(self, device: str) -> str:
        """Create a write credential for ``device`` and return it (only its SHA-256 is stored)."""
        if not device or len(device) > 200:
            raise ValueError("device must be 1..200 characters")
        key = "rpk_" + secrets.token_urlsafe(32)
        with self._tx() as cur:
            cur.execute(self._sql("INSERT INTO api_keys (key_sha256, device, created) VALUES (?, ?, ?)"),
                        (hashlib.sha256(key.encode()).hexdigest(), device, time.time()))
        return key

    def device_for_key(self, key: str) -> str | None:
        """The device a key was issued to, or ``None`` for an unknown key."""
        rows = self._query("SELECT device FROM api_keys WHERE key_sha256 = ?", (hashlib.sha256(key.encode()).hexdigest(),))
        return str(rows[0][0]) if rows else None


def open_store(url: str | Path) -> ManifestStore:
    """A :class:`ManifestStore` for a SQLite file path (or ``sqlite:///path``) or a ``postgresql://`` URL."""
    return ManifestStore(str(url))
