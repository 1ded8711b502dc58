"""Tests of rawproof.runtime: provider choice, contract checks on load, session cache, run()."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from _onnx_models import NipWeights, make_fan, make_nip, nip_reference, write_model
from rawproof.errors import ModelError, ProviderError
from rawproof.models import file_sha256, load_model_info
from rawproof.runtime import (
    PROVIDER_PREFERENCE,
    Session,
    available_providers,
    clear_session_cache,
    get_session,
    resolve_providers,
)

NIP_META = {"name": "tiny", "kind": "nip", "receptive_field": 5}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_session_cache()
    yield
    clear_session_cache()


@pytest.fixture()
def nip_path(tmp_path: Path) -> Path:
    return write_model(make_nip(NipWeights()), tmp_path / "tiny.onnx", NIP_META)


def _set_json_sha(path: Path) -> None:
    """Make the JSON agree with the file's current bytes (to get past the sha check)."""
    j = path.with_suffix(".json")
    meta = json.loads(j.read_text())
    meta["sha256"] = file_sha256(path)
    j.write_text(json.dumps(meta))


class TestProviders:
    def test_available_is_onnxruntimes(self) -> None:
        assert available_providers() == ort.get_available_providers()
        assert "CPUExecutionProvider" in available_providers()

    def test_automatic_order(self) -> None:
        auto = resolve_providers(None)
        assert auto[-1] == "CPUExecutionProvider"
        assert list(auto) == [p for p in PROVIDER_PREFERENCE if p in available_providers()]

    def test_aliases_and_string(self) -> None:
        assert resolve_providers("cpu") == ("CPUExecutionProvider",)
        assert resolve_providers(["CPUExecutionProvider", "cpu"]) == ("CPUExecutionProvider",)

    @pytest.mark.parametrize("bad", [["NoSuchExecutionProvider"], "gpu", []])
    def test_unknown_provider(self, bad: object) -> None:
        with pytest.raises(ProviderError):
            resolve_providers(bad)

    def test_unavailable_provider(self, nip_path: Path) -> None:
        missing = next((p for p in PROVIDER_PREFERENCE if p not in available_providers()), None)
        if missing is None:
            pytest.skip("this onnxruntime offers TensorRT, CUDA and CPU")
        with pytest.raises(ProviderError, match="not available"):
            get_session(nip_path, providers=[missing])

    def test_provider_error_is_model_error(self) -> None:
        assert issubclass(ProviderError, ModelError)


