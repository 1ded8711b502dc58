"""The sensor manifest (schema, validation, packing), dumps in develop(), grey-world WB and non-square pixels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _onnx_models import NipWeights, make_nip, write_model
from test_native_unpack import pack as reference_pack

from rawproof import cli
from rawproof.develop import SensorBuffer, develop, stretch_to_square
from rawproof.errors import RawFormatError
from rawproof.raw import RawFrame
from rawproof.sensor import SENSOR_SCHEMA, SensorSpec, find_entry, pack

REPO = Path(__file__).resolve().parents[1]

GOOD = {"path": "a.raw12", "container": "raw12", "width": 8, "height": 4, "cfa": "GRBG", "black": [64, 65, 66, 67],
        "white": 4095, "wb": [2.0, 1.0, 1.5], "ccm": [[1.5, -0.3, -0.2], [-0.2, 1.4, -0.2], [0.0, -0.4, 1.4]],
        "pixel_aspect": 1.0, "camera": "Vendor X1", "device_id": "sn-1", "source": "free text is allowed"}

# (change to GOOD, field the message must name); each also violates the documented JSON Schema
BAD = [
    ({"container": None}, "container"),
    ({"container": "raw16"}, "container"),
    ({"width": 7}, "width"),
    ({"height": "4"}, "height"),
    ({"cfa": "RGBG"}, "cfa"),
    ({"black": [1, 2, 3]}, "black"),
    ({"black": -1}, "black"),
    ({"white": "4095"}, "white"),
    ({"wb": [1.0, -1.0, 1.0]}, "wb"),
    ({"wb": "grey"}, "wb"),
    ({"ccm": [[1, 0, 0], [0, 1, 0]]}, "ccm"),
    ({"pixel_aspect": 0}, "pixel_aspect"),
    ({"shift": 9}, "shift"),
    ({"stride": -1}, "stride"),
    ({"camera": 3}, "camera"),
]


def _doc_schema() -> dict:
    text = (REPO / "docs" / "raw_ingest.md").read_text()
    m = re.search(r"<!-- sensor-schema -->\s*```json\n(.*?)```", text, re.S)
    assert m, "docs/raw_ingest.md must hold the sensor manifest schema after <!-- sensor-schema -->"
    return json.loads(m.group(1))


class TestSchema:
    def test_documented_schema_is_the_codes(self) -> None:
        assert _doc_schema() == json.loads(json.dumps(SENSOR_SCHEMA))

    def test_good_entry(self) -> None:
        s = SensorSpec.from_entry(GOOD)
        assert (s.width, s.height, s.cfa.value, s.black, s.white, s.wb) == (8, 4, "GRBG", (64, 65, 66, 67), 4095, (2.0, 1.0, 1.5))
        assert SensorSpec.from_entry({"path": "x.CRW", "container": "crw"}).is_camera_file

    @pytest.mark.parametrize("change, field", BAD)
    def test_each_bad_field_is_named_and_the_json_schema_agrees(self, change: dict, field: str) -> None:
        jsonschema = pytest.importorskip("jsonschema")
        entry = {**GOOD, **change}
        if change.get(field, 0) is None:
            del entry[field]
        with pytest.raises(RawFormatError, match=rf"field {field!r}|fields \[{field!r}\]|required field {field!r}"):
            SensorSpec.from_entry(entry, "manifest.json files[0]")
        assert not jsonschema.Draft202012Validator(SENSOR_SCHEMA).is_valid(entry)
        assert jsonschema.Draft202012Validator(SENSOR_SCHEMA).is_valid(GOOD)

    def test_checks_beyond_the_schema(self) -> None:
        with pytest.raises(RawFormatError, match="field 'white' must be a number above the black level"):
            SensorSpec.from_entry({**GOOD, "white": 60})
        with pytest.raises(RawFormatError, match="shorter than one raw12 row"):
            SensorSpec.from_entry({**GOOD, "stride": 11})
        with pytest.raises(RawFormatError, match=r"needs fields \['white'\]"):
            SensorSpec.from_entry({k: v for k, v in GOOD.items() if k != "white"})
        with pytest.raises(RawFormatError, match="missing required field 'container'"):
            SensorSpec.from_entry({"path": "a"})

    def test_find_entry(self, tmp_path: Path) -> None:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "a.raw12").write_bytes(b"")
        (tmp_path / "manifest.json").write_text(json.dumps({"files": [{**GOOD, "path": "d/a.raw12"}]}))
        entry, root = find_entry(tmp_path / "d" / "a.raw12")
        assert entry["path"] == "d/a.raw12" and root == tmp_path.resolve()
        assert find_entry(tmp_path / "other.bin") is None
        (tmp_path / "d" / "manifest.json").write_text(json.dumps({"pairs": []}))  # another tool's manifest: passed over
        assert find_entry(tmp_path / "d" / "a.raw12")[0]["path"] == "d/a.raw12"
        (tmp_path / "bad.json").write_text("[1]")
        with pytest.raises(RawFormatError, match="files"):
            find_entry(tmp_path / "d" / "a.raw12", tmp_path / "bad.json")


@pytest.mark.parametrize("fmt", ["raw10", "raw12", "raw14", "u16le", "u8"])
def test_pack_matches_the_reference_packer_and_round_trips(fmt: str) -> None:
    bits = {"raw10": 10, "raw12": 12, "raw14": 14, "u16le": 16, "u8": 8}[fmt]
    img = np.random.default_rng(1).integers(0, 1 << bits, (6, 16)).astype(np.uint16)
    assert pack(img, fmt) == reference_pack(img, fmt).tobytes()
    frame = RawFrame.from_buffer(pack(img, fmt), 16, 6, fmt, "RGGB", 0, (1 << bits) - 1)
    np.testing.assert_array_equal(frame.mosaic, img)
    if bits < 16:
        with pytest.raises(RawFormatError, match="does not fit"):
            pack(np.full((2, 16), 1 << bits, np.uint16), fmt)
    with pytest.raises(RawFormatError, match="uint16"):
        pack(img.astype(np.int32), fmt)


def test_wb_auto_is_grey_world() -> None:
    """Gains from numpy over the mosaic directly: mean G / mean R and mean G / mean B over unsaturated 2x2 sites."""
    rng = np.random.default_rng(2)
    h, w = 32, 48
    m = np.empty((h, w), np.uint16)
    m[0::2, 0::2] = rng.integers(100, 900, (h // 2, w // 2))   # R
    m[0::2, 1::2] = rng.integers(300, 2000, (h // 2, w // 2))  # Gr
    m[1::2, 0::2] = rng.integers(300, 2000, (h // 2, w // 2))  # Gb
    m[1::2, 1::2] = rng.integers(80, 700, (h // 2, w // 2))    # B (above black: the stack clips below it)
    m[:2, :2] = 4095  # a saturated site, left out
    f = RawFrame.from_buffer(pack(m, "u16le"), w, h, "u16le", "RGGB", 64, 4095, wb="auto")
    norm = (m.astype(np.float64) - 64) / (4095 - 64)
    ok = np.ones((h // 2, w // 2), bool)
    ok[0, 0] = False
    r, gr, gb, b = (norm[i::2, j::2][ok].mean() for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    g = (gr + gb) / 2
    assert f.wb == pytest.approx((g / r, 1.0, 1.0, g / b), rel=1e-5) and f.wb_source == "grey-world"
    with pytest.raises(RawFormatError, match='"auto"'):
        RawFrame.from_buffer(pack(m, "u16le"), w, h, "u16le", "RGGB", 64, 4095, wb="grey")


@pytest.fixture()
def toy_nip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    write_model(make_nip(NipWeights(0)), d / "toy.onnx", {"name": "toy", "kind": "nip", "receptive_field": 5, "classes": []})
    monkeypatch.setenv("RAWPROOF_MODELS", str(d))
    return d


def _dump(tmp_path: Path) -> tuple[Path, np.ndarray, dict]:
    """A RAW12 dump of 10-bit data stored shifted up by 2, with a stride, and its manifest entry."""
    rng = np.random.default_rng(3)
    m = (rng.integers(16, 1023, (24, 32)) << 2).astype(np.uint16)
    rows = np.frombuffer(pack(m, "raw12"), np.uint8).reshape(24, -1)
    stride = rows.shape[1] + 4
    buf = np.zeros((24, stride), np.uint8)
    buf[:, :rows.shape[1]] = rows
    path = tmp_path / "frame.raw12"
    path.write_bytes(buf.tobytes())
    entry = {"path": path.name, "container": "raw12", "width": 32, "height": 24, "stride": stride, "cfa": "BGGR",
             "black": 64 * 4, "white": 1023 * 4, "shift": 2, "wb": [1.8, 1.0, 1.4],
             "ccm": [[1.6, -0.4, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.5, 1.5]], "camera": "Vendor X1", "device_id": "sn-7"}
    return path, m, entry


def test_sensor_buffer_mirrors_from_buffer(toy_nip: Path, tmp_path: Path) -> None:
    path, m, e = _dump(tmp_path)
    kw = {"stride": e["stride"], "wb": tuple(e["wb"]), "ccm": np.array(e["ccm"], np.float32), "shift": 2,
          "camera": e["camera"], "device_id": e["device_id"]}
    frame = RawFrame.from_buffer(path.read_bytes(), 32, 24, "raw12", "BGGR", e["black"], e["white"], **kw)
    buf = SensorBuffer(path.read_bytes(), 32, 24, "raw12", "BGGR", e["black"], e["white"], **kw)
    np.testing.assert_array_equal(frame.mosaic, m >> 2)
    np.testing.assert_array_equal(develop(buf).rgb, develop(frame).rgb)
    assert frame.ccm is not None and develop(buf).rgb.shape == (24, 32, 3)


def test_develop_cli_reads_a_dump(toy_nip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    path, m, e = _dump(tmp_path)
    frame = SensorSpec.from_entry(e).read(tmp_path)
    want = develop(frame).rgb
    # 1. flags only
    flags = ["--format", "raw12", "--width", "32", "--height", "24", "--stride", str(e["stride"]), "--cfa", "BGGR",
             "--black", str(e["black"]), "--white", str(e["white"]), "--shift", "2", "--wb", "1.8,1.0,1.4",
             "--ccm", ",".join(str(v) for r in e["ccm"] for v in r)]
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "a.png"), *flags]) == 0
    # 2. its entry in a sensor manifest elsewhere; 3. a manifest.json beside it
    (tmp_path / "sensor.json").write_text(json.dumps({"files": [e]}))
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "b.png"), "--sensor", str(tmp_path / "sensor.json")]) == 0
    (tmp_path / "manifest.json").write_text(json.dumps({"files": [e]}))
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "c.png"), "--json"]) == 0
    for name in "abc":
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"{name}.png")), want)
    # a flag overrides the entry; wrong sizes are a clear error (exit 3)
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "d.png"), "--wb", "auto"]) == 0
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "e.png"), "--height", "22"]) == 3
    assert "longer than declared" in capsys.readouterr().err
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "e.png"), "--ccm", "1,x"]) == 3
    assert "--ccm takes comma-separated numbers" in capsys.readouterr().err
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "e.png"), "--ccm", "1,0,0"]) == 3
    assert "field 'ccm'" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps({"files": [{**e, "cfa": "XYZW"}]}))
    assert cli.main(["develop", str(path), "-o", str(tmp_path / "f.png")]) == 3
    assert "field 'cfa'" in capsys.readouterr().err


def test_stretch_follows_libraw() -> None:
    """LibRaw's stretch(): new column i interpolates source columns at i / aspect (written out as loops)."""
    rgb = np.random.default_rng(4).integers(0, 256, (3, 5, 3)).astype(np.uint8)
    aspect = 1.5345911949685533
    out = stretch_to_square(rgb, aspect)
    newdim = int(5 * aspect + 0.5)
    want = np.zeros((3, newdim, 3), np.uint8)
    rc = 0.0
    for col in range(newdim):
        c = int(rc)
        frac = rc - c
        c1 = c + 1 if c + 1 < 5 else c
        want[:, col] = np.floor(rgb[:, c].astype(np.float64) * (1 - frac) + rgb[:, c1] * frac + 0.5)
        rc += 1 / aspect
    assert out.shape == (3, 8, 3)
    np.testing.assert_allclose(out.astype(int), want.astype(int), atol=1)
    tall = stretch_to_square(rgb, 0.5)
    assert tall.shape == (6, 5, 3) and np.array_equal(tall[0], rgb[0]) and np.array_equal(tall[2], rgb[1])


