"""``rawproof repo``: serve a manifest repository, issue device keys, flush a publish queue, benchmark lookups."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from rawproof.errors import RepositoryError

__all__ = ["register", "serve"]

DEFAULT_DB = "rawproof-repo.sqlite"
DEFAULT_PORT = 8470


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_DB_ENV = "RAWPROOF_REPO_DB"
"""How ``serve`` hands the database to worker processes (each opens its own store and index)."""
_LIMITS_ENV = "RAWPROOF_REPO_LIMITS"


def app_from_env() -> Any:
    """App factory for uvicorn worker processes: the store named by ``$RAWPROOF_REPO_DB``, limits from ``$RAWPROOF_REPO_LIMITS``."""
    from rawproof.repo.app import Limits, create_app
    from rawproof.repo.store import open_store

    limits = Limits(**json.loads(os.environ.get(_LIMITS_ENV, "{}")))
    return create_app(open_store(os.environ[_DB_ENV]), limits=limits)


def serve(db: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, workers: int = 1, reads_per_s: float | None = None,
          log_level: str = "warning") -> None:
    """Run the repository over ``db`` (SQLite path or ``postgresql://`` URL) with uvicorn until interrupted.

    ``workers`` > 1 starts that many processes on one port, each with its own connection and
    in-memory index; a write through one is seen by the others within
    ``ManifestStore.refresh_interval`` (0.5 s). SQLite's WAL lets them share one file.
    ``reads_per_s``: per-client read rate limit (burst: twice that); ``None``: the default of
    :class:`rawproof.repo.app.Limits`.
    """
    try:
        import uvicorn

        from rawproof.repo.app import create_app
    except ImportError as e:
        raise RepositoryError(f"the repository service needs the repo extra (pip install 'rawproof[repo]'): {e}") from e
    from rawproof.repo.app import Limits
    from rawproof.repo.store import open_store

    overrides = {} if reads_per_s is None else {"reads_per_s": reads_per_s, "read_burst": max(1, int(2 * reads_per_s))}
    if workers > 1:
        open_store(db).close()  # create the schema once, before the workers race to
        os.environ[_DB_ENV] = db
        os.environ[_LIMITS_ENV] = json.dumps(overrides)
        uvicorn.run("rawproof.repo.cli:app_from_env", factory=True, host=host, port=port, log_level=log_level, workers=workers)
        return
    with open_store(db) as store:
        uvicorn.run(create_app(store, limits=Limits(**overrides)), host=host, port=port, log_level=log_level)


def _serve(args: argparse.Namespace) -> int:
    serve(args.db, args.host, args.port, workers=args.workers, reads_per_s=args.reads_per_s,
          log_level="info" if args.verbose else "warning")
    return 0


def _add_key(args: argparse.Namespace) -> int:
    from rawproof.repo.store import open_store

    with open_store(args.db) as store:
        key = store.add_key(args.device)
    print(key)
    return 0


def _flush(args: argparse.Namespace) -> int:
    from rawproof.repo.client import Publisher

    pub = Publisher(args.repo, args.queue, api_key=args.key)
    results = pub.flush()
    left = len(pub.pending())
    if args.json:
        print(json.dumps({"sent": [r.manifest_id for r in results if r.status == "published"],
                          "rejected": [r.error for r in results if r.status == "rejected"], "pending": left}, indent=2))
    else:
        print(f"sent {sum(r.status == 'published' for r in results)}, rejected {sum(r.status == 'rejected' for r in results)}, "
              f"still queued {left}")
    return 0 if left == 0 else 2


def _bench(args: argparse.Namespace) -> int:
    from rawproof.repo.bench import bench_lookup

    rows = bench_lookup(manifests=args.manifests, clients=args.clients, queries=args.queries, db=args.db, workers=args.workers)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(" ".join(f"{k}={v}" for k, v in r.items()))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rawproof.repo.bench import eval_recovery, load_photos, load_raw_developments

    photos = load_photos(args.photos, max_side=args.max_side)
    if args.develop_raw:
        photos += load_raw_developments(args.develop_raw, max_side=args.max_side)
    result = eval_recovery(photos, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof repo serve|add-key|flush|bench``."""
    p = subparsers.add_parser("repo", help="manifest repository (C2PA Soft Binding Resolution API)",
                              description="Serve a manifest repository, issue device API keys, send queued manifests, "
                                          "or benchmark lookups. See docs/credentials.md.")
    sub = p.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    s = sub.add_parser("serve", help="run the repository HTTP service")
    s.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file or postgresql:// URL (default {DEFAULT_DB})")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--workers", type=int, default=1, help="server processes sharing the port (default 1)")
    s.add_argument("--reads-per-s", type=float, default=None, help="read rate limit per client address (default 200/s, burst 400)")
    s.set_defaults(func=_serve)
    k = sub.add_parser("add-key", help="issue a write API key for a device and print it")
    k.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file or postgresql:// URL (default {DEFAULT_DB})")
    k.add_argument("--device", required=True, help="device id the key belongs to")
    k.set_defaults(func=_add_key)
    f = sub.add_parser("flush", help="send the manifests a device queued while offline (exit 2 if some remain)")
    f.add_argument("--queue", required=True, help="queue folder (develop --publish-queue)")
    f.add_argument("--repo", required=True, help="repository URL")
    f.add_argument("--key", default=os.environ.get("RAWPROOF_REPO_KEY"), help="API key (default $RAWPROOF_REPO_KEY)")
    f.add_argument("--json", action="store_true", help="print JSON")
    f.set_defaults(func=_flush)
    b = sub.add_parser("bench", help="lookup latency with N stored manifests under concurrent clients")
    b.add_argument("--manifests", type=int, default=100_000, help="manifests to store (default 100000)")
    b.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    b.add_argument("--queries", type=int, default=4000, help="lookups in total (default 4000)")
    b.add_argument("--db", default=None, help="SQLite file or postgresql:// URL (default: a temporary SQLite file)")
    b.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=_bench)
    e = sub.add_parser("eval", help="recovery and false-match rates of the soft binding through the platform channels")
    e.add_argument("photos", nargs="+", help="folders of JPEG/PNG/WebP photos (even-indexed enrolled, odd-indexed distractors)")
    e.add_argument("--max-side", type=int, default=1024, help="reduce photos to this long edge first (default 1024)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    e.add_argument("--develop-raw", metavar="DATA_DIR", help="also develop every RAW frame of DATA_DIR/manifest.json with develop()")
    e.set_defaults(func=_eval)
