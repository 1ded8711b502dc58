"""Tests for rawproof.provenance. The judge is c2pa's own validator (c2pa.Reader), and
Pillow (libjpeg/libpng) decodes pixels for the checks that signing leaves them alone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import c2pa
import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from PIL import Image

import rawproof
from rawproof.errors import ImageFormatError, SigningError, VerificationError
from rawproof.jumbf import JumbfError
from rawproof.keygen import KeyAlg, generate_test_pki
from rawproof.provenance import (
    CAPTURE_ASSERTION_LABEL,
    DIGITAL_CAPTURE,
    METADATA_ASSERTION_LABEL,
    CaptureInfo,
    ModelRef,
    ProvenanceState,
    Signer,
    SigningAlg,
    TrustState,
    bench_signing,
    build_manifest,
    check_provenance,
    mosaic_sha256,
    sign_image,
    signer_assertion_labels,
)

MIME_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG"}


def encode(fmt: str, seed: int = 0, size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def capture() -> CaptureInfo:
    return CaptureInfo(
        camera_make="Canon",
        camera_model="EOS 550D",
        device_id="CAM-0042",
        raw_sha256=hashlib.sha256(b"raw").hexdigest(),
        nip=ModelRef("nip-unet", hashlib.sha256(b"nip").hexdigest()),
        fan=ModelRef("fan-cnn", hashlib.sha256(b"fan").hexdigest()),
        develop={"jpeg_quality": 90, "tile": 512},
        capture_time="2025-01-31T12:00:00+00:00",
    )


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    return {alg: generate_test_pki(tmp_path_factory.mktemp(alg), alg=alg) for alg in ("es256", "ed25519")}


@pytest.fixture(scope="module")
def es256(pkis):
    return pkis["es256"]


def callback_for(pki):
    """An HSM stand-in: the key stays inside the closure; c2pa only sees signatures."""
    key = serialization.load_pem_private_key(pki.device_key.read_bytes(), password=None)
    if pki.alg.value == "ed25519":
        return key.sign
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def make_signer(pki, kind: str) -> Signer:
    if kind == "files":
        return Signer.from_files(pki.device_chain, pki.device_key, alg=pki.alg)
    return Signer.from_callback(callback_for(pki), pki.device_chain, alg=pki.alg)


@pytest.fixture(scope="module")
def signed_jpeg(es256, capture) -> bytes:
    with make_signer(es256, "files") as signer:
        return sign_image(encode("JPEG"), "image/jpeg", capture, signer)


def claim_assertion_urls(data: bytes, mime: str) -> tuple[list[str], list[str]]:
    """The claim's created and gathered assertion URLs, as c2pa's detailed report gives them."""
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        detailed = json.loads(reader.detailed_json())
    claim = detailed["manifests"][detailed["active_manifest"]]["claim"]
    return [a["url"] for a in claim["created_assertions"]], [a["url"] for a in claim.get("gathered_assertions", [])]


def c2pa_store(data: bytes, mime: str, anchors: bytes) -> dict:
    ctx = c2pa.Context.from_dict({"trust": {"trust_anchors": anchors.decode()}, "verify": {"ocsp_fetch": False}})
    with ctx, c2pa.Reader(mime, io.BytesIO(data), context=ctx) as reader:
        return json.loads(reader.json())


class TestSignAndCheck:
    @pytest.mark.parametrize("kind", ["files", "callback"])
    @pytest.mark.parametrize("alg", ["es256", "ed25519"])
    @pytest.mark.parametrize("mime", ["image/jpeg", "image/png"])
    def test_valid(self, pkis, capture, alg, kind, mime):
        pki = pkis[alg]
        image = encode(MIME_FORMAT[mime])
        with make_signer(pki, kind) as signer:
            signed = sign_image(image, mime, capture, signer)
        assert signed != image
        np.testing.assert_array_equal(pixels(signed), pixels(image))

        # c2pa's own reading of the manifest we wrote.
        store = c2pa_store(signed, mime, pki.root_cert.read_bytes())
        assert store["validation_state"] == "Trusted"
        manifest = store["manifests"][store["active_manifest"]]
        assert manifest["claim_generator_info"][0]["name"] == "rawproof"
        assert manifest["claim_generator_info"][0]["version"] == rawproof.__version__
        assert manifest["signature_info"]["alg"].lower() == alg
        assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
        (created,) = assertions["c2pa.actions.v2"]["actions"]
        assert created["action"] == "c2pa.created"
        assert created["digitalSourceType"] == DIGITAL_CAPTURE
        assert created["when"] == capture.capture_time
        assert assertions[METADATA_ASSERTION_LABEL]["tiff:Make"] == "Canon"
        assert assertions[METADATA_ASSERTION_LABEL]["exif:DateTimeOriginal"] == capture.capture_time
        assert "thumbnail" not in manifest
        # The claim lists actions, capture and metadata among the signer's created assertions.
        created_urls, gathered_urls = claim_assertion_urls(signed, mime)
        for label in ("c2pa.actions.v2", CAPTURE_ASSERTION_LABEL, METADATA_ASSERTION_LABEL):
            assert f"self#jumbf=c2pa.assertions/{label}" in created_urls
        assert gathered_urls == []

        report = check_provenance(signed, trust_anchors=pki.root_cert)
        assert report.state is ProvenanceState.VALID
        assert report.c2pa_state == "Trusted"
        assert report.status_codes == ()
        assert "signingCredential.trusted" in report.success_codes
        assert "assertion.dataHash.match" in report.success_codes
        assert report.active_manifest == store["active_manifest"]
        assert report.capture == capture.to_dict()
        assert report.capture["camera"] == {"make": "Canon", "model": "EOS 550D"}
        assert "CN=rawproof test device rawproof-test-device" in report.signer_subject
        assert "CN=rawproof TEST root CA" in report.signer_issuer
        assert report.signing_time is None  # no TSA configured
        assert report.error is None

    @pytest.mark.parametrize("alg", ["es384", "ps256"])
    def test_other_algorithms(self, tmp_path, capture, alg):
        pki = generate_test_pki(tmp_path, alg=alg)
        with Signer.from_files(pki.device_chain, pki.device_key, alg=alg) as signer:
            signed = sign_image(encode("JPEG"), "image/jpeg", capture, signer)
        assert check_provenance(signed, trust_anchors=pki.root_cert).state is ProvenanceState.VALID

    @pytest.mark.parametrize("encoding", ["der", "raw"])
    def test_callback_ecdsa_signature_encodings(self, es256, capture, encoding):
        key = serialization.load_pem_private_key(es256.device_key.read_bytes(), password=None)

        def sign(data: bytes) -> bytes:
            der = key.sign(data, ec.ECDSA(hashes.SHA256()))
            if encoding == "der":
                return der
            r, s = utils.decode_dss_signature(der)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        with Signer.from_callback(sign, es256.device_chain, alg="es256") as signer:
            signed = sign_image(encode("JPEG"), "image/jpeg", capture, signer)
        assert check_provenance(signed, trust_anchors=es256.root_cert).state is ProvenanceState.VALID

    def test_callback_rsa_pss(self, tmp_path, capture):
        pki = generate_test_pki(tmp_path, alg="ps256")
        key = serialization.load_pem_private_key(pki.device_key.read_bytes(), password=None)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        with Signer.from_callback(lambda d: key.sign(d, pss, hashes.SHA256()), pki.device_chain, "ps256") as signer:
            signed = sign_image(encode("PNG"), "image/png", capture, signer)
        assert check_provenance(signed, trust_anchors=pki.root_cert).state is ProvenanceState.VALID

    def test_thumbnail_option(self, es256, capture):
        with make_signer(es256, "files") as signer:
            signed = sign_image(encode("JPEG"), "image/jpeg", capture, signer, thumbnail=True)
        store = c2pa_store(signed, "image/jpeg", es256.root_cert.read_bytes())
        assert "thumbnail" in store["manifests"][store["active_manifest"]]
        assert check_provenance(signed, trust_anchors=es256.root_cert).state is ProvenanceState.VALID

    def test_input_kinds(self, es256, signed_jpeg, tmp_path):
        path = tmp_path / "signed.jpg"
        path.write_bytes(signed_jpeg)
        anchors_text = es256.root_cert.read_text()
        for image in (path, str(path), io.BytesIO(signed_jpeg), bytearray(signed_jpeg), memoryview(signed_jpeg)):
            assert check_provenance(image, trust_anchors=anchors_text).state is ProvenanceState.VALID

    def test_signer_reused_for_many_images(self, es256, capture):
        with make_signer(es256, "callback") as signer:
            outs = [sign_image(encode("JPEG", seed=s), "image/jpeg", capture, signer) for s in range(3)]
        labels = {check_provenance(o, trust_anchors=es256.root_cert).active_manifest for o in outs}
        assert len(labels) == 3


class TestTampering:
    def test_flip_one_byte_jpeg(self, es256, signed_jpeg):
        tampered = bytearray(signed_jpeg)
        tampered[-200] ^= 0x01  # inside the entropy-coded scan, after the manifest
        report = check_provenance(bytes(tampered), trust_anchors=es256.root_cert)
        assert report.state is ProvenanceState.INVALID
        assert "assertion.dataHash.mismatch" in report.status_codes

    def test_flip_one_byte_png(self, es256, capture):
        with make_signer(es256, "files") as signer:
            signed = sign_image(encode("PNG"), "image/png", capture, signer)
        idat = signed.index(b"IDAT")
        tampered = bytearray(signed)
        tampered[idat + 100] ^= 0x01
        report = check_provenance(bytes(tampered), trust_anchors=es256.root_cert)
        assert report.state is ProvenanceState.INVALID
        assert "assertion.dataHash.mismatch" in report.status_codes

    def test_transplanted_manifest(self, es256, signed_jpeg):
        # Copy the APP11 (JUMBF) segments of the signed JPEG into another JPEG.
        segments, i = [], 2
        while signed_jpeg[i + 1] != 0xDA:  # up to start of scan
            length = int.from_bytes(signed_jpeg[i + 2 : i + 4], "big")
            if signed_jpeg[i + 1] == 0xEB:
                segments.append(signed_jpeg[i : i + 2 + length])
            i += 2 + length
        assert segments
        other = encode("JPEG", seed=7)
        forged = other[:2] + b"".join(segments) + other[2:]
        report = check_provenance(forged, trust_anchors=es256.root_cert)
        assert report.state is ProvenanceState.INVALID
        assert "assertion.dataHash.mismatch" in report.status_codes

    def test_bytes_appended(self, es256, signed_jpeg):
        # c2pa hashes the whole file (minus the manifest), so trailing bytes break the hash.
        report = check_provenance(signed_jpeg + b"\x00" * 64, trust_anchors=es256.root_cert)
        assert report.state is ProvenanceState.INVALID
        assert report.status_codes == ("assertion.dataHash.mismatch",)

    def test_corrupted_manifest(self, es256, signed_jpeg):
        app11 = signed_jpeg.index(b"\xff\xeb")
        broken = bytearray(signed_jpeg)
        broken[app11 + 300 : app11 + 600] = bytes(300)
        report = check_provenance(bytes(broken), trust_anchors=es256.root_cert)
        assert report.state is ProvenanceState.INVALID
        assert report.error or report.status_codes

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
    def test_stripped_by_reencoding(self, es256, signed_jpeg, fmt):
        with Image.open(io.BytesIO(signed_jpeg)) as im:
            buf = io.BytesIO()
            im.save(buf, fmt)
        assert check_provenance(buf.getvalue(), trust_anchors=es256.root_cert).state is ProvenanceState.NO_MANIFEST

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
    def test_unsigned_image(self, fmt):
        report = check_provenance(encode(fmt))
        assert report.state is ProvenanceState.NO_MANIFEST
        assert report.status_codes == () and report.capture is None and report.active_manifest is None


class TestTrust:
    def test_no_trust_anchor(self, signed_jpeg):
        report = check_provenance(signed_jpeg)
        assert report.state is ProvenanceState.UNTRUSTED_SIGNER
        assert report.status_codes == ("signingCredential.untrusted",)
        assert "assertion.dataHash.match" in report.success_codes

    def test_other_root(self, tmp_path, signed_jpeg):
        other = generate_test_pki(tmp_path)
        report = check_provenance(signed_jpeg, trust_anchors=other.root_cert)
        assert report.state is ProvenanceState.UNTRUSTED_SIGNER
        assert "signingCredential.untrusted" in report.status_codes

    def test_device_and_other_anchors(self, es256, signed_jpeg, tmp_path):
        other = generate_test_pki(tmp_path)
        cases = [
            ({"device_anchors": es256.root_cert}, TrustState.DEVICE),
            ({"device_anchors": es256.root_cert, "trust_anchors": other.root_cert}, TrustState.DEVICE),
            ({"device_anchors": other.root_cert, "trust_anchors": es256.root_cert}, TrustState.TRUSTED),
            ({"trust_anchors": es256.root_cert}, TrustState.TRUSTED),
            ({"device_anchors": other.root_cert}, TrustState.UNTRUSTED),
        ]
        for kw, trust in cases:
            report = check_provenance(signed_jpeg, **kw)
            (step,) = report.chain
            assert step.trust is trust, kw
            assert report.state is (ProvenanceState.UNTRUSTED_SIGNER if trust is TrustState.UNTRUSTED else ProvenanceState.VALID)
            assert step.valid and step.is_capture and not step.is_synthetic and step.parent is None
            assert step.capture == report.capture and step.metadata["tiff:Model"] == "EOS 550D"
            assert step.signer_subject == report.signer_subject and step.label == report.active_manifest
        d = check_provenance(signed_jpeg, device_anchors=es256.root_cert).to_dict()
        assert d["chain"][0]["trust"] == "device" and d["chain"][0]["actions"][0]["action"] == "c2pa.created"
        json.dumps(d)

    def test_anchors_do_not_leak_between_calls(self, es256, signed_jpeg):
        assert check_provenance(signed_jpeg, trust_anchors=es256.root_cert).state is ProvenanceState.VALID
        assert check_provenance(signed_jpeg).state is ProvenanceState.UNTRUSTED_SIGNER

    def test_concurrent_calls(self, es256, capture, signed_jpeg):
        anchors = es256.root_cert.read_bytes()
        with make_signer(es256, "callback") as signer:

            def work(i: int) -> tuple[ProvenanceState, ProvenanceState]:
                signed = sign_image(encode("JPEG", seed=i, size=64), "image/jpeg", capture, signer)
                anchored = check_provenance(signed, trust_anchors=anchors if i % 2 else None).state
                return anchored, check_provenance(signed_jpeg, trust_anchors=None if i % 2 else anchors).state

            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(work, range(16)))
        V, U = ProvenanceState.VALID, ProvenanceState.UNTRUSTED_SIGNER
        assert results == [(V, U) if i % 2 else (U, V) for i in range(16)]

    def test_expired_certificate(self, tmp_path, capture):
        now = dt.datetime.now(dt.timezone.utc)
        not_after = now + dt.timedelta(seconds=1.5)
        pki = generate_test_pki(tmp_path, not_before=now - dt.timedelta(days=1), not_after=not_after)
        with make_signer(pki, "files") as signer:
            signed = sign_image(encode("JPEG"), "image/jpeg", capture, signer)
        time.sleep(max(0.0, (not_after - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.0)
        report = check_provenance(signed, trust_anchors=pki.root_cert)
        assert report.state is ProvenanceState.INVALID
        assert "signingCredential.expired" in report.status_codes

    def test_signing_with_expired_certificate(self, tmp_path, capture):
        now = dt.datetime.now(dt.timezone.utc)
        pki = generate_test_pki(tmp_path, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
        with make_signer(pki, "files") as signer, pytest.raises(SigningError, match="not valid at time of signing"):
            sign_image(encode("JPEG"), "image/jpeg", capture, signer)


class TestErrors:
    def test_garbage_image(self):
        with pytest.raises(ImageFormatError):
            check_provenance(b"hello world" * 10)

    def test_empty_image(self):
        with pytest.raises(ImageFormatError):
            check_provenance(b"")

    def test_truncated_image(self, signed_jpeg):
        # Cut inside the manifest store: the JUMBF pre-flight reports it before c2pa parses it.
        with pytest.raises(ImageFormatError, match="declares .* bytes, only .* remain") as info:
            check_provenance(signed_jpeg[:1000])
        assert isinstance(info.value.__cause__, JumbfError)

    def test_unparseable_by_c2pa(self, signed_jpeg):
        # A JPEG c2pa rejects outright (SOI then garbage) while its boxes, none, pass the pre-flight.
        with pytest.raises(ImageFormatError) as info:
            check_provenance(b"\xff\xd8\xff" + bytes(64))
        assert isinstance(info.value.__cause__, c2pa.C2paError)

    def test_bad_trust_anchors(self, signed_jpeg):
        bad = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
        with pytest.raises(VerificationError, match="trust anchors"):
            check_provenance(signed_jpeg, trust_anchors=bad)

    def test_unsupported_alg(self, es256):
        with pytest.raises(SigningError, match="unsupported signing algorithm"):
            Signer.from_files(es256.device_chain, es256.device_key, alg="es999")

    def test_alg_does_not_fit_key(self, es256):
        with pytest.raises(SigningError, match="does not fit ed25519"):
            Signer.from_files(es256.device_chain, es256.device_key, alg="ed25519")
        with pytest.raises(SigningError, match="does not fit ed25519"):
            Signer.from_callback(callback_for(es256), es256.device_chain, alg="ed25519")

    def test_bad_key(self, es256, tmp_path):
        bad = tmp_path / "bad.pem"
        bad.write_bytes(b"not a key")
        with pytest.raises(SigningError, match="private key") as info:
            Signer.from_files(es256.device_chain, bad, alg="es256")
        assert info.value.__cause__ is not None

    def test_missing_key_file(self, es256, tmp_path):
        with pytest.raises(SigningError) as info:
            Signer.from_files(es256.device_chain, tmp_path / "absent.pem")
        assert isinstance(info.value.__cause__, FileNotFoundError)

    def test_bad_certificate(self, es256):
        with pytest.raises(SigningError, match="certificate chain") as info:
            Signer.from_files(b"garbage", es256.device_key)
        assert isinstance(info.value.__cause__, ValueError)

    def test_mismatched_key_and_certificate(self, es256, tmp_path):
        other = generate_test_pki(tmp_path)
        with pytest.raises(SigningError, match="does not belong"):
            Signer.from_files(es256.device_chain, other.device_key)

    def test_callback_raises(self, es256, capture):
        def hsm_down(data: bytes) -> bytes:
            raise RuntimeError("HSM unavailable")

        with Signer.from_callback(hsm_down, es256.device_chain) as signer:
            with pytest.raises(SigningError, match="callback failed") as info:
                sign_image(encode("JPEG"), "image/jpeg", capture, signer)
        assert isinstance(info.value.__cause__, RuntimeError)

    def test_callback_wrong_key(self, es256, capture, tmp_path):
        other = generate_test_pki(tmp_path)
        with Signer.from_callback(callback_for(other), es256.device_chain) as signer:
            with pytest.raises(SigningError) as info:
                sign_image(encode("JPEG"), "image/jpeg", capture, signer)
        assert isinstance(info.value.__cause__, c2pa.C2paError)

    def test_callback_not_callable(self, es256):
        with pytest.raises(SigningError, match="callable"):
            Signer.from_callback(b"key", es256.device_chain)

    def test_unsupported_mime(self, es256, capture):
        with make_signer(es256, "files") as signer, pytest.raises(SigningError, match="image/gif"):
            sign_image(b"GIF89a", "image/gif", capture, signer)

    def test_unparsable_image_to_sign(self, es256, capture):
        with make_signer(es256, "files") as signer, pytest.raises(SigningError):
            sign_image(b"\xff\xd8\xff garbage", "image/jpeg", capture, signer)

    def test_device_id_from_certificate(self, es256, tmp_path):
        with make_signer(es256, "files") as signer:
            assert signer.device_id == "rawproof-test-device"  # the subject serialNumber keygen writes
            assert signer.tsa_url is None

    def test_unreachable_tsa(self, es256, capture):
        # Port 9 (discard) on 127.0.0.1: nothing listens, so the time stamp cannot be had.
        with Signer.from_files(es256.device_chain, es256.device_key, tsa_url="http://127.0.0.1:9/") as signer:
            with pytest.raises(SigningError):
                sign_image(encode("JPEG"), "image/jpeg", capture, signer)

    def test_closed_signer(self, es256, capture):
        signer = make_signer(es256, "files")
        signer.close()
        signer.close()  # idempotent
        assert signer.closed
        with pytest.raises(SigningError, match="closed"):
            sign_image(encode("JPEG"), "image/jpeg", capture, signer)


class TestCaptureInfo:
    def test_build_manifest(self, capture):
        manifest = build_manifest(capture)
        assert manifest["claim_generator_info"] == [{"name": "rawproof", "version": rawproof.__version__}]
        labels = [a["label"] for a in manifest["assertions"]]
        assert labels == ["c2pa.actions.v2", CAPTURE_ASSERTION_LABEL, METADATA_ASSERTION_LABEL]
        action = manifest["assertions"][0]["data"]["actions"][0]
        assert action["action"] == "c2pa.created"
        assert action["digitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
        assert action["when"] == capture.capture_time
        # A later assertion (e.g. c2pa.soft-binding) is signer-attributed by the same mechanism.
        extra = {**manifest, "assertions": [*manifest["assertions"], {"label": "org.example.more.v2", "data": {}}]}
        assert signer_assertion_labels(extra) == ["c2pa.actions", CAPTURE_ASSERTION_LABEL, METADATA_ASSERTION_LABEL,
                                                  "c2pa.soft-binding", "org.example.more"]
        data = manifest["assertions"][1]["data"]
        assert data["nip"] == {"name": "nip-unet", "sha256": capture.nip.sha256}
        assert data["fan"]["name"] == "fan-cnn"
        assert data["develop"] == {"jpeg_quality": 90, "tile": 512}
        assert data["sdk_version"] == rawproof.__version__
        json.dumps(manifest)  # must be JSON for c2pa

    def test_develop_is_read_only_copy(self, capture):
        params = {"q": 1}
        info = CaptureInfo("a", "b", "c", "0" * 64, capture.nip, "2025-01-01T00:00:00Z", develop=params)
        params["q"] = 2
        assert info.develop["q"] == 1
        with pytest.raises(TypeError):
            info.develop["q"] = 3  # type: ignore[index]

    @pytest.mark.parametrize(
        "override, match",
        [
            ({"raw_sha256": "ABC"}, "raw_sha256"),
            ({"develop_time": "2025-01-01T00:00:00"}, "UTC offset"),
            ({"capture_time": "yesterday"}, "ISO 8601"),
            ({"develop_time": "yesterday"}, "ISO 8601"),
            ({"develop": {"f": object()}}, "JSON"),
            ({"develop": {"f": float("nan")}}, "JSON"),
        ],
    )
    def test_invalid(self, capture, override, match):
        fields = dict(
            camera_make="a", camera_model="b", device_id="c", raw_sha256="0" * 64, nip=capture.nip,
            capture_time="2025-01-01T00:00:00+00:00",
        )
        fields.update(override)
        with pytest.raises(ValueError, match=match):
            CaptureInfo(**fields)

    def test_capture_time_without_offset_or_unknown(self, es256, capture):
        # A RAW records its camera's wall clock without a zone: kept as it is, and no action "when"
        # (C2PA wants RFC 3339 there). No time at all: absent everywhere, never the develop time.
        for when in ("2022-01-20T08:15:52", None):
            info = dataclasses.replace(capture, capture_time=when, develop_time="2026-01-01T10:00:00+00:00")
            manifest = build_manifest(info)
            action = manifest["assertions"][0]["data"]["actions"][0]
            assert "when" not in action
            meta = manifest["assertions"][2]["data"]
            assert meta.get("exif:DateTimeOriginal") == when
            assert manifest["assertions"][1]["data"]["capture_time"] == when
            assert manifest["assertions"][1]["data"]["develop_time"] == "2026-01-01T10:00:00+00:00"
            with make_signer(es256, "files") as signer:
                signed = sign_image(encode("JPEG"), "image/jpeg", info, signer)
            assert check_provenance(signed, device_anchors=es256.root_cert).capture["capture_time"] == when

    def test_model_ref_invalid(self):
        with pytest.raises(ValueError, match="sha256"):
            ModelRef("nip", "xyz")
        with pytest.raises(ValueError, match="name"):
            ModelRef("", "0" * 64)

    def test_mosaic_sha256(self):
        mosaic = np.arange(24, dtype=np.uint16).reshape(4, 6) * 1000
        ref = hashlib.sha256(b"".join(int(v).to_bytes(2, "little") for v in mosaic.ravel())).hexdigest()
        assert mosaic_sha256(mosaic) == ref
        assert mosaic_sha256(mosaic.astype(">u2")) == ref  # byte order does not matter
        wide = np.zeros((4, 12), np.uint16)
        wide[:, ::2] = mosaic
        assert mosaic_sha256(wide[:, ::2]) == ref  # nor do strides
        with pytest.raises(ValueError, match="uint16"):
            mosaic_sha256(mosaic.astype(np.float32))

    def test_signing_alg_parse(self):
        assert SigningAlg.parse("ES256") is SigningAlg.ES256
        assert SigningAlg.parse(SigningAlg.ED25519) is SigningAlg.ED25519
        assert SigningAlg.parse(KeyAlg.ED25519) is SigningAlg.ED25519


def test_bench_signing_smoke():
    rows = bench_signing(width=320, height=240, repeats=1)
    by = {r["name"]: r for r in rows}
    if shutil.which("openssl") is None:  # no local TSA: its rows are left out
        assert list(by) == ["sign_jpeg_no_thumbnail", "sign_jpeg_thumbnail", "check_provenance_jpeg"]
        return
    assert list(by) == ["sign_jpeg_no_thumbnail", "sign_jpeg_tsa", "tsa_added", "sign_jpeg_thumbnail",
                        "check_provenance_jpeg"]
    assert all(r["repeats"] == 1 for r in rows) and all(by[n]["best_ms"] > 0 for n in by if n != "tsa_added")
    assert by["sign_jpeg_no_thumbnail"]["target_ms"] == 15.0 and by["tsa_added"]["target_ms"] == 20.0
    assert by["tsa_added"]["median_ms"] == pytest.approx(by["sign_jpeg_tsa"]["median_ms"] - by["sign_jpeg_no_thumbnail"]["median_ms"])
