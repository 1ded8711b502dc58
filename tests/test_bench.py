"""``rawproof bench`` on a small frame: structure, figures, and its numpy baselines against native."""

from __future__ import annotations

import json

import pytest

from rawproof import bench, cli


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["bench", "--width", "64", "--height", "48", "--repeat", "1", "--section", "kernels", "--section", "python_threads", *args]) == 0
    return capsys.readouterr().out


def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(run_cli(capsys, "--json"))
    assert (report["width"], report["height"], report["repeat"]) == (64, 48, 1)
    kernels = [r for r in report["rows"] if r["section"] == "kernels"]
    assert [r["name"] for r in kernels] == list(bench.KERNELS)
    for r in kernels:
        for key in ("numpy_ms", "native_1t_ms", "native_all_ms", "memcpy_ms"):
            assert r[key] > 0
        assert r["numpy/native_all"] == pytest.approx(r["numpy_ms"] / r["native_all_ms"])
        assert r["memcpy/native_all"] == pytest.approx(r["memcpy_ms"] / r["native_all_ms"])
        # the numpy baselines compute the same thing as the kernels
        assert r["max_abs_diff"] <= (1e-5 if r["name"] in ("mosaic_to_rggb", "dct8x8") else 0)
    overlap = [r for r in report["rows"] if r["section"] == "python_threads"]
    assert [r["name"] for r in overlap] == list(bench.KERNELS)
    assert all(r["overlap"] == pytest.approx(r["sequential_ms"] / r["concurrent_ms"]) for r in overlap)


def test_table_and_only(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "--only", "dct8x8", "--only", "raw12")
    assert "[kernels]" in out and "[python_threads]" in out and "numpy/native_all" in out
    assert "dct8x8" in out and "raw12" in out and "raw10" not in out and "mosaic_to_rggb" not in out


def test_sections_are_extensible(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = bench.BenchRow("extra", "thing", {"x_ms": 1.0})
    sections = {"kernels": bench.SECTIONS["kernels"], "python_threads": bench.SECTIONS["python_threads"], "extra": lambda cfg: [extra]}
    monkeypatch.setattr(bench, "SECTIONS", sections)
    rows = bench.run_bench(bench.BenchConfig(width=16, height=16, repeat=1, only=("raw10",)))
    assert rows[-1] == extra and [r.section for r in rows] == ["kernels", "python_threads", "extra"]


def test_provenance_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--width", "64", "--height", "48", "--repeat", "1", "--section", "provenance", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    names = {r["name"] for r in rows}
    assert {r["section"] for r in rows} == {"provenance"}
    assert any("thumbnail" in n for n in names) and any("check" in n for n in names)
    assert all(r["best_ms"] > 0 for r in rows)


@pytest.mark.parametrize("args", [["--width", "60"], ["--height", "0"], ["--repeat", "0"]])
def test_bad_arguments(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", *args]) == 2
    assert "rawproof bench: error: --" in capsys.readouterr().err


def test_develop_vs_rawpy_section_measures_both_on_the_sample_raw(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--repeat", "1", "--section", "develop_vs_rawpy", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    by_name = {r["name"]: r for r in rows}
    ref = by_name.pop("rawpy.postprocess")
    assert ref["x_rawpy"] == 1.0 and ref["ms"] > 0
    assert by_name, "no shipped NIP was measured"
    for r in by_name.values():
        # the sample develops to the size LibRaw reports for it, give or take LibRaw's border crop
        assert r["megapixels"] == pytest.approx(ref["megapixels"], rel=0.02)
        assert r["ms_per_mp"] == pytest.approx(r["ms"] / r["megapixels"])
        assert r["x_rawpy"] == pytest.approx(r["ms_per_mp"] / ref["ms_per_mp"])
