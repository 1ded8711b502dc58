"""Tests of rawproof.verify: provenance x traces -> verdict, summary, heatmap, CLI exit codes.

Signed images are made with provenance.sign_image and a generate_test_pki root; the
forensic part uses the toy FAN of ``_toy_fan`` (blur detector). The CLI is run through
``rawproof.cli.main`` with ``rawproof.verify`` added to its command list.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from _toy_fan import blur, noise_image, toy_fan_path
from rawproof import cli
from rawproof.errors import ImageFormatError, VerificationError
from rawproof.forensics import LEGEND_HEIGHT, LEGEND_WIDTH, Traces
from rawproof.keygen import generate_test_pki
from rawproof.models import file_sha256
from rawproof.provenance import CaptureInfo, ModelRef, ProvenanceState, Signer, sign_image
from rawproof.verify import Verdict, VerifyReport, bench_verify, save_heatmap, verify

H, W = 96, 160


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fan_dir():
    return toy_fan_path().parent


@pytest.fixture(autouse=True)
def _models(fan_dir, monkeypatch):
    monkeypatch.setenv("RAWPROOF_MODELS", str(fan_dir))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return generate_test_pki(tmp_path_factory.mktemp("pki"), alg="es256")


def _capture(fan_sha: str | None) -> CaptureInfo:
    return CaptureInfo(
        camera_make="Test", camera_model="Cam", device_id="dev-1", raw_sha256="a" * 64,
        nip=ModelRef("nip", "b" * 64), capture_time="2025-01-31T12:00:00+00:00",
        fan=None if fan_sha is None else ModelRef("toy_fan", fan_sha), develop={"format": "png"},
    )


@pytest.fixture(scope="module")
def signed(pki, fan_dir):
    """name -> signed bytes: native PNG, native JPEG, and a PNG blurred before signing.

    The camera originals are 2x nearest-neighbour upscales, so the 2x box downscale that
    verify applies to a camera original gives back exactly the H x W image the toy FAN
    was trained on (noise, or blurred noise).
    """
    capture = _capture(file_sha256(fan_dir / "toy_fan.onnx"))
    small = noise_image(H, W, seed=3)

    def up(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)

    rgb = up(small)
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        return {
            "png": sign_image(_png(rgb), "image/png", capture, signer),
            "jpeg": sign_image(_jpeg(rgb), "image/jpeg", capture, signer),
            "blurred_png": sign_image(_png(up(blur(small))), "image/png", capture, signer),
            "unknown_fan": sign_image(_png(rgb), "image/png", _capture("c" * 64), signer),
            "capture": capture,
        }


def _run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(cli, "_COMMAND_MODULES", list(dict.fromkeys([*cli._COMMAND_MODULES, "rawproof.verify"])))
    code = cli.main(["verify", *argv])
    return code, capsys.readouterr().out


def _flip_scan_byte(jpeg: bytes) -> bytes:
    """Flip one bit in the entropy-coded data, away from markers, so the file still decodes."""
    sos = jpeg.rindex(b"\xff\xda")
    data = bytearray(jpeg)
    i = sos + (len(jpeg) - sos) // 2
    while data[i] == 0xFF or data[i - 1] == 0xFF or data[i] ^ 0x01 == 0xFF:
        i += 1
    data[i] ^= 0x01
    return bytes(data)


def test_signed_png_is_authentic(signed, pki):
    r = verify(signed["png"], device_anchors=pki.root_cert)
    assert r.provenance.state is ProvenanceState.VALID
    assert r.capture == signed["capture"].to_dict()
    assert r.verdict is Verdict.AUTHENTIC and r.exit_code == 0
    fa = r.forensics
    assert fa.fan_source == "manifest" and fa.fan_name == "toy_fan"
    assert r.scale_mode == "camera-original" and fa.scale == 0.5 and fa.analysed_size == (H, W)
    assert fa.traces is Traces.CONSISTENT
    assert r.summary.startswith("authentic: device capture signed by") and "consistent with an unedited capture" in r.summary
    assert (r.width, r.height, r.image_format) == (2 * W, 2 * H, "PNG")


def test_signed_jpeg_valid_and_assertion_parsed(signed, pki):
    r = verify(signed["jpeg"], device_anchors=pki.root_cert)
    assert r.provenance.state is ProvenanceState.VALID
    assert r.capture["fan"]["name"] == "toy_fan" and r.capture["device_id"] == "dev-1"
    assert r.verdict is Verdict.AUTHENTIC


def test_signed_but_manipulated_before_signing(signed, pki):
    r = verify(signed["blurred_png"], device_anchors=pki.root_cert)
    assert r.provenance.state is ProvenanceState.VALID
    assert r.verdict is Verdict.MANIPULATED and r.exit_code == 1
    assert "Gaussian blur" in r.summary


def test_untrusted_signer(signed):
    r = verify(signed["png"])
    assert r.provenance.state is ProvenanceState.UNTRUSTED_SIGNER
    assert r.verdict is Verdict.UNTRUSTED and r.exit_code == 2
    assert r.summary.startswith("untrusted signer")


def test_tampered_jpeg_invalid_and_cli_exit_1(signed, pki, tmp_path, monkeypatch, capsys):
    tampered = _flip_scan_byte(signed["jpeg"])
    r = verify(tampered, device_anchors=pki.root_cert)
    assert r.provenance.state is ProvenanceState.INVALID
    assert r.verdict is Verdict.INVALID_SIGNATURE and r.exit_code == 1
    assert "assertion.dataHash.mismatch" in r.summary
    path = tmp_path / "t.jpg"
    path.write_bytes(tampered)
    code, out = _run_cli([str(path), "--trust-device", str(pki.root_cert)], monkeypatch, capsys)
    assert code == 1 and "INVALID_SIGNATURE" in out


def test_stripped_manifest_consistent_and_manipulated(monkeypatch, capsys, tmp_path):
    rgb = noise_image(H, W, seed=4)
    r = verify(_png(rgb))
    assert r.provenance.state is ProvenanceState.NO_MANIFEST and r.capture is None
    assert r.verdict is Verdict.NO_PROVENANCE_CONSISTENT and r.exit_code == 2
    assert r.scale_mode == "as-is" and r.forensics.scale == 1.0 and r.forensics.fan_source == "default"
    assert r.summary.startswith("no provenance (no C2PA manifest); traces consistent with an unedited capture")
    edited = rgb.copy()
    edited[:, : W // 2] = blur(rgb)[:, : W // 2]
    r2 = verify(_png(edited))
    assert r2.verdict is Verdict.NO_PROVENANCE_MANIPULATED and r2.exit_code == 2
    assert "traces of Gaussian blur in" in r2.summary and "regions: " in r2.summary and "left" in r2.summary
    path = tmp_path / "e.png"
    path.write_bytes(_png(edited))
    code, out = _run_cli([str(path)], monkeypatch, capsys)
    assert code == 2 and "NO_PROVENANCE_MANIPULATED" in out


def test_outside_the_trained_channel_is_inconclusive(monkeypatch, capsys, tmp_path):
    import dataclasses

    from rawproof.models import load_model_info

    toy = load_model_info(toy_fan_path())
    jpeg_fan = dataclasses.replace(toy, metadata={**toy.metadata, "trained_channel": {"downscale": 2, "jpeg_quality": 50}})
    rgb = noise_image(H, W, seed=4)
    edited = rgb.copy()
    edited[:, : W // 2] = blur(rgb)[:, : W // 2]
    # as a PNG, or a JPEG at another quality or chroma layout, the image left the trained channel
    buf = io.BytesIO()
    Image.fromarray(edited).save(buf, "JPEG", quality=50, subsampling=2)
    for data, why in [(_png(edited), "a PNG image"), (_jpeg(edited, 90), "JPEG q90 420"), (buf.getvalue(), "JPEG q50 420")]:
        r = verify(data, fan=jpeg_fan)
        assert r.verdict is Verdict.NO_PROVENANCE_INCONCLUSIVE and r.exit_code == 2
        assert r.forensics.out_of_channel.startswith(why) and "trained behind JPEG q50 444" in r.forensics.out_of_channel
        assert "forensic analysis inconclusive" in r.summary and r.forensics.traces is Traces.MANIPULATED
        assert r.to_dict()["forensics"]["out_of_channel"] == r.forensics.out_of_channel
    # inside it (q50 4:4:4) the traces decide as before, and the file's encoding is reported
    buf = io.BytesIO()
    Image.fromarray(edited).save(buf, "JPEG", quality=50, subsampling=0)
    r = verify(buf.getvalue(), fan=jpeg_fan)
    assert r.verdict is Verdict.NO_PROVENANCE_MANIPULATED and r.forensics.out_of_channel is None
    assert r.to_dict()["image"] | {} == {**r.to_dict()["image"], "jpeg_quality": 50, "jpeg_subsampling": "444"}
    # the CLI says so too
    path = tmp_path / "e.png"
    path.write_bytes(_png(edited))
    import sys

    monkeypatch.setattr(sys.modules["rawproof.verify"], "_resolve_fan", lambda fan, capture, models_dir=None: (jpeg_fan, "explicit", None))
    code, out = _run_cli([str(path)], monkeypatch, capsys)
    assert code == 2 and "NO_PROVENANCE_INCONCLUSIVE" in out and "outside the FAN's trained channel: a PNG image" in out


def test_input_kinds_give_the_same_report(signed, pki, tmp_path):
    path = tmp_path / "s.png"
    path.write_bytes(signed["png"])

    def strip(r: VerifyReport) -> dict:
        d = r.to_dict()
        d.pop("timings_ms")
        d["forensics"].pop("fan_ms")
        return d

    reports = [verify(src, device_anchors=pki.root_cert) for src in
               (signed["png"], path, str(path), io.BytesIO(signed["png"]))]
    assert all(strip(r) == strip(reports[0]) for r in reports[1:])


def test_garbage_raises_and_cli_exits_3(tmp_path, monkeypatch, capsys):
    with pytest.raises(ImageFormatError):
        verify(b"this is not an image")
    path = tmp_path / "g.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"garbage" * 10)
    code, _ = _run_cli([str(path)], monkeypatch, capsys)
    assert code == 3
    code, _ = _run_cli([str(tmp_path / "missing.png")], monkeypatch, capsys)
    assert code == 3


def test_cli_usage_error_exits_3(monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _run_cli(["x.png", "--scale", "3"], monkeypatch, capsys)
    assert e.value.code == 3


def test_cli_json_and_heatmap(signed, pki, tmp_path, monkeypatch, capsys):
    path, heat = tmp_path / "s.png", tmp_path / "heat.png"
    path.write_bytes(signed["png"])
    code, out = _run_cli([str(path), "--trust-device", str(pki.root_cert), "--json", "--heatmap", str(heat), "--stride", "8"],
                         monkeypatch, capsys)
    assert code == 0
    d = json.loads(out)
    assert d["verdict"] == "authentic" and d["exit_code"] == 0 and d["provenance"]["state"] == "valid"
    f = d["forensics"]
    assert f["stride"] == 8 and np.array(f["p_manipulated"]).shape == (len(f["grid_y"]), len(f["grid_x"]))
    assert f["grid_y"][-1] + f["patch_size"] == H
    with Image.open(heat) as im:
        assert im.format == "PNG" and im.size == (max(2 * W, LEGEND_WIDTH), 2 * H + LEGEND_HEIGHT)


def test_save_heatmap_and_heatmap_false(signed, pki, tmp_path):
    r = verify(signed["png"], device_anchors=pki.root_cert)
    out = save_heatmap(r, tmp_path / "h.png")
    with Image.open(out) as im:
        assert im.size == (max(2 * W, LEGEND_WIDTH), 2 * H + LEGEND_HEIGHT)
    lean = verify(signed["png"], device_anchors=pki.root_cert, heatmap=False)
    assert lean.preview is None and lean.forensics.p_manipulated.size == 0
    assert lean.verdict is r.verdict and lean.summary == r.summary
    with pytest.raises(VerificationError, match="heatmap=False"):
        save_heatmap(lean, tmp_path / "x.png")


def test_scale_options(signed, pki):
    r = verify(signed["png"], device_anchors=pki.root_cert, scale="none")
    assert r.scale_mode == "none" and r.forensics.analysed_size == (2 * H, 2 * W)
    r = verify(signed["png"], device_anchors=pki.root_cert, scale=0.25)
    assert r.scale_mode == "explicit" and r.forensics.analysed_size == (H // 2, W // 2)
    with pytest.raises(ValueError):
        verify(signed["png"], scale="big")


def test_fan_selection(signed, pki, tmp_path, monkeypatch):
    r = verify(signed["unknown_fan"], device_anchors=pki.root_cert)
    assert r.forensics.fan_source == "default" and "is not installed" in r.forensics.reason
    r = verify(signed["png"], device_anchors=pki.root_cert, fan=toy_fan_path())
    assert r.forensics.fan_source == "explicit"
    monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path))  # empty: no FAN installed
    r = verify(signed["png"], device_anchors=pki.root_cert)
    assert r.verdict is Verdict.AUTHENTIC and r.forensics.traces is Traces.UNAVAILABLE
    assert "forensic analysis unavailable: no FAN model installed" in r.summary
    r = verify(_png(noise_image(40, 40, seed=1)))
    assert r.verdict is Verdict.NO_PROVENANCE_UNANALYZED and r.exit_code == 2


def test_bench_verify_reports_each_stage():
    rows = bench_verify(320, 240, repeats=1)
    names = [r["name"] for r in rows]
    assert names == ["check_provenance", "decode", "fan_camera_original", "fan_full_resolution", "verify_total"]
    assert all(r["median_ms"] > 0 for r in rows)
    by = {r["name"]: r for r in rows}
    assert by["fan_full_resolution"]["patches"] > by["fan_camera_original"]["patches"]


def test_text_report_tells_the_truth_without_heatmap(monkeypatch, capsys, tmp_path):
    """The grid size is reported without --heatmap (it once read "0x0 patches"), and --help's stride default is the code's."""
    from rawproof.forensics import patch_origins

    rgb = noise_image(H, W, seed=21)
    edited = rgb.copy()
    edited[:, : W // 2] = blur(rgb)[:, : W // 2]
    path = tmp_path / "e.png"
    path.write_bytes(_png(edited))
    code, out = _run_cli([str(path)], monkeypatch, capsys)
    r = verify(_png(edited))
    ny, nx = patch_origins(H, r.forensics.patch_size, r.forensics.patch_size).size, patch_origins(W, r.forensics.patch_size, r.forensics.patch_size).size
    assert f"{ny}x{nx} patches of {r.forensics.patch_size} px stride {r.forensics.patch_size}" in out and "0x0" not in out
    assert out.count("patches, mass") == len(r.forensics.regions) >= 1  # every region listed
    with pytest.raises(SystemExit):
        _run_cli(["--help"], monkeypatch, capsys)
    assert "default: the FAN's patch size, no overlap" in " ".join(capsys.readouterr().out.split())
