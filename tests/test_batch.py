"""verify_batch: inputs, rows against verify(), faults, resume, Ray vs local (one module-scoped Ray cluster)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _onnx_models import make_fan, write_model
from rawproof.batch import ROW_FIELDS, BatchMode, collect_inputs, read_rows, register, verify_batch
from rawproof.errors import VerificationError
from rawproof.verify import verify

CLASSES = ["native", "sharpen", "gaussian", "jpeg", "resample"]
N_GOOD = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 64-px-patch test FAN, 10 JPEG/PNG images in a tree, a corrupt JPEG."""
    root = tmp_path_factory.mktemp("batch")
    fan = write_model(make_fan(len(CLASSES)), root / "models" / "fan.onnx",
                      {"name": "batchfan", "kind": "fan", "classes": CLASSES, "patch_size": 64})
    rng = np.random.default_rng(0)
    img = root / "images"
    (img / "sub").mkdir(parents=True)
    for i in range(N_GOOD):
        h, w = 96 + 16 * (i % 3), 128
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i % 4 == 3:
            Image.fromarray(arr).save(img / "sub" / f"im{i:02d}.png")
        else:
            Image.fromarray(arr).save(img / f"im{i:02d}.jpg", quality=90)
    (img / "notes.txt").write_text("not an image")
    corrupt = root / "corrupt.jpg"
    good = (img / "im00.jpg").read_bytes()
    corrupt.write_bytes(good[: len(good) // 3])
    return {"root": root, "fan": fan, "images": img, "corrupt": corrupt}


@pytest.fixture(autouse=True)
def _no_installed_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path / "no-models"))


def _inputs(corpus: dict[str, Path]) -> list[str]:
    return [str(corpus["images"]), str(corpus["corrupt"]), str(corpus["root"] / "missing.jpg"), "https://example.com/a.jpg"]


def _assert_one_session_per_worker(s, rows: list[dict]) -> None:  # noqa: ANN001
    """Every worker process that analysed images ran them all on one FAN session.

    Which worker gets which chunk is up to the scheduler: a worker whose chunks held only
    unreadable inputs has rows (errors) but no session, so sessions are counted against the
    workers that analysed something, not against all workers.
    """
    analysed = [r for r in rows if r["session"]]
    assert analysed and all(r["session"].rsplit(":", 1)[0] == r["worker"] for r in analysed)
    assert s.sessions_created == len({r["session"] for r in analysed}) == len({r["worker"] for r in analysed})


def _result(row: dict) -> dict:
    """The fields that must not depend on where or how often the image was processed."""
    return {k: row[k] for k in ROW_FIELDS if not k.endswith("_ms") and k not in ("worker", "session")}


def test_collect_inputs(corpus: dict[str, Path], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    found = collect_inputs(corpus["images"])
    assert len(found) == N_GOOD and found == sorted(found) and not any(f.endswith(".txt") for f in found)
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n{found[0]}\n\nfile://{Path(found[1]).resolve()}\n{found[0]}\n")
    assert collect_inputs(lst) == [found[0], f"file://{Path(found[1]).resolve()}"]
    rel = Path(found[2]).relative_to(corpus["root"])
    manifest = corpus["root"] / "manifest.parquet"
    pq.write_table(pa.table({"path": [str(rel), None, "s3://bucket/x.jpg"], "label": [1, 2, 3]}), manifest)
    assert collect_inputs([manifest]) == [str(corpus["root"] / rel), "s3://bucket/x.jpg"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"file": ["a"]}), bad)
    with pytest.raises(VerificationError, match="no 'path' column"):
        collect_inputs(bad)


