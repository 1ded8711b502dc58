"""Test helpers for the manifest repository: a real PostgreSQL server in a temp dir, a uvicorn server in a thread."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path | None:
    """Folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), newest version first."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True)
    if versions:
        return versions[0].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL on 127.0.0.1 (initdb + pg_ctl in a temp dir); yields its URL.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
    that Debian's package creates.
    """
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb) not found; apt-get install postgresql")
    tmp = Path(tempfile.mkdtemp(prefix="rawproof-pg-"))
    data = tmp / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "rawproof", "-A", "trust", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True, env=env)
    opts = f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=on -c max_connections=50"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"],
                   check=True, capture_output=True, env=env)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "rawproof", "repo"],
                       check=True, capture_output=True, env=env)
        yield f"postgresql://rawproof@127.0.0.1:{port}/repo"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, env=env)
        shutil.rmtree(tmp, ignore_errors=True)


def reset_postgres(url: str) -> None:
    """Drop the repository's tables so each test starts empty."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bindings, manifests, api_keys CASCADE")


@contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        th.join(10)


def photo_like(seed: int, width: int = 320, height: int = 240) -> np.ndarray:
    """uint8 H x W x 3: smooth random blobs plus noise, distinct per seed (a stand-in photo for fast tests)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), dtype=np.float32)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray, quality: int = 95, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, quality=quality)
    return buf.getvalue()
