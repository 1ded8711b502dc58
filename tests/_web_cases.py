"""Images for the verify page's tests, one per verdict class, built like tests/test_verify.py's
(captures) and tests/test_verdict_table.py's (edits with c2pa's Builder and a ``parentOf``
ingredient, generated images).

Trust: the camera PKI is the server's device anchor; the editor PKI is an ordinary trusted
signer (believed about edits, not captures); another vendor's PKI is not trusted at all.

The forensic part uses the toy FAN of ``_toy_fan`` (a blur detector, 32 px patches, trained
channel: 2x downscale). Camera originals are 2x nearest-neighbour upscales of noise, so the
2x box downscale verify applies to a camera original gives back the noise the toy FAN knows;
the "platform" copies are that noise itself (what a 2x downscale of the original gives), with
the metadata dropped. Two cases need more than the default server: ``outside_channel`` reads
inconclusive under :func:`jpeg_channel_fan`, ``foreign_share`` reads "no rawproof traces"
under :func:`origin_head_fan` (a test origin head).
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
from PIL import Image

from _toy_fan import _keep, blur, build_toy_fan, noise_image, toy_fan_path
from rawproof.keygen import TestPki, generate_test_pki
from rawproof.models import ModelInfo, file_sha256, load_model_info
from rawproof.origin import head_path
from rawproof.provenance import CAPTURE_ASSERTION_LABEL, CaptureInfo, ModelRef, Signer, build_manifest, sign_image

AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

H, W = 96, 160


@dataclass(frozen=True)
class Case:
    """One upload: its bytes, the file name the browser sends, the verdict class it stands for."""

    name: str
    data: bytes
    filename: str
    verdict: str | None  # None: a hostile file, answered with an error message


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def jpeg(rgb: np.ndarray, quality: int = 95, subsampling: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def flip_scan_byte(data: bytes) -> bytes:
    """Flip one bit in a JPEG's entropy-coded data, away from markers, so it still decodes."""
    sos = data.rindex(b"\xff\xda")
    out = bytearray(data)
    i = sos + (len(data) - sos) // 2
    while out[i] == 0xFF or out[i - 1] == 0xFF or out[i] ^ 0x01 == 0xFF:
        i += 1
    out[i] ^= 0x01
    return bytes(out)


def _up(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)


def capture(fan_sha: str) -> CaptureInfo:
    return CaptureInfo(camera_make="Test", camera_model="Cam", device_id="dev-1", raw_sha256="a" * 64,
                       nip=ModelRef("nip", "b" * 64), capture_time="2025-01-31T12:00:00+00:00",
                       fan=ModelRef("toy_fan", fan_sha), develop={"format": "png"})


def _builder_sign(pki: TestPki, manifest: dict[str, Any], image: bytes, parent: bytes | None = None) -> bytes:
    """Sign ``image`` (PNG) with c2pa's Builder as an editing or generating tool would; ``parent``
    (a signed PNG) becomes the ``parentOf`` ingredient."""
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer, \
            c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as ctx, \
            c2pa.Builder(manifest, ctx) as builder:
        if parent is not None:
            builder.add_ingredient({"title": "original.png", "relationship": "parentOf", "instance_id": "parent"},
                                   "image/png", io.BytesIO(parent))
        out = io.BytesIO()
        builder.sign(signer._handle, "image/png", io.BytesIO(image), out)
        return out.getvalue()


def remote_manifest(pki: TestPki, cap: CaptureInfo, image: bytes, url: str) -> bytes:
    """``image`` (PNG) signed as a capture whose manifest is kept at ``url``, not in the file
    (c2pa's ``set_no_embed`` / ``set_remote_url``: the file carries only the reference)."""
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer, \
            c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as ctx, \
            c2pa.Builder(build_manifest(cap), ctx) as builder:
        builder.set_no_embed()
        builder.set_remote_url(url)
        out = io.BytesIO()
        builder.sign(signer._handle, "image/png", io.BytesIO(image), out)
        return out.getvalue()


REMOTE_URL = "http://127.0.0.1:9/manifests/capture.c2pa"
"""Where the remote-manifest case points: a closed port, never fetched (validation is offline)."""


