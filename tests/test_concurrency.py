"""develop() (with C2PA signing) and verify() called concurrently give the sequential results.

Four threads run 200 develop+sign+verify iterations each over 8 distinct 64x64 frames,
sharing one :class:`Signer`, the cached onnxruntime sessions and the trust anchors; a
process pool (spawned workers, each with its own signer) runs the same work. Every
result is compared with a sequential run: developed pixels, raw hash, verdict,
provenance state, the signed capture assertion and the forensic probabilities.
Signatures themselves differ run to run (ECDSA is randomised), so they are checked by
verifying, not by bytes.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest

from _onnx_models import NipWeights, make_fan, make_nip, write_model
from rawproof.develop import develop
from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, Signer
from rawproof.raw import CFA, RawFrame
from rawproof.runtime import clear_session_cache
from rawproof.verify import verify

N_FRAMES, SIDE = 8, 64
THREADS, ITERATIONS = 4, 200
BASE_CAPTURE = CaptureInfo(camera_make="Acme", camera_model="Cam", device_id="SN1", raw_sha256="0" * 64,
                           nip=ModelRef("x", "0" * 64), capture_time="2025-01-31T12:00:00+00:00")


def _frame(k: int) -> RawFrame:
    rng = np.random.default_rng(100 + k)
    cfa = list(CFA)[k % 4]
    return RawFrame(mosaic=rng.integers(0, 1024, (SIDE, SIDE), dtype=np.uint16), cfa=cfa, black=64, white=1023,
                    wb=(1.5 + 0.1 * k, 1.0, 1.0, 2.0))


def _cycle(k: int, signer: Signer, root_pem: bytes, nip: Path, fan: Path, fmt: str) -> tuple:
    """One develop+sign+verify of frame k; returns everything that must not depend on timing."""
    res = develop(_frame(k), model=nip, signer=signer, capture=BASE_CAPTURE, fmt=fmt, tile=24, threads=1)
    rep = verify(res.signed, device_anchors=root_pem, fan=fan, threads=1)
    fa = rep.forensics
    return (k, hashlib.sha256(res.rgb.tobytes()).hexdigest(), res.raw_sha256, rep.verdict.value,
            rep.provenance.state.value, rep.capture["raw_sha256"], rep.capture["nip"]["sha256"],
            hashlib.sha256(np.ascontiguousarray(fa.probabilities).tobytes()).hexdigest(), round(fa.score, 12))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("conc")
    nip = write_model(make_nip(NipWeights()), d / "tiny.onnx", {"name": "tiny", "kind": "nip", "receptive_field": 5})
    fan = write_model(make_fan(5), d / "fan.onnx", {"name": "fan", "kind": "fan", "classes": ["native", "a", "b", "c", "d"],
                                                     "patch_size": 16, "trained_channel": {"downscale": 2}})
    pki = generate_test_pki(d / "pki", alg="es256")
    return {"nip": nip, "fan": fan, "pki": pki, "root": pki.root_cert.read_bytes()}


@pytest.fixture(scope="module")
def sequential(env: dict) -> dict[tuple[int, str], tuple]:
    clear_session_cache()
    with Signer.from_files(env["pki"].device_chain, env["pki"].device_key, alg="es256") as signer:
        return {(k, fmt): _cycle(k, signer, env["root"], env["nip"], env["fan"], fmt)
                for k in range(N_FRAMES) for fmt in ("jpeg", "png")}


def test_sequential_reference_is_meaningful(sequential: dict) -> None:
    assert len({v[1] for v in sequential.values()}) == N_FRAMES  # distinct pixels per frame (jpeg/png share rgb)
    assert all(v[4] == "valid" and v[5] == v[2] for v in sequential.values())


def test_threads_match_sequential(env: dict, sequential: dict) -> None:
    clear_session_cache()  # the threads race to create the sessions too
    mismatches: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)
    with Signer.from_files(env["pki"].device_chain, env["pki"].device_key, alg="es256") as signer:

        def work(tid: int) -> int:
            barrier.wait()
            done = 0
            for i in range(ITERATIONS):
                k, fmt = (tid * 3 + i) % N_FRAMES, ("jpeg", "png")[(tid + i) % 2]
                try:
                    got = _cycle(k, signer, env["root"], env["nip"], env["fan"], fmt)
                except BaseException as e:  # noqa: BLE001 - reported below with its thread
                    errors.append(e)
                    return done
                if got != sequential[(k, fmt)]:
                    mismatches.append(f"thread {tid} iteration {i}: {got} != {sequential[(k, fmt)]}")
                done += 1
            return done

        with cf.ThreadPoolExecutor(THREADS) as pool:
            counts = list(pool.map(work, range(THREADS)))
    assert not errors, errors[:3]
    assert not mismatches, mismatches[:3]
    assert counts == [ITERATIONS] * THREADS


_worker_signer: Signer | None = None


def _process_cycle(task: tuple[int, str], chain: str, key: str, root: bytes, nip: str, fan: str) -> tuple:
    global _worker_signer
    if _worker_signer is None:
        _worker_signer = Signer.from_files(chain, key, alg="es256")
    return _cycle(task[0], _worker_signer, root, Path(nip), Path(fan), task[1])


def test_process_pool_matches_sequential(env: dict, sequential: dict) -> None:
    tasks = [(k, fmt) for _ in range(2) for k in range(N_FRAMES) for fmt in ("jpeg", "png")]
    fn = functools.partial(_process_cycle, chain=str(env["pki"].device_chain), key=str(env["pki"].device_key),
                           root=env["root"], nip=str(env["nip"]), fan=str(env["fan"]))
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(fn, tasks))
    assert results == [sequential[t] for t in tasks]
