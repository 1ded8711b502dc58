"""The verdict table of docs/provenance.md: one test per row, each judged twice.

The reference judge is c2pa-python's own ``Reader`` (validation state, failure codes,
ingredient deltas, created assertions); the second is ``rawproof.verify()`` (verdict and
exit code). Files are made the way a camera, an editing tool and a generator would make
them: rawproof's ``sign_image`` for captures, c2pa's ``Builder`` with a ``parentOf``
ingredient for edits, a ``c2pa.created`` of an AI source type for generated images.
The time-stamp rows use a real RFC 3161 responder (``rawproof.tsa.LocalTsa``: OpenSSL
``ts -reply`` on 127.0.0.1).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import time
from typing import Any

import c2pa
import numpy as np
import pytest
from PIL import Image

from rawproof import cli
from rawproof.keygen import TestPki, generate_test_pki
from rawproof.provenance import (
    CAPTURE_ASSERTION_LABEL, DIGITAL_CAPTURE, CaptureInfo, ModelRef, ProvenanceState, Signer, TrustState, sign_image,
)
from rawproof.verify import Verdict, verify

AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _image(fmt: str, seed: int = 0, size: int = 64) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


CAPTURE = CaptureInfo(camera_make="Canon", camera_model="EOS 550D", device_id="CAM-1", raw_sha256="a" * 64,
                      nip=ModelRef("nip", "b" * 64), capture_time="2022-01-20T08:15:52",
                      develop={"format": "jpeg", "quality": 90, "subsampling": "4:2:0"},
                      develop_time="2026-01-01T00:00:00+00:00")


@pytest.fixture(autouse=True)
def _no_fan(tmp_path, monkeypatch):
    # No FAN installed: the verdicts below rest on provenance alone, as the table says.
    monkeypatch.setenv("RAWPROOF_MODELS", str(tmp_path / "no-models"))


@pytest.fixture(scope="module")
def pkis(tmp_path_factory) -> dict[str, TestPki]:
    return {name: generate_test_pki(tmp_path_factory.mktemp(name), device_id=name)
            for name in ("camera", "editor", "retoucher", "generator", "stranger")}


def reference(data: bytes, mime: str, *anchors: TestPki, tsa_root: bytes = b"") -> dict[str, Any]:
    """c2pa's own report (Reader.json), anchors = the given roots, offline."""
    pem = "".join(p.root_cert.read_text() for p in anchors) + tsa_root.decode()
    settings: dict[str, Any] = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}}
    if pem:
        settings["trust"] = {"trust_anchors": pem}
    with c2pa.Context.from_dict(settings) as ctx, c2pa.Reader(mime, io.BytesIO(data), context=ctx) as reader:
        return json.loads(reader.json())


def failures(store: dict[str, Any]) -> set[str]:
    return {e["code"] for e in store["validation_results"]["activeManifest"]["failure"]}


def capture_of(pki: TestPki, fmt: str = "JPEG", seed: int = 0, tsa_url: str | None = None) -> bytes:
    with Signer.from_files(pki.device_chain, pki.device_key, tsa_url=tsa_url) as signer:
        return sign_image(_image(fmt, seed), f"image/{fmt.lower()}", CAPTURE, signer)


def edit_of(parent: bytes, pki: TestPki, actions: list[dict[str, Any]], seed: int = 1) -> bytes:
    """What an editing tool writes: its own manifest, the signed parent as ``parentOf`` ingredient."""
    manifest = {"claim_generator_info": [{"name": "photo-editor", "version": "1.0"}], "title": "edited.jpg",
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [
                    {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}, *actions]}}]}
    with Signer.from_files(pki.device_chain, pki.device_key) as signer, \
            c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as ctx, \
            c2pa.Builder(manifest, ctx) as builder:
        builder.add_ingredient({"title": "parent.jpg", "relationship": "parentOf", "instance_id": "parent"},
                               "image/jpeg", io.BytesIO(parent))
        out = io.BytesIO()
        builder.sign(signer._handle, "image/jpeg", io.BytesIO(_image("JPEG", seed)), out)
        return out.getvalue()


def generated_by(pki: TestPki, *, with_capture_assertion: bool) -> bytes:
    """A generator's manifest: c2pa.created of source type trainedAlgorithmicMedia."""
    assertions: list[dict[str, Any]] = [{"label": "c2pa.actions.v2", "data": {"actions": [
        {"action": "c2pa.created", "digitalSourceType": AI, "softwareAgent": {"name": "image-model"}}]}}]
    if with_capture_assertion:  # a generator that also copies rawproof's capture assertion
        assertions.append({"label": CAPTURE_ASSERTION_LABEL, "data": CAPTURE.to_dict()})
    with Signer.from_files(pki.device_chain, pki.device_key) as signer, \
            c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as ctx, \
            c2pa.Builder({"claim_generator_info": [{"name": "gen", "version": "1"}], "assertions": assertions}, ctx) as b:
        out = io.BytesIO()
        b.sign(signer._handle, "image/jpeg", io.BytesIO(_image("JPEG", 5)), out)
        return out.getvalue()


