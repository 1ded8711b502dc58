"""rawproof.softbinding: ISCC Image-Codes of the crop grid, and the c2pa.soft-binding assertion as c2pa reads it."""

from __future__ import annotations

import io
import json

import c2pa
import numpy as np
import pytest
from PIL import Image

from _repo_server import jpeg_bytes, photo_like
from rawproof import softbinding as sb
from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, Signer, check_provenance, sign_image


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_code_matches_iscc_core_reference() -> None:
    """The whole-frame code equals iscc-core's own gen_image_code_v0 on the same 32x32 luma."""
    from iscc_core import gen_image_code_v0

    rgb = photo_like(1, 256, 256)  # below the 512 px reduce side: luma goes straight to 32x32
    pixels = np.asarray(Image.fromarray(rgb).convert("L").resize((32, 32), Image.BICUBIC)).ravel().tolist()
    assert sb.format_value(sb.image_code(rgb)) == gen_image_code_v0(pixels, bits=64)["iscc"]


def test_value_round_trip_and_errors() -> None:
    code = sb.image_code(photo_like(2))
    value = sb.format_value(code)
    assert value.startswith("ISCC:EE")
    assert sb.parse_value(value) == code
    assert sb.decode_query(sb.encode_query(value)) == value
    for bad in ("", "ISCC:AAAQ", "ISCC:" + "A" * 70, "not a code", "ISCC:KACYPXW445FTYNJ3CYSXHAFJMA2HUWULUNRFE3BLHRSCXYH2M5AEGQY"):
        with pytest.raises(ValueError):
            sb.parse_value(bad)
    with pytest.raises(ValueError):
        sb.decode_query("%%%")
    with pytest.raises(ValueError):
        sb.image_code(np.zeros((4, 4, 3), np.uint8))
    assert sb.soft_binding_assertion(np.zeros((4, 4, 3), np.uint8)) is None  # too small: no assertion


def test_flat_frames_get_no_soft_binding() -> None:
    """Flat frames all hash alike (they would match each other's manifests), so they get none."""
    flat = [np.full((64, 64, 3), v, np.uint8) for v in (0, 128, 255)]
    noisy_flat = np.clip(128 + np.random.default_rng(0).normal(0, 0.5, (64, 64, 3)), 0, 255).astype(np.uint8)
    for img in [*flat, noisy_flat]:
        assert not sb.has_content(img) and sb.soft_binding_assertion(img) is None
    assert sb.has_content(photo_like(9)) and sb.soft_binding_assertion(photo_like(9)) is not None
    with pytest.raises(ValueError):
        sb.image_code(np.zeros((32, 32), np.uint8))


def test_robust_to_scale_and_reencode_not_to_other_images() -> None:
    rgb = photo_like(3, 640, 480)
    code = sb.image_code(rgb)
    half = np.asarray(Image.fromarray(rgb).resize((320, 240), Image.BILINEAR))
    for copy in (_decode(jpeg_bytes(half, 50)), _decode(jpeg_bytes(rgb, 60, "WEBP"))):
        assert sb.hamming(sb.image_code(copy), code) <= sb.MATCH_THRESHOLD
    others = [sb.image_code(photo_like(100 + i, 640, 480)) for i in range(10)]
    assert min(sb.hamming(code, o) for o in others) > sb.MATCH_THRESHOLD


def test_crop_matches_a_grid_block() -> None:
    """A 10 % corner crop is far from the whole-frame code but near the matching 90 % window's block."""
    rgb = photo_like(4, 640, 480)
    blocks = sb.soft_binding_blocks(rgb)
    assert len(blocks) == len(sb.REGIONS) == 19
    crop = rgb[48:, 64:]  # bottom-right 90 % x 90 %
    code = sb.image_code(crop)
    dists = [sb.hamming(code, sb.parse_value(b["value"])) for b in blocks]
    best = int(np.argmin(dists))
    assert dists[best] <= sb.MATCH_THRESHOLD
    assert sb.region_of_block(blocks[best]) == sb.Region(0.1, 0.1, 0.9, 0.9)
    assert sb.region_of_block(blocks[0]).is_full and blocks[0]["scope"] == {}


def test_assertion_is_created_and_read_back_by_c2pa(tmp_path) -> None:
    """c2pa's own Reader lists c2pa.soft-binding among the claim's created_assertions, blocks intact."""
    pki = generate_test_pki(tmp_path, alg="es256")
    rgb = photo_like(5)
    soft = sb.soft_binding_assertion(rgb)
    capture = CaptureInfo(camera_make="A", camera_model="B", device_id="d", raw_sha256="0" * 64,
                          nip=ModelRef("n", "1" * 64), capture_time="2025-01-01T00:00:00+00:00")
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        signed = sign_image(jpeg_bytes(rgb), "image/jpeg", capture, signer, soft_binding=soft)
    with c2pa.Reader("image/jpeg", io.BytesIO(signed)) as reader:
        detailed = json.loads(reader.detailed_json())
        store = json.loads(reader.json())
    claim = detailed["manifests"][detailed["active_manifest"]]["claim"]
    created = [e["url"] for e in claim["created_assertions"]]
    assert any(u.endswith("/c2pa.soft-binding") for u in created)
    gathered = [e["url"] for e in claim.get("gathered_assertions", [])]
    assert not any(u.endswith("/c2pa.soft-binding") for u in gathered)
    data = next(a["data"] for a in store["manifests"][store["active_manifest"]]["assertions"] if a["label"] == sb.LABEL)
    assert data["alg"] == "io.iscc.v0" and data["blocks"] == soft["blocks"]
    report = check_provenance(signed, trust_anchors=pki.root_cert)
    assert report.soft_binding is not None and report.soft_binding["blocks"][0]["value"] == sb.format_value(sb.image_code(rgb))