def test_local_rows_match_verify_and_errors_are_rows(corpus: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    outs = [tmp_path / "r.parquet", tmp_path / "r.jsonl"]
    s = verify_batch(_inputs(corpus), outs, workers=2, fan=corpus["fan"], chunk_size=3, progress=False)
    assert s.mode is BatchMode.LOCAL and s.total == N_GOOD + 3 and s.processed == s.total and s.skipped == 0
    assert (s.ok, s.errors) == (N_GOOD, 3)
    pq_rows, js_rows = read_rows(outs[0]), read_rows(outs[1])
    assert pq_rows == js_rows
    assert not list(tmp_path.glob("*.journal.jsonl")) and not list(tmp_path.glob(".*tmp"))
    by_path = {r["path"]: r for r in pq_rows}
    assert [r["path"] for r in pq_rows] == collect_inputs(_inputs(corpus))
    assert by_path[str(corpus["corrupt"])]["error_type"] == "ImageFormatError"
    assert by_path[str(corpus["root"] / "missing.jpg")]["error_type"] == "FileNotFoundError"
    assert "unsupported URI scheme 'https'" in by_path["https://example.com/a.jpg"]["error"]
    # The independent reference: verify() called here, in this process.
    for path in collect_inputs(corpus["images"]):
        row, rep = by_path[path], verify(path, fan=corpus["fan"], threads=1)
        assert row["status"] == "ok" and row["error"] is None
        assert row["verdict"] == rep.verdict.value and row["provenance_state"] == rep.provenance.state.value == "no_manifest"
        assert row["score"] == rep.forensics.score and row["summary"] == rep.summary
        assert row["class_probabilities"] == pytest.approx(rep.forensics.class_probabilities, abs=0)
        assert math.isclose(sum(row["class_probabilities"].values()), 1.0, rel_tol=1e-9)
        assert row["patches"] == rep.forensics.grid_y.size * rep.forensics.grid_x.size > 0
        assert row["total_ms"] >= row["forensics_ms"] > 0
    # One FAN session per worker process, whatever the number of chunks (5 here).
    assert 1 <= s.worker_processes <= 2
    _assert_one_session_per_worker(s, pq_rows)


def test_resume_skips_done_rows_and_torn_journal(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    paths = collect_inputs(corpus["images"])
    first = verify_batch(paths[:4], out, workers=1, fan=corpus["fan"], progress=False)
    assert first.processed == 4
    before = read_rows(out)
    # A run that died mid-write: one finished row in the journal, then a torn line.
    row5 = dict(before[0], path=paths[4], summary="from the journal")
    journal = tmp_path / "r.jsonl.journal.jsonl"
    journal.write_text(json.dumps(row5) + "\n" + '{"path": "torn')
    second = verify_batch(paths + [str(corpus["corrupt"])], out, workers=1, fan=corpus["fan"], progress=False)
    assert (second.skipped, second.processed, second.total) == (5, N_GOOD - 5 + 1, N_GOOD + 1)
    rows = {r["path"]: r for r in read_rows(out)}
    assert rows[paths[4]]["summary"] == "from the journal"
    assert all(rows[r["path"]] == r for r in before)
    assert not journal.exists()
    third = verify_batch(paths, out, workers=1, fan=corpus["fan"], progress=False)
    assert (third.processed, third.total, third.errors) == (0, N_GOOD + 1, 1)
    again = verify_batch([str(corpus["corrupt"])], out, workers=1, fan=corpus["fan"], progress=False, retry_errors=True)
    assert (again.processed, again.errors) == (1, 1)
    fresh = verify_batch(paths[:2], out, workers=1, fan=corpus["fan"], progress=False, resume=False)
    assert (fresh.processed, fresh.total) == (2, 2)


def test_local_worker_killed_mid_batch_is_retried(corpus: dict[str, Path], tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    s = verify_batch(_inputs(corpus), tmp_path / "r.jsonl", workers=2, fan=corpus["fan"], chunk_size=2,
                     progress=False, _crash_once_marker=str(marker))
    assert marker.exists() and s.retried_chunks >= 1
    assert (s.total, s.ok, s.errors) == (N_GOOD + 3, N_GOOD, 3)
    assert not any(r["error_type"] == "WorkerDied" for r in read_rows(tmp_path / "r.jsonl"))


def test_bad_arguments(corpus: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.parquet or \.jsonl"):
        verify_batch([], tmp_path / "r.csv")
    with pytest.raises(ValueError, match="workers"):
        verify_batch([], tmp_path / "r.jsonl", workers=0)
    with pytest.raises(VerificationError, match="trust anchors"):
        verify_batch([], tmp_path / "r.jsonl", trust_anchors=tmp_path / "nope.pem")
    from rawproof.errors import ModelError

    with pytest.raises(ModelError):
        verify_batch([], tmp_path / "r.jsonl", fan=tmp_path / "nofan.onnx")


def test_cli_register(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "r.jsonl"
    args = parser.parse_args(["verify-batch", str(corpus["images"]), "--out", str(out), "--workers", "1",
                              "--fan", str(corpus["fan"]), "--no-progress"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["ok"] == N_GOOD
    args = parser.parse_args(["verify-batch", str(corpus["corrupt"]), "--out", str(out), "--workers", "1", "--no-progress"])
    assert args.func(args) == 1


# --- Ray ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():  # noqa: ANN201
    """One local 2-CPU Ray cluster for the module (starting one takes seconds)."""
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'rawproof[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_matches_local_and_survives_a_killed_worker(ray_cluster, corpus: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    local = verify_batch(_inputs(corpus), tmp_path / "local.jsonl", workers=2, fan=corpus["fan"], chunk_size=2, progress=False)
    marker = tmp_path / "crashed"
    s = verify_batch(_inputs(corpus), tmp_path / "ray.jsonl", ray=True, fan=corpus["fan"], chunk_size=2, progress=False,
                     _crash_once_marker=str(marker))
    assert s.mode is BatchMode.RAY and marker.exists()
    assert ray_cluster.is_initialized()  # an already running Ray is reused, not shut down
    # Ray re-ran the killed task itself: no chunk was given up on, every row is accounted for.
    assert (s.total, s.ok, s.errors, s.retried_chunks) == (local.total, local.ok, local.errors, 0)
    ray_rows, local_rows = read_rows(tmp_path / "ray.jsonl"), read_rows(tmp_path / "local.jsonl")
    assert [_result(r) for r in ray_rows] == [_result(r) for r in local_rows]
    assert 1 <= s.worker_processes
    _assert_one_session_per_worker(s, ray_rows)