def cli_exit(data: bytes, tmp_path, args: list[str], capsys) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "x.img"
    path.write_bytes(data)
    code = cli.main(["verify", str(path), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_device_capture_is_authentic(pkis, tmp_path, capsys):
    for fmt in ("JPEG", "PNG"):
        signed = capture_of(pkis["camera"], fmt)
        store = reference(signed, f"image/{fmt.lower()}", pkis["camera"])
        assert store["validation_state"] == "Trusted"
        assertions = {a["label"]: a for a in store["manifests"][store["active_manifest"]]["assertions"]}
        created = assertions["c2pa.actions.v2"]["data"]["actions"][0]
        assert (created["action"], created["digitalSourceType"]) == ("c2pa.created", DIGITAL_CAPTURE)
        # The device signature stands behind them: c2pa lists them among the claim's created assertions.
        assert all(assertions[label].get("created") for label in ("c2pa.actions.v2", CAPTURE_ASSERTION_LABEL, "c2pa.metadata"))
        r = verify(signed, device_anchors=pkis["camera"].root_cert)
        assert r.verdict is Verdict.AUTHENTIC and r.exit_code == 0
        assert r.provenance.chain[0].trust is TrustState.DEVICE and r.provenance.chain[0].is_capture
    code, out = cli_exit(signed, tmp_path, ["--trust-device", str(pkis["camera"].root_cert)], capsys)
    assert code == 0 and out["verdict"] == "authentic"
    # The same capture with its root given as an ordinary trusted signer: not a device, not authentic.
    r = verify(signed, trust_anchors=pkis["camera"].root_cert)
    assert r.provenance.state is ProvenanceState.VALID and r.provenance.chain[0].trust is TrustState.TRUSTED
    assert r.verdict is Verdict.ORIGIN_UNVERIFIED and r.exit_code == 2


def test_trusted_edit_chain_is_edited_with_steps(pkis, tmp_path, capsys):
    capture = capture_of(pkis["camera"])
    once = edit_of(capture, pkis["editor"], [{"action": "c2pa.cropped"}, {"action": "c2pa.color_adjustments"}])
    twice = edit_of(once, pkis["retoucher"], [{"action": "c2pa.filtered", "description": "sharpen"}], seed=2)
    store = reference(twice, "image/jpeg", pkis["camera"], pkis["editor"], pkis["retoucher"])
    assert store["validation_state"] == "Trusted"
    deltas = store["validation_results"]["ingredientDeltas"]
    assert deltas and all(not d["validationDeltas"]["failure"] for d in deltas)
    assert len(store["manifests"]) == 3

    trust = pkis["editor"].root_cert.read_text() + pkis["retoucher"].root_cert.read_text()
    r = verify(twice, device_anchors=pkis["camera"].root_cert, trust_anchors=trust)
    assert r.verdict is Verdict.EDITED and r.exit_code == 2
    chain = r.provenance.chain
    assert [s.trust for s in chain] == [TrustState.TRUSTED, TrustState.TRUSTED, TrustState.DEVICE]
    assert [a["action"] for a in chain[0].actions] == ["c2pa.opened", "c2pa.filtered"]
    assert [a["action"] for a in chain[1].actions] == ["c2pa.opened", "c2pa.cropped", "c2pa.color_adjustments"]
    assert "CN=rawproof test device retoucher" in chain[0].signer_subject
    assert "CN=rawproof test device editor" in chain[1].signer_subject
    assert chain[2].is_capture and r.capture == CAPTURE.to_dict()
    assert "1. created by" in r.summary and "3. opened, filtered by" in r.summary
    # JSON carries the whole chain.
    code, out = cli_exit(twice, tmp_path, ["--trust-device", str(pkis["camera"].root_cert), "--trust", trust], capsys)
    assert code == 2 and out["verdict"] == "edited"
    steps = out["provenance"]["chain"]
    assert [s["trust"] for s in steps] == ["trusted", "trusted", "device"]
    assert steps[2]["capture"]["camera"] == {"make": "Canon", "model": "EOS 550D"} and steps[1]["parent"] == steps[2]["label"]
    # Only the camera trusted: the edits are by unknown signers, so nothing vouches for them.
    r = verify(twice, device_anchors=pkis["camera"].root_cert)
    assert r.verdict is Verdict.UNTRUSTED and r.provenance.chain[-1].trust is TrustState.DEVICE


def test_altered_history_is_invalid_signature(pkis, tmp_path, capsys):
    capture = capture_of(pkis["camera"])
    edited = edit_of(capture, pkis["editor"], [{"action": "c2pa.cropped"}])
    # The store holds the capture's manifest first: flip one byte of its claim signature box.
    altered = bytearray(edited)
    altered[edited.index(b"c2pa.signature") + 60] ^= 0x01
    store = reference(bytes(altered), "image/jpeg", pkis["camera"], pkis["editor"])
    assert store["validation_state"] == "Invalid" and not failures(store)  # the active manifest itself is intact
    deltas = {e["code"] for d in store["validation_results"]["ingredientDeltas"] for e in d["validationDeltas"]["failure"]}
    assert "claimSignature.mismatch" in deltas
    r = verify(bytes(altered), device_anchors=pkis["camera"].root_cert, trust_anchors=pkis["editor"].root_cert)
    assert r.verdict is Verdict.INVALID_SIGNATURE and r.exit_code == 1
    assert r.provenance.chain[0].valid and not r.provenance.chain[1].valid
    assert "invalid signature in the history" in r.summary and "claimSignature.mismatch" in r.summary


def test_trusted_edit_of_an_unsigned_photo_has_no_verified_origin(pkis):
    edited = edit_of(_image("JPEG", seed=3), pkis["editor"], [{"action": "c2pa.cropped"}])
    store = reference(edited, "image/jpeg", pkis["editor"])
    assert store["validation_state"] == "Trusted" and len(store["manifests"]) == 1
    r = verify(edited, device_anchors=pkis["camera"].root_cert, trust_anchors=pkis["editor"].root_cert)
    assert r.verdict is Verdict.ORIGIN_UNVERIFIED and r.exit_code == 2
    (step,) = r.provenance.chain
    assert step.parent is None and step.parent_title == "parent.jpg" and "carries no manifest" in r.summary
    assert r.capture is None


def test_ai_generated_by_trusted_key_is_never_authentic(pkis):
    for pki, anchors in ((pkis["generator"], "trust_anchors"), (pkis["camera"], "device_anchors")):
        for copy_capture in (False, True):
            data = generated_by(pki, with_capture_assertion=copy_capture)
            store = reference(data, "image/jpeg", pki)
            assert store["validation_state"] == "Trusted"
            r = verify(data, **{anchors: pki.root_cert})
            assert r.verdict is Verdict.SYNTHETIC and r.exit_code == 2, r.summary
            assert "trainedAlgorithmicMedia" in r.summary
    # An AI edit of a device capture (generative fill) is declared, and not an authentic capture either.
    capture = capture_of(pkis["camera"])
    filled = edit_of(capture, pkis["editor"], [{"action": "c2pa.edited", "digitalSourceType": AI}])
    r = verify(filled, device_anchors=pkis["camera"].root_cert, trust_anchors=pkis["editor"].root_cert)
    assert r.verdict is Verdict.SYNTHETIC


def test_untrusted_signer(pkis):
    signed = capture_of(pkis["stranger"])
    store = reference(signed, "image/jpeg", pkis["camera"])
    assert store["validation_state"] == "Valid" and failures(store) == {"signingCredential.untrusted"}
    r = verify(signed, device_anchors=pkis["camera"].root_cert, trust_anchors=pkis["editor"].root_cert)
    assert r.verdict is Verdict.UNTRUSTED and r.exit_code == 2
    assert r.provenance.chain[0].trust is TrustState.UNTRUSTED


def test_remote_manifest_unreachable_is_unavailable(pkis, tmp_path, capsys):
    from rawproof.provenance import build_manifest

    with Signer.from_files(pkis["camera"].device_chain, pkis["camera"].device_key) as signer, \
            c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as ctx, \
            c2pa.Builder(build_manifest(CAPTURE), ctx) as builder:
        builder.set_no_embed()
        builder.set_remote_url("http://127.0.0.1:9/manifests/capture.c2pa")
        out = io.BytesIO()
        builder.sign(signer._handle, "image/jpeg", io.BytesIO(_image("JPEG")), out)
        remote = out.getvalue()
    with pytest.raises(c2pa.C2paError, match="Remote"):
        reference(remote, "image/jpeg", pkis["camera"])
    r = verify(remote, device_anchors=pkis["camera"].root_cert)
    assert r.verdict is Verdict.MANIFEST_UNAVAILABLE and r.exit_code == 2
    assert r.provenance.state is ProvenanceState.UNAVAILABLE
    assert r.provenance.remote_url == "http://127.0.0.1:9/manifests/capture.c2pa"
    code, out = cli_exit(remote, tmp_path, [], capsys)
    assert code == 2 and out["provenance"]["remote_url"] == r.provenance.remote_url


def _flip_in_scan(jpeg: bytes) -> bytes:
    sos = jpeg.rindex(b"\xff\xda")
    data = bytearray(jpeg)
    i = sos + (len(jpeg) - sos) // 2
    while data[i] == 0xFF or data[i - 1] == 0xFF or data[i] ^ 0x01 == 0xFF:
        i += 1
    data[i] ^= 0x01
    return bytes(data)


def _transplant(signed: bytes, other: bytes) -> bytes:
    segments, i = [], 2
    while signed[i + 1] != 0xDA:
        length = int.from_bytes(signed[i + 2: i + 4], "big")
        if signed[i + 1] == 0xEB:
            segments.append(signed[i: i + 2 + length])
        i += 2 + length
    return other[:2] + b"".join(segments) + other[2:]


@pytest.mark.parametrize("case", ["jpeg_bit", "png_bit", "transplant"])
def test_tampering_is_invalid_signature(pkis, case, tmp_path, capsys):
    if case == "png_bit":
        signed = capture_of(pkis["camera"], "PNG")
        tampered = bytearray(signed)
        tampered[signed.index(b"IDAT") + 40] ^= 0x01  # the chunk CRC now fails: Pillow cannot decode it
        data, mime = bytes(tampered), "image/png"
        with pytest.raises(Exception):
            with Image.open(io.BytesIO(data)) as im:
                im.load()
    elif case == "jpeg_bit":
        data, mime = _flip_in_scan(capture_of(pkis["camera"])), "image/jpeg"
    else:
        data, mime = _transplant(capture_of(pkis["camera"]), _image("JPEG", seed=9)), "image/jpeg"
    store = reference(data, mime, pkis["camera"])
    assert store["validation_state"] == "Invalid" and "assertion.dataHash.mismatch" in failures(store)
    r = verify(data, device_anchors=pkis["camera"].root_cert)
    assert r.verdict is Verdict.INVALID_SIGNATURE and r.exit_code == 1
    code, out = cli_exit(data, tmp_path, ["--trust-device", str(pkis["camera"].root_cert)], capsys)
    assert code == 1 and out["verdict"] == "invalid_signature"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the local TSA needs the openssl command-line tool")
def test_expired_certificate_with_and_without_time_stamp(tmp_path):
    from rawproof.provenance import add_time_stamp
    from rawproof.tsa import LocalTsa

    now = dt.datetime.now(dt.timezone.utc)
    not_after = now + dt.timedelta(seconds=4)
    short = generate_test_pki(tmp_path, device_id="CAM-2", not_before=now - dt.timedelta(days=1), not_after=not_after)
    with LocalTsa() as tsa:
        stamped = capture_of(short, tsa_url=tsa.url)
        plain = capture_of(short)
        assert tsa.requests == 1
        # Signed offline, time-stamped once online (before the certificate expires): an update manifest.
        with Signer.from_files(short.device_chain, short.device_key, tsa_url=tsa.url) as online:
            later = add_time_stamp(plain, "image/jpeg", online)
        kw = {"device_anchors": short.root_cert, "tsa_anchors": tsa.root_pem}
        assert {verify(x, **kw).verdict for x in (stamped, plain, later)} == {Verdict.AUTHENTIC}
        time.sleep(max(0.0, (not_after - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.0)
        # After expiry: a time stamp proves the signature was made while the certificate was valid.
        for data in (stamped, later):
            store = reference(data, "image/jpeg", short, tsa_root=tsa.root_pem)
            assert store["validation_state"] == "Trusted", data is later
            r = verify(data, **kw)
            assert r.verdict is Verdict.AUTHENTIC and r.exit_code == 0, r.summary
        assert "timeStamp.trusted" in {e["code"] for e in reference(stamped, "image/jpeg", short, tsa_root=tsa.root_pem)
                                       ["validation_results"]["activeManifest"]["success"]}
        r = verify(stamped, **kw)
        assert r.provenance.chain[0].time_stamp_trusted and r.provenance.signing_time is not None
        r = verify(later, **kw)
        update, capture = r.provenance.chain
        assert update.is_update and not capture.is_update and capture.is_capture
        assert [a["action"] for a in update.actions] == ["c2pa.opened"] and "later updated" in r.summary
        # Without one, nothing dates the signature: expired.
        store = reference(plain, "image/jpeg", short, tsa_root=tsa.root_pem)
        assert store["validation_state"] == "Invalid" and "signingCredential.expired" in failures(store)
        r = verify(plain, **kw)
        assert r.verdict is Verdict.INVALID_SIGNATURE and "signingCredential.expired" in r.summary
