"""Tests for rawproof.jumbf, the pre-flight that keeps c2pa from sizing buffers off hostile
length fields. Signed images come from c2pa itself; c2pa's validator is the judge that the
pre-flight passes what c2pa accepts."""

from __future__ import annotations

import hashlib
import io
import resource
import zlib

import numpy as np
import pytest
from PIL import Image

from rawproof.jumbf import JumbfError, check_boxes, check_manifest_boxes, manifest_stores
from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, ProvenanceState, Signer, check_provenance, sign_image


def box(tbox: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + tbox + payload


def noise_jpeg(w: int, h: int, fmt: str = "JPEG") -> bytes:
    rgb = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def app11_segments(jpeg: bytes) -> list[bytes]:
    out, i = [], 2
    while jpeg[i + 1] != 0xDA:
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if jpeg[i + 1] == 0xEB:
            out.append(jpeg[i + 4 : i + 2 + length])
        i += 2 + length
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return generate_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def signed(pki) -> dict[str, bytes]:
    capture = CaptureInfo(
        camera_make="Fuzz",
        camera_model="Cam",
        device_id="CAM-1",
        raw_sha256=hashlib.sha256(b"raw").hexdigest(),
        nip=ModelRef("nip", hashlib.sha256(b"nip").hexdigest()),
        capture_time="2025-01-31T12:00:00+00:00",
    )
    with Signer.from_files(pki.device_chain, pki.device_key) as signer:
        return {
            # A noise thumbnail makes the manifest store larger than one 64 kB APP11 segment.
            "jpeg_multi": sign_image(noise_jpeg(1024, 768), "image/jpeg", capture, signer, thumbnail=True),
            "jpeg": sign_image(noise_jpeg(64, 48), "image/jpeg", capture, signer),
            "png": sign_image(noise_jpeg(64, 48, "PNG"), "image/png", capture, signer),
        }


MIME = {"jpeg_multi": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


@pytest.mark.parametrize("name", list(MIME))
def test_c2pa_made_stores_pass(signed, pki, name):
    data = signed[name]
    stores = manifest_stores(data, MIME[name])
    assert len(stores) == 1
    # The outer superbox's own length field must account for exactly the reassembled bytes.
    assert int.from_bytes(stores[0][:4], "big") == len(stores[0]) and stores[0][4:8] == b"jumb"
    check_manifest_boxes(data, MIME[name])
    assert check_provenance(data, trust_anchors=pki.root_cert).state is ProvenanceState.VALID
    if name == "jpeg_multi":
        assert len(app11_segments(data)) > 1


def test_unsigned_images_have_no_store():
    assert manifest_stores(noise_jpeg(16, 16), "image/jpeg") == []
    assert manifest_stores(noise_jpeg(16, 16, "PNG"), "image/png") == []
    assert manifest_stores(noise_jpeg(16, 16, "WEBP"), "image/webp") == []
    with pytest.raises(ValueError, match="no JUMBF extractor"):
        manifest_stores(b"GIF89a", "image/gif")


def test_webp_chunk_is_found():
    store = box(b"jumb", box(b"jumd", b"c2pa\x00"))
    webp = noise_jpeg(16, 16, "WEBP")
    chunk = b"C2PA" + len(store).to_bytes(4, "little") + store + b"\x00" * (len(store) & 1)
    body = webp[12:] + chunk
    data = b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body
    assert manifest_stores(data, "image/webp") == [store]


def _first_cbor_box(data: bytes) -> int:
    """File offset of the length field of the first ``cbor`` box (not a ``jumd`` type UUID,
    which also starts with ``cbor``, but the box whose payload opens with a CBOR map)."""
    i = data.index(b"cbor")
    while not 0xA0 <= data[i + 4] <= 0xBF:
        i = data.index(b"cbor", i + 1)
    return i - 4


def patched(data: bytes, at: int, new: bytes) -> bytes:
    """``data`` with ``new`` written at ``at``; in a PNG the enclosing chunk's CRC is redone so
    that only the manifest is broken, not the file."""
    out = bytearray(data)
    out[at : at + len(new)] = new
    if out.startswith(b"\x89PNG"):
        i = 8
        while not i + 8 <= at < i + 8 + int.from_bytes(out[i : i + 4], "big"):
            i += 12 + int.from_bytes(out[i : i + 4], "big")
        end = i + 8 + int.from_bytes(out[i : i + 4], "big")
        out[end : end + 4] = zlib.crc32(out[i + 4 : end]).to_bytes(4, "big")
    return bytes(out)


@pytest.mark.parametrize("name", ["jpeg", "png"])
def test_box_shorter_than_its_header(signed, pki, name):
    data = patched(signed[name], _first_cbor_box(signed[name]), (2).to_bytes(4, "big"))
    with pytest.raises(JumbfError, match="less than its 8-byte header"):
        check_manifest_boxes(data, MIME[name])
    report = check_provenance(data, trust_anchors=pki.root_cert)
    assert report.state is ProvenanceState.INVALID and "header" in report.error


def test_box_longer_than_its_parent(signed):
    data = patched(signed["jpeg"], _first_cbor_box(signed["jpeg"]), (0x7FFFFFFF).to_bytes(4, "big"))
    with pytest.raises(JumbfError, match="only .* remain"):
        check_manifest_boxes(data, "image/jpeg")


@pytest.mark.parametrize("name", ["jpeg", "png"])
def test_cbor_string_declaring_gigabytes(signed, pki, name):
    """The fuzzer's finding: a text string header inside an assertion declaring ~1.9 GB.

    Without the pre-flight c2pa grows the process by ~2 GB on this input.
    """
    # CBOR text(4) "make" in the capture assertion -> a text string of length 0x70000000.
    data = patched(signed[name], signed[name].index(b"dmake"), b"\x7a\x70\x00\x00\x00")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = check_provenance(data, trust_anchors=pki.root_cert)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert report.state is ProvenanceState.INVALID
    assert "does not decode" in report.error and "premature end" in report.error
    assert grown_mb < 200


class TestCheckBoxes:
    def test_well_formed_tree(self):
        check_boxes(box(b"jumb", box(b"jumd", b"c2pa\x00") + box(b"cbor", b"\xa1\x01\x02") + box(b"json", b"{}")))

    def test_xlbox_and_to_end(self):
        payload = b"\xa0"
        xl = (1).to_bytes(4, "big") + b"cbor" + (16 + len(payload)).to_bytes(8, "big") + payload
        check_boxes(xl)
        check_boxes(box(b"jumd", b"x") + (0).to_bytes(4, "big") + b"bidb" + b"anything at all")

    @pytest.mark.parametrize(
        ("buf", "message"),
        [
            (b"\x00\x00\x00\x10jum", "stray byte"),
            ((1).to_bytes(4, "big") + b"cbor\x00\x00", "XLBox but is cut short"),
            ((1).to_bytes(4, "big") + b"cbor" + (8).to_bytes(8, "big"), "less than its 16-byte header"),
            (box(b"jumb", (64).to_bytes(4, "big") + b"jumd"), "only 8 remain"),
            (box(b"cbor", b"\x5b" + (1 << 40).to_bytes(8, "big")), "does not decode"),
            (box(b"cbor", b"\xd2\x84\x42\xa1\x01\xa0\xf6\x40"), "does not decode"),  # COSE header cut
        ],
    )
    def test_malformed(self, buf, message):
        with pytest.raises(JumbfError, match=message):
            check_boxes(buf)

    def test_nesting_bound(self):
        inner = box(b"jumd", b"x")
        for _ in range(40):
            inner = box(b"jumb", inner)
        with pytest.raises(JumbfError, match="nested deeper"):
            check_boxes(inner)