@pytest.mark.data
def test_kodak_dc120_non_square_pixels(shared_data: Path, toy_nip: Path) -> None:
    import rawpy

    kdc = shared_data / "extra" / "raw" / "kodak_dc120" / "P003908.KDC"
    if not kdc.is_file():
        pytest.skip("Kodak DC120 sample not in the data folder")
    frame = RawFrame.from_file(kdc)
    with rawpy.imread(str(kdc)) as raw:
        assert frame.pixel_aspect == pytest.approx(raw.sizes.pixel_aspect)
        libraw_shape = raw.postprocess().shape
    with pytest.raises(RawFormatError, match=r"pixels are not square.*848x976 would be 1301x976.*stretch=True"):
        develop(frame)
    res = develop(frame, stretch=True)
    assert res.rgb.shape == libraw_shape == (976, 1301, 3)


def test_prepare_reports_every_skipped_input(tmp_path: Path) -> None:
    from rawproof_train.prepare import main, prepare

    d = tmp_path / "dumps"
    d.mkdir()
    rng = np.random.default_rng(5)
    good = {"container": "raw12", "width": 64, "height": 48, "cfa": "RGGB", "black": 64, "white": 4095, "wb": "auto"}
    files = []
    for name in ("a", "b", "c", "d"):
        (d / f"{name}.raw12").write_bytes(pack(rng.integers(300, 3000, (48, 64)).astype(np.uint16), "raw12"))
    files = [{**good, "path": "a.raw12"},
             {k: v for k, v in {**good, "path": "b.raw12"}.items() if k != "container"},
             {**good, "path": "c.raw12", "cfa": "RGBG"},
             {**good, "path": "d.raw12", "height": 40}]
    (d / "manifest.json").write_text(json.dumps({"files": files}))
    (d / "notes.txt").write_text("not a frame")
    r = prepare(tmp_path / "out", raws=[d], progress=False)
    reasons = dict(r.skipped)
    assert r.pairs == 1 and len(r.skipped) == 4
    assert "not a camera RAW by its extension and not listed in a manifest.json" in reasons["dumps/notes.txt"]
    assert "missing required field 'container'" in reasons["dumps/b.raw12"]
    assert "field 'cfa'" in reasons["dumps/c.raw12"]
    assert "longer than declared" in reasons["dumps/d.raw12"]
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {s["source"] for s in written["skipped"]} == set(reasons) and written["pairs"][0]["wb_source"] == "grey-world"
    assert main(["--raws", str(d), "--out", str(tmp_path / "strict"), "--strict"]) == 1
    assert not (tmp_path / "strict" / "manifest.json").exists()