class TestSessionLoad:
    def test_runs_like_numpy_reference(self, nip_path: Path) -> None:
        sess = get_session(nip_path, "nip", providers="cpu")
        assert sess.provider == "CPUExecutionProvider"
        x = np.random.default_rng(1).random((2, 4, 12, 18), dtype=np.float32)
        y = sess.run(x)
        assert y.shape == (2, 3, 24, 36) and y.dtype == np.float32
        for i in range(2):
            np.testing.assert_allclose(y[i], nip_reference(x[i], NipWeights()), atol=1e-5)

    def test_tampered_model(self, nip_path: Path) -> None:
        data = bytearray(nip_path.read_bytes())
        data[-20] ^= 0x01  # inside the last initializer: still a valid protobuf
        nip_path.write_bytes(bytes(data))
        with pytest.raises(ModelError, match="sha256 mismatch"):
            get_session(nip_path)

    def test_truncated_model(self, nip_path: Path) -> None:
        data = nip_path.read_bytes()
        nip_path.write_bytes(data[: len(data) // 2])
        _set_json_sha(nip_path)
        with pytest.raises(ModelError, match="onnxruntime cannot load"):
            get_session(nip_path)

    def test_garbage_model(self, nip_path: Path) -> None:
        nip_path.write_bytes(b"\x00" * 10)
        _set_json_sha(nip_path)
        with pytest.raises(ModelError):
            get_session(nip_path)

    def test_metadata_props_disagree_with_json(self, tmp_path: Path) -> None:
        p = write_model(make_nip(NipWeights()), tmp_path / "m.onnx", NIP_META)
        j = p.with_suffix(".json")
        meta = json.loads(j.read_text())
        meta["receptive_field"] = 3
        j.write_text(json.dumps(meta))
        with pytest.raises(ModelError, match=r"disagree with the JSON on \['receptive_field'\]"):
            get_session(p)

    def test_wrong_input_name(self, tmp_path: Path) -> None:
        p = write_model(make_nip(NipWeights(), input_name="x"), tmp_path / "m.onnx", NIP_META)
        with pytest.raises(ModelError, match="input must be 'rggb' float32"):
            get_session(p)

    def test_fan_as_nip_contract(self, tmp_path: Path) -> None:
        # Metadata says nip, graph is a FAN: the input/output check must catch it.
        p = write_model(make_fan(), tmp_path / "m.onnx", NIP_META)
        with pytest.raises(ModelError, match="input must be 'rggb'"):
            get_session(p)

    def test_fan_logit_count_vs_classes(self, tmp_path: Path) -> None:
        p = write_model(make_fan(5), tmp_path / "fan.onnx", {"name": "fan", "kind": "fan", "classes": ["a", "b"]})
        with pytest.raises(ModelError, match="5 logits but 2 classes"):
            get_session(p, "fan")

    def test_fan_runs(self, tmp_path: Path) -> None:
        p = write_model(make_fan(5), tmp_path / "fan.onnx", {"name": "fan", "kind": "fan", "classes": list("abcde")})
        sess = get_session(p, "fan")
        assert sess.run(np.zeros((3, 3, 128, 128), np.float32)).shape == (3, 5)


class TestRunInput:
    @pytest.mark.parametrize(
        "x",
        [
            np.zeros((1, 4, 8, 8), np.float64),
            np.zeros((1, 3, 8, 8), np.float32),
            np.zeros((4, 8, 8), np.float32),
            np.zeros((1, 4, 0, 8), np.float32),
            [[0.0]],
        ],
        ids=["float64", "3ch", "rank3", "empty", "list"],
    )
    def test_rejects(self, nip_path: Path, x: object) -> None:
        with pytest.raises(ValueError):
            get_session(nip_path).run(x)

    def test_non_contiguous(self, nip_path: Path) -> None:
        x = np.zeros((1, 4, 8, 16), np.float32)[..., ::2]
        with pytest.raises(ValueError, match="C-contiguous"):
            get_session(nip_path).run(x)

    def test_size_multiple(self, tmp_path: Path) -> None:
        p = write_model(make_nip(NipWeights(), pooled=True), tmp_path / "p.onnx", {**NIP_META, "size_multiple": 2})
        sess = get_session(p)
        assert sess.run(np.zeros((1, 4, 8, 10), np.float32)).shape == (1, 3, 16, 20)
        with pytest.raises(ValueError, match="multiples of 2"):
            sess.run(np.zeros((1, 4, 8, 9), np.float32))


class TestCache:
    def test_same_key_same_session(self, nip_path: Path) -> None:
        a = get_session(nip_path, providers="cpu")
        assert get_session(str(nip_path), providers=["CPUExecutionProvider"]) is a
        assert get_session(nip_path, threads=1) is not a

    def test_threads_share_one_session(self, nip_path: Path) -> None:
        got: list[Session] = []
        barrier = threading.Barrier(6)

        def worker() -> None:
            barrier.wait()
            got.append(get_session(nip_path, threads=2))

        ts = [threading.Thread(target=worker) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(got) == 6 and all(s is got[0] for s in got)

    def test_closed_session(self, nip_path: Path) -> None:
        s = get_session(nip_path)
        with s:
            pass
        s.close()  # idempotent
        assert s.closed
        with pytest.raises(ModelError, match="closed"):
            s.run(np.zeros((1, 4, 4, 4), np.float32))
        assert get_session(nip_path) is not s

    def test_direct_session_options(self, nip_path: Path) -> None:
        with Session(load_model_info(nip_path), providers="cpu", threads=1) as s:
            assert s.threads == 1 and s.providers == ("CPUExecutionProvider",)
        with pytest.raises(ValueError, match="threads"):
            Session(load_model_info(nip_path), threads=-1)
