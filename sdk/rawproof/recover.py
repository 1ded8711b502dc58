"""Recovery of a stripped image's manifest through its soft binding (Durable Content Credentials).

``verify(image, repo=URL)`` calls :func:`recover` when the image carries no manifest (or an
invalid one): the ISCC Image-Code of the received pixels is looked up in the repository
(``/matches/byBinding``), the nearest manifest store is fetched (``/manifests/{id}``) and
validated with c2pa (signature and chain; its hard binding names the original file's bytes,
so ``assertion.dataHash.mismatch`` is expected and nothing else may fail), and the match is
re-checked here against the store's own signed soft-binding assertion, so a repository cannot
substitute another manifest. What differs between the received copy and the original comes from
the matched crop region and the develop settings recorded in the capture assertion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rawproof import softbinding as sb
from rawproof.imageio import DecodedImage
from rawproof.provenance import PemSource, ProvenanceReport, ProvenanceState, check_manifest_store
from rawproof.repo.client import RepoClient

__all__ = ["Recovery", "recover"]

_CANDIDATES = 3
"""Matches fetched and checked at most, nearest first."""


@dataclass(frozen=True)
class Recovery:
    """A manifest found for an image through its soft binding.

    Attributes:
        manifest_id: The repository's id of the manifest (its C2PA URN).
        repository: Base URL of the repository.
        distance: Hamming distance (bits of 64) between the received image's code and the
            matched block's code, recomputed from the signed assertion.
        similarity: ``100 * (1 - distance / 64)``, as the Soft Binding Resolution API scores it.
        region: The crop window of the original that matched (fractions; the whole frame if uncropped).
        provenance: c2pa's validation of the recovered manifest store (state ``INVALID`` only
            through the expected ``assertion.dataHash.mismatch``; see :attr:`trusted`).
        trusted: The signature validates and the signer chains to the trust anchors given.
        capture: The recovered ``org.rawproof.capture`` assertion.
        differences: What differs between the received copy and the original: ``original_size``,
            ``received_size`` ([w, h]), ``crop`` ([x, y, w, h] in original pixels, or ``None``),
            ``scale`` (received / original width of the matched window), ``original_encoding`` and
            ``received_encoding`` (format, JPEG quality, subsampling), ``metadata_stripped``.
    """

    manifest_id: str
    repository: str
    distance: int
    similarity: int
    region: sb.Region
    provenance: ProvenanceReport
    trusted: bool
    capture: Mapping[str, Any] | None
    differences: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        p = self.provenance
        return {
            "manifest_id": self.manifest_id, "repository": self.repository, "distance": self.distance,
            "similarity": self.similarity, "region": [self.region.x, self.region.y, self.region.w, self.region.h],
            "trusted": self.trusted,
            "provenance": {"state": p.state.value, "status_codes": list(p.status_codes), "success_codes": list(p.success_codes),
                           "signer_subject": p.signer_subject, "signer_issuer": p.signer_issuer, "signing_time": p.signing_time,
                           "active_manifest": p.active_manifest},
            "capture": None if self.capture is None else dict(self.capture),
            "differences": dict(self.differences),
        }

    def describe(self) -> str:
        """One phrase: who signed the original, and how the copy differs."""
        d = self.differences
        parts = []
        if d.get("crop"):
            x, y, w, h = d["crop"]
            parts.append(f"cropped to {w}x{h} at ({x}, {y})")
        if d.get("scale") is not None and abs(d["scale"] - 1) > 0.01:
            parts.append(f"scaled {d['scale']:.2f}x")
        enc = d.get("received_encoding") or {}
        parts.append(f"re-encoded as {enc.get('format')}" + (f" q{enc['jpeg_quality']}" if enc.get("jpeg_quality") else ""))
        parts.append("metadata stripped")
        who = self.provenance.signer_subject or "an unknown signer"
        return f"original manifest recovered by soft binding (distance {self.distance}/64) from {self.repository}, signed by {who}; copy {', '.join(parts)}"


def _trusted(p: ProvenanceReport) -> bool:
    return (not p.error and set(p.status_codes) <= {"assertion.dataHash.mismatch"}
            and "claimSignature.validated" in p.success_codes and "signingCredential.trusted" in p.success_codes)


def _differences(capture: Mapping[str, Any] | None, region: sb.Region, decoded: DecodedImage) -> dict[str, Any]:
    dev = (capture or {}).get("develop") if isinstance(capture, Mapping) else None
    dev = dev if isinstance(dev, Mapping) else {}
    ow, oh = dev.get("width"), dev.get("height")
    out: dict[str, Any] = {
        "received_size": [decoded.width, decoded.height],
        "original_size": [ow, oh] if isinstance(ow, int) and isinstance(oh, int) else None,
        "crop": None, "scale": None,
        "original_encoding": {"format": dev.get("format"), "jpeg_quality": dev.get("quality")},
        "received_encoding": {"format": decoded.format, "jpeg_quality": decoded.jpeg_quality, "subsampling": decoded.jpeg_subsampling},
        "metadata_stripped": True,
    }
    if out["original_size"] is not None:
        window_w = region.w * ow
        if not region.is_full:
            out["crop"] = [round(region.x * ow), round(region.y * oh), round(region.w * ow), round(region.h * oh)]
        out["scale"] = round(decoded.width / window_w, 4) if window_w > 0 else None
    return out


def recover(decoded: DecodedImage, repo: str | RepoClient, *, trust_anchors: PemSource | None = None,
            device_anchors: PemSource | None = None, tsa_anchors: PemSource | None = None) -> Recovery | None:
    """Look an image up in a repository by its soft binding and validate what comes back.

    Args:
        decoded: The received image (:func:`rawproof.imageio.decode_rgb`).
        repo: Repository URL or client.
        trust_anchors, device_anchors, tsa_anchors: Roots the recovered manifest's signer must
            chain to, as for :func:`rawproof.verify.verify`.

    Returns:
        The nearest candidate whose signed soft binding is within
        :data:`rawproof.softbinding.MATCH_THRESHOLD` of the image (a trusted one preferred), or
        ``None`` when nothing matches or the image cannot carry a soft binding
        (:func:`rawproof.softbinding.has_content`); the repository is then not asked.

    Raises:
        RepositoryError: the repository is unreachable or answers with an error.
    """
    client = repo if isinstance(repo, RepoClient) else RepoClient(repo)
    rgb = np.asarray(decoded.rgb)
    if not sb.has_content(rgb):
        return None  # too small or flat: its code would match every other flat frame
    code = sb.image_code(rgb)
    found: list[Recovery] = []
    for m in client.match_binding(sb.format_value(code), max_results=_CANDIDATES):
        store = client.manifest(m.manifest_id)
        prov = check_manifest_store(store, trust_anchors=trust_anchors, device_anchors=device_anchors, tsa_anchors=tsa_anchors)
        if prov.state is ProvenanceState.NO_MANIFEST or prov.active_manifest != m.manifest_id:
            continue  # the repository served a store that is not the manifest it named
        best: tuple[int, sb.Region] | None = None
        for block in sb.blocks_of(prov.soft_binding or {}):
            try:
                d = sb.hamming(code, sb.parse_value(block["value"]))
            except ValueError:
                continue
            if best is None or d < best[0]:
                best = (d, sb.region_of_block(block))
        if best is None or best[0] > sb.MATCH_THRESHOLD:
            continue
        found.append(Recovery(
            manifest_id=m.manifest_id, repository=client.url, distance=best[0], similarity=round(100 * (1 - best[0] / sb.BITS)),
            region=best[1], provenance=prov, trusted=_trusted(prov), capture=prov.capture,
            differences=_differences(prov.capture, best[1], decoded),
        ))
    if not found:
        return None
    return min(found, key=lambda r: (not r.trusted, r.distance))