def edit_of(parent: bytes, pki: TestPki, image: bytes) -> bytes:
    """An editor's manifest over ``image``: cropped and colour-adjusted from ``parent``."""
    manifest = {"claim_generator_info": [{"name": "photo-desk", "version": "2.1"}], "title": "edited.png",
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [
                    {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                    {"action": "c2pa.cropped"}, {"action": "c2pa.color_adjustments"}]}}]}
    return _builder_sign(pki, manifest, image, parent)


def generated(pki: TestPki, image: bytes, cap: CaptureInfo) -> bytes:
    """A generator's manifest: ``c2pa.created`` of an AI source type (with a copied capture assertion)."""
    manifest = {"claim_generator_info": [{"name": "image-model", "version": "1"}], "assertions": [
        {"label": "c2pa.actions.v2", "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": AI}]}},
        {"label": CAPTURE_ASSERTION_LABEL, "data": cap.to_dict()}]}
    return _builder_sign(pki, manifest, image)


@functools.lru_cache(maxsize=None)
def jpeg_channel_fan() -> ModelInfo:
    """A toy FAN exported as trained behind JPEG q50 4:4:4 (a PNG or a q90 JPEG lies outside
    that channel), in a folder of its own removed at exit."""
    tmp = tempfile.TemporaryDirectory(prefix="rawproof-toy-fan-q50-")
    _keep.append(tmp)
    path = build_toy_fan(Path(tmp.name), name="toy_fan_q50", metadata={"trained_channel": {"downscale": 2, "jpeg_quality": 50}})
    return load_model_info(path)


@functools.lru_cache(maxsize=None)
def origin_head_fan() -> ModelInfo:
    """A copy of the toy FAN with an origin head beside it (``origin_toy_fan.json``), in a folder
    of its own removed at exit (the shared toy FAN stays without one).

    The head is a fixture, not a result: the toy FAN knows only noise and blurred noise, so no
    head can be trained for it (``train-origin`` needs other pipelines' developments). It is a
    hand-set logistic regression in the stored form, P(foreign) = sigmoid(20 mean_P(gaussian)
    - 10), threshold 0.5: an image the FAN reads as unlike its NIP's untouched output over most
    patches reads "foreign", as a trained head reads another pipeline's image (docs/results/
    image_eval.md measures the real one). The tests that use it check what verify and the page
    do with a foreign reading, not whether the reading is right.
    """
    tmp = tempfile.TemporaryDirectory(prefix="rawproof-toy-fan-origin-")
    _keep.append(tmp)
    for suffix in (".onnx", ".json"):
        shutil.copy(toy_fan_path().with_suffix(suffix), Path(tmp.name) / f"toy_fan{suffix}")
    fan = load_model_info(Path(tmp.name) / "toy_fan.onnx")
    n = 3 * len(fan.classes) + 6  # origin_features: per class mean, std, argmax share; 3 deciles; 3 more
    weights = [0.0] * n
    weights[fan.classes.index("gaussian")] = 20.0  # the first len(classes) features are the mean P per class
    head_path(fan).write_text(json.dumps({
        "name": f"origin_{fan.name}", "fan_name": fan.name, "classes": list(fan.classes), "mean": [0.0] * n,
        "scale": [1.0] * n, "weights": weights, "bias": -10.0, "threshold": 0.5, "kind": "origin-head (test fixture)"}))
    return fan


@dataclass(frozen=True)
class Anchors:
    """The roots the server trusts (PEM bytes), as ``verify()`` keyword arguments."""

    device: bytes
    other: bytes

    @property
    def kwargs(self) -> dict[str, bytes]:
        return {"device_anchors": self.device, "trust_anchors": self.other}


