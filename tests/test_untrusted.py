"""rawproof.untrusted: regular-file reads with a size cap, strict JSON in and out."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from rawproof.untrusted import (
    NotRegularFileError, dumps_strict, finite_json, loads_strict, read_json_file, read_regular, read_stream,
)


class TestReadRegular:
    def test_reads_a_regular_file_up_to_the_cap(self, tmp_path: Path) -> None:
        p = tmp_path / "f"
        p.write_bytes(b"x" * 100)
        assert read_regular(p, 100) == b"x" * 100
        with pytest.raises(NotRegularFileError, match="100 bytes, above the 99-byte limit"):
            read_regular(p, 99)

    def test_fifo_is_refused_without_waiting_for_a_writer(self, tmp_path: Path) -> None:
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        result: list[BaseException] = []
        t = threading.Thread(target=lambda: result.append(pytest.raises(NotRegularFileError, read_regular, fifo, 10).value))
        t.start()
        t.join(5)
        assert not t.is_alive() and "is a FIFO" in str(result[0])

    @pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "character device"), ("/dev/null", "character device")])
    def test_devices_are_refused(self, path: str, kind: str) -> None:
        with pytest.raises(NotRegularFileError, match=kind):
            read_regular(path, 1 << 20)

    def test_directory_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(NotRegularFileError, match="directory"):
            read_regular(tmp_path, 1 << 20)

    def test_sparse_file_refused_from_its_size(self, tmp_path: Path) -> None:
        p = tmp_path / "sparse"
        with open(p, "wb") as f:
            f.truncate(1 << 40)  # 1 TiB of holes: refused from st_size, never read
        with pytest.raises(NotRegularFileError, match="above"):
            read_regular(p, 1 << 20)

    def test_missing_file_is_file_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            read_regular(tmp_path / "nope", 10)


class TestReadStream:
    def test_reads_to_the_end_in_chunks(self) -> None:
        data = bytes(range(256)) * 1000
        assert read_stream(io.BytesIO(data), len(data), chunk=999) == data

    def test_more_than_the_cap_is_refused(self) -> None:
        with pytest.raises(NotRegularFileError, match="more than the 99-byte limit"):
            read_stream(io.BytesIO(b"x" * 100), 99, chunk=7)

    def test_text_mode_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="binary mode"):
            read_stream(io.StringIO("abc"), 10)

    def test_a_big_cap_does_not_reserve_memory(self, tmp_path: Path) -> None:
        """A read of n bytes reserves n bytes; the readers ask for what the file holds, not the cap."""
        import resource

        p = tmp_path / "small"
        p.write_bytes(b"abc")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), hard))
        try:
            assert read_regular(p, 8 << 30) == b"abc"
            with open(p, "rb") as f:
                assert read_stream(f, 8 << 30) == b"abc"
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class TestStrictJson:
    @pytest.mark.parametrize("text", ["NaN", "[Infinity]", '[{"a": -Infinity}]', "1e400", "[-1e999]"])
    def test_non_finite_numbers_are_refused(self, text: str) -> None:
        parsed = json.loads(text)  # what the standard parser accepts
        flat = [v for x in (parsed if isinstance(parsed, list) else [parsed]) for v in (x.values() if isinstance(x, dict) else [x])]
        assert not np.all(np.isfinite(flat))
        with pytest.raises(ValueError):
            loads_strict(text)

    def test_deep_nesting_is_a_value_error(self) -> None:
        with pytest.raises(RecursionError):
            json.loads("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ValueError, match="nested too deeply"):
            loads_strict("[" * 100_000 + "]" * 100_000)

    def test_ordinary_json_is_unchanged(self) -> None:
        text = '{"a": [1, 2.5, -0.0, 1e300, "s", null, true], "b": {"c": 2}}'
        assert loads_strict(text) == json.loads(text)

    def test_dumps_strict_maps_non_finite_to_null(self) -> None:
        value = {"x": [float("nan"), np.float32(np.inf), np.float64(2.5)], "y": np.arange(3, dtype=np.int16), 3: (1,)}
        assert finite_json(value) == {"x": [None, None, 2.5], "y": [0, 1, 2], "3": [1]}
        assert json.loads(dumps_strict(value)) == finite_json(value)

    def test_read_json_file(self, tmp_path: Path) -> None:
        p = tmp_path / "m.json"
        p.write_text('{"k": 1}', encoding="utf-8")
        assert read_json_file(p) == {"k": 1}
        p.write_bytes(b'{"k": "\xff"}')
        with pytest.raises(ValueError, match="not UTF-8"):
            read_json_file(p)
