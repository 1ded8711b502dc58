"""Recovery through the soft binding: develop(signer=, publish=) -> strip -> verify(repo=) gives RECOVERED."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _repo_server import jpeg_bytes, photo_like, serve_in_thread
from rawproof import softbinding as sb
from rawproof.develop import _synthetic_frame, develop
from rawproof.errors import RepositoryError, SigningError
from rawproof.jumbf import manifest_stores
from rawproof.keygen import generate_test_pki
from rawproof.provenance import CaptureInfo, ModelRef, ProvenanceState, Signer, sign_image
from rawproof.repo.app import create_app
from rawproof.repo.client import Publisher, RepoClient
from rawproof.repo.store import open_store
from rawproof.verify import Verdict, verify


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return generate_test_pki(tmp_path_factory.mktemp("pki"), alg="es256")


@pytest.fixture
def repo(tmp_path: Path):
    with open_store(tmp_path / "repo.sqlite") as store:
        key = store.add_key("cam-1")
        with serve_in_thread(create_app(store)) as url:
            yield url, key, store


def _sign(pki, rgb: np.ndarray) -> bytes:
    capture = CaptureInfo(camera_make="Test", camera_model="Cam", device_id="cam-1", raw_sha256="0" * 64,
                          nip=ModelRef("n", "1" * 64), capture_time="2025-01-01T00:00:00+00:00",
                          develop={"width": rgb.shape[1], "height": rgb.shape[0], "format": "jpeg", "quality": 95})
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        return sign_image(jpeg_bytes(rgb), "image/jpeg", capture, signer, soft_binding=sb.soft_binding_assertion(rgb))


def _platform(rgb: np.ndarray, scale: float, crop: tuple[int, int], quality: int) -> bytes:
    """Crop ``crop`` px off the left/top, scale, JPEG at ``quality`` 4:2:0: metadata gone."""
    im = Image.fromarray(rgb[crop[1]:, crop[0]:])
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def test_stripped_copy_is_recovered(repo, pki) -> None:
    url, key, _ = repo
    rgb = photo_like(11, 640, 480)
    signed = _sign(pki, rgb)
    mid = RepoClient(url, key).publish(manifest_stores(signed, "image/jpeg")[0])
    copy = _platform(rgb, 0.5, (60, 0), 60)
    rep = verify(copy, device_anchors=pki.root_cert, repo=url, fan=None)
    assert rep.provenance.state is ProvenanceState.NO_MANIFEST
    assert rep.verdict is Verdict.RECOVERED and rep.exit_code == 2
    r = rep.recovery
    assert r is not None and r.manifest_id == mid and r.trusted and r.distance <= sb.MATCH_THRESHOLD
    assert r.provenance.signer_subject and "rawproof test device" in r.provenance.signer_subject
    assert set(r.provenance.status_codes) == {"assertion.dataHash.mismatch"}
    d = r.differences
    assert d["original_size"] == [640, 480] and d["received_size"] == [290, 240]
    assert d["crop"] is not None and d["crop"][2] < 640  # cropped, and the window says so
    assert 0.45 < d["scale"] < 0.56
    assert d["received_encoding"]["format"] == "JPEG" and d["received_encoding"]["jpeg_quality"] == 60
    assert "recovered" in rep.summary and rep.to_dict()["recovery"]["manifest_id"] == mid


def test_untrusted_and_unrelated(repo, pki, tmp_path: Path) -> None:
    url, key, _ = repo
    rgb = photo_like(12, 640, 480)
    RepoClient(url, key).publish(manifest_stores(_sign(pki, rgb), "image/jpeg")[0])
    other_root = generate_test_pki(tmp_path / "other", alg="es256").root_cert
    rep = verify(_platform(rgb, 0.75, (0, 0), 80), device_anchors=other_root, repo=url)
    assert rep.recovery is not None and not rep.recovery.trusted
    assert rep.verdict is not Verdict.RECOVERED and "untrusted manifest was recovered" in rep.summary
    unrelated = verify(jpeg_bytes(photo_like(13, 640, 480), 80), device_anchors=pki.root_cert, repo=url)
    assert unrelated.recovery is None and unrelated.verdict is not Verdict.RECOVERED


def test_signed_original_is_not_looked_up(repo, pki) -> None:
    url, key, _ = repo
    signed = _sign(pki, photo_like(14))
    rep = verify(signed, device_anchors=pki.root_cert, repo="http://127.0.0.1:1")  # unreachable: never asked
    assert rep.provenance.state is ProvenanceState.VALID and rep.recovery is None


def test_unreachable_repo_raises_for_a_stripped_image(pki) -> None:
    with pytest.raises(RepositoryError):
        verify(jpeg_bytes(photo_like(15)), repo="http://127.0.0.1:1")


def test_develop_publishes_and_queues(repo, pki, tmp_path: Path) -> None:
    """develop(signer=, publish=) signs with a soft binding of the developed pixels and publishes; offline it queues."""
    url, key, store = repo
    frame = _synthetic_frame(256, 192, seed=3)
    with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
        res = develop(frame, signer=signer, publish=Publisher(RepoClient(url, key), tmp_path / "q"), tile=0)
        offline = develop(_synthetic_frame(256, 192, seed=4), signer=signer, tile=0,
                          publish=Publisher(RepoClient("http://127.0.0.1:1", key, timeout=2), tmp_path / "q2"))
        with pytest.raises(SigningError):
            develop(frame, publish=url)
        flat = dataclasses.replace(frame, mosaic=np.full_like(frame.mosaic, 1000))  # a lens-cap frame
        skipped = develop(flat, signer=signer, tile=0, publish=Publisher(RepoClient(url, key), tmp_path / "q3"))
    assert res.published is not None and res.published.status == "published"
    assert store.get(res.published.manifest_id) == manifest_stores(res.signed, "image/jpeg")[0]
    assert offline.published.status == "queued" and offline.published.queued_as.is_file()
    assert skipped.published.status == "skipped" and skipped.signed is not None
    assert verify(skipped.signed, device_anchors=pki.root_cert).provenance.soft_binding is None
    blocks = verify(res.signed, device_anchors=pki.root_cert).provenance.soft_binding["blocks"]
    assert blocks[0]["value"] == sb.format_value(sb.image_code(res.rgb))  # computed on the developed pixels
    stripped = np.asarray(Image.open(io.BytesIO(res.signed)).convert("RGB"))
    rep = verify(jpeg_bytes(stripped, 70), device_anchors=pki.root_cert, repo=url)
    assert rep.verdict is Verdict.RECOVERED and rep.recovery.manifest_id == res.published.manifest_id
    assert rep.recovery.capture["raw_sha256"] == res.raw_sha256


def test_verify_batch_with_repo(repo, pki, tmp_path: Path) -> None:
    """verify-batch --repo fills recovered_manifest / recovery_distance per row."""
    from rawproof.batch import read_rows, verify_batch

    url, key, _ = repo
    rgb = photo_like(16, 640, 480)
    mid = RepoClient(url, key).publish(manifest_stores(_sign(pki, rgb), "image/jpeg")[0])
    (tmp_path / "stripped.jpg").write_bytes(_platform(rgb, 0.75, (0, 20), 75))
    (tmp_path / "other.jpg").write_bytes(jpeg_bytes(photo_like(17, 640, 480), 75))
    out = tmp_path / "rows.jsonl"
    verify_batch([str(tmp_path / "stripped.jpg"), str(tmp_path / "other.jpg")], out, workers=1, progress=False,
                 device_anchors=pki.root_cert, repo=url)
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows["stripped.jpg"]["verdict"] == "recovered" and rows["stripped.jpg"]["recovered_manifest"] == mid
    assert rows["stripped.jpg"]["recovery_distance"] <= sb.MATCH_THRESHOLD
    assert rows["other.jpg"]["recovered_manifest"] is None and rows["other.jpg"]["verdict"] != "recovered"
