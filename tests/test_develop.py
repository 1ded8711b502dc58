"""Tests of rawproof.develop: develop() end to end, DevelopResult encode/save, signing, CLI, bench."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _onnx_models import NipWeights, make_nip, nip_reference, write_model
from rawproof.develop import (
    DevelopResult,
    ImageEncoding,
    SensorBuffer,
    bench_develop,
    develop,
    encode_image,
    register,
)
from rawproof.errors import ModelError, ProviderError, RawFormatError, SigningError
from rawproof.raw import CFA, RawFrame
from rawproof.runtime import clear_session_cache

BLACK, WHITE, WB = 64.0, 4095.0, (2.0, 1.0, 1.0, 1.5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    write_model(make_nip(NipWeights()), d / "tiny.onnx", {"name": "tiny", "kind": "nip", "receptive_field": 5})
    return d


@pytest.fixture(autouse=True)
def _models_env(model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAWPROOF_MODELS", str(model_dir))
    yield
    clear_session_cache()


@pytest.fixture(scope="module")
def frame() -> RawFrame:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    scene = 0.5 + 0.4 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    mosaic = (BLACK + scene * 3000 + rng.normal(0, 20, scene.shape)).clip(0, WHITE).astype(np.uint16)
    return RawFrame(mosaic=mosaic, cfa=CFA.RGGB, black=BLACK, white=WHITE, wb=WB, camera="Acme Cam 1", device_id="SN42")


def _reference_rgb(frame: RawFrame) -> np.ndarray:
    """numpy: RGGB planes, black/white normalisation, WB, clip; numpy NIP; clip, round; clipped sensor values white."""
    m = frame.mosaic.astype(np.float64)
    planes = [m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2]]
    stack = np.stack([np.clip((p - BLACK) / (WHITE - BLACK) * g, 0, 1) for p, g in zip(planes, WB)]).astype(np.float32)
    rgb = np.rint(np.clip(nip_reference(stack, NipWeights()), 0, 1) * 255).transpose(1, 2, 0)
    # R from plane 0, G where both greens are clipped, B from plane 3: each 2x2 output block of a clipped quad is 255
    for c, clipped in enumerate((stack[0] >= 1, (stack[1] >= 1) & (stack[2] >= 1), stack[3] >= 1)):
        rgb[..., c][np.kron(clipped, np.ones((2, 2))).astype(bool)] = 255
    return rgb


class TestDevelop:
    def test_matches_numpy_pipeline(self, frame: RawFrame, model_dir: Path) -> None:
        res = develop(frame, tile=16)
        assert isinstance(res, DevelopResult)
        assert res.rgb.shape == (96, 128, 3) and res.rgb.dtype == np.uint8 and (res.height, res.width) == (96, 128)
        diff = np.abs(res.rgb.astype(int) - _reference_rgb(frame))
        assert diff.max() <= 1 and np.mean(diff > 0) < 1e-2
        assert res.model_name == "tiny"
        assert res.model_sha256 == hashlib.sha256((model_dir / "tiny.onnx").read_bytes()).hexdigest()
        assert res.provider == "CPUExecutionProvider" and res.tiles == 12 and res.signed is None

    def test_result_is_frozen_and_readonly(self, frame: RawFrame) -> None:
        res = develop(frame)
        with pytest.raises(ValueError):
            res.rgb[0, 0, 0] = 1
        with pytest.raises(AttributeError):
            res.provider = "x"  # type: ignore[misc]

    def test_raw_sha256(self, frame: RawFrame) -> None:
        from rawproof.provenance import mosaic_sha256

        res = develop(frame)
        assert res.raw_sha256 == hashlib.sha256(frame.mosaic.astype("<u2").tobytes()).hexdigest() == mosaic_sha256(frame.mosaic)

    def test_timings(self, frame: RawFrame) -> None:
        t = develop(frame).timings
        d = t.as_dict()
        assert set(d) == {"model_ms", "unpack_ms", "stack_ms", "hash_ms", "nip_ms", "quantize_ms", "encode_ms", "sign_ms", "total_ms",
                          "softbind_ms", "publish_ms"}
        assert all(v >= 0 for v in d.values()) and t.unpack_ms == 0 and t.encode_ms == 0 and t.sign_ms == 0
        assert t.softbind_ms == 0 and t.publish_ms == 0
        assert t.nip_ms > 0 and t.total_ms >= t.nip_ms + t.stack_ms

    def test_whole_frame_equals_tiled(self, frame: RawFrame) -> None:
        assert np.abs(develop(frame, tile=0).rgb.astype(int) - develop(frame, tile=16).rgb).max() <= 1

    def test_sensor_buffer(self, frame: RawFrame) -> None:
        buf = SensorBuffer(frame.mosaic.astype("<u2").tobytes(), 128, 96, "u16le", "RGGB", BLACK, WHITE, wb=WB)
        a, b = develop(buf), develop(frame)
        assert np.array_equal(a.rgb, b.rgb) and a.raw_sha256 == b.raw_sha256
        assert a.timings.unpack_ms > 0

    def test_truncated_sensor_buffer(self) -> None:
        with pytest.raises(RawFormatError):
            develop(SensorBuffer(b"\x00" * 100, 128, 96, "u16le", "RGGB", BLACK, WHITE))

    def test_file_path(self, shared_data: Path) -> None:
        dng = shared_data / "raw" / "canon550d_colorchart.dng"
        res = develop(dng)
        frame = RawFrame.from_file(dng)
        assert res.rgb.shape == (frame.height, frame.width, 3)
        assert res.raw_sha256 == hashlib.sha256(frame.mosaic.astype("<u2").tobytes()).hexdigest()

    def test_model_by_path_and_name(self, frame: RawFrame, model_dir: Path) -> None:
        assert develop(frame, model="tiny").model_name == develop(frame, model=model_dir / "tiny.onnx").model_name == "tiny"

    def test_no_shipped_model(self, frame: RawFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path))
        with pytest.raises(ModelError, match="no shipped NIP model found in .*; export one with python -m rawproof_export"):
            develop(frame)

    def test_unknown_provider(self, frame: RawFrame) -> None:
        with pytest.raises(ProviderError):
            develop(frame, providers=["FooExecutionProvider"])

    def test_bad_input_type(self) -> None:
        with pytest.raises(TypeError, match="RawFrame, SensorBuffer or file path"):
            develop(np.zeros((4, 4), np.uint16))  # type: ignore[arg-type]


class TestEncodeSave:
    def test_png_lossless(self, frame: RawFrame, tmp_path: Path) -> None:
        res = develop(frame)
        p = res.save(tmp_path / "out.png")
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            assert np.array_equal(np.asarray(im), res.rgb)

    @pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
    def test_jpeg(self, frame: RawFrame, tmp_path: Path, suffix: str) -> None:
        res = develop(frame)
        p = res.save(tmp_path / f"out{suffix}", quality=95)
        ref = io.BytesIO()
        Image.fromarray(res.rgb).save(ref, "JPEG", quality=95)  # reference: Pillow/libjpeg directly
        with Image.open(p) as im, Image.open(ref) as want:
            assert im.format == "JPEG" and im.size == (128, 96)
            assert im.quantization == want.quantization
            assert np.array_equal(np.asarray(im), np.asarray(want))

    def test_encode_quality_changes_size(self, frame: RawFrame) -> None:
        res = develop(frame)
        assert len(res.encode("jpeg", 30)) < len(res.encode("jpeg", 95))
        assert res.encode(ImageEncoding.PNG)[:8] == b"\x89PNG\r\n\x1a\n"

    def test_errors(self, frame: RawFrame, tmp_path: Path) -> None:
        res = develop(frame)
        with pytest.raises(ValueError, match="unsupported image format"):
            res.save(tmp_path / "out.tiff")
        with pytest.raises(ValueError, match="quality"):
            res.encode("jpeg", 0)
        with pytest.raises(ValueError, match="uint8 H x W x 3"):
            encode_image(np.zeros((4, 4), np.uint8))


class TestSigning:
    @pytest.fixture(scope="class")
    def pki(self, tmp_path_factory: pytest.TempPathFactory):
        from rawproof.keygen import generate_test_pki

        return generate_test_pki(tmp_path_factory.mktemp("pki"), device_id="SN42")

    def test_signed_develop_validates(self, frame: RawFrame, pki, tmp_path: Path) -> None:
        from rawproof.provenance import ProvenanceState, Signer, check_provenance

        with Signer.from_files(pki.device_chain, pki.device_key, alg=pki.alg.value) as signer:
            res = develop(frame, signer=signer, quality=90)
        assert res.signed is not None and res.signed_format is ImageEncoding.JPEG and res.quality == 90
        assert res.timings.encode_ms > 0 and res.timings.sign_ms > 0
        report = check_provenance(res.signed, trust_anchors=pki.root_cert)
        assert report.state is ProvenanceState.VALID
        cap = report.capture
        assert cap["raw_sha256"] == res.raw_sha256
        assert cap["nip"] == {"name": "tiny", "sha256": res.model_sha256}
        assert cap["camera"] == {"make": "Acme", "model": "Cam 1"} and cap["device_id"] == "SN42"
        assert cap["develop"]["quality"] == 90 and cap["develop"]["subsampling"] == "420"
        # Capture facts: the frame records no capture time, so none is claimed; the develop time is separate.
        assert cap["capture_time"] is None and "when" not in report.chain[0].actions[0]
        assert datetime.fromisoformat(cap["develop_time"]).tzinfo is not None
        # The file is encoded as recorded (libjpeg's chroma layout read back) and carries the EXIF.
        from rawproof.imageio import decode_rgb

        assert decode_rgb(res.signed).jpeg_subsampling == "420"
        with Image.open(io.BytesIO(res.signed)) as im:
            exif = im.getexif()
        assert (exif[0x010F], exif[0x0110]) == ("Acme", "Cam 1") and 0x9003 not in exif.get_ifd(0x8769)
        p = res.save(tmp_path / "signed.jpg")
        assert p.read_bytes() == res.signed
        with pytest.raises(ValueError, match="signed as jpeg"):
            res.save(tmp_path / "signed.png")
        with pytest.raises(ValueError, match="quality 90"):
            res.save(tmp_path / "signed.jpg", quality=95)

    @pytest.mark.parametrize("fmt", ["jpeg", "png"])
    def test_created_assertions_capture_time_and_device_id(self, frame: RawFrame, pki, fmt: str) -> None:
        import c2pa

        from rawproof.provenance import Signer, check_provenance

        anonymous = dataclasses.replace(frame, device_id="", capture_time="2022-01-20T08:15:52")
        with Signer.from_files(pki.device_chain, pki.device_key, alg=pki.alg.value) as signer:
            res = develop(anonymous, signer=signer, fmt=fmt, quality=80, subsampling="444")
        # c2pa's own reader: actions, capture and metadata are the signer's created assertions.
        with c2pa.Reader(f"image/{fmt}", io.BytesIO(res.signed)) as reader:
            detailed = json.loads(reader.detailed_json())
        claim = detailed["manifests"][detailed["active_manifest"]]["claim"]
        created = {a["url"].rsplit("/", 1)[-1] for a in claim["created_assertions"]}
        assert {"c2pa.actions.v2", "org.rawproof.capture", "c2pa.metadata"} <= created
        assert not claim.get("gathered_assertions")
        report = check_provenance(res.signed, device_anchors=pki.root_cert)
        cap = report.capture
        assert cap["device_id"] == "SN42" == signer.device_id  # from the certificate's serialNumber
        assert cap["capture_time"] == "2022-01-20T08:15:52"
        assert report.chain[0].metadata["exif:DateTimeOriginal"] == "2022-01-20T08:15:52"
        with Image.open(io.BytesIO(res.signed)) as im:
            assert im.getexif().get_ifd(0x8769)[0x9003] == "2022:01:20 08:15:52"
        if fmt == "png":
            assert "quality" not in cap["develop"] and "subsampling" not in cap["develop"] and res.quality is None
        else:
            assert cap["develop"]["quality"] == 80 and cap["develop"]["subsampling"] == "444"
            from rawproof.imageio import decode_rgb

            assert decode_rgb(res.signed).jpeg_subsampling == "444"

    def test_capture_overrides(self, frame: RawFrame, pki) -> None:
        from rawproof.provenance import CaptureInfo, ModelRef, Signer, check_provenance

        base = CaptureInfo(camera_make="Other", camera_model="X", device_id="D", raw_sha256="0" * 64,
                           nip=ModelRef("fake", "1" * 64), capture_time="2025-01-31T12:00:00+00:00", develop={"iso": 100})
        with Signer.from_files(pki.device_chain, pki.device_key, alg=pki.alg.value) as signer:
            res = develop(frame, signer=signer, capture=base, fmt="png")
        cap = check_provenance(res.signed, trust_anchors=pki.root_cert).capture
        assert cap["raw_sha256"] == res.raw_sha256 and cap["nip"]["name"] == "tiny" and "quality" not in cap["develop"]
        assert cap["capture_time"] == "2025-01-31T12:00:00+00:00" and cap["develop"]["iso"] == 100
        assert cap["camera"]["make"] == "Other"
        with Image.open(io.BytesIO(res.signed)) as im:
            assert im.format == "PNG" and np.array_equal(np.asarray(im), res.rgb)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


class TestCli:
    def test_json(self, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "o.png"
        assert _cli(["develop", str(shared_data / "raw" / "canon550d_colorchart.dng"), "-o", str(out), "--tile", "256", "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        assert rep["model"]["name"] == "tiny" and rep["provider"] == "CPUExecutionProvider" and not rep["signed"]
        assert {"nip_ms", "stack_ms", "unpack_ms", "write_ms"} <= set(rep["timings_ms"])
        with Image.open(out) as im:
            assert im.size == (rep["width"], rep["height"])

    def test_text_and_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(RawFormatError, match="no such file"):
            _cli(["develop", str(tmp_path / "none.dng")])

    def test_signed_crw_with_time_stamp(self, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        # A 2002 PowerShot CRW: the signed capture time is the camera's (as LibRaw reads it), not today.
        import shutil

        import rawpy

        from rawproof.keygen import generate_test_pki
        from rawproof.provenance import check_provenance
        from rawproof.tsa import LocalTsa

        crw = shared_data / "extra" / "raw" / "canon_powershot_s40" / "CRW_0101.CRW"
        if not crw.is_file() or shutil.which("openssl") is None:
            pytest.skip("needs the extra CRW files and the openssl command-line tool")
        pki = generate_test_pki(tmp_path / "pki", device_id="S40-0001")
        out = tmp_path / "s40.jpg"
        with LocalTsa() as tsa:
            args = ["develop", str(crw), "-o", str(out), "--tile", "256", "--quality", "85", "--subsampling", "444",
                    "--sign-cert", str(pki.device_chain), "--sign-key", str(pki.device_key), "--tsa", tsa.url]
            assert _cli(args) == 0 and tsa.requests == 1
            report = check_provenance(out, device_anchors=pki.root_cert, tsa_anchors=tsa.root_pem)
        with rawpy.imread(str(crw)) as raw:
            libraw = datetime.fromtimestamp(raw.other.timestamp.timestamp(), timezone.utc).replace(tzinfo=None)
        cap = report.capture
        assert cap["capture_time"] == libraw.isoformat() == "2021-04-08T14:51:12"
        assert cap["camera"] == {"make": "Canon", "model": "PowerShot S40"} and cap["device_id"] == "S40-0001"
        assert cap["develop"]["subsampling"] == "444" and cap["develop"]["quality"] == 85
        assert report.chain[0].time_stamp_trusted and report.signing_time is not None
        with pytest.raises(SigningError, match="--tsa needs"):
            _cli(["develop", str(crw), "-o", str(out), "--tsa", "http://127.0.0.1:9/"])


class TestBench:
    def test_rows(self) -> None:
        rows = bench_develop(64, 48, repeats=1)
        assert len(rows) == 1
        r = rows[0]
        assert r["model"] == "tiny" and r["width"] == 64 and r["height"] == 48 and r["provider"] == "CPUExecutionProvider"
        assert r["nip_ms"] > 0 and r["total_ms"] >= r["nip_ms"]

    def test_no_models(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path))
        assert bench_develop(64, 48) == []
