"""rawproof.repo: the manifest repository over SQLite and a real PostgreSQL server, through real HTTP.

Every API test runs against both backends. PostgreSQL is started here (initdb/pg_ctl from
Debian's postgresql package, which .ci/run installs) on 127.0.0.1 in a temp dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from _repo_server import free_port, jpeg_bytes, pg_bindir, photo_like, postgres_server, reset_postgres, serve_in_thread
from rawproof import softbinding as sb
from rawproof.errors import RepositoryError
from rawproof.jumbf import manifest_stores
from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, Signer, sign_image
from rawproof.repo.app import Limits, create_app
from rawproof.repo.client import Publisher, RepoClient
from rawproof.repo.store import open_store

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return generate_test_pki(tmp_path_factory.mktemp("pki"), alg="es256")


def make_store(pki, seed: int) -> bytes:
    """A signed manifest store with a soft binding, for a distinct image per seed."""
    rgb = photo_like(seed)
    capture = CaptureInfo(camera_make="Test", camera_model="Cam", device_id="cam-1", raw_sha256=f"{seed:064x}",
                          nip=ModelRef("n", "1" * 64), capture_time="2025-01-01T00:00:00+00:00",
                          develop={"width": rgb.shape[1], "height": rgb.shape[0], "format": "jpeg", "quality": 95})
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        signed = sign_image(jpeg_bytes(rgb), "image/jpeg", capture, signer, soft_binding=sb.soft_binding_assertion(rgb))
    return manifest_stores(signed, "image/jpeg")[0]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql; .ci/run does)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "repo.sqlite")
    url = request.getfixturevalue("pg_url")
    reset_postgres(url)
    return url


@pytest.fixture
def repo(db_url: str) -> Iterator[tuple[str, object, str]]:
    """(base URL, store, device key) of a running repository."""
    with open_store(db_url) as store:
        key = store.add_key("cam-1")
        limits = Limits(max_manifest_bytes=256 << 10, max_upload_bytes=2 << 20)
        with serve_in_thread(create_app(store, limits=limits)) as url:
            yield url, store, key


def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """One request with http.client; a server that answers before reading an oversized body still gets its status read."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        try:
            conn.request(method, u.path + ("?" + u.query if u.query else ""), body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the body early; its answer is already in the socket
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class TestApi:
    def test_publish_match_fetch(self, repo, pki) -> None:
        url, store, key = repo
        data = make_store(pki, 1)
        client = RepoClient(url, key)
        mid = client.publish(data)
        assert mid.startswith("urn:c2pa:")
        assert client.publish(data) == mid  # idempotent
        assert store.count() == 1
        assert client.manifest(mid) == data  # byte for byte
        rgb = photo_like(1)
        matches = client.match_binding(sb.format_value(sb.image_code(rgb)))
        assert [m.manifest_id for m in matches] == [mid] and matches[0].distance == 0 and matches[0].similarity == 100
        by_content = client.match_content(jpeg_bytes(rgb[10:, 12:], 60), "image/jpeg")
        assert by_content and by_content[0].manifest_id == mid
        assert client.match_binding(sb.format_value(sb.image_code(photo_like(999)))) == []
        status, body = _http("POST", url + "/matches/byBinding", json.dumps(
            {"alg": sb.ALG, "value": sb.encode_query(sb.format_value(sb.image_code(rgb)))}).encode(), {"Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["matches"][0]["manifestId"] == mid
        status, body = _http("GET", url + "/services/supportedAlgorithms")
        assert json.loads(body) == {"watermarks": [], "fingerprints": [{"alg": "io.iscc.v0"}]}

    def test_bad_requests_get_4xx_and_change_nothing(self, repo, pki) -> None:
        url, store, key = repo
        good = make_store(pki, 2)
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/c2pa"}
        cases = [
            ({"Content-Type": "application/c2pa"}, good, 401),                         # no key
            ({**auth, "Authorization": "Bearer rpk_wrong"}, good, 401),                # unknown key
            ({**auth, "Content-Type": "image/jpeg"}, good, 415),                       # wrong type
            (auth, b"", 400),                                                          # empty
            (auth, b"\x00" * 1000, 400),                                               # garbage
            (auth, good[:-200], 400),                                                  # truncated store
            (auth, good[:40] + bytes([good[40] ^ 0xFF]) + good[41:], 400),            # one byte flipped in a box header
            (auth, b"x" * (300 << 10), 413),                                           # over max_manifest_bytes
        ]
        unsigned = make_store(pki, 3)
        flipped = bytearray(unsigned)
        flipped[len(flipped) // 2] ^= 0x01  # somewhere inside the claim/assertions: the signature breaks
        cases.append((auth, bytes(flipped), 400))
        for headers, body, expected in cases:
            status, text = _http("POST", url + "/manifests", body, headers)
            assert status == expected, (expected, status, text[:200])
        assert store.count() == 0 and len(store.index) == 0
        for path, expected in [("/matches/byBinding?alg=io.iscc.v0&value=%25%25", 400),
                               ("/matches/byBinding?alg=other.alg&value=" + sb.encode_query("ISCC:EEA4JRROOBN3SSYX"), 400),
                               ("/matches/byBinding?alg=io.iscc.v0&value=" + sb.encode_query("ISCC:AAAQ"), 400),
                               ("/matches/byBinding?alg=io.iscc.v0", 422),
                               ("/matches/byBinding?alg=io.iscc.v0&maxResults=0&value=x", 422),
                               ("/manifests/urn:c2pa:nope", 404),
                               ("/manifests/" + "a" * 300, 400)]:
            assert _http("GET", url + path)[0] == expected, path
        assert _http("POST", url + "/matches/byContent", b"\x00" * 100, {"Content-Type": "image/jpeg"})[0] == 400
        assert _http("POST", url + "/matches/byContent", b"{}", {"Content-Type": "application/json"})[0] == 415
        assert _http("POST", url + "/matches/byContent", b"x" * (3 << 20), {"Content-Type": "image/jpeg"})[0] == 413
        assert store.count() == 0


def test_rate_limit(tmp_path: Path) -> None:
    with open_store(tmp_path / "r.sqlite") as store:
        with serve_in_thread(create_app(store, limits=Limits(reads_per_s=1.0, read_burst=5))) as url:
            codes = [_http("GET", url + "/services/supportedAlgorithms")[0] for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[-1] == 429


def test_publisher_queues_offline_then_flushes(tmp_path: Path, pki) -> None:
    data = make_store(pki, 4)
    port = free_port()  # nothing listens here yet
    queue = tmp_path / "queue"
    with open_store(tmp_path / "r.sqlite") as store:
        key = store.add_key("cam-1")
        pub = Publisher(RepoClient(f"http://127.0.0.1:{port}", key, timeout=2), queue)
        res = pub.publish(data)
        assert res.status == "queued" and res.queued_as is not None and res.queued_as.read_bytes() == data
        assert pub.pending() == [res.queued_as]
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.02)
        try:
            sent = pub.flush()
            assert [r.status for r in sent] == ["published"] and pub.pending() == []
            assert store.get(sent[0].manifest_id) == data
            with pytest.raises(RepositoryError) as err:  # refused for good: raised, not queued
                Publisher(RepoClient(f"http://127.0.0.1:{port}", "rpk_bad"), queue).publish(data)
            assert err.value.status == 401 and pub.pending() == []
        finally:
            server.should_exit = True
            th.join(10)


def test_client_errors() -> None:
    with pytest.raises(RepositoryError):
        RepoClient("ftp://example")
    with pytest.raises(RepositoryError):
        RepoClient("http://127.0.0.1:1").publish(b"x")  # no key
    with pytest.raises(RepositoryError) as err:
        RepoClient(f"http://127.0.0.1:{free_port()}", timeout=2).manifest("urn:c2pa:x")
    assert err.value.status is None


def _serve_process(db: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rawproof", "repo", "serve", "--db", db, "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _http_ok(f"http://127.0.0.1:{port}/health"):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_kill_mid_write_loses_no_acknowledged_manifest(db_url: str, pki, tmp_path: Path) -> None:
    """SIGKILL the server process while 4 clients publish; every manifest it acknowledged is there after restart."""
    stores = [make_store(pki, 100 + i) for i in range(40)]
    with open_store(db_url) as st:
        key = st.add_key("cam-1")
    port = free_port()
    proc = _serve_process(db_url, port, tmp_path / "serve.log")
    acked: list[str] = []
    lock = threading.Lock()

    def client(chunk: list[bytes]) -> None:
        c = RepoClient(f"http://127.0.0.1:{port}", key, timeout=5)
        for data in chunk:
            try:
                mid = c.publish(data)
            except RepositoryError:
                return  # the server died under us: this one was not acknowledged
            with lock:
                acked.append(mid)

    threads = [threading.Thread(target=client, args=(stores[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acked) >= 8:
                break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for t in threads:
        t.join()
    assert 8 <= len(acked) < len(stores), "the kill must land mid-run"
    proc = _serve_process(db_url, port, tmp_path / "serve.log")
    try:
        c = RepoClient(f"http://127.0.0.1:{port}")
        for mid in acked:
            assert c.manifest(mid)[:4]  # present after the restart
        with open_store(db_url) as st:
            assert st.count() >= len(acked)
            # Each stored manifest has all its bindings: the transaction was all or nothing.
            assert len(st.index) == st.count() * len(sb.REGIONS)
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_add_key_prints_a_working_key(tmp_path: Path) -> None:
    from rawproof.cli import main

    db = str(tmp_path / "r.sqlite")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["repo", "add-key", "--db", db, "--device", "cam-9"]) == 0
    key = out.getvalue().strip()
    with open_store(db) as st:
        assert st.device_for_key(key) == "cam-9" and st.device_for_key(key + "x") is None


def test_bench_lookup_small() -> None:
    """`rawproof repo bench` at a small size: every request answered, hits exactly the perturbed-code half."""
    from rawproof.repo.bench import bench_lookup

    rows = bench_lookup(manifests=300, clients=2, queries=40)
    assert [r["clients"] for r in rows] == [1, 2]
    for row in rows:
        assert row["queries"] == 40 and row["codes"] == 300 * len(sb.REGIONS)
        assert row["hits"] == 20  # 3 flipped bits always match; a random 64-bit code never lands within 8 bits of 5,700
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_eval_recovery_small() -> None:
    from PIL import Image

    from rawproof.repo.bench import CHANNELS, eval_recovery

    photos = [(f"p{i}", Image.fromarray(photo_like(200 + i, 320, 240))) for i in range(2)]
    r = eval_recovery(photos, thresholds=(8,))
    assert (r["enrolled"], r["distractors"], r["queries_enrolled"]) == (5, 14, 5 * len(CHANNELS))
    assert r["thresholds"][8]["recovery_rate"] >= 0.9 and r["thresholds"][8]["wrong_manifest"] == 0


@pytest.mark.parametrize("radius", [0, 3, 8, 11, 16])
def test_code_index_equals_a_full_scan(radius: int) -> None:
    """Multi-index hashing returns exactly what a numpy full scan returns (nearest first, one per manifest)."""
    import numpy as np

    from rawproof.repo.store import CodeIndex, to_int64

    rng = np.random.default_rng(radius)
    n = 60_000  # above the resort threshold, then a tail that is scanned directly
    codes = rng.integers(0, 2**64, n, dtype=np.uint64)
    idx = CodeIndex()
    idx.add([(i + 1, f"m{i // 19}", to_int64(int(c)), i % 19) for i, c in enumerate(codes[:55_000])])
    idx.add([(i + 1, f"m{i // 19}", to_int64(int(c)), i % 19) for i, c in enumerate(codes[55_000:], start=55_000)])
    for _ in range(30):
        q = int(codes[rng.integers(n)])
        for b in rng.choice(64, int(rng.integers(0, radius + 3)), replace=False):
            q ^= 1 << int(b)
        d = np.bitwise_count(codes ^ np.uint64(q))
        hits = np.flatnonzero(d <= radius)
        hits = hits[np.lexsort((hits, d[hits]))]
        expected, seen = [], set()
        for i in hits:
            if f"m{i // 19}" not in seen:
                seen.add(f"m{i // 19}")
                expected.append((f"m{i // 19}", int(d[i]), int(i % 19)))
        assert [(m.manifest_id, m.distance, m.block) for m in idx.nearest(q, radius, 5)] == expected[:5]


def test_mutated_stores_are_refused_cleanly(pki) -> None:
    """300 random mutations of a signed store (byte flips, truncation, box-length edits): each one is
    either refused with HTTP 400 or, if the mutation hit nothing signed, read as the same manifest."""
    import numpy as np
    from fastapi import HTTPException

    from rawproof.repo.app import _parse_store

    good = make_store(pki, 7)
    mid, bindings = _parse_store(good)
    rng = np.random.default_rng(0)
    outcomes = {"refused": 0, "same": 0}
    for i in range(300):
        data = bytearray(good)
        kind = i % 3
        if kind == 0:
            for pos in rng.integers(0, len(data), int(rng.integers(1, 4))):
                data[int(pos)] ^= int(rng.integers(1, 256))
        elif kind == 1:
            data = data[: int(rng.integers(0, len(data)))]
        else:  # rewrite a 4-byte big-endian length at a random position
            pos = int(rng.integers(0, len(data) - 4))
            data[pos : pos + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "big")
        try:
            got = _parse_store(bytes(data))
        except HTTPException as e:
            assert e.status_code == 400
            outcomes["refused"] += 1
            continue
        assert got[0] == mid and [b.code for b in got[1]] == [b.code for b in bindings]
        outcomes["same"] += 1
    assert outcomes["refused"] > 250
