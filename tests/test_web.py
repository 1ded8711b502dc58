"""Tests of rawproof.web: the upload API, its safety bounds, the worker pool and the plain-words reading.

The server runs for real (uvicorn on 127.0.0.1, worker processes); requests go through
urllib as the page sends them. Each verdict the API returns is compared with ``verify()``
called in this process on the same bytes. The browser itself is tested in
tests/test_web_browser.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _toy_fan import toy_fan_path  # noqa: E402
from _web_cases import build_cases, jpeg_channel_fan, png, published_capture  # noqa: E402
from rawproof.errors import ImageFormatError, ServiceLimitError  # noqa: E402
from rawproof.verify import Verdict, verify  # noqa: E402
from rawproof.web.app import WebConfig  # noqa: E402
from rawproof.web.explain import explain  # noqa: E402
from rawproof.web.measure import LocalServer, hostile_uploads, page_token, upload  # noqa: E402
from rawproof.web.pool import PoolConfig, VerifyPool  # noqa: E402
from rawproof.web.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAWPROOF_MODELS", str(toy_fan_path().parent))
        cases, anchors = build_cases(tmp_path_factory.mktemp("cases"))
        yield cases, anchors


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    _, root = env
    keep = tmp_path_factory.mktemp("kept")
    cfg = WebConfig(pool=PoolConfig(workers=2, verify_kwargs=root.kwargs), max_bytes=1 << 20, keep_dir=keep)
    with LocalServer(create_app(cfg)) as srv:
        yield srv, page_token(srv.url), keep


def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url + "api/verify", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def _comparable(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k != "timings_ms"}
    out["forensics"] = {k: v for k, v in report["forensics"].items() if k != "fan_ms"}
    return out


# ---- plain words ------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_has_its_own_words(verdict: Verdict) -> None:
    page = explain({"verdict": verdict.value, "summary": "s", "provenance": {"state": "valid", "signer_subject": "CN=x"},
                    "forensics": {"traces": "consistent", "classes": ["native", "gaussian"]}})
    assert page["headline"] != verdict.value.replace("_", " ").capitalize()
    assert page["tone"] in ("good", "bad", "warn", "neutral") and len(page["because"]) == 2
    assert page["because"][-1] == "In the verifier's words: s."


def test_history_recovery_and_unknown_verdicts_are_shown() -> None:
    """The report shapes of verify()'s edit history (provenance.chain, newest first) and of a
    repository recovery, and a verdict this module has no words for."""
    capture = {"camera": {"make": "Canon", "model": "G2"}, "device_id": "dev-7", "capture_time": "2001-05-04T10:00:00"}
    report = {
        "verdict": "some_future_verdict", "summary": "two steps",
        "provenance": {"state": "valid", "chain": [
            {"trust": "trusted", "valid": True, "actions": [{"action": "c2pa.cropped", "softwareAgent": "Desk 2"},
                                                            {"action": "c2pa.color_adjustments"}],
             "signer_subject": "CN=desk", "signing_time": "2025-02-01T10:00:00Z", "time_stamp_trusted": True,
             "parent": "urn:1", "is_capture": False},
            {"trust": "device", "valid": True, "actions": [{"action": "c2pa.created"}], "signer_subject": "CN=cam",
             "capture": capture, "is_capture": True, "parent": None},
        ]},
        "recovery": {"manifest_id": "urn:uuid:1", "repository": "http://127.0.0.1:1", "distance": 3, "similarity": 95,
                     "trusted": True, "provenance": {"signer_subject": "CN=cam"}, "capture": capture,
                     "differences": {"original_size": [640, 480], "received_size": [320, 240], "crop": None, "scale": 0.5,
                                     "received_encoding": {"format": "JPEG", "jpeg_quality": 50}}, "extra_field": "x"},
        "forensics": {"traces": "unavailable", "reason": "no FAN model installed"},
    }
    page = explain(report)
    assert page["headline"] == "Some future verdict" and page["tone"] == "neutral"
    assert page["because"] == ["In the verifier's words: two steps."]
    capture_step, edit = page["chain"]
    assert (capture_step["title"], capture_step["kind"], capture_step["trust"]["state"]) == ("Capture", "capture", "trusted")
    assert ["Camera", "Canon G2"] in capture_step["facts"] and ["Device", "dev-7"] in capture_step["facts"]
    assert "device" in capture_step["trust"]["text"]
    assert edit["title"] == "Edit" and ["Actions", "cropped (Desk 2), color adjustments"] in edit["facts"]
    assert ["Signed at", "2025-02-01T10:00:00Z (trusted time stamp)"] in edit["facts"] and "not a device" in edit["trust"]["text"]
    rec = dict(map(tuple, page["recovery"]["facts"]))
    assert page["recovery"]["trusted"] and rec["Match"] == "95% similar, 3 of 64 bits differ"
    assert rec["Size"] == "original 640 x 480, this copy 320 x 240" and rec["Scale"] == "0.5 x the original"
    assert rec["Camera"] == "Canon G2" and rec["Extra field"] == "x" and "Cropped" not in rec
    assert page["forensics"]["status"] == "unavailable" and page["forensics"]["note"] == "no FAN model installed"


def test_a_broken_step_reads_invalid() -> None:
    report = {"verdict": "invalid_signature", "provenance": {"state": "valid", "status_codes": [], "chain": [
        {"trust": "trusted", "valid": False, "failure_codes": ["assertion.dataHash.mismatch"], "parent": "urn:2"},
        {"trust": "device", "valid": True, "is_capture": True, "capture": {"device_id": "d"}}]}, "forensics": {}}
    steps = explain(report)["chain"]
    assert steps[1]["trust"] == {"state": "invalid", "text": "signature or content check failed (assertion.dataHash.mismatch)"}


def test_inconclusive_reading_is_marked_not_evidence() -> None:
    fa = {"traces": "manipulated", "out_of_channel": "a PNG image; the FAN was trained behind JPEG q50 444",
          "classes": ["native", "sharpen"], "class_fractions": {"sharpen": 0.5}, "score": 0.9}
    page = explain({"verdict": "no_provenance_inconclusive", "provenance": {"state": "no_manifest"}, "forensics": fa})
    f = page["forensics"]
    assert f["status"] == "not-evidence" and "not evidence" in f["headline"].lower()
    assert "a PNG image" in f["note"] and f["legend"] == [{"name": "sharpen", "words": "sharpening", "colour": "#e61919"}]
    assert page["chain"] == []


def test_an_image_from_another_pipeline_is_not_evidence() -> None:
    fa = {"traces": "manipulated", "classes": ["native", "sharpen"], "class_fractions": {"sharpen": 0.8}, "score": 0.9}
    page = explain({"verdict": "no_rawproof_traces", "provenance": {"state": "no_manifest"}, "forensics": fa,
                    "origin": {"head": "origin_x", "p_foreign": 0.93, "threshold": 0.5, "foreign": True}})
    assert page["headline"] == "No Content Credentials; not from a rawproof imaging pipeline"
    assert "not a finding of manipulation" in page["because"][0]
    assert page["forensics"]["status"] == "not-evidence" and "P = 0.93" in page["forensics"]["note"]


# ---- the API ----------------------------------------------------------------------------------


def test_page_is_self_contained_and_locked_down(server) -> None:
    srv, token, _ = server
    with urllib.request.urlopen(srv.url) as r:
        html, headers = r.read().decode(), r.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "{{" not in html and token.split(".")[0][:4] in html
    for ref in ("http://", "https://", "//cdn"):  # no asset from elsewhere
        assert ref not in html.replace("http://www.w3.org", "")
    for name in ("app.js", "style.css"):
        with urllib.request.urlopen(srv.url + "static/" + name) as r:
            body = r.read().decode()
        assert "http" not in body and len(body) > 500
    for bad in ("static/../app.py", "static/index.html", "static/%2e%2e%2fapp.py"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(srv.url + bad)
        e.value.close()
        assert e.value.code == 404


@pytest.mark.parametrize("name", ["signed_original", "edited_chain", "generated", "capture_by_a_non_device",
                                  "manipulated_before_signing", "tampered_signed_copy", "other_pipeline",
                                  "stripped_copy", "manipulated_share", "too_small", "remote_manifest"])
def test_verdicts_match_verify_in_process(server, env, name: str) -> None:
    srv, token, _ = server
    cases, root = env
    case = cases[name]
    r = upload(srv.url, case.data, token)
    assert r.status == 200 and r.final["event"] == "result", r.final
    assert [e["event"] for e in r.events][:1] == ["received"] and r.events[0]["bytes"] == len(case.data)
    ref = verify(case.data, **root.kwargs).to_dict()
    assert ref["verdict"] == case.verdict
    assert _comparable(r.final["report"]) == _comparable(ref)
    assert r.final["page"]["verdict"] == case.verdict
    assert (r.final["heatmap"] is None) == (case.verdict == "no_provenance_unanalyzed")


def test_outside_the_channel_with_a_jpeg_trained_fan(env) -> None:
    cases, root = env
    case = cases["outside_channel"]
    fan = jpeg_channel_fan()
    cfg = WebConfig(pool=PoolConfig(workers=1, verify_kwargs={**root.kwargs, "fan": fan}))
    with LocalServer(create_app(cfg)) as srv:
        r = upload(srv.url, case.data, page_token(srv.url), stream=False)
    assert r.status == 200
    ref = verify(case.data, **root.kwargs, fan=fan).to_dict()
    assert ref["verdict"] == r.final["report"]["verdict"] == "no_provenance_inconclusive"
    assert r.final["page"]["forensics"]["status"] == "not-evidence"


def test_plain_json_answer_and_kept_uploads(server, env) -> None:
    import hashlib

    srv, token, keep = server
    case = env[0]["signed_original"]
    r = upload(srv.url, case.data, token, stream=False)
    assert r.status == 200 and r.final["report"]["verdict"] == "authentic" and len(r.events) == 1
    digest = hashlib.sha256(case.data).hexdigest()
    assert (keep / f"{digest}.bin").read_bytes() == case.data
    assert json.loads((keep / f"{digest}.json").read_text())["verdict"] == "authentic"
    assert sorted(p.name for p in keep.iterdir()) == sorted(f"{d}.{s}" for d in {p.stem for p in keep.iterdir()} for s in ("bin", "json"))


def test_refusals(server) -> None:
    srv, token, _ = server
    good = {"Content-Type": "application/octet-stream", "X-CSRF-Token": token}
    body = png(__import__("numpy").zeros((40, 40, 3), "uint8"))
    cases = [
        ({**good, "X-CSRF-Token": ""}, body, 403, "token"),
        ({**good, "X-CSRF-Token": token[:-1] + ("0" if token[-1] != "0" else "1")}, body, 403, "token"),
        ({**good, "X-CSRF-Token": "1." + token.split(".")[1]}, body, 403, "token"),  # an expired issue time
        ({**good, "Origin": "http://evil.example"}, body, 403, "cross-origin"),
        ({**good, "Sec-Fetch-Site": "cross-site"}, body, 403, "cross-site"),
        ({**good, "Host": "attacker.example"}, body, 403, "host"),
        ({**good, "Content-Type": "multipart/form-data; boundary=x"}, body, 415, "octet-stream"),
        (good, b"", 400, "empty"),
        (good, b"not an image at all", 422, "not a JPEG, PNG or WebP"),
    ]
    for headers, data, status, words in cases:
        code, answer = _post(srv.url, data, headers)
        assert (code, answer["status"]) == (status, status), (headers, answer)
        assert words in answer["message"], answer
    # Over the byte bound: the server answers 413 from the Content-Length without reading the body, so a
    # client still sending may instead see the connection closed under it (a refusal too, as for chunked).
    try:
        code, answer = _post(srv.url, b"x" * ((1 << 20) + 1), good)
        assert (code, answer["status"]) == (413, 413) and "limit of 1 MiB" in answer["message"], answer
    except urllib.error.URLError as e:
        assert isinstance(e.reason, (BrokenPipeError, ConnectionResetError)), e
    assert _post(srv.url, b"not an image at all", good)[0] == 422  # and it keeps serving


def test_streamed_body_past_the_limit_is_refused(server) -> None:
    """No Content-Length (chunked upload): the server counts while reading and stops at the bound."""
    import http.client

    srv, token, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    chunks = (b"\0" * 65536 for _ in range(40))  # 2.5 MiB against a 1 MiB bound
    try:
        conn.request("POST", "/api/verify", body=chunks, encode_chunked=True,
                     headers={"Content-Type": "application/octet-stream", "X-CSRF-Token": token, "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["kind"] == "bytes"
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while we were still sending: also a refusal
    finally:
        conn.close()
    assert upload(srv.url, b"still serving?", token).final["status"] == 422


def test_token_check_is_hmac_over_the_issue_time(server) -> None:
    from rawproof.web.app import VerifyService

    cfg = WebConfig(pool=PoolConfig(workers=1), token_ttl_s=60, secret=b"k" * 32)
    with VerifyService(cfg) as svc:
        t = svc.issue_token(now=1000)
        assert svc.token_ok(t, now=1030) and not svc.token_ok(t, now=1061) and not svc.token_ok(t, now=800)
        assert not svc.token_ok(t.replace("1000", "1001"), now=1030)
        other = VerifyService.__new__(VerifyService)
        other._secret, other.cfg = b"j" * 32, cfg
        assert not other.token_ok(t, now=1030)


# ---- the worker pool --------------------------------------------------------------------------


def test_hostile_files_get_messages_and_the_pool_keeps_serving(env) -> None:
    cases, root = env
    with VerifyPool(PoolConfig(workers=1, timeout_s=60, verify_kwargs=root.kwargs)) as pool:
        pid = pool.worker_pids()
        for name, data in hostile_uploads(flood_pixels=10_000).items():
            try:
                pool.run_sync(data, None)
            except ImageFormatError as e:
                assert str(e), name
            else:  # only these two are images: a bogus C2PA segment, and a valid flat picture
                assert name in ("fake_c2pa", "pixel_flood"), name
        assert pool.run_sync(cases["signed_original"].data, 1)["report"]["verdict"] == "authentic"
        assert pool.worker_pids() == pid  # nothing crashed or had to be replaced
        assert pool.stats["errors"] == 5 and pool.stats["crashes"] == pool.stats["timeouts"] == 0


def test_time_limit_kills_and_replaces_the_worker(env) -> None:
    cases, root = env
    flood = hostile_uploads(flood_pixels=8_000_000)["pixel_flood"]
    with VerifyPool(PoolConfig(workers=1, timeout_s=0.3, verify_kwargs=root.kwargs)) as pool:
        before = pool.worker_pids()
        with pytest.raises(ServiceLimitError, match="longer than") as e:
            pool.run_sync(flood, 8_000_000)
        assert e.value.limit == "time" and pool.stats["timeouts"] == 1
        after = pool.worker_pids()
        assert after != before and not _alive(before[0])
        assert pool.run_sync(cases["stripped_copy"].data, 1)["report"]["verdict"] == "no_provenance_consistent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as gone
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_worker_that_dies_is_reported_and_replaced(env) -> None:
    cases, root = env
    flood = hostile_uploads(flood_pixels=8_000_000)["pixel_flood"]
    with VerifyPool(PoolConfig(workers=1, timeout_s=60, verify_kwargs=root.kwargs)) as pool:
        (pid,) = pool.worker_pids()
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(ServiceLimitError, match="died") as e:
            pool.run_sync(flood, 8_000_000)
        assert e.value.limit == "crash" and pool.worker_pids() != [pid]
        assert pool.run_sync(cases["signed_original"].data, 1)["report"]["verdict"] == "authentic"


def test_memory_limit_is_a_message(env) -> None:
    cases, root = env
    flood = hostile_uploads(flood_pixels=40_000_000)["pixel_flood"]
    with VerifyPool(PoolConfig(workers=1, memory_bytes=900 << 20, verify_kwargs=root.kwargs)) as pool:
        with pytest.raises(ServiceLimitError, match="memory") as e:
            pool.run_sync(flood, 40_000_000)
        assert e.value.limit == "memory"
        assert pool.run_sync(cases["signed_original"].data, 1)["report"]["verdict"] == "authentic"


def test_full_queue_refuses_at_once(env) -> None:
    cases, root = env
    flood = hostile_uploads(flood_pixels=4_000_000)["pixel_flood"]
    with VerifyPool(PoolConfig(workers=1, queue_limit=0, verify_kwargs=root.kwargs)) as pool:
        t = threading.Thread(target=pool.run_sync, args=(flood, 4_000_000))
        t.start()
        while pool.running() == 0:
            time.sleep(0.01)
        t0 = time.perf_counter()
        with pytest.raises(ServiceLimitError, match="busy") as e:
            pool.run_sync(cases["signed_original"].data, 1)
        assert e.value.limit == "queue" and time.perf_counter() - t0 < 1
        t.join()


def test_light_lane_serves_small_images_past_a_queue_of_large_ones(env) -> None:
    """Two workers; three heavy jobs queued first may use one worker, so the light job goes next."""
    cases, root = env
    flood = hostile_uploads(flood_pixels=3_000_000)["pixel_flood"]
    order: list[str] = []
    with VerifyPool(PoolConfig(workers=2, heavy_pixels=1_000_000, verify_kwargs=root.kwargs)) as pool:
        def run(name: str, data: bytes, pixels: int) -> None:
            pool.run_sync(data, pixels)
            order.append(name)

        heavy = [threading.Thread(target=run, args=(f"heavy{i}", flood, 3_000_000)) for i in range(3)]
        for t in heavy:
            t.start()
            time.sleep(0.05)
        light = threading.Thread(target=run, args=("light", cases["signed_original"].data, 76_800))
        light.start()
        for t in [*heavy, light]:
            t.join()
    assert order[0] == "light", order


def test_eight_hostile_uploads_do_not_stop_a_ninth_user(server, env) -> None:
    """Acceptance: 8 concurrent hostile uploads (bombs, truncations, a pixel flood, an oversized body);
    a ninth user still gets the verdict verify() gives in this process."""
    from concurrent.futures import ThreadPoolExecutor

    srv, token, _ = server
    cases, root = env
    hostile = list(hostile_uploads(flood_pixels=6_000_000, oversize_bytes=(1 << 20) + 1).values())
    assert len(hostile) == 8
    good = cases["manipulated_share"]
    with ThreadPoolExecutor(9) as ex:
        bad = [ex.submit(upload, srv.url, h, token) for h in hostile]
        time.sleep(0.2)
        ninth = ex.submit(upload, srv.url, good.data, token).result()
        answers = [f.result() for f in bad]
    assert ninth.final["event"] == "result"
    assert ninth.final["report"]["verdict"] == verify(good.data, **root.kwargs).verdict.value == good.verdict
    assert all(a.final.get("event") in ("error", "result") for a in answers)
    assert sum(a.final.get("event") == "error" for a in answers) >= 6


@pytest.mark.parametrize("repository", [False, True], ids=["standalone", "with-repository"])
def test_rawproof_serve_command(env, tmp_path_factory, repository: bool) -> None:
    """``rawproof serve`` as a user runs it: a process on 127.0.0.1 that answers, keeps nothing, stops on
    SIGINT; with ``--repo-db`` the same process serves the manifest repository and recovers through it."""
    import socket
    import subprocess
    import sys

    from rawproof.repo.client import RepoClient

    cases, root = env
    pub, pub_anchors = published_capture(tmp_path_factory.mktemp("published"))
    run = tmp_path_factory.mktemp("run")
    (run / "device.pem").write_bytes(root.device + pub_anchors.device)
    (run / "editors.pem").write_bytes(root.other)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo_root = Path(__file__).resolve().parents[1]
    env_vars = {**os.environ, "RAWPROOF_MODELS": str(toy_fan_path().parent),
                "PYTHONPATH": os.pathsep.join(str(repo_root / d) for d in ("sdk", "training", "export"))}
    rawproof = [sys.executable, "-m", "rawproof"]
    args = ["serve", "--port", str(port), "--trust-device", "device.pem", "--trust", "editors.pem", "--workers", "1"]
    if repository:
        key = subprocess.run([*rawproof, "repo", "add-key", "--db", "repo.sqlite", "--device", "dev-1"], cwd=run, env=env_vars,
                             capture_output=True, text=True, check=True).stdout.strip()
        args += ["--repo-db", "repo.sqlite"]
    proc = subprocess.Popen([*rawproof, *args], cwd=run, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                token = page_token(url)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        for name in ("signed_original", "edited_chain"):
            r = upload(url, cases[name].data, token)
            assert r.final["report"]["verdict"] == cases[name].verdict
        if repository:
            RepoClient(url.rstrip("/"), key).publish(pub.store)
        r = upload(url, pub.copy.data, token)
        ref = verify(pub.copy.data, device_anchors=root.device + pub_anchors.device, trust_anchors=root.other,
                     **({"repo": url.rstrip("/")} if repository else {}))
        assert r.final["report"]["verdict"] == ref.verdict.value
        assert (ref.verdict.value == "recovered") == repository
        if repository:
            assert r.final["report"]["recovery"]["manifest_id"] == ref.recovery.manifest_id
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out and "nothing kept" in out
    written = {p.name for p in run.iterdir()} - {"device.pem", "editors.pem"}
    assert all(n.startswith("repo.sqlite") for n in written) and (bool(written) == repository), written  # nothing else