def photo_like(seed: int, width: int = 320, height: int = 240) -> np.ndarray:
    """uint8 H x W x 3: smooth random blobs plus mild noise (enough content for a soft binding)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC),
                      dtype=np.float32)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Published:
    """A capture signed with a soft binding, its manifest store (to publish), and a stripped copy."""

    signed: bytes
    store: bytes
    copy: Case


def published_capture(tmp: Path) -> tuple[Published, Anchors]:
    """A device capture with a ``c2pa.soft-binding`` (ISCC), its manifest store as a repository keeps it,
    and what a platform makes of it: 0.75x, JPEG q80 4:2:0, metadata gone. Its own anchors."""
    from rawproof import softbinding
    from rawproof.jumbf import manifest_stores

    pki = generate_test_pki(tmp / "pki", alg="es256")
    rgb = photo_like(23)
    cap = CaptureInfo(camera_make="Test", camera_model="Cam", device_id="dev-1", raw_sha256="c" * 64,
                      nip=ModelRef("nip", "b" * 64), capture_time="2025-02-03T09:30:00+00:00",
                      develop={"width": rgb.shape[1], "height": rgb.shape[0], "format": "png"})
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        signed = sign_image(png(rgb), "image/png", cap, signer, soft_binding=softbinding.soft_binding_assertion(rgb))
    small = np.asarray(Image.fromarray(rgb).resize((240, 180), Image.BILINEAR))
    copy = Case("stripped_copy_in_repository", jpeg(small, 80, subsampling=2), "shared_copy.jpg", "recovered")
    root = pki.root_cert.read_bytes()
    return Published(signed, manifest_stores(signed, "image/png")[0], copy), Anchors(root, root)


def build_cases(tmp: Path) -> tuple[dict[str, Case], Anchors]:
    """The cases by name, and the roots the server trusts."""
    pki = generate_test_pki(tmp / "pki", alg="es256")
    editor = generate_test_pki(tmp / "editor", alg="es256", device_id="photo-desk")
    other = generate_test_pki(tmp / "other", alg="es256", device_id="another-vendor")
    cap = capture(file_sha256(toy_fan_path()))
    noise = noise_image(H, W, seed=3)
    edited = noise.copy()
    edited[:, : W // 2] = blur(noise)[:, : W // 2]
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        original = sign_image(png(_up(noise)), "image/png", cap, signer)
        manipulated = sign_image(png(_up(blur(noise))), "image/png", cap, signer)
        signed_jpeg = sign_image(jpeg(_up(noise)), "image/jpeg", cap, signer)
    with Signer.from_files(other.device_chain, other.device_key, alg="es256") as signer:
        foreign = sign_image(png(_up(noise)), "image/png", cap, signer)
    with Signer.from_files(editor.device_chain, editor.device_key, alg="es256") as signer:
        not_a_device = sign_image(png(_up(noise)), "image/png", cap, signer)
    cases = [
        Case("signed_original", original, "original.png", "authentic"),
        Case("edited_chain", edit_of(original, editor, png(_up(noise)[8:-8, 8:-8])), "edited.png", "edited"),
        Case("generated", generated(editor, png(_up(noise)), cap), "generated.png", "synthetic"),
        Case("capture_by_a_non_device", not_a_device, "desk_capture.png", "origin_unverified"),
        Case("manipulated_before_signing", manipulated, "signed_blurred.png", "manipulated"),
        Case("tampered_signed_copy", flip_scan_byte(signed_jpeg), "tampered.jpg", "invalid_signature"),
        Case("other_pipeline", foreign, "other_vendor.png", "untrusted"),
        Case("stripped_copy", png(noise), "stripped.png", "no_provenance_consistent"),
        Case("manipulated_share", png(edited), "shared_edited.png", "no_provenance_manipulated"),
        Case("too_small", png(noise[:20, :20]), "thumbnail.png", "no_provenance_unanalyzed"),
        Case("outside_channel", jpeg(edited, 90), "shared_q90.jpg", "no_provenance_inconclusive"),
        Case("remote_manifest", remote_manifest(pki, cap, png(noise), REMOTE_URL), "remote.png", "manifest_unavailable"),
        # under origin_head_fan() (with the default toy FAN the same bytes read no_provenance_manipulated)
        Case("foreign_share", png(blur(noise)), "other_camera.png", "no_rawproof_traces"),
        Case("hostile", jpeg(noise)[:900], "hostile.jpg", None),
    ]
    return {c.name: c for c in cases}, Anchors(pki.root_cert.read_bytes(), editor.root_cert.read_bytes())
